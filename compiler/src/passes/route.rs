//! The TREAD route pass (tread.md §1, architecture.md "The route pass").
//!
//! For each route `(rate, start, end)` over the trunk:
//! 1. the region is every node of blocks `start..=end`;
//! 2. a `route_select` node draws the kept indices from the trunk value entering block `start`;
//! 3. every token-indexed value that crosses into the region (the trunk, long skips, token-indexed
//!    parameters and position tables) is gathered with those same indices; values without a token
//!    axis (conditioning) pass untouched;
//! 4. every token-indexed value that leaves the region is merged: scattered into the trunk value
//!    saved at the partition, so routed tokens re-enter with exactly their pre-region value
//!    (identity bypass). This fill is the same for long skips that leave the region: a routed token
//!    "is" its pre-region state everywhere inside the region;
//! 5. an order-sensitive op in the region makes the kept indices sorted; a positional op (one that
//!    depends on absolute positions or the full token count) makes the route an error.

use std::collections::{BTreeMap, HashSet};

use crate::diag::{Diagnostic, Location, Result};
use crate::ir::{AppliedRoute, Graph, Node, NodeId, Op, Place, TokenBehaviour};
use crate::route_spec::Route;

/// Applies `routes` (already resolved and validated by `route_spec::resolve`) to a dense graph.
pub fn apply_routes(dense: &Graph, routes: &[Route]) -> Result<Graph> {
    if !dense.routes.is_empty() {
        return Err(
            Diagnostic::new(Location::File, "the graph is already routed")
                .expected("a dense graph")
                .found(format!("{} route(s)", dense.routes.len())),
        );
    }
    let mut g = dense.clone();
    for (k, r) in routes.iter().enumerate() {
        route_one(&mut g, k, r)?;
        crate::shape::infer(&mut g)?;
    }
    crate::verify::verify(&g)?;
    Ok(g)
}

fn route_err(k: usize, r: &Route, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(
        Location::Route {
            index: k,
            given: format!("{}:{}-{}", r.rate, r.start, r.end),
        },
        msg,
    )
}

fn route_one(g: &mut Graph, k: usize, r: &Route) -> Result<()> {
    let in_region = |g: &Graph, id: NodeId| matches!(g.node(id).place, Place::Block(b) if (r.start..=r.end).contains(&b));
    let entry = g.blocks[r.start].entry;
    let entry_ty = g.ty(entry).clone();
    let Some(tokens) = entry_ty.tokens().filter(|_| entry_ty.token_axis == Some(1)) else {
        return Err(route_err(
            k,
            r,
            "nothing to route: the trunk value entering the region has no token axis",
        )
        .expected("a trunk value [batch, T:tokens, ...]")
        .found(format!("`{}`: {entry_ty}", g.node(entry).name)));
    };
    let routed = (tokens as f64 * r.rate).floor() as u64;
    let keep = tokens - routed;
    if r.rate > 0.0 && routed == 0 {
        return Err(route_err(k, r, "empty route: the rate routes no token")
            .expected(format!(
                "rate ≥ 1/{tokens} so that floor({tokens}·rate) ≥ 1"
            ))
            .found(format!("floor({tokens}·{}) = 0", r.rate)));
    }
    let region: Vec<NodeId> = g
        .node_ids()
        .into_iter()
        .filter(|&id| in_region(g, id))
        .collect();
    let mut sorted = false;
    for &id in &region {
        let first_in = g
            .inputs_of(id)
            .first()
            .map(|&i| g.ty(i).token_axis)
            .unwrap_or(None);
        match g.node(id).op.token_behaviour(first_in) {
            TokenBehaviour::OrderSensitive => sorted = true,
            TokenBehaviour::Positional => {
                let n = g.node(id);
                return Err(route_err(
                    k,
                    r,
                    format!("block op `{}` cannot run on a subset of tokens", n.name),
                )
                .expected(
                    "per-token, permutation-equivariant or order-sensitive ops in routed blocks",
                )
                .found(format!(
                    "`{}` is positional (depends on absolute token positions or count)",
                    n.op.name()
                ))
                .help("route over other blocks, or move the op out of the block"));
            }
            _ => {}
        }
    }
    let select = g.add_node(Node {
        name: format!("route{k}.select"),
        op: Op::RouteSelect {
            route: k,
            rate: r.rate,
            keep,
            sorted,
        },
        ty: None,
        place: Place::RouteEntry {
            route: k,
            block: r.start,
        },
        origin: None,
    });
    g.connect(entry, select, 0);

    // Values entering the region.
    let mut gathers: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    for &id in &region {
        for (slot, src) in g.inputs_of(id).into_iter().enumerate() {
            if in_region(g, src) || g.ty(src).token_axis.is_none() {
                continue;
            }
            let sty = g.ty(src);
            if sty.token_axis != Some(1) || sty.tokens() != Some(tokens) {
                return Err(route_err(
                    k,
                    r,
                    format!(
                        "token value `{}` enters the region with a different token layout",
                        g.node(src).name
                    ),
                )
                .expected(format!("[batch, T:{tokens}, ...] like the trunk"))
                .found(sty.to_string()));
            }
            let gather = match gathers.get(&src) {
                Some(&x) => x,
                None => {
                    let x = g.add_node(Node {
                        name: format!("route{k}.gather.{}", g.node(src).name),
                        op: Op::GatherTokens { route: k },
                        ty: None,
                        place: Place::RouteEntry {
                            route: k,
                            block: r.start,
                        },
                        origin: None,
                    });
                    g.connect(src, x, 0);
                    g.connect(select, x, 1);
                    gathers.insert(src, x);
                    x
                }
            };
            g.set_input(id, slot, gather);
        }
    }

    // Values leaving the region (and graph outputs computed inside it).
    let outputs: HashSet<NodeId> = g.outputs.iter().map(|(_, o)| *o).collect();
    for &id in &region {
        let outside: Vec<(NodeId, usize)> = g
            .users_of(id)
            .into_iter()
            .filter(|&(u, _)| !in_region(g, u))
            .collect();
        if outside.is_empty() && !outputs.contains(&id) {
            continue;
        }
        let ty = g.ty(id).clone();
        if ty.token_axis.is_none() {
            continue;
        }
        if ty.shape[1..] != entry_ty.shape[1..] || ty.dtype != entry_ty.dtype {
            return Err(route_err(k, r, format!("token value `{}` leaves the region with a shape unlike the trunk's", g.node(id).name))
                .expected(format!("{entry_ty} (routed positions are filled from the trunk value saved at the partition)"))
                .found(ty.to_string()));
        }
        let merge = g.add_node(Node {
            name: format!("route{k}.merge.{}", g.node(id).name),
            op: Op::MergeTokens { route: k },
            ty: None,
            place: Place::RouteExit {
                route: k,
                block: r.end,
            },
            origin: None,
        });
        g.connect(entry, merge, 0);
        g.connect(id, merge, 1);
        g.connect(select, merge, 2);
        for (u, slot) in outside {
            g.set_input(u, slot, merge);
        }
        g.replace_in_records(id, merge, r.end + 1);
    }
    g.routes.push(AppliedRoute {
        rate: r.rate,
        start: r.start,
        end: r.end,
        tokens,
        keep,
        sorted,
    });
    Ok(())
}
