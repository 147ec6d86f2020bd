//! The GPU code path on wgpu (a build with `--features wgpu`): training and sampling on burn's
//! cubecl backend agree with the CPU engine. CI runs it on Mesa's lavapipe (a Vulkan driver on
//! the CPU), so the GPU path is exercised without a GPU. Without an adapter these tests fail
//! with how to get one; `TREADC_SKIP_WGPU=1` skips them knowingly.
#![cfg(feature = "wgpu")]

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// True when `TREADC_SKIP_WGPU` asks to skip; panics, saying how to get one, without an adapter.
fn skip() -> bool {
    if std::env::var_os("TREADC_SKIP_WGPU").is_some() {
        eprintln!("TREADC_SKIP_WGPU is set: the wgpu tests are skipped");
        return true;
    }
    if let Err(why) = tread_runtime::wgpu_adapters::require_adapter() {
        panic!("{why}; or set TREADC_SKIP_WGPU=1 to skip the wgpu tests");
    }
    false
}

/// `treadc` with the cubecl cache and a quiet Mesa: the autotune cache under the repository's
/// target/ (cubecl's default), minimal autotuning (lavapipe is slow to time candidates; the
/// kernels chosen are still checked against the CPU engine here).
fn gpu_treadc(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_treadc"))
        .args(args)
        .current_dir(root())
        .env("CUBECL_AUTOTUNE_LEVEL", "minimal")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("treadc runs")
}

/// The losses a run logged, in step order.
fn losses(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("loss").and_then(|x| x.as_f64()))
        .collect()
}

/// Trains `model` for `steps` at `batch` on `backend` into `dir/backend`.
fn train(model: &str, backend: &str, steps: &str, batch: &str, dir: &Path) -> std::path::PathBuf {
    let run = dir.join(backend);
    let o = gpu_treadc(&[
        "train",
        model,
        "--data",
        "mnist",
        "--steps",
        steps,
        "--batch",
        batch,
        "--out",
        run.to_str().unwrap(),
        "--sample-every",
        "0",
        "--eval-every",
        "0",
        "--sample-steps",
        "1",
        "--quiet",
        "--backend",
        backend,
    ]);
    assert!(o.status.success(), "{backend}: {}", stderr(&o));
    run
}

/// Asserts two loss curves have the same length and agree within `rel` at every step.
fn assert_same_losses(gpu: &[f64], cpu: &[f64], steps: usize, rel: f64) {
    assert_eq!(gpu.len(), steps, "wgpu logged {gpu:?}");
    assert_eq!(cpu.len(), steps, "flex logged {cpu:?}");
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!(
            (g - c).abs() <= rel * c.abs(),
            "step {}: wgpu loss {g} vs flex {c} (relative tolerance {rel})",
            i + 1
        );
    }
}

/// The samples of `run` drawn on `backend` (4 images, 4 guided Heun steps), as f32.
fn samples(run: &Path, backend: &str) -> Vec<f32> {
    let npy = run.join(format!("samples-{backend}.npy"));
    let o = gpu_treadc(&[
        "sample",
        run.to_str().unwrap(),
        "--n",
        "4",
        "--steps",
        "4",
        "--cfg",
        "1.5",
        "--backend",
        backend,
        "-o",
        run.join(format!("samples-{backend}.png")).to_str().unwrap(),
        "--npy",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{backend}: {}", stderr(&o));
    let a = tread_runtime::npy::read(&npy, &["<f4"], "f32 samples", "").expect("samples .npy");
    a.data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn slow_wgpu_trains_and_samples_the_routed_dit_like_the_cpu_engine() {
    if skip() {
        return;
    }
    let tmp = temp_dir("wgpu-dit");
    let model = "models/mnist-dit-small.json";
    let gpu = train(model, "wgpu", "20", "16", tmp.path());
    let cpu = train(model, "flex", "20", "16", tmp.path());
    assert_same_losses(&losses(&gpu), &losses(&cpu), 20, 1e-3);

    let (g, c) = (samples(&gpu, "wgpu"), samples(&cpu, "flex"));
    assert_eq!(g.len(), 4 * 32 * 32);
    assert_eq!(g.len(), c.len());
    let worst = g
        .iter()
        .zip(&c)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-3, "samples differ by up to {worst}");
    assert!(
        c.iter().any(|v| v.abs() > 0.1),
        "the samples are all near zero"
    );
}

#[test]
fn slow_wgpu_trains_the_text_conditioned_mmdit_like_the_cpu_engine() {
    if skip() {
        return;
    }
    let tmp = temp_dir("wgpu-mmdit");
    let model = "models/mnist-mmdit-small.json";
    let gpu = train(model, "wgpu", "3", "8", tmp.path());
    let cpu = train(model, "flex", "3", "8", tmp.path());
    assert_same_losses(&losses(&gpu), &losses(&cpu), 3, 1e-3);
}

#[test]
fn wgpu_without_a_vulkan_driver_is_one_message_and_writes_nothing() {
    if skip() {
        return;
    }
    let tmp = temp_dir("wgpu-none");
    let out = tmp.path().join("run");
    // The Vulkan loader reads only the drivers named here: none.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_treadc"))
        .args([
            "train",
            "tests/models/tiny-mnist.json",
            "--steps",
            "1",
            "--backend",
            "wgpu",
        ])
        .arg("--out")
        .arg(&out)
        .current_dir(root())
        .env("VK_ICD_FILENAMES", "/nonexistent/treadc-test/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/treadc-test/icd.json")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("treadc runs");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no Vulkan adapter") && err.contains("mesa-vulkan-drivers"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists());
}

#[test]
fn devices_lists_the_wgpu_adapter() {
    if skip() {
        return;
    }
    let o = treadc(&["devices", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["backends"].as_array().unwrap().contains(&"wgpu".into()));
    let adapters = v["wgpu"]["adapters"].as_array().unwrap();
    assert!(!adapters.is_empty(), "{v}");
    assert!(adapters
        .iter()
        .all(|a| a["name"].as_str().is_some_and(|n| !n.is_empty())));
}
