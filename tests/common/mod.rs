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

/// A preset shrunk for fast numeric tests: 2 heads of width 16, 16 tokens, 10 classes, two
/// trunk blocks per repeated group (U-ViT keeps its structure), no routes. Written to a fresh
/// temporary folder; returns the file.
pub fn reduced_preset(path: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).expect("preset readable");
    let mut m: serde_json::Value = serde_json::from_str(&text).expect("preset is JSON");
    let p = m["dims"]["P"].as_u64().expect("dims.P");
    m["dims"]["S"] = (4 * p).into();
    m["dims"]["D"] = 32.into();
    m["dims"]["H"] = 2.into();
    m["dims"]["K"] = 10.into();
    if let Some(blocks) = m["trunk"]["blocks"].as_array_mut() {
        if blocks.len() == 1 {
            blocks[0]["repeat"] = 2.into();
        }
    }
    m["routes"] = serde_json::json!([]);
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
