//! The verifier: checks the graph's structural invariants after parsing and after every pass.
//!
//! Why separate from shape inference: a pass may produce a graph whose types still infer but
//! whose routing is wrong (a token value entering a routed region without being gathered, a
//! merge fed by another route's indices). Those are compiler bugs and are caught here.

use std::collections::HashSet;

use crate::diag::{Diagnostic, Location, Result};
use crate::ir::{Graph, NodeId, Op, Place};

/// Checks the graph; the first broken invariant is returned as a diagnostic.
pub fn verify(g: &Graph) -> Result<()> {
    let order = g.topo_order().map_err(|cycle| {
        Diagnostic::new(Location::File, "verifier: the graph has a cycle")
            .expected("a DAG")
            .found(cycle.join(", "))
    })?;
    let mut names = HashSet::new();
    for &id in &order {
        let n = g.node(id);
        if !names.insert(n.name.as_str()) {
            return Err(bug(g, id, "duplicate node name"));
        }
        if n.ty.is_none() {
            return Err(bug(g, id, "node has no type (shape inference did not run)"));
        }
        if let Place::Block(b) = n.place {
            if b >= g.depth() {
                return Err(bug(g, id, "node placed in a block that does not exist"));
            }
        }
        let ins = g.inputs_of(id);
        match n.op {
            Op::GatherTokens { route, .. } => expect_indices(g, id, ins[1], route)?,
            Op::MergeTokens { route, .. } => expect_indices(g, id, ins[2], route)?,
            Op::StreamIndices { route, .. } => expect_select(g, id, ins[0], route)?,
            _ => {}
        }
    }
    for (k, r) in g.routes.iter().enumerate() {
        let inside = |id: NodeId| matches!(g.node(id).place, Place::Block(b) if (r.start..=r.end).contains(&b));
        for &id in &order {
            if inside(id) {
                for src in g.inputs_of(id) {
                    let s = g.node(src);
                    let tokens = g.ty(src).segment(&r.stream).is_some();
                    let gathered = matches!(s.op, Op::GatherTokens { route, .. } if route == k);
                    if tokens && !inside(src) && !gathered {
                        return Err(bug(
                            g,
                            id,
                            &format!(
                                "route {k}: token value `{}` enters the region without a gather",
                                s.name
                            ),
                        ));
                    }
                }
            } else if !matches!(g.node(id).op, Op::MergeTokens { route, .. } if route == k) {
                for src in g.inputs_of(id) {
                    if inside(src) && g.ty(src).segment(&r.stream).is_some() {
                        return Err(bug(
                            g,
                            id,
                            &format!(
                                "route {k}: token value `{}` leaves the region without a merge",
                                g.node(src).name
                            ),
                        ));
                    }
                }
            }
        }
    }
    // Types must be a fixed point of inference.
    let mut again = g.clone();
    crate::shape::infer(&mut again)?;
    for &id in &order {
        if again.node(id).ty != g.node(id).ty {
            return Err(bug(g, id, "stored type differs from the inferred type"));
        }
    }
    for (name, id) in &g.outputs {
        if !order.contains(id) {
            return Err(Diagnostic::new(
                Location::File,
                format!("verifier: output `{name}` points to a removed node"),
            ));
        }
    }
    Ok(())
}

/// A gather's or merge's indices: route `route`'s select, or its indices shifted past other
/// streams (`stream_indices` fed by that select).
fn expect_indices(g: &Graph, id: NodeId, idx: NodeId, route: usize) -> Result<()> {
    match g.node(idx).op {
        Op::StreamIndices { route: r, .. } if r == route => Ok(()),
        _ => expect_select(g, id, idx, route),
    }
}

fn expect_select(g: &Graph, id: NodeId, idx: NodeId, route: usize) -> Result<()> {
    match g.node(idx).op {
        Op::RouteSelect { route: r, .. } if r == route => Ok(()),
        _ => Err(bug(
            g,
            id,
            &format!("indices do not come from route {route}'s select node"),
        )),
    }
}

fn bug(g: &Graph, id: NodeId, msg: &str) -> Diagnostic {
    let n = g.node(id);
    Diagnostic::at_node(&n.name, n.origin.as_deref(), format!("verifier: {msg}"))
        .help("this is a bug in treadc or in a pass; please report it with the model file")
}
