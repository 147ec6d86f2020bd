//! ONNX nodes → treadc ops, in file order: each live node (one that computes on the model's
//! inputs, not on shapes or constants) is claimed by the first pattern that explains it, with
//! the nodes that pattern spans. What no pattern explains is collected and reported (exit 2):
//! nothing is approximated. Elementwise regions are handled here; the structural patterns
//! (linear, attention, patchify, ...) in [`super::patterns`].

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::elementwise::{self, EvalNode, Function, Operand};
use super::source::Source;
use tread_compiler::diag::Diagnostic;
use tread_compiler::ir::InputRole;
use tread_compiler::tables;

/// One treadc op found in the file, before blocks are folded into templates.
#[derive(Debug, Clone)]
pub struct IrNode {
    /// Its name: `<list>.<n>.<local>` inside a repeated block (`blocks.3.attn`), else a plain
    /// identifier.
    pub name: String,
    /// The op and its attributes as model.json writes them (`{"op": "linear", "out": 96}`).
    pub op: Map<String, Value>,
    /// Input value names.
    pub ins: Vec<String>,
    /// Its tensors: suffix (`weight`, `qkv.bias`), shape, row-major data.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// The ONNX nodes (or constants) it was made from, for `--report`.
    pub matched: Vec<String>,
}

/// A graph input with its role and model.json shape.
#[derive(Debug, Clone)]
pub struct IrInput {
    /// Its name (the ONNX name, made an identifier).
    pub name: String,
    /// What it carries.
    pub role: InputRole,
    /// Its shape: `"B"` for the batch axis, sizes elsewhere.
    pub shape: Vec<Value>,
    /// Whether it holds integers.
    pub integer: bool,
}

/// The recognised model: inputs, ops in topological order, outputs by name.
#[derive(Debug, Clone)]
pub struct Recognised {
    /// Graph inputs.
    pub inputs: Vec<IrInput>,
    /// Ops in topological order.
    pub nodes: Vec<IrNode>,
    /// `(output name, value)` pairs.
    pub outputs: Vec<(String, String)>,
}

/// The matching state shared by the elementwise and the structural patterns.
pub struct Ctx<'a> {
    /// The file.
    pub src: &'a Source,
    /// The treadc value holding each ONNX value that has one.
    pub ir: HashMap<String, String>,
    /// ONNX nodes already explained.
    pub done: Vec<bool>,
    /// The ops found so far.
    pub nodes: Vec<IrNode>,
    /// Ops later absorbed into a larger one (a qkv linear into attention).
    pub dropped: HashSet<usize>,
    taken: HashSet<String>,
    /// The patch grid (rows, columns), once a patchify was found: for position tables.
    pub grid: Option<(i64, i64)>,
    /// Roles of the graph inputs by name.
    pub roles: HashMap<String, InputRole>,
    lists: HashSet<String>,
}

/// Whether `s` is already a treadc value name: an identifier, or `<list>.<n>.<identifier>`.
pub fn ir_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    match parts.as_slice() {
        [one] => tread_compiler::dims::is_identifier(one),
        [list, n, local] => {
            tread_compiler::dims::is_identifier(list)
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && tread_compiler::dims::is_identifier(local)
        }
        _ => false,
    }
}

fn identifier(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "n_");
    }
    out
}

/// The list of a numbered scope in an ONNX node path: `blocks` for `blocks.3`.
fn list_of(segment: &str) -> Option<&str> {
    let (list, n) = segment.rsplit_once('.')?;
    (tread_compiler::dims::is_identifier(list)
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit()))
    .then_some(list)
}

/// The module lists that hold the transformer blocks: for every attention (`Softmax` or
/// `Attention` node), the outermost numbered scope around it. Other numbered scopes
/// (`mlp.0` of an `nn.Sequential`) are plain modules.
pub fn block_lists(src: &Source) -> HashSet<String> {
    src.nodes
        .iter()
        .filter(|n| n.op == "Softmax" || n.op == "Attention")
        .filter_map(|n| n.name.split('/').find_map(list_of).map(str::to_string))
        .collect()
}

/// The name a torch-style node path gives an op: `/blocks.0/mlp/fc1/MatMul` → `blocks.0.mlp_fc1`
/// for a module-level op (the op segment dropped), `/blocks.0/Add_3` → `blocks.0.add_3`.
pub fn scoped_name(node_name: &str, module: bool, kind: &str, lists: &HashSet<String>) -> String {
    let segs: Vec<&str> = node_name.split('/').filter(|s| !s.is_empty()).collect();
    let in_list = |s: &&str| list_of(s).is_some_and(|l| lists.contains(l));
    let (block, rest): (Option<&str>, Vec<&str>) = match segs.iter().position(in_list) {
        Some(b) => (Some(segs[b]), segs[b + 1..].to_vec()),
        None => (None, segs),
    };
    let mut parts: Vec<String> = vec![];
    let n = rest.len();
    for (i, s) in rest.iter().enumerate() {
        if i + 1 == n && module && n > 1 {
            break;
        }
        // `adaLN_modulation/adaLN_modulation.1` → `adaLN_modulation_1`
        let s = match parts.last() {
            Some(prev) => s.strip_prefix(&format!("{prev}.")).unwrap_or(s),
            None => s,
        };
        let s = if i + 1 == n && !module {
            s.to_lowercase()
        } else {
            s.to_string()
        };
        parts.push(s);
    }
    let local = if parts.is_empty() {
        kind.to_string()
    } else {
        identifier(&parts.join("_"))
    };
    match block {
        Some(b) => format!("{b}.{local}"),
        None => local,
    }
}

impl<'a> Ctx<'a> {
    /// A fresh matching state over `src`, with the inputs' roles.
    pub fn new(src: &'a Source, roles: HashMap<String, InputRole>) -> Self {
        Ctx {
            src,
            ir: HashMap::new(),
            done: vec![false; src.nodes.len()],
            nodes: vec![],
            dropped: HashSet::new(),
            taken: HashSet::new(),
            grid: None,
            roles,
            lists: block_lists(src),
        }
    }

    /// Whether node `i` computes on the inputs (some output is not a constant).
    pub fn live(&self, i: usize) -> bool {
        self.src.nodes[i]
            .outputs
            .iter()
            .any(|o| !o.is_empty() && !self.src.is_constant(o))
    }

    /// The live nodes consuming `v` (shape queries on it do not count).
    pub fn live_users(&self, v: &str) -> Vec<usize> {
        self.src
            .users(v)
            .iter()
            .copied()
            .filter(|&u| self.live(u))
            .collect()
    }

    /// The one live node consuming `v`, when exactly one does and `v` is not a graph output.
    pub fn sole_user(&self, v: &str) -> Option<usize> {
        if self.src.outputs.iter().any(|o| o == v) {
            return None;
        }
        match self.live_users(v).as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// The live (non-constant) inputs of node `i`.
    pub fn live_inputs(&self, i: usize) -> Vec<String> {
        self.src.nodes[i]
            .inputs
            .iter()
            .filter(|v| !v.is_empty() && !self.src.is_constant(v))
            .cloned()
            .collect()
    }

    /// A unique op name: `value` itself in a file treadc wrote, else one made from node
    /// `node`'s module path.
    pub fn name_for(&mut self, value: &str, node: usize, module: bool, kind: &str) -> String {
        let base = if self.src.written_by_treadc() && ir_like(value) {
            value.to_string()
        } else {
            scoped_name(&self.src.nodes[node].name, module, kind, &self.lists)
        };
        self.unique(base)
    }

    /// `base`, or `base_2`, `base_3`, ... when taken.
    pub fn unique(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut k = 2;
        while self.taken.contains(&name) || self.roles.contains_key(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// Records an op whose value stands for ONNX value `out`, claiming `claimed` nodes.
    pub fn emit(&mut self, node: IrNode, out: &str, claimed: &[usize]) -> String {
        for &c in claimed {
            self.done[c] = true;
        }
        let name = node.name.clone();
        self.ir.insert(out.to_string(), name.clone());
        self.nodes.push(node);
        name
    }

    /// The treadc value of ONNX value `v`, a constant operand made a `param` (or a 2-D
    /// position table) on first use.
    pub fn value_of(&mut self, v: &str) -> Option<String> {
        if let Some(n) = self.ir.get(v) {
            return Some(n.clone());
        }
        let (shape, data) = self.src.floats(v)?;
        let (shape, data) = (shape.to_vec(), data.to_vec());
        let stem = v
            .strip_suffix(".table")
            .or_else(|| v.strip_suffix(".value"))
            .unwrap_or(v);
        let base = if ir_like(stem) {
            stem.to_string()
        } else {
            identifier(stem)
        };
        let name = self.unique(base);
        let node = match position_table(self, &shape, &data) {
            Some(op) => IrNode {
                name: name.clone(),
                op,
                ins: vec![],
                tensors: vec![],
                matched: vec![v.to_string()],
            },
            None => {
                let tokens = self.grid.map(|(h, w)| (h * w) as usize);
                let token_axis = (shape.len() == 3 && Some(shape[1]) == tokens).then_some(1);
                IrNode {
                    name: name.clone(),
                    op: op_json("param", json!({"shape": shape, "token_axis": token_axis})),
                    ins: vec![],
                    tensors: vec![("value".into(), shape.clone(), data)],
                    matched: vec![v.to_string()],
                }
            }
        };
        self.ir.insert(v.to_string(), name.clone());
        self.nodes.push(node);
        Some(name)
    }

    /// Whether every live input of node `i` has a treadc value or is a graph input with a role
    /// (outputs of unexplained nodes, marked `?`, do not count).
    pub fn inputs_known(&self, i: usize) -> bool {
        self.live_inputs(i).iter().all(|v| {
            self.ir.get(v).is_some_and(|n| n != "?") || self.roles.contains_key(v.as_str())
        })
    }

    /// An elementwise node whose one live consumer is elementwise too: that consumer's region
    /// takes it.
    pub fn absorbed_later(&self, i: usize) -> bool {
        let outs = &self.src.nodes[i].outputs;
        outs.len() == 1
            && self.sole_user(&outs[0]).is_some_and(|c| {
                !self.done[c] && elementwise::is_elementwise(&self.src.nodes[c].op)
            })
    }

    /// The elementwise region rooted at node `root`: itself and every elementwise producer
    /// whose value feeds only the region. `None` when it is not one region of scalars.
    fn region(&self, root: usize) -> (Vec<usize>, Vec<String>) {
        let mut members = vec![root];
        let mut inputs: Vec<String> = vec![];
        let mut k = 0;
        while k < members.len() {
            let m = members[k];
            for v in self.src.nodes[m].inputs.iter().filter(|v| !v.is_empty()) {
                if self.scalar(v).is_some() {
                    continue;
                }
                let producer = self.src.producer.get(v).copied();
                let inner = producer.is_some_and(|p| {
                    !self.done[p]
                        && self.live(p)
                        && elementwise::is_elementwise(&self.src.nodes[p].op)
                        && self.sole_user(v) == Some(m)
                });
                match producer {
                    Some(p) if inner => {
                        if !members.contains(&p) {
                            members.push(p);
                        }
                    }
                    _ => {
                        if !inputs.contains(v) {
                            inputs.push(v.clone());
                        }
                    }
                }
            }
            k += 1;
        }
        (members, inputs)
    }

    fn scalar(&self, v: &str) -> Option<f64> {
        match self.src.constant(v)? {
            crate::tract::FactValue::F32(_, d) if d.len() == 1 => Some(d[0] as f64),
            crate::tract::FactValue::Ints(_, d) if d.len() == 1 => match d[0] {
                crate::tract::FactDim::Known(k) => Some(k as f64),
                crate::tract::FactDim::Symbolic(_) => None,
            },
            _ => None,
        }
    }

    /// Explains the elementwise region rooted at `root` as one op, or as `add`/`mul` of
    /// sub-regions that each are one.
    pub fn elementwise(&mut self, root: usize) -> Result<bool, Diagnostic> {
        let (members, inputs) = self.region(root);
        let Some(value) = self.region_value(root, &members, &inputs)? else {
            return Ok(false);
        };
        let out = self.src.nodes[root].outputs[0].clone();
        for &m in &members {
            self.done[m] = true;
        }
        self.ir.insert(out, value);
        Ok(true)
    }

    fn eval_nodes(&self, members: &[usize], inputs: &[String]) -> Vec<EvalNode> {
        members
            .iter()
            .map(|&m| {
                let n = &self.src.nodes[m];
                let operands = n
                    .inputs
                    .iter()
                    .filter(|v| !v.is_empty())
                    .take(if n.op == "Cast" { 1 } else { usize::MAX })
                    .map(|v| {
                        if let Some(k) = inputs.iter().position(|x| x == v) {
                            Operand::Input(k)
                        } else if let Some(s) = self.scalar(v) {
                            Operand::Scalar(s)
                        } else {
                            // An inner value: produced by another member.
                            let p = self.src.producer.get(v).copied();
                            match members.iter().position(|&x| Some(x) == p) {
                                Some(k) => Operand::Node(k),
                                None => Operand::Scalar(f64::NAN),
                            }
                        }
                    })
                    .collect();
                EvalNode {
                    op: n.op.clone(),
                    approximate: n.string("approximate"),
                    operands,
                }
            })
            .collect()
    }

    fn region_value(
        &mut self,
        root: usize,
        members: &[usize],
        inputs: &[String],
    ) -> Result<Option<String>, Diagnostic> {
        let nodes = self.eval_nodes(members, inputs);
        if let Some((f, order)) = elementwise::identify(&nodes, 0, inputs.len()) {
            let mut ins = vec![];
            for &k in &order {
                match self.value_of(&inputs[k]) {
                    Some(v) => ins.push(v),
                    None => return Ok(None),
                }
            }
            if f == Function::Identity {
                return Ok(Some(ins[0].clone()));
            }
            let (kind, attrs) = match f {
                Function::Silu => ("silu", json!({})),
                Function::Gelu => ("gelu", json!({"approximate": "none"})),
                Function::GeluTanh => ("gelu", json!({"approximate": "tanh"})),
                Function::Add => ("add", json!({})),
                Function::Mul => ("mul", json!({})),
                Function::Modulate => ("modulate", json!({})),
                Function::Identity => unreachable!("handled above"),
            };
            let out = self.src.nodes[root].outputs[0].clone();
            let name = self.name_for(&out, root, false, kind);
            let matched = members
                .iter()
                .map(|&m| self.src.nodes[m].name.clone())
                .collect();
            let node = IrNode {
                name: name.clone(),
                op: op_json(kind, attrs),
                ins,
                tensors: vec![],
                matched,
            };
            self.nodes.push(node);
            return Ok(Some(name));
        }
        // Not one function: split at the root when it adds or multiplies two sub-regions.
        let r = &self.src.nodes[root];
        if !(r.op == "Add" || r.op == "Mul") || nodes[0].operands.len() != 2 {
            return Ok(None);
        }
        let mut ins = vec![];
        for v in r.inputs.clone() {
            if let Some(k) = inputs.iter().position(|x| *x == v) {
                match self.value_of(&inputs[k]) {
                    Some(x) => ins.push(x),
                    None => return Ok(None),
                }
            } else if self.scalar(&v).is_some() {
                return Ok(None);
            } else {
                let Some(&p) = self.src.producer.get(&v) else {
                    return Ok(None);
                };
                let (sub, sub_inputs) = self.region(p);
                let sub: Vec<usize> = sub.into_iter().filter(|m| members.contains(m)).collect();
                match self.region_value(p, &sub, &sub_inputs)? {
                    Some(x) => ins.push(x),
                    None => return Ok(None),
                }
            }
        }
        let kind = if r.op == "Add" { "add" } else { "mul" };
        let out = r.outputs[0].clone();
        let name = self.name_for(&out, root, false, kind);
        let node = IrNode {
            name: name.clone(),
            op: op_json(kind, json!({})),
            ins,
            tensors: vec![],
            matched: vec![self.src.nodes[root].name.clone()],
        };
        self.nodes.push(node);
        Ok(Some(name))
    }
}

/// `{"op": kind, ...attrs}` (attributes that are `null` left out).
pub fn op_json(kind: &str, attrs: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("op".into(), Value::String(kind.into()));
    if let Value::Object(a) = attrs {
        for (k, v) in a {
            if !v.is_null() {
                m.insert(k, v);
            }
        }
    }
    m
}

/// The op of a constant `[1, N, D]` that equals treadc's 2-D sin-cos table on the patch grid.
pub fn position_table(c: &Ctx, shape: &[usize], data: &[f32]) -> Option<Map<String, Value>> {
    let (h, w) = c.grid?;
    let (h, w) = (h as usize, w as usize);
    if shape.len() != 3 || shape[..2] != [1, h * w] || !shape[2].is_multiple_of(4) {
        return None;
    }
    let table = tables::pos_embed_2d(h, w, shape[2]);
    let same = table.iter().zip(data).all(|(a, b)| (a - b).abs() <= 1e-6);
    same.then(|| {
        op_json(
            "pos_embed_2d",
            json!({"height": h, "width": w, "dim": shape[2]}),
        )
    })
}

/// The model.json name of an ONNX graph input.
pub fn input_name(v: &str) -> String {
    let s: String = v
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("in_{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_paths_become_treadc_names() {
        let l = HashSet::from(["blocks".to_string()]);
        let name = |n, module, kind| scoped_name(n, module, kind, &l);
        assert_eq!(
            name("/blocks.0/mlp/fc1/MatMul", true, "linear"),
            "blocks.0.mlp_fc1"
        );
        assert_eq!(name("/blocks.1/Add_3", false, "add"), "blocks.1.add_3");
        assert_eq!(
            name(
                "/blocks.0/adaLN_modulation/adaLN_modulation.1/Gemm",
                true,
                "linear"
            ),
            "blocks.0.adaLN_modulation_1"
        );
        // an nn.Sequential's numbered children are not blocks
        assert_eq!(
            name("/t_embedder/mlp/mlp.0/Gemm", true, "linear"),
            "t_embedder_mlp_0"
        );
        assert_eq!(name("/Add_1", false, "add"), "add_1");
        assert_eq!(name("", false, "add"), "add");
    }

    #[test]
    fn treadc_names_are_kept() {
        assert!(ir_like("blocks.3.attn"));
        assert!(ir_like("x_embed"));
        assert!(!ir_like("blocks.3.attn.qkv"));
        assert!(!ir_like("/blocks.0/Add_output_0"));
        assert!(!ir_like("onnx::MatMul_402"));
    }
}
