//! The `treadc` binary: exit codes, the JSON report, emitted files and help texts.

mod common;

use common::*;

#[test]
fn report_json_has_the_documented_fields() {
    let o = treadc(&[
        "compile",
        "models/dit-b2.json",
        "--route",
        "paper",
        "--report",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["params"].as_u64(), Some(130_500_112));
    let dense = v["gflops"]["dense"].as_f64().unwrap();
    let routed = v["gflops"]["routed"].as_f64().unwrap();
    assert!((dense - 23.01).abs() / 23.01 < 0.01);
    assert!((routed - 16.13).abs() < 0.01);
    let r = &v["routes"][0];
    assert_eq!(
        (r["rate"].as_f64(), r["start"].as_u64(), r["end"].as_u64()),
        (Some(0.5), Some(2), Some(8))
    );
}

#[test]
fn every_bad_model_exits_2_naming_the_file_without_a_panic() {
    let mut files: Vec<_> = std::fs::read_dir(root().join("tests/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let name = rel(&f);
        let o = treadc(&["compile", &name]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(err.contains(&name), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn bad_route_flags_exit_2() {
    for flag in ["0.5", "1.5:2-8", "0.5:8-2", "0.5:2-99", "abc"] {
        let o = treadc(&["compile", "models/dit-s2.json", "--route", flag]);
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{flag}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
    let o = treadc(&["compile", "models/dit-s2.json", "--rate", "1.2"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn emits_text_dot_and_json_to_files_atomically() {
    let tmp = temp_dir("cli-emit");
    let dir = tmp.path();
    for (kind, check) in [
        ("text", "-- route 0: partition before block 1"),
        ("dot", "digraph"),
        ("json", "\"treadc.graph/1\""),
    ] {
        let out = dir.join(format!("tiny.{kind}"));
        let o = treadc(&[
            "compile",
            "tests/models/tiny.json",
            "--emit",
            kind,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains(check), "{kind}: {text}");
        if kind == "json" {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(v["nodes"].as_array().unwrap().len() > 50);
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_unwritable_output_fails_cleanly() {
    let o = treadc(&[
        "compile",
        "tests/models/tiny.json",
        "-o",
        "/nonexistent-dir/x.txt",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent-dir/x.txt"));
}

#[test]
fn help_teaches_the_route_syntax_with_an_example() {
    let top = stdout(&treadc(&["--help"]));
    assert!(top.contains("--route paper"), "{top}");
    let compile = stdout(&treadc(&["compile", "--help"]));
    assert!(compile.contains("RATE:START-END"), "{compile}");
    assert!(compile.contains("--route 0.5:2-8"), "{compile}");
}

#[test]
fn dense_flag_ignores_the_file_routes() {
    let o = treadc(&[
        "compile",
        "models/dit-s2.json",
        "--dense",
        "--report",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["routes"].as_array().unwrap().len(), 0);
    assert_eq!(v["gflops"]["dense"], v["gflops"]["routed"]);
}

#[test]
fn export_then_run_from_a_model_file() {
    let tmp = temp_dir("cli-export");
    let dir = tmp.path();
    let onnx = dir.join("tiny.onnx");
    let png = dir.join("grid.png");
    let o = treadc(&[
        "export",
        "tests/models/tiny-mnist.json",
        "-o",
        onnx.to_str().unwrap(),
        "--precond",
        "--check",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("max abs diff"), "{}", stderr(&o));
    let o = treadc(&[
        "run",
        onnx.to_str().unwrap(),
        "--n",
        "4",
        "--steps",
        "2",
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(png.exists());
}

#[test]
fn export_and_run_errors_name_what_and_where() {
    let tmp = temp_dir("cli-export-errors");
    let dir = tmp.path();
    let corrupt = dir.join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x07not a protobuf at all\xff\xff").unwrap();
    let o = treadc(&["run", corrupt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("corrupt.onnx"), "{}", stderr(&o));
    assert!(stderr(&o).contains("not an ONNX model"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));

    let out = dir.join("x.onnx");
    let o = treadc(&[
        "export",
        "tests/models/tiny-mnist.json",
        "--opset",
        "11",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--opset"), "{}", stderr(&o));
    assert!(stderr(&o).contains("from 17 to 23"), "{}", stderr(&o));
    assert!(!out.exists());

    let flow = reduced_preset(&root().join("models/sit-b2.json"), dir);
    let o = treadc(&[
        "export",
        flow.to_str().unwrap(),
        "--precond",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("velocity"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// `treadc plan`: the paper's placement leads for DiT-XL/2 at a 0.6 budget, `--json` parses
/// with the documented fields, every proposal compiles to the FLOPs it claims, and a budget no
/// route reaches exits 2 saying what would.
#[test]
fn plan_proposes_routes_that_compile_within_the_budget() {
    let o = treadc(&[
        "plan",
        "models/dit-xl2.json",
        "--budget",
        "0.6",
        "--top",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let first = text.lines().nth(1).unwrap_or_default();
    assert!(
        first.contains("--route 0.5:2-24") && first.contains("paper"),
        "{text}"
    );
    let o = treadc(&[
        "plan",
        "models/mnist-dit-small.json",
        "--budget",
        "0.95",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plans: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let plans = plans.as_array().unwrap();
    assert!(!plans.is_empty() && plans.len() <= 5);
    assert_eq!(plans[0]["route"], "0.5:2-2");
    for p in plans {
        let route = p["route"].as_str().unwrap();
        let o = treadc(&[
            "compile",
            "models/mnist-dit-small.json",
            "--route",
            route,
            "--report",
            "json",
        ]);
        assert!(o.status.success(), "{route}: {}", stderr(&o));
        let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let claimed = p["flops_ratio"].as_f64().unwrap();
        let compiled = r["flops_ratio"].as_f64().unwrap();
        assert!(
            (claimed - compiled).abs() < 1e-9,
            "{route}: {claimed} vs {compiled}"
        );
        assert!(compiled <= 0.95, "{route}: {compiled}");
    }
    let o = treadc(&["plan", "models/mnist-dit-small.json", "--budget", "0.1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("a budget ≥"), "{}", stderr(&o));
}

/// `plan --measure` times each candidate against dense (bench's machinery) and keeps those
/// whose measured step fits the budget; which ones do depends on this machine's timings, so
/// both outcomes are checked for what they must say.
#[test]
fn plan_measure_reports_measured_step_ratios_within_the_budget() {
    let dir = temp_dir("plan-measure");
    let text = std::fs::read_to_string(root().join("tests/models/tiny-mnist.json")).unwrap();
    assert!(text.contains("\"repeat\": 2"));
    let model = dir.path().join("tiny-4.json");
    std::fs::write(&model, text.replace("\"repeat\": 2", "\"repeat\": 4")).unwrap();
    let model = model.to_str().unwrap();
    let o = treadc(&[
        "plan",
        model,
        "--budget",
        "1.0",
        "--measure",
        "--batch",
        "4",
        "--steps",
        "1",
        "--top",
        "2",
        "--json",
    ]);
    let err = stderr(&o);
    match o.status.code() {
        Some(0) => {
            let plans: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
            let plans = plans.as_array().unwrap();
            assert!(!plans.is_empty() && plans.len() <= 2, "{plans:?}");
            for p in plans {
                let m = p["measured_ratio"].as_f64().expect("a measured ratio");
                assert!(m > 0.0 && m <= 1.0, "{p}");
                assert!(p["flops_ratio"].as_f64().unwrap() < 1.0, "{p}");
            }
        }
        Some(2) => assert!(err.contains("measured") && err.contains("--route"), "{err}"),
        other => panic!("exit {other:?}: {err}"),
    }
    let o = treadc(&["plan", model, "--budget", "0.8", "--steps", "2"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--steps needs --measure: {}",
        stderr(&o)
    );
}

/// Every count flag below its least value (0, 1 where FD needs 2, negative) is bad input:
/// exit 2 naming the flag, before any file is read or written (the run folders and files the
/// commands name are never created).
#[test]
fn count_flags_below_their_least_value_exit_2_before_anything_is_written() {
    let dir = temp_dir("count-flags");
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let train = [
        "train",
        "models/mnist-dit-small.json",
        "--data",
        "mnist",
        "--eval-every",
        "1",
        "--out",
        out,
    ];
    let cases: &[(&[&str], &str, &[&str])] = &[
        (
            &["plan", "models/dit-xl2.json", "--budget", "0.6"],
            "--top",
            &["0", "-1"],
        ),
        (&["sample", out, "-o", out], "--n", &["0", "-2"]),
        (&["sample", out, "-o", out], "--steps", &["0", "-1"]),
        (&["run", out, "-o", out], "--n", &["0", "-1"]),
        (&["run", out, "-o", out], "--steps", &["0"]),
        (&train, "--steps", &["-5"]),
        (&train, "--batch", &["0", "-1"]),
        (&train, "--sample-steps", &["0"]),
        (&train, "--eval-n", &["0", "1", "-1"]),
        (&train, "--seed", &["-1"]),
        (&["bench", "models/mnist-dit-small.json"], "--batch", &["0"]),
        (
            &["bench", "models/mnist-dit-small.json"],
            "--steps",
            &["0", "-1"],
        ),
        (&["eval", out], "--n", &["0", "1"]),
        (&["eval", out], "--sampler-steps", &["0"]),
        (&["train-classifier", "-o", out], "--steps", &["0"]),
        (&["train-classifier", "-o", out], "--batch", &["0", "-4"]),
    ];
    for (base, flag, values) in cases {
        for v in *values {
            let mut args = base.to_vec();
            args.extend([*flag, v]);
            let o = treadc(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(flag), "{args:?} names the flag: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            assert!(!std::path::Path::new(out).exists(), "{args:?} wrote {out}");
        }
    }
}

#[test]
fn completions_and_man_pages_come_from_the_flags() {
    let o = treadc(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bash = stdout(&o);
    for word in ["_treadc", "train", "--eval-n", "--route"] {
        assert!(bash.contains(word), "the bash script knows {word}");
    }
    for shell in ["zsh", "fish"] {
        let o = treadc(&["completions", shell]);
        assert!(
            o.status.success() && stdout(&o).contains("sample-steps"),
            "{shell}"
        );
    }
    let o = treadc(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "an unknown shell is bad input");

    let o = treadc(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(".TH treadc") && stdout(&o).contains("compile"));
    let dir = temp_dir("man");
    let pages = dir.path().join("man1");
    let o = treadc(&["man", "-o", pages.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let train = std::fs::read_to_string(pages.join("treadc-train.1")).expect("a page per command");
    assert!(train.contains("eval\\-n"), "{train}");
}

/// `treadc … | head` closes the pipe early: treadc stops quietly, as Unix tools do, instead of
/// panicking on the failed write.
#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_is_no_panic() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_treadc"))
        .args(["completions", "zsh"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("treadc starts");
    // The reader goes away before treadc writes, as `| head -0` would.
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("treadc ends");
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_ne!(o.status.code(), Some(101), "no panic exit");
}
