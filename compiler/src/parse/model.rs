//! Reads a whole model file into a [`Model`]: the dense graph, its declared routes and its
//! training recipe.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::fields::{as_array, as_size, as_str, child, describe, elem, Fields};
use super::ops::parse_op;
use crate::config::TrainingConfig;
use crate::diag::{Diagnostic, Location, Result};
use crate::dims::{self, DimTable};
use crate::ir::{BlockInfo, DType, Dim, Graph, InputRole, Node, NodeId, Op, Place, ValueType};
use crate::route_spec::{GivenRoute, RouteOrigin, RouteSpec};

/// The format tag every model file carries.
pub const FORMAT: &str = "treadc.model/1";

const TOP_KEYS: [&str; 12] = [
    "format",
    "name",
    "description",
    "dims",
    "inputs",
    "stem",
    "blocks",
    "trunk",
    "head",
    "outputs",
    "routes",
    "training",
];

/// A parsed, verified model.
#[derive(Debug, Clone)]
pub struct Model {
    /// The dense graph.
    pub graph: Graph,
    /// Routes declared in the file (applied only when asked).
    pub routes: Vec<GivenRoute>,
    /// The training recipe.
    pub training: TrainingConfig,
    /// The evaluated dims table.
    pub dims: DimTable,
    /// Free-text description.
    pub description: String,
    /// The file it came from.
    pub file: String,
}

/// A node definition before instantiation.
struct NodeDef {
    name: String,
    op: Op,
    ins: Vec<(String, String)>,
    path: String,
}

struct Template {
    params: Vec<String>,
    nodes: Vec<NodeDef>,
    output: String,
    path: String,
}

/// Parses and verifies `text`, read from `file` (used in diagnostics).
pub fn parse_model(text: &str, file: &str) -> Result<Model> {
    parse_inner(text).map_err(|d| d.in_file(file)).map(|mut m| {
        m.file = file.to_string();
        m
    })
}

fn parse_inner(text: &str) -> Result<Model> {
    let root: Value = serde_json::from_str::<super::dupkeys::NoDuplicateKeys>(text)
        .and_then(|_| serde_json::from_str(text))
        .map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Eof => "the file ends early (truncated or empty JSON)",
                serde_json::error::Category::Syntax => "invalid JSON syntax",
                serde_json::error::Category::Data => "invalid JSON: duplicate key",
                _ => "unreadable JSON",
            };
            Diagnostic::new(
                Location::LineCol {
                    line: e.line(),
                    column: e.column(),
                },
                what,
            )
            .expected("a JSON object (see docs/model-format.md)")
            .found(e.to_string())
        })?;
    let top = Fields::new(&root, "$", "the model file")?;
    top.check_known(&TOP_KEYS)?;
    let format = top.req("format", &format!("\"{FORMAT}\""))?;
    if format.as_str() != Some(FORMAT) {
        return Err(Diagnostic::at_path("$.format", "not a treadc model file")
            .expected(format!("\"{FORMAT}\""))
            .found(describe(format)));
    }
    let name = top.str("name")?.to_string();
    let description = top.opt_str("description")?.unwrap_or("").to_string();
    let dims = parse_dims(&top)?;
    let mut g = Graph::new(name);
    let mut scope: HashMap<String, NodeId> = HashMap::new();

    parse_inputs(&top, &dims, &mut g, &mut scope)?;
    let stem = match top.get("stem") {
        Some(v) => parse_node_list(v, &top.at("stem"), &dims, "stem")?,
        None => vec![],
    };
    instantiate_global(&stem, Place::Stem, &mut g, &mut scope)?;

    let templates = parse_templates(&top, &dims)?;
    parse_trunk(&top, &templates, &mut g, &mut scope)?;

    let head = match top.get("head") {
        Some(v) => parse_node_list(v, &top.at("head"), &dims, "head")?,
        None => vec![],
    };
    instantiate_global(&head, Place::Head, &mut g, &mut scope)?;

    let outs = Fields::new(
        top.req("outputs", "an object {name: node}")?,
        "$.outputs",
        "`outputs`",
    )?;
    for (k, v) in outs.entries() {
        let path = child("$.outputs", k);
        let target = as_str(v, &path)?;
        let id = lookup(&scope, target, &path)?;
        g.outputs.push((k.clone(), id));
    }
    if g.outputs.is_empty() {
        return Err(Diagnostic::at_path("$.outputs", "the model has no outputs")
            .expected("at least one output")
            .found("{}"));
    }

    let routes = parse_routes(&top)?;
    let training = match top.get("training") {
        Some(v) => TrainingConfig::parse(&Fields::new(v, "$.training", "`training`")?)?,
        None => TrainingConfig::default(),
    };
    top.finish(&TOP_KEYS)?;

    if let Err(cycle) = g.topo_order() {
        let first = g.find(&cycle[0]).map(|id| g.node(id).origin.clone());
        return Err(Diagnostic::new(
            Location::Node {
                name: cycle[0].clone(),
                path: first.flatten(),
            },
            "the graph has a cycle",
        )
        .expected("an acyclic graph: no node may depend on itself")
        .found(format!("a cycle {} → {}", cycle.join(" → "), cycle[0])));
    }
    crate::shape::infer(&mut g)?;
    crate::verify::verify(&g)?;
    Ok(Model {
        graph: g,
        routes,
        training,
        dims,
        description,
        file: String::new(),
    })
}

fn parse_dims(top: &Fields) -> Result<DimTable> {
    let mut table = DimTable::new();
    let Some(v) = top.get("dims") else {
        return Ok(table);
    };
    let f = Fields::new(v, "$.dims", "`dims`")?;
    for (k, v) in f.entries() {
        let path = child("$.dims", k);
        if !dims::is_identifier(k) {
            return Err(
                Diagnostic::at_path(&path, "dimension names must be identifiers")
                    .expected("a name such as D or grid_h")
                    .found(format!("\"{k}\"")),
            );
        }
        let n = as_size(v, &path, &table)?;
        table.insert(k.clone(), n);
    }
    Ok(table)
}

fn parse_inputs(
    top: &Fields,
    dims: &DimTable,
    g: &mut Graph,
    scope: &mut HashMap<String, NodeId>,
) -> Result<()> {
    let f = Fields::new(
        top.req("inputs", "an object {name: {shape, role}}")?,
        "$.inputs",
        "`inputs`",
    )?;
    let mut seen_roles: BTreeMap<&str, String> = BTreeMap::new();
    for (name, v) in f.entries() {
        let path = child("$.inputs", name);
        check_name(name, &path)?;
        let inp = Fields::new(v, &path, "an input")?;
        let shape_v = inp.req("shape", "an array of sizes or symbols such as \"B\"")?;
        let arr = as_array(shape_v, &inp.at("shape"), "`shape`")?;
        let mut shape = vec![];
        for (i, d) in arr.iter().enumerate() {
            let p = elem(&inp.at("shape"), i);
            shape.push(match d {
                Value::String(s) if i == 0 && dims::is_identifier(s) && !dims.contains_key(s) => {
                    Dim::Sym(s.clone())
                }
                other => match as_size(other, &p, dims) {
                    Ok(0) => {
                        return Err(Diagnostic::at_path(&p, "empty dimension")
                            .expected("a size ≥ 1")
                            .found("0"))
                    }
                    Ok(n) => Dim::Known(n),
                    Err(e) => return Err(e.help(
                        "only the batch axis (the first) may be a run-time symbol such as \"B\"",
                    )),
                },
            });
        }
        let dtype = match inp.opt_str("dtype")?.unwrap_or("f32") {
            "f32" => DType::F32,
            "i64" => DType::I64,
            o => {
                return Err(Diagnostic::at_path(inp.at("dtype"), "unknown dtype")
                    .expected("\"f32\" or \"i64\"")
                    .found(format!("\"{o}\"")))
            }
        };
        let role_s = inp.str("role")?;
        let role = InputRole::ALL
            .into_iter()
            .find(|r| r.name() == role_s)
            .ok_or_else(|| {
                Diagnostic::at_path(inp.at("role"), "unknown input role")
                    .expected(format!(
                        "one of {}",
                        InputRole::ALL
                            .map(|r| format!("\"{}\"", r.name()))
                            .join(", ")
                    ))
                    .found(format!("\"{role_s}\""))
            })?;
        if let Some(prev) = seen_roles.insert(role.name(), name.clone()) {
            return Err(
                Diagnostic::at_path(inp.at("role"), "two inputs with the same role")
                    .expected(format!("one input with role \"{}\"", role.name()))
                    .found(format!("inputs `{prev}` and `{name}`")),
            );
        }
        inp.finish(&["shape", "dtype", "role"])?;
        let ty = input_type(role, dtype, shape, &inp.at("shape"))?;
        let id = g.add_node(Node {
            name: name.clone(),
            op: Op::Input { role },
            ty: Some(ty),
            place: Place::Stem,
            origin: Some(path),
        });
        g.inputs.push((name.clone(), id));
        scope.insert(name.clone(), id);
    }
    for role in ["image", "noise_level"] {
        if !seen_roles.contains_key(role) {
            return Err(Diagnostic::at_path("$.inputs", format!("no input has role \"{role}\""))
                .expected("inputs with roles \"image\" and \"noise_level\" (and \"label\" if class-conditional)")
                .found(format!("roles {:?}", seen_roles.keys().collect::<Vec<_>>())));
        }
    }
    Ok(())
}

/// The type of an input with `role`: text roles carry `text` tokens on axis 1, and each new
/// role's rank and element type are checked here, where the file can still be named.
fn input_type(role: InputRole, dtype: DType, shape: Vec<Dim>, path: &str) -> Result<ValueType> {
    let want = match role {
        InputRole::Context => Some((3, DType::F32, "[B, L, Dc] f32 text embeddings")),
        InputRole::ContextMask => Some((2, DType::F32, "[B, L] f32 (1 = token, 0 = padding)")),
        InputRole::TokenIds => Some((2, DType::I64, "[B, L] i64 token ids")),
        InputRole::Pooled => Some((2, DType::F32, "[B, Dp] f32 pooled text vector")),
        InputRole::Guidance => Some((1, DType::F32, "[B] f32 guidance scale")),
        InputRole::Image | InputRole::NoiseLevel | InputRole::Label => None,
    };
    if let Some((rank, dt, what)) = want {
        if shape.len() != rank || dtype != dt {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            return Err(Diagnostic::at_path(
                path,
                format!("wrong shape or type for a `{}` input", role.name()),
            )
            .expected(what)
            .found(format!("{}[{}]", dtype.name(), dims.join(", "))));
        }
    }
    let ty = ValueType {
        dtype,
        shape,
        token_axis: None,
        segments: vec![],
    };
    Ok(match role.stream() {
        Some(stream) => ty.with_stream(1, stream),
        None => ty,
    })
}

fn check_name(name: &str, path: &str) -> Result<()> {
    if dims::is_identifier(name) && name != "trunk" && name != "blocks" {
        Ok(())
    } else {
        Err(Diagnostic::at_path(path, "bad name")
            .expected("an identifier (letters, digits, _), not `trunk` or `blocks`")
            .found(format!("\"{name}\"")))
    }
}

fn parse_node_list(v: &Value, path: &str, dims: &DimTable, what: &str) -> Result<Vec<NodeDef>> {
    let arr = as_array(v, path, &format!("`{what}`"))?;
    let mut defs: Vec<NodeDef> = vec![];
    let mut names: HashMap<String, String> = HashMap::new();
    for (i, nv) in arr.iter().enumerate() {
        let p = elem(path, i);
        let f = Fields::new(nv, &p, "a node")?;
        let name = f.str("name")?.to_string();
        check_name(&name, &f.at("name"))?;
        if let Some(prev) = names.insert(name.clone(), p.clone()) {
            return Err(
                Diagnostic::at_path(f.at("name"), format!("duplicate node name `{name}`"))
                    .expected("names unique within their scope")
                    .found(format!("`{name}` already defined at {prev}")),
            );
        }
        let op_name = f.str("op")?;
        let ins = match f.get("in") {
            None => vec![],
            Some(iv) => {
                let ip = f.at("in");
                let a = as_array(iv, &ip, "`in`")?;
                let mut ins = vec![];
                for (k, x) in a.iter().enumerate() {
                    let ep = elem(&ip, k);
                    ins.push((as_str(x, &ep)?.to_string(), ep));
                }
                ins
            }
        };
        let op = parse_op(&f, op_name, dims)?;
        if let Some(n) = op.arity() {
            if ins.len() != n {
                return Err(Diagnostic::at_path(
                    f.at("in"),
                    format!("`{op_name}` takes {n} input(s)"),
                )
                .expected(format!("{n} input name(s) in `in`"))
                .found(format!("{} input(s)", ins.len())));
            }
        } else if ins.is_empty() {
            return Err(
                Diagnostic::at_path(p.clone(), format!("`{op_name}` needs inputs"))
                    .expected("at least one input name in `in`")
                    .found("none"),
            );
        }
        defs.push(NodeDef {
            name,
            op,
            ins,
            path: p,
        });
    }
    Ok(defs)
}

fn lookup(scope: &HashMap<String, NodeId>, name: &str, path: &str) -> Result<NodeId> {
    scope.get(name).copied().ok_or_else(|| {
        let mut near: Vec<&String> = scope
            .keys()
            .filter(|k| !k.starts_with("blocks.") || k.matches('.').count() == 1)
            .collect();
        near.sort();
        let shown: Vec<String> = near.iter().take(12).map(|s| format!("`{s}`")).collect();
        Diagnostic::at_path(path, format!("unknown value `{name}`"))
            .expected(format!(
                "a name defined in scope: {}{}",
                shown.join(", "),
                if near.len() > 12 { ", …" } else { "" }
            ))
            .found(format!("`{name}`"))
    })
}

/// Creates stem or head nodes (names are global) and wires their inputs.
fn instantiate_global(
    defs: &[NodeDef],
    place: Place,
    g: &mut Graph,
    scope: &mut HashMap<String, NodeId>,
) -> Result<()> {
    let mut ids = vec![];
    for d in defs {
        if scope.contains_key(&d.name) {
            return Err(
                Diagnostic::at_path(&d.path, format!("duplicate name `{}`", d.name))
                    .expected("a name not used by an input or another node")
                    .found(format!("`{}` defined twice", d.name)),
            );
        }
        let id = g.add_node(Node {
            name: d.name.clone(),
            op: d.op.clone(),
            ty: None,
            place,
            origin: Some(d.path.clone()),
        });
        scope.insert(d.name.clone(), id);
        ids.push(id);
    }
    for (d, &id) in defs.iter().zip(&ids) {
        for (slot, (src, p)) in d.ins.iter().enumerate() {
            let s = lookup(scope, src, p)?;
            g.connect(s, id, slot);
        }
    }
    Ok(())
}

fn parse_templates(top: &Fields, dims: &DimTable) -> Result<BTreeMap<String, Template>> {
    let mut out = BTreeMap::new();
    let Some(v) = top.get("blocks") else {
        return Ok(out);
    };
    let f = Fields::new(v, "$.blocks", "`blocks`")?;
    for (name, tv) in f.entries() {
        let path = child("$.blocks", name);
        check_name(name, &path)?;
        let t = Fields::new(tv, &path, "a block template")?;
        let pv = t.req(
            "params",
            "an array of parameter names, the trunk input first",
        )?;
        let pa = as_array(pv, &t.at("params"), "`params`")?;
        let mut params = vec![];
        for (i, p) in pa.iter().enumerate() {
            let pp = elem(&t.at("params"), i);
            let s = as_str(p, &pp)?;
            check_name(s, &pp)?;
            if params.iter().any(|q| q == s) {
                return Err(
                    Diagnostic::at_path(&pp, format!("duplicate block parameter `{s}`"))
                        .expected("distinct parameter names")
                        .found(format!("`{s}` twice")),
                );
            }
            params.push(s.to_string());
        }
        if params.is_empty() {
            return Err(
                Diagnostic::at_path(t.at("params"), "a block needs a trunk parameter")
                    .expected("at least one parameter (the first receives the trunk value)")
                    .found("[]"),
            );
        }
        let nodes = parse_node_list(
            t.req("nodes", "an array of nodes")?,
            &t.at("nodes"),
            dims,
            "nodes",
        )?;
        for n in &nodes {
            if params.contains(&n.name) {
                return Err(Diagnostic::at_path(
                    &n.path,
                    format!("node `{}` shadows a parameter", n.name),
                )
                .expected("node names distinct from the block's params")
                .found(format!("`{}`", n.name)));
            }
            for (src, p) in &n.ins {
                if !params.contains(src) && !nodes.iter().any(|m| &m.name == src) {
                    return Err(Diagnostic::at_path(
                        p,
                        format!("unknown value `{src}` in block `{name}`"),
                    )
                    .expected(format!(
                        "a parameter ({}) or a node of this block",
                        params.join(", ")
                    ))
                    .found(format!("`{src}`")));
                }
            }
        }
        let output = t.str("output")?.to_string();
        if !nodes.iter().any(|n| n.name == output) {
            return Err(Diagnostic::at_path(
                t.at("output"),
                format!("unknown block output `{output}`"),
            )
            .expected("the name of a node of this block")
            .found(format!("`{output}`")));
        }
        t.finish(&["params", "nodes", "output"])?;
        out.insert(
            name.clone(),
            Template {
                params,
                nodes,
                output,
                path,
            },
        );
    }
    Ok(out)
}

fn parse_trunk(
    top: &Fields,
    templates: &BTreeMap<String, Template>,
    g: &mut Graph,
    scope: &mut HashMap<String, NodeId>,
) -> Result<()> {
    let tf = Fields::new(
        top.req("trunk", "an object {input, blocks}")?,
        "$.trunk",
        "`trunk`",
    )?;
    let input_name = tf.str("input")?;
    let mut current = lookup(scope, input_name, &tf.at("input"))?;
    let entries = as_array(
        tf.req("blocks", "an array of {block, repeat?, args?}")?,
        &tf.at("blocks"),
        "`trunk.blocks`",
    )?;
    tf.finish(&["input", "blocks"])?;
    let mut k = 0usize;
    for (ei, ev) in entries.iter().enumerate() {
        let ep = elem(&tf.at("blocks"), ei);
        let e = Fields::new(ev, &ep, "a trunk entry")?;
        let tname = e.str("block")?;
        let t = templates.get(tname).ok_or_else(|| {
            Diagnostic::at_path(e.at("block"), format!("unknown block template `{tname}`"))
                .expected(if templates.is_empty() {
                    "a template declared under `blocks` (the file has none)".to_string()
                } else {
                    format!(
                        "one of {}",
                        templates
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .found(format!("`{tname}`"))
        })?;
        let repeat = match e.get("repeat") {
            None => 1,
            Some(v) => v.as_u64().filter(|&r| r >= 1).ok_or_else(|| {
                Diagnostic::at_path(e.at("repeat"), "bad repeat count")
                    .expected("an integer ≥ 1")
                    .found(describe(v))
            })?,
        };
        let mut bound: BTreeMap<String, (String, String)> = BTreeMap::new();
        if let Some(av) = e.get("args") {
            let af = Fields::new(av, &e.at("args"), "`args`")?;
            for (pname, v) in af.entries() {
                let pp = child(&af.path, pname);
                if !t.params[1..].contains(pname) {
                    return Err(Diagnostic::at_path(
                        &pp,
                        format!("block `{tname}` has no parameter `{pname}`"),
                    )
                    .expected(format!(
                        "one of its non-trunk parameters: {}",
                        if t.params.len() > 1 {
                            t.params[1..].join(", ")
                        } else {
                            "none".into()
                        }
                    ))
                    .found(format!("`{pname}`")));
                }
                bound.insert(pname.clone(), (as_str(v, &pp)?.to_string(), pp));
            }
        }
        for p in &t.params[1..] {
            if !bound.contains_key(p) {
                return Err(Diagnostic::at_path(
                    &ep,
                    format!("block parameter `{p}` is not bound"),
                )
                .expected(format!("\"args\": {{\"{p}\": <a value name>}}"))
                .found("no binding"));
            }
        }
        e.finish(&["block", "repeat", "args"])?;
        for _ in 0..repeat {
            let exit = instantiate_block(t, tname, k, current, &bound, g, scope)?;
            g.blocks.push(BlockInfo {
                name: format!("blocks.{k}"),
                template: tname.to_string(),
                entry: current,
                exit,
            });
            scope.insert(format!("blocks.{k}"), exit);
            current = exit;
            k += 1;
        }
    }
    if k == 0 {
        return Err(
            Diagnostic::at_path(tf.at("blocks"), "the trunk has no blocks")
                .expected("at least one block")
                .found("[]"),
        );
    }
    scope.insert("trunk".to_string(), current);
    Ok(())
}

fn instantiate_block(
    t: &Template,
    tname: &str,
    k: usize,
    trunk_in: NodeId,
    bound: &BTreeMap<String, (String, String)>,
    g: &mut Graph,
    scope: &HashMap<String, NodeId>,
) -> Result<NodeId> {
    let mut local: HashMap<&str, NodeId> = HashMap::new();
    local.insert(t.params[0].as_str(), trunk_in);
    for (p, (src, path)) in bound {
        let id = lookup(scope, src, path).map_err(|d| {
            if src.starts_with("blocks.") {
                d.help(match k {
                    0 => "block 0 cannot read the output of any block".to_string(),
                    _ => format!("block {k} can read the outputs of blocks 0 to {}", k - 1),
                })
            } else {
                d
            }
        })?;
        local.insert(p.as_str(), id);
    }
    let mut ids = vec![];
    for d in &t.nodes {
        let id = g.add_node(Node {
            name: format!("blocks.{k}.{}", d.name),
            op: d.op.clone(),
            ty: None,
            place: Place::Block(k),
            origin: Some(d.path.clone()),
        });
        local.insert(d.name.as_str(), id);
        ids.push(id);
    }
    for (d, &id) in t.nodes.iter().zip(&ids) {
        for (slot, (src, _)) in d.ins.iter().enumerate() {
            g.connect(local[src.as_str()], id, slot);
        }
    }
    let _ = (tname, &t.path);
    Ok(local[t.output.as_str()])
}

fn parse_routes(top: &Fields) -> Result<Vec<GivenRoute>> {
    let Some(v) = top.get("routes") else {
        return Ok(vec![]);
    };
    let paper = |p: String| GivenRoute {
        spec: RouteSpec::Paper,
        origin: RouteOrigin::File(p),
        stream: None,
    };
    if v.as_str() == Some("paper") {
        return Ok(vec![paper("$.routes".into())]);
    }
    if let Value::String(s) = v {
        return Err(Diagnostic::at_path("$.routes", "unknown route shorthand")
            .expected("\"paper\" or an array of {\"rate\", \"start\", \"end\"}")
            .found(format!("\"{s}\"")));
    }
    let arr = as_array(v, "$.routes", "`routes`")?;
    let mut out = vec![];
    for (i, rv) in arr.iter().enumerate() {
        let p = elem("$.routes", i);
        if rv.as_str() == Some("paper") {
            out.push(paper(p));
            continue;
        }
        let f = Fields::new(rv, &p, "a route {rate, start, end}")?;
        let rate = f.opt_f64("rate")?.ok_or_else(|| {
            Diagnostic::at_path(&p, "missing `rate`")
                .expected("\"rate\": 0.5")
                .found("no rate")
        })?;
        let idx = |key: &str| -> Result<usize> {
            let v = f.req(key, "a block index")?;
            v.as_u64().map(|x| x as usize).ok_or_else(|| {
                Diagnostic::at_path(f.at(key), "not a block index")
                    .expected("an integer ≥ 0")
                    .found(describe(v))
            })
        };
        let (start, end) = (idx("start")?, idx("end")?);
        let stream = match f.opt_str("stream")? {
            Some(s) if dims::is_identifier(s) => Some(s.to_string()),
            Some(s) => {
                return Err(Diagnostic::at_path(f.at("stream"), "bad stream name")
                    .expected("an identifier such as \"image\" or \"text\"")
                    .found(format!("\"{s}\"")))
            }
            None => None,
        };
        f.finish(&["rate", "start", "end", "stream"])?;
        out.push(GivenRoute {
            spec: RouteSpec::Explicit { rate, start, end },
            origin: RouteOrigin::File(p),
            stream,
        });
    }
    Ok(out)
}
