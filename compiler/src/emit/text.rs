//! The text dump: one line per node in a deterministic order, with stable `%n` numbers,
//! readable names, attributes and types. Snapshot tests pin it, so its layout is a contract.

use std::fmt::Write;

use super::numbering::numbering;
use crate::ir::{Graph, Op, Place, IMAGE_STREAM};

/// Renders the graph as text.
pub fn to_text(g: &Graph) -> String {
    let (order, num) = numbering(g);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model {:?}: {} blocks, {} nodes, {} route(s)",
        g.name,
        g.depth(),
        g.len(),
        g.routes.len()
    );
    for (k, r) in g.routes.iter().enumerate() {
        let _ = writeln!(
            s,
            "route {k}: rate {} over blocks {}..={}: keeps {} of {} {}tokens, {}",
            r.rate,
            r.start,
            r.end,
            r.keep,
            r.tokens,
            if r.stream == IMAGE_STREAM {
                String::new()
            } else {
                format!("{} ", r.stream)
            },
            if r.sorted {
                "sorted indices"
            } else {
                "random order"
            }
        );
    }
    let mut section = None;
    for id in order {
        let n = g.node(id);
        let header = match n.place {
            Place::Stem => "stem".to_string(),
            Place::Head => "head".to_string(),
            Place::Block(b) => format!("block {b} ({})", g.blocks[b].template),
            Place::RouteEntry { route, block } => {
                format!("route {route}: partition before block {block}")
            }
            Place::RouteExit { route, block } => {
                format!("route {route}: merge after block {block}")
            }
        };
        if section.as_ref() != Some(&header) {
            let _ = writeln!(s, "-- {header}");
            section = Some(header);
        }
        let ins: Vec<String> = g
            .inputs_of(id)
            .iter()
            .map(|i| format!("%{}", num[i]))
            .collect();
        let ty =
            n.ty.as_ref()
                .map(|t| t.to_string())
                .unwrap_or_else(|| "?".into());
        let args = if ins.is_empty() && matches!(n.op, Op::Input { .. }) {
            String::new()
        } else {
            format!("({})", ins.join(", "))
        };
        let _ = writeln!(s, "  %{} {} = {}{} : {}", num[&id], n.name, n.op, args, ty);
    }
    let outs: Vec<String> = g
        .outputs
        .iter()
        .map(|(k, v)| format!("{k} = %{}", num[v]))
        .collect();
    let _ = writeln!(s, "outputs: {}", outs.join(", "));
    s
}
