//! The run folder through the binary: a full disk is an I/O failure (exit 1, not "bad input"),
//! a run killed with SIGKILL resumes without duplicated metrics or stale temporary files, and
//! `train MODEL --resume RUN` is accepted with the run's own model and refused with another.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TINY: &str = "tests/models/tiny-mnist.json";

/// Runs treadc with a file-size limit of about 200 KB (`ulimit -f 400` in 512-byte blocks under
/// dash, 400 KB under bash) and SIGXFSZ ignored, so a larger write fails with EFBIG as on a full
/// disk. The tiny model's checkpoint is 0.9 MB and its ONNX export 0.4 MB; its metrics and
/// run.json are under 1 KB.
fn treadc_on_a_small_disk(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 400; exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_treadc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("sh runs")
}

fn train_tiny(run: &str, steps: &str, extra: &[&str]) -> Output {
    train_briefly(TINY, run, steps, extra)
}

#[test]
fn a_full_disk_is_an_io_failure_in_train_and_export() {
    let tmp = temp_dir("full-disk");
    let dir = tmp.path();
    let run = dir.join("run");
    let o = treadc_on_a_small_disk(&[
        "train",
        TINY,
        "--steps",
        "2",
        "--batch",
        "8",
        "--out",
        run.to_str().unwrap(),
        "--sample-steps",
        "1",
        "--quiet",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write"), "{err}");
    assert!(err.contains("checkpoint.safetensors"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let ok = dir.join("ok");
    let o = train_tiny(ok.to_str().unwrap(), "2", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let onnx = dir.join("m.onnx");
    let o = treadc_on_a_small_disk(&["export", ok.to_str().unwrap(), "-o", onnx.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("m.onnx"),
        "{err}"
    );
    assert!(!onnx.exists(), "a failed export leaves no file");
    let temps = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count();
    assert_eq!(temps, 0, "a failed atomic write removes its temporary file");
}

/// Loss lines' steps in metrics.jsonl, in file order.
fn loss_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_killed_run_resumes_without_duplicated_steps_or_stale_temp_files() {
    let tmp = temp_dir("kill");
    let dir = tmp.path();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_treadc"))
        .args([
            "train",
            TINY,
            "--steps",
            "100000",
            "--batch",
            "8",
            "--out",
            run_s,
            "--ckpt-every",
            "5",
            "--sample-every",
            "0",
            "--sample-steps",
            "1",
            "--quiet",
        ])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("treadc starts");
    // Kill it once a checkpoint exists and steps after it are logged (bounded wait).
    let start = Instant::now();
    loop {
        let steps = loss_steps(&run);
        if run.join("checkpoint.safetensors").exists()
            && steps.len() >= 12
            && !steps.len().is_multiple_of(5)
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "training stopped early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = loss_steps(&run);
    // A write that SIGKILL interrupted leaves its temporary file (`.NAME.tmp-PID`); plant one
    // for the checkpoint and one for a grid, as a kill during those writes would.
    let stale = run.join(".checkpoint.safetensors.tmp-999999");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    std::fs::create_dir_all(run.join("samples")).unwrap();
    let stale_grid = run.join("samples").join(".step-000010.png.tmp-999999");
    std::fs::write(&stale_grid, b"half a png").unwrap();

    let total = (before.len() + 3).to_string();
    let o = treadc(&[
        "train", TINY, "--resume", run_s, "--steps", &total, "--quiet",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!stale.exists() && !stale_grid.exists(), "{err}");
    assert!(err.contains("left by an interrupted write"), "{err}");
    let after = loss_steps(&run);
    let want: Vec<u64> = (1..=before.len() as u64 + 3).collect();
    assert_eq!(
        after, want,
        "each step logged once (before the kill: {before:?})"
    );
}

#[test]
fn resume_with_the_runs_model_is_accepted_and_with_another_refused() {
    let tmp = temp_dir("resume-model");
    let dir = tmp.path();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let o = train_tiny(run_s, "2", &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = treadc(&[
        "train",
        "tests/models/tiny.json",
        "--resume",
        run_s,
        "--steps",
        "3",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not the model the run was trained with"),
        "{err}"
    );
    assert!(err.contains("tests/models/tiny.json"), "{err}");
    assert!(err.contains(TINY), "names the run's model: {err}");
    assert_eq!(loss_steps(&run), [1, 2], "a refused resume changes nothing");

    let o = treadc(&["train", TINY, "--resume", run_s, "--steps", "3", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(loss_steps(&run), [1, 2, 3]);
}
