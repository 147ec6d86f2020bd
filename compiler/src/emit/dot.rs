//! Graphviz dot: one cluster per block, route nodes highlighted, the bypass edge dashed.

use std::fmt::Write;

use super::numbering::numbering;
use crate::ir::{Graph, Op, Place};

/// Renders the graph as a dot digraph.
pub fn to_dot(g: &Graph) -> String {
    let (order, num) = numbering(g);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "digraph {:?} {{\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];",
        g.name
    );
    let mut current: Option<usize> = None;
    for id in &order {
        let n = g.node(*id);
        let block = match n.place {
            Place::Block(b) => Some(b),
            _ => None,
        };
        if block != current {
            if current.is_some() {
                s.push_str("  }\n");
            }
            if let Some(b) = block {
                let _ = writeln!(
                    s,
                    "  subgraph cluster_{b} {{\n    label=\"block {b}\"; style=rounded;"
                );
            }
            current = block;
        }
        let style = match n.op {
            Op::RouteSelect { .. } | Op::GatherTokens { .. } | Op::MergeTokens { .. } => {
                ", style=filled, fillcolor=\"#ffd27f\""
            }
            Op::Input { .. } => ", shape=ellipse",
            _ => "",
        };
        let ty = n.ty.as_ref().map(|t| t.to_string()).unwrap_or_default();
        let _ = writeln!(
            s,
            "  n{} [label=\"{}\\n{}\\n{}\"{style}];",
            num[id],
            n.name,
            n.op.name(),
            ty
        );
    }
    if current.is_some() {
        s.push_str("  }\n");
    }
    for id in &order {
        let is_merge = matches!(g.node(*id).op, Op::MergeTokens { .. });
        for (slot, src) in g.inputs_of(*id).iter().enumerate() {
            let attr = if is_merge && slot == 0 {
                " [style=dashed, color=\"#d08000\", label=\"bypass\"]"
            } else {
                ""
            };
            let _ = writeln!(s, "  n{} -> n{}{attr};", num[src], num[id]);
        }
    }
    s.push_str("}\n");
    s
}
