//! The display numbers every emitter shares.

use std::collections::HashMap;

use crate::ir::{Graph, NodeId};

/// Stable display numbers: position in the deterministic topological order.
pub(crate) fn numbering(g: &Graph) -> (Vec<NodeId>, HashMap<NodeId, usize>) {
    let order = g
        .topo_order()
        .expect("emitters run on verified (acyclic) graphs");
    let num = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    (order, num)
}
