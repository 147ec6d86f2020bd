//! Block expansion: node lists, block templates and the trunk that repeats them, instantiated
//! into the graph with every name resolved in scope (`blocks.<k>.<node>` for a trunk block).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::fields::{as_array, as_str, child, describe, elem, Fields};
use super::ops::parse_op;
use crate::diag::{Diagnostic, Result};
use crate::dims::{self, DimTable};
use crate::ir::{BlockInfo, Graph, Node, NodeId, Op, Place};

/// Instantiates the stem, the trunk's blocks (from their templates) and the head into `g`, in
/// that order, each name resolved in `scope` (which holds the inputs on entry and every node
/// on return).
pub(super) fn expand(
    top: &Fields,
    dims: &DimTable,
    g: &mut Graph,
    scope: &mut HashMap<String, NodeId>,
) -> Result<()> {
    let stem = match top.get("stem") {
        Some(v) => parse_node_list(v, &top.at("stem"), dims, "stem")?,
        None => vec![],
    };
    instantiate_global(&stem, Place::Stem, g, scope)?;
    let templates = parse_templates(top, dims)?;
    parse_trunk(top, &templates, g, scope)?;
    let head = match top.get("head") {
        Some(v) => parse_node_list(v, &top.at("head"), dims, "head")?,
        None => vec![],
    };
    instantiate_global(&head, Place::Head, g, scope)
}

/// A node definition before instantiation.
pub(super) struct NodeDef {
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

pub(super) fn check_name(name: &str, path: &str) -> Result<()> {
    if dims::is_identifier(name) && name != "trunk" && name != "blocks" {
        Ok(())
    } else {
        Err(Diagnostic::at_path(path, "bad name")
            .expected("an identifier (letters, digits, _), not `trunk` or `blocks`")
            .found(format!("\"{name}\"")))
    }
}

pub(super) fn parse_node_list(
    v: &Value,
    path: &str,
    dims: &DimTable,
    what: &str,
) -> Result<Vec<NodeDef>> {
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

pub(super) fn lookup(scope: &HashMap<String, NodeId>, name: &str, path: &str) -> Result<NodeId> {
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
