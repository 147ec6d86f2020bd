//! The deployment sampler: `treadc run`'s path (an exported file on tract, no burn) draws the same
//! images as `treadc sample` (burn) from the same checkpoint, seed and settings, within 1e-3,
//! with the preconditioning in the graph or applied on the host, with and without CFG, for labels and for text prompts.

mod common;

use std::path::{Path, PathBuf};

use common::{root, temp_dir};
use tread_onnx::export::file::ExternalData;
use tread_onnx::export::DEFAULT_OPSET;
use tread_runtime::deploy::Deployment;
use tread_runtime::draw::sample;
use tread_runtime::export::{export_source, load_source, ExportRequest, WhichWeights};
use tread_runtime::lower::backends::BackendKind;
use tread_runtime::run::{train, Placement};
use tread_runtime::run_folder::{RunFolder, RunSettings};
use tread_runtime::sampler::SampleRequest;

/// Trains `model` for `steps` steps at batch 8 into `dir/run`.
fn trained_run(model: &Path, steps: u64, dir: &Path) -> PathBuf {
    let settings = RunSettings {
        model_file: model.display().to_string(),
        routes: vec![],
        data: "mnist".into(),
        steps,
        batch: 8,
        seed: 1,
        sample_every: 0,
        ckpt_every: 0,
        sample_steps: 1,
        eval_every: 0,
        eval_n: 500,
        cfg: None,
        init_from: None,
        time_budget_s: None,
        eval_classifier: None,
    };
    let run = dir.join("run");
    let mnist = root().join("data/mnist");
    train(
        &Placement::single(BackendKind::Flex, &mnist),
        settings,
        std::fs::read_to_string(model).unwrap(),
        &run,
        None,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    run
}

/// Exports `run`'s EMA weights to `out` and opens the file for `treadc run`.
fn exported(run: &Path, out: PathBuf, precond: bool) -> Deployment {
    let req = ExportRequest {
        source: run.to_path_buf(),
        output: out,
        opset: DEFAULT_OPSET,
        precond,
        weights: WhichWeights::Ema,
        external: ExternalData::Auto,
        seed: 0,
        init_from: None,
    };
    let src = load_source(&req).unwrap_or_else(|d| panic!("{d}"));
    export_source(&src, &req).unwrap_or_else(|d| panic!("{d}"));
    Deployment::open(&req.output).unwrap_or_else(|e| panic!("{e}"))
}

/// Draws `req` from the checkpoint on burn and from the file on tract; asserts they agree
/// within 1e-3 and are not degenerate; returns tract's.
fn assert_same_samples(ckpt: &Path, d: &Deployment, req: &SampleRequest, what: &str) -> Vec<f32> {
    let burn = sample(BackendKind::Flex, ckpt, req)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .images;
    let tract = d.sample(req).unwrap_or_else(|e| panic!("{e:?}"));
    let max = burn
        .iter()
        .zip(&tract)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let spread = burn.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("{what}: max |burn − tract| = {max:.2e} (|x| ≤ {spread:.2})");
    assert_eq!(burn.len(), tract.len());
    assert!(max <= 1e-3, "{what}: {max}");
    assert!(spread > 0.1, "{what}: degenerate samples");
    tract
}

#[test]
fn tract_samples_equal_burn_samples() {
    let tmp = temp_dir("deploy");
    let dir = tmp.path();
    let run = trained_run(&root().join("tests/models/tiny-mnist.json"), 3, dir);
    let ckpt = RunFolder::new(&run).checkpoint();
    for precond in [false, true] {
        let d = exported(&run, dir.join(format!("m-{precond}.onnx")), precond);
        assert_eq!(d.precond, precond);
        for cfg in [None, Some(2.0)] {
            let req = SampleRequest {
                n: 4,
                steps: 5,
                seed: 11,
                cfg,
                ..Default::default()
            };
            assert_same_samples(&ckpt, &d, &req, &format!("precond {precond} cfg {cfg:?}"));
        }
    }
    refuses_a_mutated_axis(&dir.join("m-false.onnx"), dir);
}

/// `file` with its first LayerNormalization's axis flipped to -536870913 (one bit of the
/// varint: a one-byte mutation) is refused at once by `treadc run`, naming the node, instead of
/// tract spinning on it for minutes; nothing is written.
fn refuses_a_mutated_axis(file: &Path, dir: &Path) {
    use prost::Message;
    let bytes = std::fs::read(file).unwrap();
    let mut proto = tread_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.as_mut().expect("a graph");
    let ln = graph
        .node
        .iter_mut()
        .find(|n| n.op_type == "LayerNormalization")
        .expect("a LayerNormalization node");
    let node = ln.name.clone();
    let axis = ln.attribute.iter_mut().find(|a| a.name == "axis");
    axis.expect("its axis attribute").i = -536870913;
    let bad = dir.join("mutated.onnx");
    std::fs::write(&bad, proto.encode_to_vec()).unwrap();
    let grid = dir.join("never.png");
    let o = common::treadc(&[
        "run",
        bad.to_str().unwrap(),
        "--n",
        "1",
        "--steps",
        "1",
        "-o",
        grid.to_str().unwrap(),
    ]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&node) && err.contains("-536870913"), "{err}");
    assert!(!grid.exists(), "nothing written");
}

/// A text model's file carries its encoder's name and vocabulary; `treadc run` rebuilds the
/// encoder and draws what `treadc sample` draws, for a prompt and for the digits' prompts.
#[test]
fn tract_samples_equal_burn_samples_for_text_prompts() {
    let tmp = temp_dir("deploy-text");
    let dir = tmp.path();
    // Xavier init instead of adaLN-Zero: a zero output layer would make every prompt draw the
    // same images, and a wrong text input would pass unseen.
    let text = std::fs::read_to_string(root().join("models/mnist-mmdit-small.json")).unwrap();
    assert!(text.contains("\"init\": \"adaln_zero\""));
    let model = dir.join("mmdit-xavier.json");
    std::fs::write(&model, text.replace("\"adaln_zero\"", "\"xavier\"")).unwrap();
    let run = trained_run(&model, 1, dir);
    let ckpt = RunFolder::new(&run).checkpoint();
    let d = exported(&run, dir.join("mmdit.onnx"), false);
    assert!(
        d.text.is_some(),
        "the file is recognised as text-conditioned"
    );
    let mut drawn = vec![];
    for prompt in [None, Some("the digit 7")] {
        for cfg in [None, Some(2.0)] {
            let req = SampleRequest {
                n: 3,
                steps: 3,
                seed: 5,
                cfg,
                prompt: prompt.map(str::to_string),
                ..Default::default()
            };
            let what = format!("prompt {prompt:?} cfg {cfg:?}");
            drawn.push(assert_same_samples(&ckpt, &d, &req, &what));
        }
    }
    // The text reaches the network: other prompts and guidance give other images.
    for (i, a) in drawn.iter().enumerate() {
        for b in &drawn[i + 1..] {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(diff > 1e-3, "two requests drew the same images ({diff})");
        }
    }
    let bad = SampleRequest {
        n: 1,
        steps: 1,
        prompt: Some("a purple seven".into()),
        ..Default::default()
    };
    let e = format!(
        "{:?}",
        d.sample(&bad).expect_err("an unknown word is an error")
    );
    assert!(e.contains("purple") && e.contains("--prompt"), "{e}");
}

/// A video model's file takes clips `[B, C, F, H, W]`: `treadc run` feeds its tall clips in that
/// shape and draws what `treadc sample` draws, prompted and guided.
#[test]
fn tract_samples_equal_burn_samples_for_video_clips() {
    let tmp = temp_dir("deploy-video");
    let dir = tmp.path();
    let text = std::fs::read_to_string(root().join("models/mnist-wan-small.json")).unwrap();
    let model = dir.join("wan-xavier.json");
    std::fs::write(&model, text.replace("\"adaln_zero\"", "\"xavier\"")).unwrap();
    let run = trained_run(&model, 1, dir);
    let ckpt = RunFolder::new(&run).checkpoint();
    let d = exported(&run, dir.join("wan.onnx"), false);
    let clip = d.clip().expect("a video file");
    assert_eq!((clip.frames, clip.height, clip.width), (4, 16, 16));
    assert_eq!(
        d.shape,
        [1, 64, 16],
        "clips travel as frames stacked in rows"
    );
    for cfg in [None, Some(2.0)] {
        let req = SampleRequest {
            n: 2,
            steps: 2,
            seed: 3,
            cfg,
            prompt: Some("a seven".into()),
            ..Default::default()
        };
        assert_same_samples(&ckpt, &d, &req, &format!("video cfg {cfg:?}"));
    }
}
