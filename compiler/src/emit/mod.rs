//! Emitters: the text dump (the snapshot contract), Graphviz dot, and a JSON graph dump.

mod dot;
mod json;
mod text;

pub use dot::to_dot;
pub use json::to_json;
pub use text::to_text;

use crate::ir::{Graph, NodeId};
use std::collections::HashMap;

/// Stable display numbers: position in the deterministic topological order.
pub(crate) fn numbering(g: &Graph) -> (Vec<NodeId>, HashMap<NodeId, usize>) {
    let order = g
        .topo_order()
        .expect("emitters run on verified (acyclic) graphs");
    let num = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    (order, num)
}
