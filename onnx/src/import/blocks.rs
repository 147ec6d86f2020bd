//! Folding the recognised ops into model.json's shape: the ops of each `<list>.<n>` scope are one
//! block instance; identical consecutive instances become one template with a repeat count; the
//! ops before the first block are the stem, those after it the head. The trunk a route pass
//! needs is thus read from the module structure torch (or treadc) wrote into the names.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::recognise::Recognised;
use tread_compiler::diag::{Diagnostic, Location};

/// A model.json document and its weights under the names the model gives them.
pub struct Folded {
    /// The model file, as JSON.
    pub model: Value,
    /// `(tensor name, shape, data)`, in node order.
    pub weights: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// How many block instances the trunk holds, and how many templates describe them.
    pub depth: usize,
    /// The number of templates.
    pub templates: usize,
}

fn split_block(name: &str) -> Option<(&str, usize, &str)> {
    let mut parts = name.splitn(3, '.');
    let (list, n, local) = (parts.next()?, parts.next()?, parts.next()?);
    Some((list, n.parse().ok()?, local))
}

fn node_json(name: &str, op: &Map<String, Value>, ins: Vec<String>) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("op".into(), op["op"].clone());
    if !ins.is_empty() {
        m.insert("in".into(), json!(ins));
    }
    for (k, v) in op {
        if k != "op" {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m)
}

fn err(file: &str, node: &str, msg: String, expected: &str, found: String) -> Diagnostic {
    Diagnostic::new(
        Location::Node {
            name: node.to_string(),
            path: None,
        },
        msg,
    )
    .expected(expected)
    .found(found)
    .in_file(file)
}

/// Moves to the stem the block ops an exporter shared between blocks: an op inside block k that
/// does not depend on the image and is read outside block k (torch's exporter computes the
/// `SiLU(c)` every DiT block applies to its conditioning once, in block 0). Renamed without the
/// block prefix.
fn hoist_shared(r: &mut Recognised) {
    let nodes = &mut r.nodes;
    let images: HashSet<&str> = r
        .inputs
        .iter()
        .filter(|i| i.role == tread_compiler::ir::InputRole::Image)
        .map(|i| i.name.as_str())
        .collect();
    let mut on_image: HashSet<String> = images.iter().map(|s| s.to_string()).collect();
    for n in nodes.iter() {
        if n.ins.iter().any(|v| on_image.contains(v)) {
            on_image.insert(n.name.clone());
        }
    }
    let mut taken: HashSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    loop {
        let mut renamed: Option<(String, String)> = None;
        for n in nodes.iter() {
            let Some((list, k, local)) = split_block(&n.name) else {
                continue;
            };
            if on_image.contains(&n.name) {
                continue;
            }
            let outside = nodes.iter().any(|u| {
                u.ins.contains(&n.name)
                    && split_block(&u.name).is_none_or(|(l, j, _)| l != list || j != k)
            });
            if outside {
                let mut name = local.to_string();
                let mut c = 2;
                while taken.contains(&name) {
                    name = format!("{local}_{c}");
                    c += 1;
                }
                renamed = Some((n.name.clone(), name));
                break;
            }
        }
        let Some((old, new)) = renamed else {
            return;
        };
        taken.insert(new.clone());
        for n in nodes.iter_mut() {
            if n.name == old {
                n.name = new.clone();
            }
            for v in n.ins.iter_mut() {
                if *v == old {
                    *v = new.clone();
                }
            }
        }
    }
}

/// A trunk entry: template, its arguments `(param, value)`, repeat count.
type TrunkEntry = (String, Vec<(String, String)>, usize);

/// One block instance: its ops, the value its trunk parameter reads, its other outside
/// values (in order of first use), and its output.
struct Instance {
    nodes: Vec<usize>,
    x: String,
    ext: Vec<String>,
    output: String,
    signature: String,
}

/// Folds `r` (ops in topological order, `shapes` by value) into a model.json named `name`.
pub fn fold(
    mut r: Recognised,
    shapes: &HashMap<String, Vec<Option<i64>>>,
    name: &str,
    description: &str,
    file: &str,
) -> Result<Folded, Diagnostic> {
    hoist_shared(&mut r);
    let nodes = &r.nodes;
    let producer: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    // Block instances in order of first appearance.
    let mut keys: Vec<(String, usize)> = vec![];
    let mut member: Vec<Option<usize>> = vec![None; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if let Some((list, k, _)) = split_block(&n.name) {
            let key = (list.to_string(), k);
            let b = keys.iter().position(|x| *x == key).unwrap_or_else(|| {
                keys.push(key.clone());
                keys.len() - 1
            });
            member[i] = Some(b);
        }
    }
    if keys.is_empty() {
        return Err(Diagnostic::new(Location::File, "no repeated blocks found")
            .expected("transformer blocks under numbered scopes (`/blocks.0/...`, `blocks.0.attn`), as torch.nn.ModuleList and treadc name them")
            .found(format!("{} ops, none inside a numbered scope", nodes.len()))
            .in_file(file)
            .help("export from PyTorch with the module names kept (torch.onnx.export does by default)"));
    }
    let users = |v: &str| -> Vec<usize> {
        nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.ins.iter().any(|x| x == v))
            .map(|(i, _)| i)
            .collect()
    };
    let mut instances: Vec<Instance> = vec![];
    for (b, (list, k)) in keys.iter().enumerate() {
        let inside: Vec<usize> = (0..nodes.len()).filter(|&i| member[i] == Some(b)).collect();
        let mut ext: Vec<String> = vec![];
        for &i in &inside {
            for v in &nodes[i].ins {
                let internal = producer
                    .get(v.as_str())
                    .is_some_and(|&p| member[p] == Some(b));
                if !internal && !ext.contains(v) {
                    ext.push(v.clone());
                }
            }
        }
        let outs: Vec<&usize> = inside
            .iter()
            .filter(|&&i| {
                users(&nodes[i].name).iter().any(|&u| member[u] != Some(b))
                    || r.outputs.iter().any(|(_, v)| *v == nodes[i].name)
            })
            .collect();
        let [&out] = outs.as_slice() else {
            let names: Vec<&str> = outs.iter().map(|&&i| nodes[i].name.as_str()).collect();
            return Err(err(
                file,
                &format!("{list}.{k}"),
                format!("block `{list}.{k}` does not have exactly one output"),
                "one value leaving each block (the tokens the next block reads)",
                format!(
                    "{} values read outside it: {}",
                    names.len(),
                    names.join(", ")
                ),
            ));
        };
        let output = nodes[out].name.clone();
        let out_shape = shapes.get(&output);
        let x = if b > 0 {
            let prev = &instances[b - 1].output;
            if !ext.contains(prev) {
                return Err(err(
                    file,
                    &format!("{list}.{k}"),
                    format!("block `{list}.{k}` does not read the block before it"),
                    "each block reading the previous block's output",
                    format!("it reads {}", ext.join(", ")),
                ));
            }
            prev.clone()
        } else {
            let same: Vec<&String> = ext.iter().filter(|v| shapes.get(*v) == out_shape).collect();
            match same.as_slice() {
                [one] => (*one).clone(),
                _ => {
                    return Err(err(
                        file,
                        &format!("{list}.{k}"),
                        format!("cannot tell which input of block `{list}.{k}` is its tokens"),
                        "exactly one value entering the first block with the block output's shape",
                        format!("{} such values among {}", same.len(), ext.join(", ")),
                    ))
                }
            }
        };
        ext.retain(|v| *v != x);
        let sig_of = |v: &str| -> String {
            if *v == *x {
                "$x".into()
            } else if let Some(p) = ext.iter().position(|e| e == v) {
                format!("${p}")
            } else {
                // By position: exporters that number ops globally (dynamo's `linear_3`,
                // `linear_8`) give equal blocks different names.
                let p = inside.iter().position(|&j| nodes[j].name == v);
                format!("#{}", p.map_or(-1, |p| p as i64))
            }
        };
        let signature = inside
            .iter()
            .map(|&i| {
                let ins: Vec<String> = nodes[i].ins.iter().map(|v| sig_of(v)).collect();
                format!("{:?}({})", nodes[i].op, ins.join(","))
            })
            .collect::<Vec<_>>()
            .join(";")
            + &format!("->#{}", inside.iter().position(|&j| j == out).unwrap_or(0));
        instances.push(Instance {
            nodes: inside,
            x,
            ext,
            output,
            signature,
        });
    }
    // Stem and head: a non-block op that depends on a block, or comes after the last one, is
    // in the head.
    let last_block_op = (0..nodes.len())
        .rev()
        .find(|&i| member[i].is_some())
        .unwrap_or(0);
    let mut after: HashSet<String> = instances
        .iter()
        .flat_map(|b| b.nodes.iter().map(|&i| nodes[i].name.clone()))
        .collect();
    let mut stem = vec![];
    let mut head = vec![];
    for (i, n) in nodes.iter().enumerate() {
        if member[i].is_some() {
            continue;
        }
        if i > last_block_op || n.ins.iter().any(|v| after.contains(v)) {
            after.insert(n.name.clone());
            head.push(i);
        } else {
            stem.push(i);
        }
    }
    let last = instances
        .last()
        .map(|b| b.output.clone())
        .unwrap_or_default();
    let block_names: HashSet<&str> = instances
        .iter()
        .flat_map(|b| b.nodes.iter().map(|&i| nodes[i].name.as_str()))
        .collect();
    let global = |v: &str, at: &str| -> Result<String, Diagnostic> {
        if v == last {
            Ok("trunk".into())
        } else if block_names.contains(v) {
            Err(err(
                file,
                at,
                format!("`{at}` reads `{v}` from inside a block"),
                "stem and head ops reading only the trunk's output",
                format!("a read of `{v}`"),
            ))
        } else {
            Ok(v.to_string())
        }
    };
    // Which op's tensors go under which name, in file order; moved out at the end.
    let mut weight_order: Vec<(usize, String)> = vec![];
    let mut push_weights = |i: usize, name: &str| weight_order.push((i, name.to_string()));
    let mut stem_json = vec![];
    for &i in &stem {
        push_weights(i, &nodes[i].name);
        stem_json.push(node_json(
            &nodes[i].name,
            &nodes[i].op,
            nodes[i].ins.clone(),
        ));
    }
    // Parameter names no block op uses.
    let locals: HashSet<&str> = nodes
        .iter()
        .filter_map(|n| split_block(&n.name).map(|s| s.2))
        .collect();
    let param = |base: &str| -> String {
        let mut name = base.to_string();
        while locals.contains(name.as_str()) {
            name.insert(0, '_');
        }
        name
    };
    // Templates and trunk entries.
    let mut templates: Vec<(String, &Instance)> = vec![];
    let mut trunk: Vec<TrunkEntry> = vec![];
    for (k, b) in instances.iter().enumerate() {
        let t = match templates
            .iter()
            .position(|(_, t)| t.signature == b.signature)
        {
            Some(t) => t,
            None => {
                let name = if templates.is_empty() {
                    "block".to_string()
                } else {
                    format!("block_{}", templates.len() + 1)
                };
                templates.push((name, b));
                templates.len() - 1
            }
        };
        // The template's op names (its first instance's), position by position.
        let first = templates[t].1;
        for (&i, &f) in b.nodes.iter().zip(&first.nodes) {
            let local = split_block(&nodes[f].name).map_or("", |s| s.2);
            push_weights(i, &format!("blocks.{k}.{local}"));
        }
        let t = templates[t].0.clone();
        let args: Vec<(String, String)> = b
            .ext
            .iter()
            .enumerate()
            .map(|(p, v)| {
                // A block's output is read by its scope name (`blocks.5`): U-ViT's long skips.
                let v = instances
                    .iter()
                    .position(|b| b.output == *v)
                    .map_or(v.clone(), |j| format!("blocks.{j}"));
                (param(&format!("in{p}")), v)
            })
            .collect();
        match trunk.last_mut() {
            Some((tn, a, r)) if *tn == t && *a == args => *r += 1,
            _ => trunk.push((t, args, 1)),
        }
    }
    let mut blocks_json = Map::new();
    for (tname, b) in &templates {
        let mut params = vec![param("x")];
        params.extend((0..b.ext.len()).map(|p| param(&format!("in{p}"))));
        let mut list = vec![];
        for &i in &b.nodes {
            let local = split_block(&nodes[i].name).map_or("", |s| s.2);
            let ins: Vec<String> = nodes[i]
                .ins
                .iter()
                .map(|v| {
                    if *v == b.x {
                        param("x")
                    } else if let Some(p) = b.ext.iter().position(|e| e == v) {
                        param(&format!("in{p}"))
                    } else {
                        split_block(v).map_or(v.clone(), |s| s.2.to_string())
                    }
                })
                .collect();
            list.push(node_json(local, &nodes[i].op, ins));
        }
        let output = split_block(&b.output).map_or("", |s| s.2);
        blocks_json.insert(
            tname.clone(),
            json!({"params": params, "nodes": list, "output": output}),
        );
    }
    let mut head_json = vec![];
    for &i in &head {
        push_weights(i, &nodes[i].name);
        let ins = nodes[i]
            .ins
            .iter()
            .map(|v| global(v, &nodes[i].name))
            .collect::<Result<Vec<_>, _>>()?;
        head_json.push(node_json(&nodes[i].name, &nodes[i].op, ins));
    }
    let mut inputs = Map::new();
    for inp in &r.inputs {
        let mut m = Map::new();
        m.insert("shape".into(), json!(inp.shape));
        if inp.integer {
            m.insert("dtype".into(), json!("i64"));
        }
        m.insert("role".into(), json!(inp.role.name()));
        inputs.insert(inp.name.clone(), Value::Object(m));
    }
    let mut outputs = Map::new();
    for (k, v) in &r.outputs {
        outputs.insert(k.clone(), json!(global(v, k)?));
    }
    let trunk_json: Vec<Value> = trunk
        .iter()
        .map(|(t, args, rep)| {
            let mut m = Map::new();
            m.insert("block".into(), json!(t));
            if *rep > 1 {
                m.insert("repeat".into(), json!(rep));
            }
            if !args.is_empty() {
                let a: Map<String, Value> =
                    args.iter().map(|(p, v)| (p.clone(), json!(v))).collect();
                m.insert("args".into(), Value::Object(a));
            }
            Value::Object(m)
        })
        .collect();
    let model = json!({
        "format": "treadc.model/1",
        "name": name,
        "description": description,
        "inputs": inputs,
        "stem": stem_json,
        "blocks": blocks_json,
        "trunk": {"input": instances[0].x, "blocks": trunk_json},
        "head": head_json,
        "outputs": outputs,
    });
    let (depth, templates) = (instances.len(), templates.len());
    drop(instances);
    let mut weights = vec![];
    for (i, name) in weight_order {
        for (s, shape, d) in std::mem::take(&mut r.nodes[i].tensors) {
            weights.push((format!("{name}.{s}"), shape, d));
        }
    }
    Ok(Folded {
        model,
        weights,
        depth,
        templates,
    })
}
