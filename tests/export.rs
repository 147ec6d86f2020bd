//! ONNX export: every preset (at a reduced size) runs on tract with the burn forward's output,
//! at the lowest, default and highest opset and with EDM preconditioning in the graph; the op
//! listing of a small preset is pinned; bad inputs give diagnostics.

mod common;

use std::path::{Path, PathBuf};

use common::{preconditionable, presets, reduced_preset, rel, root, snapshot, temp_dir};
use tread_onnx::export::file::{read_model, ExternalData};
use tread_onnx::export::listing::{listing, op_histogram};
use tread_onnx::export::{DEFAULT_OPSET, OPSETS};
use tread_runtime::export::{
    check_against_burn, export_source, load_source, ExportRequest, WhichWeights,
};

fn request(source: &Path, output: PathBuf, opset: i64, precond: bool) -> ExportRequest {
    ExportRequest {
        source: source.to_path_buf(),
        output,
        opset,
        precond,
        weights: WhichWeights::Ema,
        external: ExternalData::Auto,
        seed: 5,
    }
}

/// Exports `model` and compares tract with burn; returns the max abs difference.
fn export_and_check(model: &Path, dir: &Path, opset: i64, precond: bool) -> f64 {
    let name = format!(
        "{}-{opset}{}.onnx",
        model.file_stem().unwrap().to_string_lossy(),
        if precond { "-precond" } else { "" }
    );
    let req = request(model, dir.join(name), opset, precond);
    let src = load_source(&req).unwrap_or_else(|d| panic!("{d}"));
    export_source(&src, &req).unwrap_or_else(|d| panic!("{d}"));
    let r = check_against_burn(&req.output, &src, precond, 3)
        .unwrap_or_else(|e| panic!("{}: {e:?}", req.output.display()));
    assert!(
        r.passes(),
        "{} opset {opset} precond {precond}: max abs {:.3e}, max rel {:.3e}",
        rel(model),
        r.max_abs,
        r.max_rel
    );
    r.max_abs
}

#[test]
fn every_preset_runs_on_tract_like_burn_at_every_opset_family() {
    let tmp = temp_dir("export-presets");
    let dir = tmp.path();
    let mut worst: f64 = 0.0;
    for p in presets() {
        let small = reduced_preset(&p, &dir.join("models"));
        let objective_is_edm = preconditionable(&small);
        for opset in [17, 20, 23] {
            worst = worst.max(export_and_check(&small, dir, opset, false));
        }
        if objective_is_edm {
            worst = worst.max(export_and_check(&small, dir, DEFAULT_OPSET, true));
            worst = worst.max(export_and_check(&small, dir, 17, true));
        }
    }
    eprintln!("worst max abs difference tract vs burn over all presets: {worst:.3e}");
}

#[test]
fn ops_the_presets_do_not_use_match_too() {
    // rms_norm (affine or not), exact GELU, a centred token conv, bias-free linears/attention.
    let tmp = temp_dir("export-all-ops");
    let dir = tmp.path();
    for model in ["all-ops.json", "all-stream-ops.json"] {
        let path = root().join("tests/models").join(model);
        for opset in OPSETS {
            export_and_check(&path, dir, opset, false);
        }
        export_and_check(&path, dir, DEFAULT_OPSET, true);
    }
}

#[test]
fn external_data_loads_on_tract() {
    let tmp = temp_dir("export-external");
    let dir = tmp.path();
    let small = reduced_preset(&root().join("models/dit-s2.json"), dir);
    let mut req = request(&small, dir.join("ext.onnx"), DEFAULT_OPSET, false);
    req.external = ExternalData::Always;
    let src = load_source(&req).unwrap();
    let out = export_source(&src, &req).unwrap();
    let data = out.written.data_bytes.expect("external data written");
    assert_eq!(
        std::fs::metadata(dir.join("ext.onnx.data")).unwrap().len() as usize,
        data
    );
    let inline_weights: usize = read_model(&req.output)
        .unwrap()
        .graph
        .unwrap()
        .initializer
        .iter()
        .map(|t| t.raw_data.len())
        .sum();
    assert!(
        inline_weights < data / 10,
        "weights stayed inline: {inline_weights} of {data} bytes"
    );
    let r = check_against_burn(&req.output, &src, false, 2).unwrap();
    assert!(r.passes(), "{r:?}");
}

#[test]
fn mnist_dit_op_listing() {
    let tmp = temp_dir("export-listing");
    let dir = tmp.path();
    let req = request(
        &root().join("models/mnist-dit.json"),
        dir.join("m.onnx"),
        DEFAULT_OPSET,
        true,
    );
    let src = load_source(&req).unwrap();
    let out = export_source(&src, &req).unwrap();
    snapshot("onnx-mnist-dit-listing", &listing(&out.model));
}

#[test]
fn dit_s2_is_compact() {
    // The full-size DiT-S/2 graph: far fewer nodes than PyTorch's exporter writes (1,086 at
    // opset 17, 439 of them Constant), and no Constant nodes at all (constants are initialisers).
    let tmp = temp_dir("export-dit-s2");
    let dir = tmp.path();
    for (opset, limit) in [(17, 600), (23, 362)] {
        let req = request(
            &root().join("models/dit-s2.json"),
            dir.join("d.onnx"),
            opset,
            false,
        );
        let src = load_source(&req).unwrap();
        let out = export_source(&src, &req).unwrap();
        let h = op_histogram(&out.model);
        let nodes: usize = h.values().sum();
        assert!(!h.contains_key("Constant"));
        assert!(nodes <= limit, "opset {opset}: {nodes} nodes: {h:?}");
    }
}

#[test]
fn a_checkpoint_of_another_model_is_refused_naming_the_tensor() {
    use tread_runtime::checkpoint::Checkpoint;
    let tmp = temp_dir("export-mismatch");
    let dir = tmp.path();
    let tiny = root().join("tests/models/tiny-mnist.json");
    let text = std::fs::read_to_string(&tiny).unwrap();
    let mut ck = Checkpoint::default();
    ck.meta.insert("model_json".into(), text);
    ck.meta.insert("step".into(), "1".into());
    ck.meta.insert(
        "train".into(),
        serde_json::json!({
            "model_file": "tiny-mnist.json", "routes": [], "data": "mnist", "steps": 1,
            "batch": 1, "seed": 0, "sample_every": 0, "ckpt_every": 0, "sample_steps": 1
        })
        .to_string(),
    );
    ck.tensors.insert(
        "ema/patch_embed.weight".into(),
        tread_runtime::run::host(vec![3], vec![0.0; 3]),
    );
    let path = dir.join("checkpoint.safetensors");
    ck.save(&path).unwrap();
    let req = request(&path, dir.join("x.onnx"), DEFAULT_OPSET, false);
    let e = load_source(&req).err().expect("refused");
    let text = e.to_string();
    assert!(text.contains("does not match"), "{text}");
    assert!(text.contains("tensor `ema/"), "{text}");
    assert!(text.contains("checkpoint.safetensors"), "{text}");
    assert!(!dir.join("x.onnx").exists());
}
