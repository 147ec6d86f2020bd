//! Helpers shared by the compiler's integration tests and (included by path) the treadc
//! binary's: the repository root, the presets, compiling, snapshots.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tread_compiler::compile::{compile_file, CompileOptions, Compiled};
use tread_compiler::route_spec::parse_flag;

/// The repository root: the nearest folder above the test's crate that holds Cargo.lock (the
/// workspace's), so the same helper serves the compiler's tests and the binary's.
pub fn root() -> PathBuf {
    let krate = Path::new(env!("CARGO_MANIFEST_DIR"));
    krate
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(krate)
        .to_path_buf()
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
