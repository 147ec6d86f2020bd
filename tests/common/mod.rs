//! Helpers shared by the integration tests: the compiler's helpers (root, presets, compiling,
//! snapshots) and those that run the `treadc` binary or shrink presets for numeric tests.
#![allow(dead_code)]

#[path = "../../compiler/tests/common/mod.rs"]
mod compiler;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use compiler::*;

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
