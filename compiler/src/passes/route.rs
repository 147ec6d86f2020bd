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
use crate::ir::{AppliedRoute, Dim, Graph, Node, NodeId, Op, Place, TokenBehaviour, ValueType};
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

/// Checks every op of the region against the route; returns whether the kept indices must be
/// sorted (an order-sensitive op is in the region).
fn check_region(g: &Graph, k: usize, r: &Route, region: &[NodeId]) -> Result<bool> {
    let mut sorted = false;
    for &id in region {
        let ins = g.inputs_of(id);
        let first_in = ins.first().and_then(|&i| g.ty(i).token_axis);
        let n = g.node(id);
        let positional = || {
            route_err(
                k,
                r,
                format!("block op `{}` cannot run on a subset of tokens", n.name),
            )
            .expected("per-token, permutation-equivariant or order-sensitive ops in routed blocks")
        };
        match n.op.token_behaviour(first_in) {
            TokenBehaviour::OrderSensitive => sorted = true,
            TokenBehaviour::Positional => {
                return Err(positional()
                    .found(format!(
                        "`{}` is positional (depends on absolute token positions or count)",
                        n.op.name()
                    ))
                    .help("route over other blocks, or move the op out of the block"));
            }
            TokenBehaviour::Streams => {
                // Joining distinct streams is fine; gluing runs of one stream together
                // would make a token's place depend on the count kept.
                let mut seen: Vec<&str> = vec![];
                for &i in &ins {
                    for s in &g.ty(i).segments {
                        if seen.contains(&s.stream.as_str()) {
                            return Err(positional()
                                .found(format!(
                                    "`{}` joins two runs of stream `{}` along the token axis",
                                    n.op.name(),
                                    s.stream
                                ))
                                .help("join different streams only (e.g. text and image)"));
                        }
                        seen.push(&s.stream);
                    }
                }
            }
            TokenBehaviour::PerToken
            | TokenBehaviour::PermutationEquivariant
            | TokenBehaviour::NoTokenAxis => {}
        }
    }
    Ok(sorted)
}

fn route_one(g: &mut Graph, k: usize, r: &Route) -> Result<()> {
    let in_region = |g: &Graph, id: NodeId| matches!(g.node(id).place, Place::Block(b) if (r.start..=r.end).contains(&b));
    let entry = g.blocks[r.start].entry;
    let entry_ty = g.ty(entry).clone();
    let stream = r.stream.as_str();
    let image = entry_ty
        .segment(stream)
        .filter(|_| entry_ty.token_axis == Some(1));
    let Some((_, image_seg)) = image else {
        return Err(route_err(
            k,
            r,
            format!(
                "nothing to route: the trunk value entering the region has no `{stream}` tokens"
            ),
        )
        .expected(format!(
            "a trunk value [batch, T:tokens, ...] holding `{stream}` tokens"
        ))
        .found(format!("`{}`: {entry_ty}", g.node(entry).name)));
    };
    let tokens = image_seg.tokens;
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
    let sorted = check_region(g, k, r, &region)?;
    let entry_place = Place::RouteEntry {
        route: k,
        block: r.start,
    };
    // The select draws from the image tokens alone; a trunk that joins streams gives them up
    // through `select_stream`.
    // Its type, written here: nodes the pass adds are typed only when inference reruns.
    let image_entry_ty = {
        let mut t = entry_ty.clone();
        t.shape[1] = Dim::Known(tokens);
        t.segments = vec![image_seg.clone()];
        t
    };
    let image_entry = if entry_ty.is_only(stream) {
        entry
    } else {
        let x = g.add_node(Node {
            name: format!("route{k}.{stream}"),
            op: Op::SelectStream {
                stream: stream.to_string(),
            },
            ty: None,
            place: entry_place,
            origin: None,
        });
        g.connect(entry, x, 0);
        x
    };
    let select = g.add_node(Node {
        name: format!("route{k}.select"),
        op: Op::RouteSelect {
            route: k,
            rate: r.rate,
            keep,
            sorted,
            stream: stream.to_string(),
        },
        ty: None,
        place: entry_place,
        origin: None,
    });
    g.connect(image_entry, select, 0);
    // Indices for a value's whole token axis: the select's own for image tokens alone, or the
    // select's shifted past the streams before it, with every other stream kept whole.
    let mut expanded: BTreeMap<(u64, u64), NodeId> = BTreeMap::new();
    let mut indices_for = |g: &mut Graph, ty: &ValueType, place: Place| -> NodeId {
        if ty.is_only(stream) {
            return select;
        }
        let (before, seg) = ty.segment(stream).expect("checked by the caller");
        let total: u64 = ty.segments.iter().map(|s| s.tokens).sum();
        let after = total - before - seg.tokens;
        *expanded.entry((before, after)).or_insert_with(|| {
            let x = g.add_node(Node {
                name: format!("route{k}.indices.{before}.{after}"),
                op: Op::StreamIndices {
                    route: k,
                    before,
                    tokens,
                    after,
                },
                ty: None,
                place,
                origin: None,
            });
            g.connect(select, x, 0);
            x
        })
    };

    // Values entering the region. Values without image tokens (conditioning, the text
    // stream alone) pass untouched.
    let mut gathers: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    for &id in &region {
        for (slot, src) in g.inputs_of(id).into_iter().enumerate() {
            let sty = g.ty(src).clone();
            if in_region(g, src) || sty.segment(stream).is_none() {
                continue;
            }
            let n_image = sty.segment(stream).map(|(_, s)| s.tokens);
            if sty.token_axis != Some(1) || n_image != Some(tokens) {
                return Err(route_err(
                    k,
                    r,
                    format!(
                        "token value `{}` enters the region with a different token layout",
                        g.node(src).name
                    ),
                )
                .expected(format!(
                    "[batch, T:..., ...] with {tokens} `{stream}` tokens on axis 1, like the trunk"
                ))
                .found(sty.to_string()));
            }
            let gather = match gathers.get(&src) {
                Some(&x) => x,
                None => {
                    let idx = indices_for(g, &sty, entry_place);
                    let x = g.add_node(Node {
                        name: format!("route{k}.gather.{}", g.node(src).name),
                        op: Op::GatherTokens {
                            route: k,
                            stream: stream.to_string(),
                        },
                        ty: None,
                        place: entry_place,
                        origin: None,
                    });
                    g.connect(src, x, 0);
                    g.connect(idx, x, 1);
                    gathers.insert(src, x);
                    x
                }
            };
            g.set_input(id, slot, gather);
        }
    }

    // Values leaving the region (and graph outputs computed inside it).
    let exit_place = Place::RouteExit {
        route: k,
        block: r.end,
    };
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
        if ty.token_axis.is_none() || ty.segment(stream).is_none() {
            continue;
        }
        // The fill for routed positions is the value saved at the partition: the trunk, or
        // its image tokens for an image-only value leaving a trunk that joins streams.
        let like = |t: &ValueType| {
            t.shape[1..] == ty.shape[1..] && t.segments == ty.segments && t.dtype == ty.dtype
        };
        let (base, base_ty) = if like(&entry_ty) {
            (entry, entry_ty.clone())
        } else if ty.is_only(stream) && like(&image_entry_ty) {
            (image_entry, image_entry_ty.clone())
        } else {
            return Err(route_err(k, r, format!("token value `{}` leaves the region with a shape unlike the trunk's", g.node(id).name))
                .expected(format!("{entry_ty} (routed positions are filled from the trunk value saved at the partition)"))
                .found(ty.to_string()));
        };
        let idx = indices_for(g, &base_ty, exit_place);
        let merge = g.add_node(Node {
            name: format!("route{k}.merge.{}", g.node(id).name),
            op: Op::MergeTokens {
                route: k,
                stream: stream.to_string(),
            },
            ty: None,
            place: exit_place,
            origin: None,
        });
        g.connect(base, merge, 0);
        g.connect(id, merge, 1);
        g.connect(idx, merge, 2);
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
        stream: stream.to_string(),
    });
    Ok(())
}
