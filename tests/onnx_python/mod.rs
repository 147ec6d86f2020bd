//! A Python that can run the independent ONNX check (`onnx` + `onnxruntime` + `numpy`), set up
//! by the test itself so that `cargo test --workspace` passes on a fresh machine with nothing
//! but Rust and `python3`.
//!
//! The system `python3` is used when it already imports the three packages. Otherwise a
//! virtual environment is created once under cargo's target directory
//! (`target/tmp/onnx-check-venv`), the pinned versions below are pip-installed into it, and
//! later runs reuse it. A lock directory keeps concurrent test processes from building it twice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The versions the check was written and measured against.
const PACKAGES: [&str; 3] = ["onnx==1.23.2", "onnxruntime==1.32.0", "numpy==2.4.6"];

/// Waiting longer than this for another process's set-up means its lock is stale.
const LOCK_WAIT: Duration = Duration::from_secs(15 * 60);

fn imports_ok(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start it: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The python interpreter to run `tests/onnx_check.py` with, setting up the environment on
/// first use; `Err` says what is missing and what to do.
pub fn checker_python() -> Result<PathBuf, String> {
    let system = PathBuf::from("python3");
    if Command::new(&system).arg("--version").output().is_err() {
        return Err(
            "no `python3` on PATH: the ONNX check needs Python 3 (with the `venv` \
                    module); install it, or set TREADC_SKIP_ONNXRUNTIME=1 to skip the check \
                    knowingly"
                .into(),
        );
    }
    if imports_ok(&system) {
        return Ok(system);
    }
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join("onnx-check-venv");
    let python = venv.join("bin/python");
    let ready = venv.join("treadc-ready");
    let lock = root.join("onnx-check-venv.lock");
    let started = Instant::now();
    // create_dir is atomic: whoever creates the lock builds the environment.
    while std::fs::create_dir(&lock).is_err() {
        if ready.exists() && imports_ok(&python) {
            return Ok(python);
        }
        if started.elapsed() > LOCK_WAIT {
            return Err(format!(
                "another test process has held {} for {} s; if none is running, remove it",
                lock.display(),
                LOCK_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let result = build(&venv, &python, &ready);
    let _ = std::fs::remove_dir(&lock);
    result.map(|()| python)
}

fn build(venv: &Path, python: &Path, ready: &Path) -> Result<(), String> {
    if ready.exists() && imports_ok(python) {
        return Ok(());
    }
    let t = Instant::now();
    eprintln!(
        "setting up {} for the ONNX check (once; pip install {})",
        venv.display(),
        PACKAGES.join(" ")
    );
    let _ = std::fs::remove_dir_all(venv);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(venv),
        "python3 -m venv (Debian/Ubuntu: apt install python3-venv)",
    )?;
    run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES),
        "pip install of the ONNX checker's packages",
    )?;
    if !imports_ok(python) {
        return Err(format!(
            "{} still cannot import onnx, onnxruntime and numpy after pip install",
            python.display()
        ));
    }
    std::fs::write(ready, PACKAGES.join("\n"))
        .map_err(|e| format!("cannot write {}: {e}", ready.display()))?;
    eprintln!(
        "ONNX check environment ready in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
