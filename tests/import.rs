//! `treadc import`: torch's export of the official-layout DiT fixture, the export → import round
//! trip of every preset that can be imported (shrunk), and the files it must refuse.

mod common;

use common::{presets, reduced_preset, stderr, temp_dir, treadc};
use prost::Message;
use std::collections::BTreeMap;
use std::path::Path;

/// The graph dump of a model as a sorted list of `name = op(inputs by name) : type` lines: the
/// model name, block template labels and the place of input-free ops (position tables, learned
/// tensors) are not in an ONNX file, everything else must be.
fn dump(model: &Path) -> Vec<String> {
    let out = model.with_extension("txt");
    let o = treadc(&[
        "compile",
        &model.display().to_string(),
        "--emit",
        "text",
        "-o",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(out).unwrap();
    let mut names = BTreeMap::new();
    let mut lines = vec![];
    for l in text.lines() {
        let Some((id, rest)) = l.trim().strip_prefix('%').and_then(|l| l.split_once(' ')) else {
            continue;
        };
        let name = rest.split(' ').next().unwrap_or("").to_string();
        names.insert(format!("%{id}"), name);
        lines.push(rest.to_string());
    }
    let mut by_name: Vec<String> = lines
        .into_iter()
        .map(|l| {
            // longest ids first, so %12 is not read as %1
            let mut ids: Vec<&String> = names.keys().collect();
            ids.sort_by_key(|k| std::cmp::Reverse(k.len()));
            ids.into_iter()
                .fold(l, |acc, id| acc.replace(id.as_str(), &names[id]))
        })
        .collect();
    by_name.sort();
    by_name
}

/// The initialisers of an ONNX file by name.
fn initialisers(onnx: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(onnx).unwrap();
    let m = tread_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    m.graph
        .unwrap()
        .initializer
        .into_iter()
        .map(|t| (t.name, t.raw_data))
        .collect()
}

#[test]
fn torchs_exports_import_checked_against_the_file_and_route() {
    let tmp = temp_dir("import-torch");
    // The TorchScript exporter's node paths and the dynamo exporter's node metadata.
    for (file, attention_from) in [
        ("model.onnx", "/blocks.0/attn/qkv/MatMul"),
        ("model-dynamo.onnx", "/blocks.0/attn/qkv/linear_3"),
    ] {
        let out = tmp.path().join(file);
        let o = treadc(&[
            "import",
            &format!("tests/fixtures/dit-official/{file}"),
            "-o",
            &out.display().to_string(),
            "--report",
        ]);
        let err = stderr(&o);
        assert!(o.status.success(), "{file}: {err}");
        assert!(err.contains("2 blocks (1 template)"), "{file}: {err}");
        assert!(
            err.contains("check (the imported model on burn vs the file on tract"),
            "{file}: {err}"
        );
        let report = common::stdout(&o);
        // The attention op was made from torch's decomposition, the projections in it.
        assert!(
            report.contains(&format!("blocks.0.attn (attention) <- {attention_from}")),
            "{file}: {report}"
        );
        let model: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap())
                .unwrap();
        assert_eq!(model["trunk"]["blocks"][0]["repeat"], 2, "{file}");
        let ops: Vec<&str> = model["stem"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["op"].as_str())
            .collect();
        assert!(
            ops.contains(&"pos_embed_2d"),
            "{file}: the sin-cos table is recognised: {ops:?}"
        );
        assert!(ops.contains(&"timestep_embed"), "{file}: {ops:?}");
        // Routed like any model: half the tokens skip block 1.
        let o = treadc(&[
            "compile",
            &out.join("model.json").display().to_string(),
            "--route",
            "0.5:1-1",
        ]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
    }
}

#[test]
fn export_then_import_gives_the_same_graph_and_weights_for_every_importable_preset() {
    let tmp = temp_dir("import-round-trip");
    let mut imported = vec![];
    let mut refused = vec![];
    for preset in presets() {
        let name = preset.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = tmp.path().join(&name);
        let small = reduced_preset(&preset, &dir);
        let onnx = dir.join("model.onnx");
        let o = treadc(&[
            "export",
            &small.display().to_string(),
            "-o",
            &onnx.display().to_string(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let back = dir.join("back");
        let o = treadc(&[
            "import",
            &onnx.display().to_string(),
            "-o",
            &back.display().to_string(),
        ]);
        if !o.status.success() {
            // What cannot be imported yet is refused with the nodes named, never approximated.
            assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("match no treadc op"),
                "{name}: {}",
                stderr(&o)
            );
            refused.push(name);
            continue;
        }
        assert_eq!(
            dump(&small),
            dump(&back.join("model.json")),
            "{name}: the graphs differ"
        );
        let again = dir.join("again.onnx");
        let o = treadc(&[
            "export",
            &back.join("model.json").display().to_string(),
            "--init-from",
            &back.join("weights.safetensors").display().to_string(),
            "-o",
            &again.display().to_string(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(
            initialisers(&onnx) == initialisers(&again),
            "{name}: the weights differ"
        );
        imported.push(name);
    }
    eprintln!("imported: {imported:?}\nrefused: {refused:?}");
    for family in ["dit-s2", "sit-b2", "uvit-s2", "mnist-dit-small"] {
        assert!(
            imported.iter().any(|n| n == family),
            "{family} did not import: {refused:?}"
        );
    }
}

/// Below opset 23 treadc writes attention decomposed, below 20 GELU too: the same graph
/// comes back.
#[test]
fn decomposed_attention_and_gelu_import_as_the_ops() {
    let tmp = temp_dir("import-opsets");
    let small = reduced_preset(&common::root().join("models/dit-s2.json"), tmp.path());
    for opset in ["17", "20"] {
        let onnx = tmp.path().join(format!("s2-{opset}.onnx"));
        let o = treadc(&[
            "export",
            &small.display().to_string(),
            "--opset",
            opset,
            "-o",
            &onnx.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let back = tmp.path().join(format!("back-{opset}"));
        let o = treadc(&[
            "import",
            &onnx.display().to_string(),
            "-o",
            &back.display().to_string(),
        ]);
        assert!(o.status.success(), "opset {opset}: {}", stderr(&o));
        assert_eq!(
            dump(&small),
            dump(&back.join("model.json")),
            "opset {opset}"
        );
    }
}

#[test]
fn files_it_cannot_read_or_explain_exit_2_naming_what() {
    let tmp = temp_dir("import-bad");
    let junk = tmp.path().join("junk.onnx");
    std::fs::write(&junk, b"not a protobuf at all").unwrap();
    let o = treadc(&[
        "import",
        &junk.display().to_string(),
        "-o",
        &tmp.path().join("x").display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("junk.onnx"), "{}", stderr(&o));
    // A joint-attention model: its stream slicing has no import pattern yet.
    let small = reduced_preset(
        &common::root().join("models/mnist-mmdit-small.json"),
        tmp.path(),
    );
    let onnx = tmp.path().join("mmdit.onnx");
    let o = treadc(&[
        "export",
        &small.display().to_string(),
        "-o",
        &onnx.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = tmp.path().join("mmdit");
    let o = treadc(&[
        "import",
        &onnx.display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("match no treadc op") && err.contains("(Slice)"),
        "{err}"
    );
    assert!(
        !out.join("model.json").exists(),
        "nothing is written on failure"
    );
}

/// Fine-tuning an imported model is fine-tuning the original: a run exported, imported and
/// trained from the imported weights (with the original's training settings, which ONNX does
/// not carry, and the same route) gives the original's losses step for step.
#[test]
fn an_imported_model_trains_exactly_like_the_original() {
    use common::train_briefly;
    let tmp = temp_dir("import-train");
    let dir = tmp.path();
    let path = |name: &str| dir.join(name).display().to_string();
    let tiny = "tests/models/tiny-mnist.json";
    let o = train_briefly(tiny, &path("a"), "2", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = treadc(&["export", &path("a"), "-o", &path("a.onnx")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = treadc(&["import", &path("a.onnx"), "-o", &path("back")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny).unwrap()).unwrap();
    let back = dir.join("back/model.json");
    let mut imported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&back).unwrap()).unwrap();
    imported["training"] = original["training"].clone();
    std::fs::write(&back, serde_json::to_string_pretty(&imported).unwrap()).unwrap();
    let route = ["--route", "0.5:1-1"];
    let o = train_briefly(
        tiny,
        &path("b"),
        "3",
        &[&["--init-from", &path("a")][..], &route].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let weights = path("back/weights.safetensors");
    let o = train_briefly(
        &back.display().to_string(),
        &path("c"),
        "3",
        &[&["--init-from", weights.as_str()][..], &route].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let losses = |run: &str| -> Vec<f64> {
        std::fs::read_to_string(dir.join(run).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("loss").and_then(|l| l.as_f64()))
            .collect()
    };
    let (b, c) = (losses("b"), losses("c"));
    assert_eq!(b.len(), 3);
    assert_eq!(b, c, "the imported model trains differently");
}
