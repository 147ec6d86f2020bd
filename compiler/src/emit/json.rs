//! A JSON dump of the (possibly routed) graph for scripts: nodes in topological order with op,
//! attributes, inputs, type, place. Not a model.json: it holds the expanded, typed graph.

use serde_json::{json, Value};

use super::numbering::numbering;
use crate::ir::{Graph, Place};

/// Renders the graph as a JSON value.
pub fn to_json(g: &Graph) -> Value {
    let (order, num) = numbering(g);
    let nodes: Vec<Value> = order
        .iter()
        .map(|id| {
            let n = g.node(*id);
            let attrs: serde_json::Map<String, Value> =
                n.op.attrs().into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect();
            let ty = n.ty.as_ref().map(|t| {
                json!({
                    "dtype": t.dtype.name(),
                    "shape": t.shape.iter().map(|d| match d.known() { Some(k) => json!(k), None => json!(d.to_string()) }).collect::<Vec<_>>(),
                    "token_axis": t.token_axis,
                    "streams": t.segments.iter().map(|s| json!({"stream": s.stream, "tokens": s.tokens})).collect::<Vec<_>>(),
                })
            });
            let place = match n.place {
                Place::Stem => json!({"kind": "stem"}),
                Place::Head => json!({"kind": "head"}),
                Place::Block(b) => json!({"kind": "block", "block": b}),
                Place::RouteEntry { route, block } => json!({"kind": "route_entry", "route": route, "block": block}),
                Place::RouteExit { route, block } => json!({"kind": "route_exit", "route": route, "block": block}),
            };
            json!({
                "id": num[id],
                "name": n.name,
                "op": n.op.name(),
                "attrs": attrs,
                "inputs": g.inputs_of(*id).iter().map(|i| num[i]).collect::<Vec<_>>(),
                "type": ty,
                "place": place,
            })
        })
        .collect();
    json!({
        "format": "treadc.graph/1",
        "name": g.name,
        "depth": g.depth(),
        "routes": g.routes.iter().map(|r| json!({"rate": r.rate, "start": r.start, "end": r.end, "tokens": r.tokens, "keep": r.keep, "sorted": r.sorted})).collect::<Vec<_>>(),
        "outputs": g.outputs.iter().map(|(k, v)| json!({"name": k, "node": num[v]})).collect::<Vec<_>>(),
        "nodes": nodes,
    })
}
