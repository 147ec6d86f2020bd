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

/// Writes a run folder by hand: run.json's arm fields and one evaluation line per
/// `(step, wall, fd)`.
fn hand_run(dir: &std::path::Path, name: &str, routes: &str, evals: &[(u64, f64, f64)]) -> String {
    let run = dir.join(name);
    std::fs::create_dir_all(&run).unwrap();
    let json = serde_json::json!({"model_file": "models/m.json", "data": "mnist",
        "routes_in_effect": routes});
    std::fs::write(run.join("run.json"), json.to_string()).unwrap();
    let lines: Vec<String> = evals
        .iter()
        .map(|(step, wall, fd)| {
            serde_json::json!({"step": step, "fd": fd, "accuracy": 0.5, "elapsed_s": wall})
                .to_string()
        })
        .collect();
    std::fs::write(run.join("metrics.jsonl"), lines.join("\n")).unwrap();
    run.display().to_string()
}

/// `plot --arms --reach dense`: seeds of an arm become one mean curve with a shaded range, and
/// the summary's figures are the hand-computed ones: dense's final FDs 80 and 100 make the
/// target 90; routed seed 0 crosses it between (140 s, 110) and (210 s, 85), at
/// 140 + 70·20/25 = 196 s, seed 1 lands on it at 216 s: 206 ± 14.1 s, and dense's mean end
/// (300 s) over 206 s is 1.46×.
#[test]
fn plot_arms_summarise_seeds_and_time_to_dense_final_fd() {
    let tmp = temp_dir("plot-arms");
    let dir = tmp.path();
    let runs = [
        hand_run(
            dir,
            "none-s0",
            "none",
            &[(250, 100.0, 200.0), (500, 200.0, 100.0), (750, 300.0, 80.0)],
        ),
        hand_run(
            dir,
            "none-s1",
            "none",
            &[
                (250, 110.0, 220.0),
                (500, 220.0, 120.0),
                (720, 300.0, 100.0),
            ],
        ),
        hand_run(
            dir,
            "paper-s0",
            "0.5:2-10",
            &[
                (250, 70.0, 190.0),
                (500, 140.0, 110.0),
                (750, 210.0, 85.0),
                (1000, 280.0, 70.0),
            ],
        ),
        hand_run(
            dir,
            "paper-s1",
            "0.5:2-10",
            &[
                (250, 72.0, 200.0),
                (500, 144.0, 130.0),
                (750, 216.0, 90.0),
                (1000, 288.0, 75.0),
            ],
        ),
    ];
    let svg = dir.join("arms.svg");
    let mut args: Vec<&str> = vec!["plot"];
    args.extend(runs.iter().map(String::as_str));
    args.extend([
        "--arms", "--x", "wall", "--y", "fd", "--reach", "dense", "-o",
    ]);
    args.push(svg.to_str().unwrap());
    let o = treadc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "routes none (2 runs)",
        "final step 735 ± 21, wall 300.0 ± 0.0 s, FD 90.0 ± 14.1, accuracy 50.0 ± 0.0 %",
        "reaches FD 90.0 in 1 of 2 runs, at 250.0 ± 0.0 s",
        "none-s1: not reached",
        "routes 0.5:2-10 (2 runs)",
        "reaches FD 90.0 in 2 of 2 runs, at 206.0 ± 14.1 s",
        "dense's final point / this arm's mean time to it: 1.46×",
        "paper-s0: 196.0 s",
        "paper-s1: 216.0 s",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<polygon"), "the seeds' range is shaded");
    assert!(
        text.contains("FD 90.0 (dense&apos;s final, mean of 2)")
            || text.contains("FD 90.0 (dense's final, mean of 2)")
    );

    // Bad uses: exit 2 and a message naming the flag.
    let png = dir.join("never.png");
    let png = png.to_str().unwrap();
    for (flags, says) in [
        (
            vec![runs[2].as_str(), "--y", "fd", "--reach", "dense"],
            "dense runs",
        ),
        (
            vec![runs[0].as_str(), "--y", "loss", "--reach", "80"],
            "--y fd",
        ),
        (
            vec![runs[0].as_str(), "--y", "fd", "--reach", "fast"],
            "`fast`",
        ),
    ] {
        let mut a = vec!["plot"];
        a.extend(flags);
        a.extend(["-o", png]);
        let o = treadc(&a);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("--reach") && stderr(&o).contains(says),
            "{}",
            stderr(&o)
        );
    }
    assert!(!std::path::Path::new(png).exists());
}

/// `train-classifier` on other data: it needs `-o` (the default is the shipped classifier's
/// path), `mnist` or `idx:DIR`, and a `t10k-` set to hold out; each is exit 2 before training.
#[test]
fn a_classifier_of_other_data_is_checked_before_training() {
    let tmp = temp_dir("cnn-args");
    let dir = tmp.path();
    let out = dir.join("cnn.safetensors");
    let out_s = out.to_str().unwrap();
    let idx = |magic: u32, dims: &[u32], data: &[u8]| {
        let mut b = magic.to_be_bytes().to_vec();
        dims.iter()
            .for_each(|d| b.extend_from_slice(&d.to_be_bytes()));
        b.extend_from_slice(data);
        b
    };
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx(0x803, &[2, 28, 28], &[0; 1568]),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx(0x801, &[2], &[3, 4]),
    )
    .unwrap();
    let data = format!("idx:{}", dir.display());
    for (args, says) in [
        (vec!["--data", data.as_str()], "-o"),
        (vec!["--data", "png:elsewhere", "-o", out_s], "--data"),
        (vec!["--data", data.as_str(), "-o", out_s], "t10k-"),
    ] {
        let mut a = vec!["train-classifier"];
        a.extend(args);
        let o = treadc(&a);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    assert!(!out.exists());
}
