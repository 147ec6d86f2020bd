//! The strip pass: removes every route, giving the dense inference graph.
//!
//! Invariant (tested): `strip(route(g))` has the same text dump as `g`.

use crate::diag::Result;
use crate::ir::{Graph, Op, Place};

/// Returns `g` without route nodes: gathers are bypassed to their source, merges replaced by
/// the value computed inside the region, select and index nodes dropped.
pub fn strip_routes(g: &Graph) -> Result<Graph> {
    let mut out = g.clone();
    for id in out.node_ids() {
        let replacement = match out.node(id).op {
            Op::GatherTokens { .. } => out.inputs_of(id)[0],
            Op::MergeTokens { .. } => out.inputs_of(id)[1],
            _ => continue,
        };
        for (u, slot) in out.users_of(id) {
            out.set_input(u, slot, replacement);
        }
        out.replace_in_records(id, replacement, 0);
        out.remove_node(id);
    }
    // What is left at route places only fed the gathers and merges: the select, its
    // indices shifted past other streams, and the image tokens taken from a joined trunk.
    for id in out.node_ids() {
        if matches!(
            out.node(id).place,
            Place::RouteEntry { .. } | Place::RouteExit { .. }
        ) {
            out.remove_node(id);
        }
    }
    out.routes.clear();
    crate::shape::infer(&mut out)?;
    crate::verify::verify(&out)?;
    Ok(out)
}
