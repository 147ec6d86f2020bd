//! `treadc devices` on a machine without a usable GPU (CI's), with the probe pointed at a CUDA
//! driver that is not there, and `--backend cuda` or `wgpu` in a build without the feature.

mod common;

use std::process::Command;

use common::*;

#[test]
fn devices_reports_the_cpu_and_why_cuda_is_not_usable() {
    let missing = "/nonexistent/treadc-test/libcuda.so.1";
    let run = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_treadc"));
        c.arg("devices").env("TREADC_CUDA_DRIVER", missing);
        if json {
            c.arg("--json");
        }
        c.output().expect("treadc runs")
    };
    let o = run(true);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["backends"].as_array().unwrap().contains(&"flex".into()));
    assert!(v["cpu"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["cpu"]["simd"].is_string());
    assert_eq!(v["cuda"]["usable"], false);
    assert_eq!(v["cuda"]["gpus"].as_array().map(Vec::len), Some(0));
    let problem = v["cuda"]["problem"].as_str().unwrap();
    assert!(
        problem.contains(missing) && problem.contains("--backend flex"),
        "{problem}"
    );

    let o = run(false);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("cpu: ") && text.contains("cuda: not usable"),
        "{text}"
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn backend_cuda_without_the_feature_is_a_clear_error_and_writes_nothing() {
    let tmp = temp_dir("devices");
    let out = tmp.path().join("run");
    let o = treadc(&[
        "train",
        "tests/models/tiny-mnist.json",
        "--steps",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cuda",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--features cuda"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[cfg(not(feature = "wgpu"))]
#[test]
fn backend_wgpu_without_the_feature_is_a_clear_error_and_writes_nothing() {
    let tmp = temp_dir("devices-wgpu");
    let out = tmp.path().join("run");
    let o = treadc(&[
        "train",
        "tests/models/tiny-mnist.json",
        "--steps",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "wgpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--features wgpu"), "{}", stderr(&o));
    assert!(!out.exists());
}
