//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tread_compiler::compile::{compile_file, CompileOptions, Compiled};
use tread_compiler::route_spec::parse_flag;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every preset in models/, sorted.
pub fn presets() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("models"))
        .expect("models/ exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

/// A path relative to the root, as shown in diagnostics.
pub fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Compiles `path` with the given `--route` flags (empty: the file's own routes).
pub fn compile(path: &Path, routes: &[&str]) -> Compiled {
    try_compile(path, routes).unwrap_or_else(|d| panic!("{d}"))
}

/// Like `compile` but returns the diagnostic.
pub fn try_compile(path: &Path, routes: &[&str]) -> tread_compiler::Result<Compiled> {
    let mut opts = CompileOptions::default();
    for (i, r) in routes.iter().enumerate() {
        opts.routes.push(parse_flag(r, i)?);
    }
    compile_file(path, &opts)
}

/// Compiles the dense graph only.
pub fn compile_dense(path: &Path) -> Compiled {
    let opts = CompileOptions {
        dense: true,
        ..Default::default()
    };
    compile_file(path, &opts).unwrap_or_else(|d| panic!("{d}"))
}

/// Asserts a snapshot stored under snapshots/ at the repository root.
pub fn snapshot(name: &str, value: &str) {
    insta::with_settings!({
        snapshot_path => root().join("snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, value);
    });
}

/// Runs diagnostics-producing code from the repository root so paths print relative.
pub fn in_root() {
    std::env::set_current_dir(root()).expect("cd to the repository root");
}

/// True when the model file's objective is EDM and its output is shaped like its image input:
/// the models whose export can carry EDM's preconditioning (PixArt's learned-σ output, with
/// twice the channels, cannot).
pub fn preconditionable(path: &Path) -> bool {
    use tread_compiler::config::Objective;
    use tread_compiler::ir::{InputRole, Op};
    let c = compile_file(path, &CompileOptions::default()).expect("model compiles");
    let g = &c.model.graph;
    let image = g.inputs.iter().find(|(_, id)| {
        matches!(
            g.node(*id).op,
            Op::Input {
                role: InputRole::Image
            }
        )
    });
    let same = match (image, g.outputs.first()) {
        (Some((_, i)), Some((_, o))) => g.ty(*i).shape == g.ty(*o).shape,
        _ => false,
    };
    c.model.training.objective == Objective::Edm && same
}

/// A preset shrunk for fast numeric tests: 2 heads of width 16, 16 image tokens, 10 classes,
/// 4 text tokens, 2 frames, two trunk blocks for a single repeated group or one per entry of
/// several (U-ViT's long skips keep its structure), RoPE dims fitted to the head, no routes,
/// Xavier init. Written to a fresh temporary folder; returns the file.
pub fn reduced_preset(path: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).expect("preset readable");
    let mut m: serde_json::Value = serde_json::from_str(&text).expect("preset is JSON");
    let p = m["dims"]["P"].as_u64().expect("dims.P");
    m["dims"]["S"] = (4 * p).into();
    m["dims"]["D"] = 32.into();
    m["dims"]["H"] = 2.into();
    m["dims"]["K"] = 10.into();
    // The text, video and MLP sizes of the newer families, where a preset has them.
    for (dim, size) in [
        ("L", 4),
        ("DC", 16),
        ("DP", 16),
        ("FF", 64),
        ("F", 2),
        ("W", 4 * p),
    ] {
        if m["dims"].get(dim).is_some() {
            m["dims"][dim] = size.into();
        }
    }
    if let Some(blocks) = m["trunk"]["blocks"].as_array_mut() {
        // Several entries are cut to one block each, unless long skips name block numbers.
        let long_skips = blocks
            .iter()
            .any(|b| b["args"].to_string().contains("blocks."));
        if blocks.len() == 1 {
            blocks[0]["repeat"] = 2.into();
        } else if !long_skips {
            for b in blocks.iter_mut() {
                b["repeat"] = 1.into();
            }
        }
    }
    // RoPE dims must sum to the reduced head dim (32 / 2 heads = 16).
    let rope_dims = |n: usize| match n {
        1 => serde_json::json!([16]),
        2 => serde_json::json!([8, 8]),
        _ => serde_json::json!([4, 6, 6]),
    };
    if let Some(templates) = m["blocks"].as_object_mut() {
        for t in templates.values_mut() {
            for node in t["nodes"].as_array_mut().into_iter().flatten() {
                if node["op"] == "rope" {
                    let n = node["axes_dims"].as_array().map_or(1, Vec::len);
                    node["axes_dims"] = rope_dims(n);
                }
            }
        }
    }
    m["routes"] = serde_json::json!([]);
    // Fresh weights that make every path matter: adaLN-Zero's zero output layer would make any
    // two runtimes agree on any input.
    if let Some(training) = m["training"].as_object_mut() {
        training.insert("init".into(), "xavier".into());
    }
    std::fs::create_dir_all(dir).expect("temp dir");
    let out = dir.join(path.file_name().expect("file name"));
    std::fs::write(&out, serde_json::to_string_pretty(&m).expect("JSON")).expect("write");
    out
}

/// A fresh temporary folder for one test (`treadc-test-<name>-…` under the system temp dir),
/// removed with everything in it when the returned guard drops: the suite leaves nothing behind.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("treadc-test-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// Runs the `treadc` binary from the repository root.
pub fn treadc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treadc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("treadc runs")
}

/// A finished command's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A finished command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Trains `model` for `steps` steps at batch 8 into `run`, quietly, with 1-step sample grids:
/// the smallest real run the binary tests start from. `extra` adds flags.
pub fn train_briefly(model: &str, run: &str, steps: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        model,
        "--steps",
        steps,
        "--batch",
        "8",
        "--out",
        run,
        "--sample-steps",
        "1",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    treadc(&args)
}
