//! The digit metric end to end through the binary: `train --eval-every` (from an installed copy
//! of the binary, elsewhere), `eval`, `plot`, and their bad inputs (exit 2, no panic).

mod common;

use common::*;

#[test]
fn train_with_evaluations_then_eval_and_plot() {
    let tmp = temp_dir("quality-run");
    let dir = tmp.path();
    let run = dir.join("tiny");
    let run_s = run.to_str().unwrap();
    // As installed: the binary copied out of the build tree and run from another folder, so the
    // bundled digits and classifier the evaluations need travel inside it.
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let installed = dir.join("bin/treadc");
    std::fs::copy(env!("CARGO_BIN_EXE_treadc"), &installed).unwrap();
    std::fs::copy(
        root().join("tests/models/tiny-mnist.json"),
        dir.join("tiny.json"),
    )
    .unwrap();
    let o = std::process::Command::new(&installed)
        .current_dir(dir)
        .args([
            "train",
            "tiny.json",
            "--steps",
            "4",
            "--batch",
            "8",
            "--out",
            run_s,
            "--sample-steps",
            "2",
            "--eval-every",
            "2",
            "--eval-n",
            "20",
            "--cfg",
            "1.5",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("fd").is_some())
        .collect();
    assert_eq!(evals.len(), 2, "{metrics}");
    assert_eq!(evals[1]["step"], 4);
    assert_eq!(evals[1]["n"], 20);
    assert_eq!(evals[1]["cfg"], 1.5, "the evaluations say how they sampled");
    assert!(evals[1]["fd"].as_f64().unwrap() > 0.0);
    // Training wall time excludes the evaluations: it never runs backwards, and step 4's clock
    // equals that of its loss line.
    let loss4 = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["step"] == 4 && v.get("loss").is_some())
        .unwrap();
    assert_eq!(loss4["elapsed_s"], evals[1]["elapsed_s"]);
    for f in ["curves.png", "curves-fd.png"] {
        let bytes = std::fs::read(run.join(f)).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG", "{f}");
    }

    // eval: deterministic for a seed; an untrained model is near chance.
    let eval = |seed: &str| {
        let o = treadc(&[
            "eval",
            run_s,
            "--n",
            "40",
            "--sampler-steps",
            "2",
            "--seed",
            seed,
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["wall_s"].as_f64().unwrap() > 0.0);
        v.as_object_mut().unwrap().remove("wall_s");
        v
    };
    let (a, b, c) = (eval("3"), eval("3"), eval("4"));
    assert_eq!(a, b);
    assert_ne!(a["fd"], c["fd"]);
    assert_eq!(a["step"], 4);
    assert_eq!(a["n"], 40);
    assert_eq!(a["per_class"].as_array().unwrap().len(), 10);
    assert!(a["accuracy"].as_f64().unwrap() < 0.5, "{a}");

    // plot: PNG and SVG of one and two runs.
    let png = dir.join("fd.png");
    let o = treadc(&[
        "plot",
        run_s,
        run_s,
        "--x",
        "wall",
        "--y",
        "fd",
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    let svg = dir.join("loss.svg");
    let o = treadc(&["plot", run_s, "-o", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("tiny (routes 0.5:1-1)"),
        "legend: run name and routes"
    );

    // Bad inputs: exit 2, a message, no file.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.join("never.png");
    let o = treadc(&["plot", empty.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("metrics.jsonl"), "{}", stderr(&o));
    let o = treadc(&["plot", run_s, "--y", "speed", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = treadc(&["plot", run_s, "-o", dir.join("x.jpg").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!out.exists());
    let o = treadc(&["eval", empty.to_str().unwrap(), "--n", "10"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `train --cfg`: a scale that is not positive, or a model that never learnt an unconditional
/// prediction (class_dropout 0), is bad input (exit 2) and leaves no run folder.
#[test]
fn train_cfg_bad_inputs_are_refused_before_anything_is_written() {
    let tmp = temp_dir("quality-cfg");
    let dir = tmp.path();
    let text = std::fs::read_to_string(root().join("tests/models/tiny-mnist.json")).unwrap();
    assert!(text.contains("\"class_dropout\": 0.1"));
    let no_dropout = dir.join("no-dropout.json");
    std::fs::write(
        &no_dropout,
        text.replace("\"class_dropout\": 0.1", "\"class_dropout\": 0.0"),
    )
    .unwrap();
    for (model, cfg, says) in [
        ("tests/models/tiny-mnist.json", "0", "a guidance scale > 0"),
        ("tests/models/tiny-mnist.json", "-1", "a guidance scale > 0"),
        (no_dropout.to_str().unwrap(), "2", "class_dropout"),
    ] {
        let run = dir.join("run");
        let flag = format!("--cfg={cfg}");
        let o = treadc(&[
            "train",
            model,
            "--steps",
            "1",
            "--batch",
            "2",
            "--out",
            run.to_str().unwrap(),
            &flag,
            "--quiet",
        ]);
        assert_eq!(o.status.code(), Some(2), "--cfg {cfg}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "--cfg {cfg}: {}", stderr(&o));
        assert!(!run.exists(), "--cfg {cfg}: no run folder");
    }
}
