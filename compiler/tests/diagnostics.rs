//! Bad inputs: every file in tests/bad/ and a list of bad --route flags produce a diagnostic that
//! names the file and the place; the rendered messages are snapshots.

mod common;

use common::*;
use tread_compiler::diag::Location;

fn bad_files() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root().join("tests/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn every_bad_model_is_diagnosed_with_file_and_place() {
    in_root();
    let files = bad_files();
    assert!(files.len() >= 15);
    let mut rendered = String::new();
    for f in &files {
        let name = rel(f);
        let d = match try_compile(std::path::Path::new(&name), &[]) {
            Ok(_) => panic!("{name} compiled but should not"),
            Err(d) => d,
        };
        assert_eq!(d.file, name, "the diagnostic names the file");
        assert_ne!(
            d.location,
            Location::File,
            "{name}: a place inside the file"
        );
        assert!(d.expected.is_some() && d.found.is_some(), "{name}: {d}");
        rendered.push_str(&format!("=== {name}\n{d}\n"));
    }
    snapshot("diagnostics-bad-models", &rendered);
}

#[test]
fn bad_route_flags_are_diagnosed() {
    in_root();
    let tiny = std::path::Path::new("tests/models/tiny.json");
    let cases: &[&[&str]] = &[
        &["0.5"],
        &["half:1-2"],
        &["0.5:1"],
        &["0.5:x-2"],
        &["1:1-2"],
        &["-0.5:1-2"],
        &["0.5:2-1"],
        &["0.5:1-4"],
        &["0.5:0-1", "0.5:1-2"],
        &["0.5:2-3", "0.5:0-1"],
        &["0.01:1-2"],
        &["paper"],
        &["NaN:1-2"],
        &["0.5:1-2@"],
        &["0.5:1-2@caption"],
    ];
    let mut rendered = String::new();
    for flags in cases {
        let d = match try_compile(tiny, flags) {
            Ok(_) => panic!("{flags:?} compiled but should not"),
            Err(d) => d,
        };
        assert_eq!(d.file, "<command line>", "{flags:?}");
        assert!(matches!(d.location, Location::Route { .. }), "{flags:?}");
        rendered.push_str(&format!("=== --route {}\n{d}\n", flags.join(" --route ")));
    }
    snapshot("diagnostics-bad-routes", &rendered);
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let d = try_compile(std::path::Path::new("no/such/model.json"), &[])
        .err()
        .unwrap();
    assert_eq!(d.file, "no/such/model.json");
    assert!(d.found.as_deref().unwrap().contains("No such file"));
}
