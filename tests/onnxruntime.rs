//! The exported files on an independent runtime: `onnx.checker.check_model(full_check=True)`
//! and onnxruntime through Python (tests/onnx_check.py), against the burn forward. When the
//! system `python3` lacks `onnx`/`onnxruntime`, the test sets up a virtual environment for them
//! under target/ on first use (`onnx_python`); set TREADC_SKIP_ONNXRUNTIME=1 to skip it knowingly.

mod common;
mod onnx_python;

use std::path::PathBuf;

use common::{preconditionable, presets, reduced_preset, root, temp_dir};
use tread_onnx::export::file::{read_model, ExternalData};
use tread_onnx::export::{DEFAULT_OPSET, OPSETS};
use tread_onnx::tract::HostValue;
use tread_runtime::export::{
    export_source, load_source, reference_case, ExportRequest, WhichWeights,
};
use tread_runtime::npy::write as write_npy;

#[test]
fn slow_onnx_checker_and_onnxruntime_agree_with_burn() {
    if std::env::var_os("TREADC_SKIP_ONNXRUNTIME").is_some() {
        eprintln!("SKIPPED on request (TREADC_SKIP_ONNXRUNTIME): onnxruntime check not run");
        return;
    }
    let python = onnx_python::checker_python().unwrap_or_else(|e| panic!("{e}"));
    let tmp = temp_dir("onnxruntime");
    let dir = tmp.path();
    let mut models: Vec<_> = presets()
        .iter()
        .map(|p| reduced_preset(p, &dir.join("models")))
        .collect();
    models.push(root().join("tests/models/all-ops.json"));
    models.push(root().join("tests/models/all-stream-ops.json"));
    let mut cases = 0;
    for m in &models {
        let edm = preconditionable(m);
        let stem = m.file_stem().unwrap().to_string_lossy().to_string();
        let mut variants = vec![(*OPSETS.start(), false), (*OPSETS.end(), false)];
        if edm {
            variants.push((20, true));
            variants.push((DEFAULT_OPSET, true));
        }
        for (opset, precond) in variants {
            let case = dir.join(format!(
                "{stem}-{opset}{}",
                if precond { "-pre" } else { "" }
            ));
            let req = ExportRequest {
                source: m.clone(),
                // Not with_extension: a preset name may hold a dot (wan2.1-...).
                output: PathBuf::from(format!("{}.onnx", case.display())),
                opset,
                precond,
                weights: WhichWeights::Ema,
                external: ExternalData::Auto,
                seed: 9,
                init_from: None,
            };
            let src = load_source(&req).unwrap_or_else(|d| panic!("{d}"));
            export_source(&src, &req).unwrap_or_else(|d| panic!("{d}"));
            let proto = read_model(&req.output).unwrap();
            let rc = reference_case(&proto, &src, precond, 2).unwrap();
            for (name, v) in &rc.inputs {
                let p = dir.join(format!(
                    "{}.in.{name}.npy",
                    case.file_name().unwrap().to_string_lossy()
                ));
                match v {
                    HostValue::F32(d, s) => write_npy(&p, d, s).unwrap(),
                    HostValue::I64(d, s) => {
                        let f: Vec<f32> = d.iter().map(|&x| x as f32).collect();
                        write_npy(&p, &f, s).unwrap()
                    }
                }
            }
            let n = rc.expected.len();
            write_npy(
                &dir.join(format!(
                    "{}.expected.npy",
                    case.file_name().unwrap().to_string_lossy()
                )),
                &rc.expected,
                &[n],
            )
            .unwrap();
            cases += 1;
        }
    }
    let out = std::process::Command::new(&python)
        .arg(root().join("tests/onnx_check.py"))
        .arg(dir)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "onnxruntime check failed:\n{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok")).count(),
        cases
    );
}
