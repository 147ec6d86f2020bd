//! The deployment sampler: `treadc run`'s path (an exported file on tract, no burn) draws the same
//! images as `treadc sample` (burn) from the same checkpoint, seed and settings, within 1e-3,
//! with the preconditioning in the graph or applied on the host, with and without CFG.

mod common;

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

#[test]
fn tract_samples_equal_burn_samples() {
    let tmp = temp_dir("deploy");
    let dir = tmp.path();
    let model = root().join("tests/models/tiny-mnist.json");
    let settings = RunSettings {
        model_file: model.display().to_string(),
        routes: vec![],
        data: "mnist".into(),
        steps: 3,
        batch: 8,
        seed: 1,
        sample_every: 0,
        ckpt_every: 0,
        sample_steps: 1,
        eval_every: 0,
        eval_n: 500,
        cfg: None,
    };
    let run = dir.join("run");
    let mnist = root().join("data/mnist");
    train(
        &Placement::single(BackendKind::Flex, &mnist),
        settings,
        std::fs::read_to_string(&model).unwrap(),
        &run,
        None,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let ckpt = RunFolder::new(&run).checkpoint();
    for precond in [false, true] {
        let req = ExportRequest {
            source: run.clone(),
            output: dir.join(format!("m-{precond}.onnx")),
            opset: DEFAULT_OPSET,
            precond,
            weights: WhichWeights::Ema,
            external: ExternalData::Auto,
            seed: 0,
        };
        let src = load_source(&req).unwrap_or_else(|d| panic!("{d}"));
        export_source(&src, &req).unwrap_or_else(|d| panic!("{d}"));
        let d = Deployment::open(&req.output).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.precond, precond);
        for cfg in [None, Some(2.0)] {
            let req = SampleRequest {
                n: 4,
                steps: 5,
                seed: 11,
                cfg,
                ..Default::default()
            };
            let burn = sample(BackendKind::Flex, &ckpt, &req)
                .unwrap_or_else(|e| panic!("{e:?}"))
                .images;
            let tract = d.sample(&req).unwrap_or_else(|e| panic!("{e:?}"));
            let max = burn
                .iter()
                .zip(&tract)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let spread = burn.iter().fold(0f32, |m, v| m.max(v.abs()));
            eprintln!(
                "precond {precond} cfg {cfg:?}: max |burn − tract| = {max:.2e} (|x| ≤ {spread:.2})"
            );
            assert_eq!(burn.len(), tract.len());
            assert!(max <= 1e-3, "precond {precond} cfg {cfg:?}: {max}");
            assert!(spread > 0.1, "degenerate samples");
        }
    }
}
