//! Pass tests as data (after cranelift's filetests): each `tests/passes/*.case` holds
//!
//! ```text
//! ; what the case shows (free text)
//! ; route: RATE:START-END      (zero or more, as `--route`)
//! ; dense                      (optional: ignore every route, as `--dense`)
//! ; fused                      (optional: dump after the fusion pass, as `--fused`)
//! { a model.json }
//! === dump
//! the expected `treadc compile --emit text` dump, or the diagnostic of a refused model
//! ```
//!
//! One test compiles every case and compares its dump with the expected one. A new case is
//! written with an empty dump and filled by `TREADC_BLESS=1 cargo test --test pass_files`; the
//! filled dump is then read and checked by a person before it is committed, like a snapshot.

mod common;

use std::path::Path;

use tread_compiler::compile::{compile_str, CompileOptions};
use tread_compiler::emit::to_text;
use tread_compiler::passes::fuse;
use tread_compiler::route_spec::parse_flag;

const SEPARATOR: &str = "=== dump\n";

/// The dump of one case file, or why it cannot be made.
fn run_case(path: &Path, text: &str) -> Result<(String, String), String> {
    let (input, expected) = text
        .split_once(SEPARATOR)
        .ok_or_else(|| format!("no `{}` line", SEPARATOR.trim()))?;
    let mut opts = CompileOptions::default();
    let mut fused = false;
    let mut model = String::new();
    for line in input.lines() {
        match line.strip_prefix("; ") {
            Some(h) if h.starts_with("route: ") => {
                let flag = &h["route: ".len()..];
                let i = opts.routes.len();
                opts.routes
                    .push(parse_flag(flag, i).map_err(|d| d.to_string())?);
            }
            Some("dense") => opts.dense = true,
            Some("fused") => fused = true,
            Some(_) => {}
            None => {
                model.push_str(line);
                model.push('\n');
            }
        }
    }
    let file = common::rel(path);
    // A case the compiler must refuse expects the diagnostic in place of the dump.
    let compiled = match compile_str(&model, &file, &opts) {
        Ok(c) => c,
        Err(d) => return Ok((d.to_string(), expected.to_string())),
    };
    let graph = if fused {
        fuse(&compiled.routed).map_err(|d| d.to_string())?.0
    } else {
        compiled.routed
    };
    Ok((to_text(&graph), expected.to_string()))
}

#[test]
fn every_pass_case_gives_its_expected_dump() {
    let dir = common::root().join("tests/passes");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/passes exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "{cases:?}");
    let bless = std::env::var_os("TREADC_BLESS").is_some();
    let mut failures = vec![];
    for path in &cases {
        let text = std::fs::read_to_string(path).expect("readable case");
        let (got, want) = match run_case(path, &text) {
            Ok(pair) => pair,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if got == want {
            continue;
        }
        if bless {
            let input = &text[..text.find(SEPARATOR).expect("checked") + SEPARATOR.len()];
            std::fs::write(path, format!("{input}{got}")).expect("case written");
            continue;
        }
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        failures.push(format!(
            "{}: the dump differs from line {} of the expected one\n  got:      {}\n  expected: {}",
            path.display(),
            line + 1,
            got.lines().nth(line).unwrap_or("<end>"),
            want.lines().nth(line).unwrap_or("<end>"),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
