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
        init_from: None,
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
        tread_runtime::checkpoint::HostTensor {
            shape: vec![3],
            data: vec![0.0; 3],
        },
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

/// `--init-from`: a run's EMA weights start a new run (0 steps: its checkpoint holds them bit
/// for bit) and export from a model.json as the run itself exports; a PyTorch state dict under
/// the official DiT names exports and runs on tract like burn; a weights file that does not fit
/// is bad input naming the tensor (exit 2).
#[test]
fn init_from_reads_runs_and_official_state_dicts_and_names_what_does_not_fit() {
    use common::{stderr, train_briefly, treadc};
    let tmp = temp_dir("init-from");
    let dir = tmp.path();
    let path = |name: &str| dir.join(name).display().to_string();
    let tiny = "tests/models/tiny-mnist.json";
    let o = train_briefly(tiny, &path("a"), "2", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train_briefly(tiny, &path("b"), "0", &["--init-from", &path("a")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("EMA weights at step 2"),
        "{}",
        stderr(&o)
    );
    let tensors = |run: &str, prefix: &str| {
        let bytes = std::fs::read(dir.join(run).join("checkpoint.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut all: Vec<(String, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.data().to_vec())))
            .collect();
        all.sort();
        all
    };
    let (given, started) = (tensors("a", "ema/"), tensors("b", "model/"));
    assert!(!given.is_empty());
    assert!(
        given == started,
        "the new run did not start from the run's EMA weights"
    );

    // A model.json exported with the run's weights draws what the run's own export draws.
    let draw = |onnx: &str| {
        let npy = format!("{onnx}.npy");
        let o = treadc(&[
            "run",
            onnx,
            "--n",
            "2",
            "--steps",
            "2",
            "--npy",
            &npy,
            "-o",
            &format!("{onnx}.png"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(npy).unwrap()
    };
    let o = treadc(&[
        "export",
        tiny,
        "--init-from",
        &path("a"),
        "-o",
        &path("x.onnx"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = treadc(&["export", &path("a"), "-o", &path("y.onnx")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(draw(&path("x.onnx")) == draw(&path("y.onnx")));

    // The official-layout fixture: mapped, its learned sigma cut, checked on tract.
    let official = "tests/models/dit-official-tiny.json";
    let pt = "tests/fixtures/dit-official/state_dict.pt";
    let o = treadc(&[
        "export",
        official,
        "--init-from",
        pt,
        "-o",
        &path("d.onnx"),
        "--check",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("learned sigma"), "{}", stderr(&o));

    // Handed back under the official names: the state dict the fixture came from, bit for bit,
    // except the head (its learned-sigma half was dropped on the way in).
    let back = path("back.safetensors");
    let o = treadc(&[
        "export",
        official,
        "--init-from",
        pt,
        "--format",
        "safetensors-official",
        "-o",
        &back,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (good, _) = tread_runtime::weights::pytorch::read(&root().join(pt)).unwrap();
    let bytes = std::fs::read(&back).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), good.len());
    for (name, t) in &good {
        let v = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("`{name}` not handed back"));
        let values: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if name.starts_with("final_layer.linear") {
            assert_eq!(v.shape()[0] * 2, t.shape[0], "{name}");
        } else {
            assert_eq!((v.shape(), &values), (&t.shape[..], &t.data), "{name}");
        }
    }
    // And a run's weights go out and come back unchanged.
    let out = path("a-official.safetensors");
    let o = treadc(&[
        "export",
        &path("a"),
        "--format",
        "safetensors-official",
        "-o",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train_briefly(tiny, &path("c"), "0", &["--init-from", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        tensors("c", "model/") == given,
        "the official round trip changed the weights"
    );
    // As a PyTorch .pt (written by treadc, read by burn-store's reader): unchanged too.
    let out = path("a-official.pt");
    let o = treadc(&["export", &path("a"), "--format", "pt-official", "-o", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train_briefly(tiny, &path("c-pt"), "0", &["--init-from", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        tensors("c-pt", "model/") == given,
        "the official .pt round trip changed the weights"
    );

    // The same tensors with one misshapen, one extra, one missing: each named, exit 2.
    type Tensors = std::collections::BTreeMap<String, tread_runtime::checkpoint::HostTensor>;
    let write = |name: &str, edit: &dyn Fn(&mut Tensors)| {
        let mut t = good.clone();
        edit(&mut t);
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = t
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    v.shape,
                )
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(k, b, s)| {
                let view =
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .unwrap();
                (k.clone(), view)
            })
            .collect();
        std::fs::write(dir.join(name), safetensors::serialize(views, None).unwrap()).unwrap();
        path(name)
    };
    type Edit<'a> = &'a dyn Fn(&mut Tensors);
    let cases: [(&str, Edit, &[&str]); 3] = [
        (
            "misshapen.safetensors",
            &|t| {
                let w = t.get_mut("blocks.1.mlp.fc1.weight").unwrap();
                w.shape = vec![64, 64];
            },
            &["blocks.1.mlp.fc1.weight", "[64, 64]"],
        ),
        (
            "extra.safetensors",
            &|t| {
                let w = t["blocks.0.mlp.fc2.bias"].clone();
                t.insert("blocks.0.mlp.fc3.bias".into(), w);
            },
            &["blocks.0.mlp.fc3.bias", "no place in a DiT"],
        ),
        (
            "missing.safetensors",
            &|t| {
                t.remove("final_layer.linear.bias");
            },
            &["final_linear.bias", "not in the file"],
        ),
    ];
    for (name, edit, words) in cases {
        let file = write(name, edit);
        let o = treadc(&[
            "export",
            official,
            "--init-from",
            &file,
            "-o",
            &path("never.onnx"),
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        for w in words {
            assert!(
                stderr(&o).contains(w),
                "{name}: `{w}` missing from {}",
                stderr(&o)
            );
        }
        assert!(
            !dir.join("never.onnx").exists(),
            "nothing is written for bad input"
        );
    }
    let o = treadc(&[
        "export",
        official,
        "--init-from",
        "README.md",
        "-o",
        &path("never.onnx"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown weights file type"),
        "{}",
        stderr(&o)
    );
}
