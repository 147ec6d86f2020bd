//! Every preset compiles dense and with its declared routes; their text dumps are snapshots;
//! stripping the routes gives back the dense graph.

mod common;

use common::*;
use tread_compiler::emit::to_text;
use tread_compiler::passes::strip_routes;

#[test]
fn every_preset_compiles_dense_and_routed_with_snapshots() {
    let presets = presets();
    assert!(
        presets.len() >= 13,
        "expected the full preset set, found {presets:?}"
    );
    for p in presets {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let dense = compile_dense(&p);
        assert!(dense.routed.routes.is_empty());
        snapshot(&format!("preset-{stem}-dense"), &to_text(&dense.routed));
        let routed = compile(&p, &[]);
        assert!(
            !routed.routed.routes.is_empty(),
            "{stem}: every preset declares routes"
        );
        snapshot(&format!("preset-{stem}-routed"), &to_text(&routed.routed));
    }
}

#[test]
fn strip_of_route_is_the_dense_graph_for_every_preset() {
    for p in presets() {
        let routed = compile(&p, &[]);
        let stripped = strip_routes(&routed.routed).unwrap();
        assert_eq!(
            to_text(&stripped),
            to_text(&routed.model.graph),
            "{}",
            rel(&p)
        );
    }
}

#[test]
fn flow_presets_record_the_flow_objective_and_the_others_edm() {
    use tread_compiler::config::Objective;
    for p in presets() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let m = compile_dense(&p).model;
        // SiT, SD3 (MMDiT), Flux and Wan train with rectified flow; the others with EDM.
        let flow = ["sit-", "flux", "sd3", "mmdit", "wan"];
        let want = if flow.iter().any(|f| name.contains(f)) {
            Objective::Flow
        } else {
            Objective::Edm
        };
        assert_eq!(m.training.objective, want, "{name}");
    }
}

#[test]
fn mnist_preset_fits_the_bundled_data() {
    let m = compile_dense(&root().join("models/mnist-dit.json")).model;
    let image = m
        .graph
        .inputs
        .iter()
        .find(|(n, _)| n == "x")
        .map(|(_, id)| m.graph.ty(*id).to_string());
    assert_eq!(image.as_deref(), Some("f32[B, 1, 32, 32]"));
    assert_eq!(m.dims["K"], 10);
}

/// The fusion pass on every preset (dense and routed): it verifies, keeps params and FLOPs,
/// and its output for the default model is a reviewed snapshot (`treadc compile --fused`).
#[test]
fn fusion_keeps_params_and_flops_on_every_preset_with_snapshots() {
    use tread_compiler::analysis::analyse;
    use tread_compiler::params::param_specs;
    use tread_compiler::passes::fuse;
    for p in presets() {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        for g in [compile_dense(&p).routed, compile(&p, &[]).routed] {
            let (f, report) = fuse(&g).unwrap();
            assert_eq!(param_specs(&f), param_specs(&g), "{stem}");
            assert_eq!(analyse(&f).total, analyse(&g).total, "{stem}");
            let fused_nodes = report.norm_modulate + report.gated_residual;
            assert_eq!(f.len(), g.len() - fused_nodes, "{stem}");
            if stem.starts_with("dit-") || stem.starts_with("sit-") || stem == "mnist-dit" {
                let depth = g.depth();
                assert_eq!(report.norm_modulate, 2 * depth + 1, "{stem}");
                assert_eq!(report.gated_residual, 2 * depth, "{stem}");
            }
        }
    }
    let routed = compile(&root().join("models/mnist-dit.json"), &[]);
    snapshot(
        "fused-mnist-dit-routed",
        &to_text(&fuse(&routed.routed).unwrap().0),
    );
}
