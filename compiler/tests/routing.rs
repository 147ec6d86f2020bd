//! The route pass on real presets: several routes, long skips crossing the region, the
//! order-sensitive mixer, token-indexed parameters, and a verifier that catches broken routing.

mod common;

use common::*;
use tread_compiler::compile::compile_str;
use tread_compiler::emit::to_text;
use tread_compiler::ir::{Graph, NodeId, Op};
use tread_compiler::passes::strip_routes;
use tread_compiler::verify::verify;

fn model(name: &str) -> std::path::PathBuf {
    root().join("models").join(name)
}

fn named(g: &Graph, name: &str) -> NodeId {
    g.find(name).unwrap_or_else(|| panic!("no node `{name}`"))
}

fn input_names(g: &Graph, id: NodeId) -> Vec<String> {
    g.inputs_of(id)
        .into_iter()
        .map(|i| g.node(i).name.clone())
        .collect()
}

fn count(g: &Graph, f: impl Fn(&Op) -> bool) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&i| f(&g.node(i).op))
        .count()
}

#[test]
fn two_routes_on_dit_s2() {
    let c = compile(&model("dit-s2.json"), &["0.5:1-4", "0.25:6-9"]);
    let g = &c.routed;
    assert_eq!(count(g, |o| matches!(o, Op::RouteSelect { .. })), 2);
    assert_eq!(
        g.routes.iter().map(|r| r.keep).collect::<Vec<_>>(),
        [128, 192]
    );
    // Block 1 reads the gathered trunk of route 0; block 6 that of route 1, whose source is the
    // trunk after route 0's merge.
    assert_eq!(
        input_names(g, named(g, "blocks.1.norm1")),
        ["route0.gather.blocks.0.out"]
    );
    assert_eq!(
        input_names(g, named(g, "route1.gather.blocks.5.out")),
        ["blocks.5.out", "route1.select"]
    );
    assert_eq!(
        input_names(g, named(g, "route0.merge.blocks.4.out")),
        ["blocks.0.out", "blocks.4.out", "route0.select"]
    );
    // Conditioning has no token axis: never gathered.
    assert_eq!(input_names(g, named(g, "blocks.2.ada")), ["c_act"]);
    snapshot("route-dit-s2-two-routes", &to_text(g));
}

#[test]
fn adjacent_routes_chain_merge_into_gather() {
    let c = compile(&model("dit-s2.json"), &["0.5:2-4", "0.5:5-8"]);
    let g = &c.routed;
    assert_eq!(
        input_names(g, named(g, "route1.gather.route0.merge.blocks.4.out")),
        ["route0.merge.blocks.4.out", "route1.select"]
    );
    let stripped = strip_routes(g).unwrap();
    assert_eq!(to_text(&stripped), to_text(&c.model.graph));
}

#[test]
fn long_skips_entering_the_region_are_gathered_with_the_same_indices() {
    // Blocks 7..=10 of U-ViT read skips from blocks 5, 4, 3, 2: all outside the region.
    let c = compile(&model("uvit-s2.json"), &["0.5:7-10"]);
    let g = &c.routed;
    for (block, skip) in [(7, 5), (8, 4), (9, 3), (10, 2)] {
        let gather = format!("route0.gather.blocks.{skip}.out");
        assert_eq!(
            input_names(g, named(g, &format!("blocks.{block}.joined")))[1],
            gather
        );
        assert_eq!(
            input_names(g, named(g, &gather)),
            [format!("blocks.{skip}.out"), "route0.select".to_string()]
        );
    }
    assert_eq!(count(g, |o| matches!(o, Op::GatherTokens { .. })), 5);
    snapshot("route-uvit-s2-across-long-skips", &to_text(g));
}

#[test]
fn long_skips_leaving_the_region_are_merged_with_the_bypass_fill() {
    // The paper placement 2..=9 contains block 2, whose output block 10 reads as a skip.
    let c = compile(&model("uvit-s2.json"), &["paper"]);
    let g = &c.routed;
    assert_eq!((g.routes[0].start, g.routes[0].end), (2, 9));
    assert_eq!(
        input_names(g, named(g, "route0.merge.blocks.2.out")),
        ["blocks.1.out", "blocks.2.out", "route0.select"]
    );
    assert_eq!(
        input_names(g, named(g, "blocks.10.joined")),
        ["route0.merge.blocks.9.out", "route0.merge.blocks.2.out"]
    );
}

#[test]
fn order_sensitive_mixer_gets_sorted_indices_and_attention_does_not() {
    let conv = compile(&model("gated-conv-s2.json"), &["paper"]);
    assert!(conv.routed.routes[0].sorted);
    let sel = named(&conv.routed, "route0.select");
    assert!(matches!(
        conv.routed.node(sel).op,
        Op::RouteSelect { sorted: true, .. }
    ));
    let dit = compile(&model("dit-s2.json"), &["paper"]);
    assert!(!dit.routed.routes[0].sorted);
    // A route that avoids every conv block is... impossible here (every block has one), so a
    // one-block route is sorted too.
    assert!(
        compile(&model("gated-conv-s2.json"), &["0.5:3-3"])
            .routed
            .routes[0]
            .sorted
    );
}

const POS_PER_BLOCK: &str = r#"{
  "format": "treadc.model/1",
  "name": "pos-per-block",
  "dims": {"D": 16},
  "inputs": {
    "x": {"shape": ["B", 1, 8, 8], "role": "image"},
    "t": {"shape": ["B"], "role": "noise_level"}
  },
  "stem": [
    {"name": "patches", "op": "patchify", "in": ["x"], "patch": 2},
    {"name": "tokens", "op": "linear", "in": ["patches"], "out": "D"},
    {"name": "pos", "op": "param", "shape": [1, 16, "D"], "token_axis": 1},
    {"name": "temb", "op": "timestep_embed", "in": ["t"], "dim": "D"},
    {"name": "c", "op": "unsqueeze", "in": ["temb"], "axis": 1}
  ],
  "blocks": {
    "b": {"params": ["x", "pos", "c"], "nodes": [
      {"name": "with_pos", "op": "add", "in": ["x", "pos"]},
      {"name": "with_c", "op": "add", "in": ["with_pos", "c"]},
      {"name": "attn", "op": "attention", "in": ["with_c"], "heads": 2},
      {"name": "out", "op": "add", "in": ["x", "attn"]}
    ], "output": "out"}
  },
  "trunk": {"input": "tokens", "blocks": [{"block": "b", "repeat": 4, "args": {"pos": "pos", "c": "c"}}]},
  "head": [
    {"name": "proj", "op": "linear", "in": ["trunk"], "out": 4},
    {"name": "image", "op": "unpatchify", "in": ["proj"], "patch": 2, "height": 8, "width": 8}
  ],
  "outputs": {"out": "image"},
  "routes": [{"rate": 0.25, "start": 1, "end": 2}]
}"#;

#[test]
fn token_indexed_parameters_entering_the_region_are_gathered() {
    let c = compile_str(POS_PER_BLOCK, "pos-per-block.json", &Default::default()).unwrap();
    let g = &c.routed;
    assert_eq!(g.routes[0].keep, 12);
    for b in [1, 2] {
        assert_eq!(
            input_names(g, named(g, &format!("blocks.{b}.with_pos")))[1],
            "route0.gather.pos"
        );
        // The conditioning [B, 1, D] has no token axis: untouched.
        assert_eq!(
            input_names(g, named(g, &format!("blocks.{b}.with_c")))[1],
            "c"
        );
    }
    for b in [0, 3] {
        assert_eq!(
            input_names(g, named(g, &format!("blocks.{b}.with_pos")))[1],
            "pos"
        );
    }
    assert_eq!(
        g.ty(named(g, "route0.gather.pos")).to_string(),
        "f32[B, T:12, 16]"
    );
}

#[test]
fn verifier_rejects_a_region_that_reads_an_ungathered_token_value() {
    let c = compile(&model("dit-s2.json"), &["paper"]);
    let mut g = c.routed.clone();
    verify(&g).unwrap();
    // Bypass the gather: block 2 now reads the full trunk directly.
    let norm = named(&g, "blocks.2.norm1");
    let trunk = named(&g, "blocks.1.out");
    g.set_input(norm, 0, trunk);
    let e = verify(&g).unwrap_err();
    assert!(
        e.message.contains("enters the region without a gather"),
        "{e}"
    );
}

#[test]
fn verifier_rejects_a_region_value_that_leaves_without_a_merge() {
    let c = compile(&model("dit-s2.json"), &["paper"]);
    let mut g = c.routed.clone();
    let next = named(&g, "blocks.9.norm1");
    let inside = named(&g, "blocks.8.out");
    g.set_input(next, 0, inside);
    assert!(verify(&g).is_err());
}

#[test]
fn routing_a_routed_graph_is_refused() {
    let c = compile(&model("dit-s2.json"), &["paper"]);
    let again = tread_compiler::passes::apply_routes(&c.routed, &c.routes);
    assert!(again.is_err());
}
