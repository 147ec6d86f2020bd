//! ONNX export of the dense inference graph (`treadc export`).
//!
//! The writer needs only the IR and the tensors (the runtime supplies them from a checkpoint,
//! or fresh init values): no burn. Protobuf types are tract-onnx's prost-generated `pb` module,
//! so the file is written and read back (by `--check` and `treadc run`) with one schema and no
//! extra crate (see ARCHITECTURE.md). Layout:
//! - [`builder`]: the protobuf types, names and shared constants;
//! - [`lower`]: one IR op → its ONNX nodes, per opset;
//! - [`precond`]: EDM's preconditioning inside the graph (`--precond`);
//! - [`file`]: encoding, external data for models over 2 GB, the atomic write;
//! - [`listing`]: the op listing and histogram (snapshots, reports).

pub mod builder;
pub mod file;
pub mod listing;
pub mod lower;
pub mod precond;
mod weights;

pub use weights::Weights;

use std::collections::HashMap;

use crate::keys;
use crate::pb;

use builder::GraphBuilder;
use lower::Lowering;
use tread_compiler::config::Objective;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::ir::{Graph, InputRole, Op};

/// The opsets the exporter writes. 17 is the first with `LayerNormalization`; 20 adds `Gelu`,
/// 23 `Attention`, `RotaryEmbedding` and `RMSNormalization` (fewer, fused nodes).
pub const OPSETS: std::ops::RangeInclusive<i64> = 17..=23;

/// The opset written when none is asked for: its fused ops give the smallest graph;
/// `--opset 17` serves runtimes older than ONNX 1.18.
pub const DEFAULT_OPSET: i64 = 23;

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// ONNX opset (one of [`OPSETS`]).
    pub opset: i64,
    /// Put EDM's preconditioning in the graph: inputs `(x_noisy, sigma[, label])`, output
    /// `denoised` = D(x; σ, y).
    pub precond: bool,
    /// Extra `metadata_props` (weights used, step, source files).
    pub metadata: Vec<(String, String)>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: DEFAULT_OPSET,
            precond: false,
            metadata: vec![],
        }
    }
}

/// The ONNX IR version that goes with an opset (the pairs of the ONNX release that introduced
/// the opset), so older runtimes accept files at older opsets.
pub fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19 | 20 => 9,
        21 | 22 => 10,
        _ => 11,
    }
}

/// Checks the opset; the error names the flag and the supported range.
pub fn check_opset(opset: i64) -> Result<(), Diagnostic> {
    if OPSETS.contains(&opset) {
        return Ok(());
    }
    Err(
        Diagnostic::new(Location::Item("--opset".into()), "unsupported ONNX opset")
            .expected(format!(
                "an opset from {} to {} (default {DEFAULT_OPSET})",
                OPSETS.start(),
                OPSETS.end()
            ))
            .found(opset.to_string())
            .in_file("<command line>")
            .help("opset 17 is the first with LayerNormalization; 23 adds the fused Attention op"),
    )
}

/// Exports the dense graph `g` (no route nodes) with `weights` as an ONNX model.
pub fn export(
    g: &Graph,
    objective: Objective,
    weights: &Weights,
    opts: &ExportOptions,
) -> Result<pb::ModelProto, Diagnostic> {
    check_opset(opts.opset)?;
    let order = g.topo_order().map_err(|cycle| {
        Diagnostic::new(Location::File, "the graph has a cycle")
            .found(cycle.join(" → "))
            .in_file(g.name.clone())
    })?;
    let mut b = GraphBuilder::default();
    let mut names: HashMap<_, String> = HashMap::new();
    let pre = if opts.precond {
        Some(precond::inputs(g, objective, &mut b, &mut names)?)
    } else {
        for (name, id) in &g.inputs {
            b.input(name, g.ty(*id));
            names.insert(*id, name.clone());
        }
        None
    };
    let outputs = {
        let mut low = Lowering::new(g, &mut b, weights, opts.opset);
        low.names = names;
        for id in &order {
            low.lower(*id)?;
        }
        let value_names = low.names;
        for id in &order {
            let n = g.node(*id);
            let skip = matches!(
                n.op,
                Op::Input { .. } | Op::Param { .. } | Op::PosEmbed2d { .. }
            ) || g.outputs.iter().any(|(_, o)| o == id);
            if !skip {
                b.annotate(&value_names[id], g.ty(*id));
            }
        }
        g.outputs
            .iter()
            .map(|(name, id)| (name.clone(), value_names[id].clone(), *id))
            .collect::<Vec<_>>()
    };
    match pre {
        Some(p) => precond::outputs(g, &mut b, &p, &outputs)?,
        None => {
            for (name, value, id) in &outputs {
                if name != value {
                    b.op("Identity", &[value], name);
                }
                b.output(name, g.ty(*id));
            }
        }
    }
    check_unique_names(&b, &g.name)?;
    let mut metadata_props = vec![
        meta(keys::OBJECTIVE, objective.name()),
        meta(keys::PRECOND, if opts.precond { "edm" } else { "none" }),
        meta(
            keys::SIGMA_DATA,
            &tread_compiler::edm::SIGMA_DATA.to_string(),
        ),
    ];
    for role in InputRole::ALL {
        if let Some((name, _)) = g
            .inputs
            .iter()
            .find(|(_, id)| matches!(g.node(*id).op, Op::Input { role: r } if r == role))
        {
            metadata_props.push(meta(&keys::input(role), name));
        }
    }
    let classes = g.node_ids().into_iter().find_map(|id| match g.node(id).op {
        Op::ClassEmbed { classes, .. } => Some(classes),
        _ => None,
    });
    if let Some(k) = classes {
        metadata_props.push(meta(keys::CLASSES, &k.to_string()));
    }
    metadata_props.extend(opts.metadata.iter().map(|(k, v)| meta(k, v)));
    Ok(pb::ModelProto {
        ir_version: ir_version(opts.opset),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: opts.opset,
        }],
        producer_name: "treadc".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{} dense inference graph exported by treadc{}",
            g.name,
            if opts.precond {
                " with EDM preconditioning: denoised = D(x_noisy; sigma, label)"
            } else {
                ""
            }
        ),
        graph: Some(b.finish(&g.name)),
        metadata_props,
        ..Default::default()
    })
}

fn meta(key: &str, value: &str) -> pb::StringStringEntryProto {
    pb::StringStringEntryProto {
        key: keys::full(key),
        value: value.to_string(),
    }
}

/// Every value is produced once: a clash between an IR name and a generated one would make an
/// invalid file, so it is reported here, naming the value.
fn check_unique_names(b: &GraphBuilder, model: &str) -> Result<(), Diagnostic> {
    let mut seen = std::collections::HashSet::new();
    let produced = b
        .inputs
        .iter()
        .map(|i| &i.name)
        .chain(b.initializers.iter().map(|t| &t.name))
        .chain(b.nodes.iter().flat_map(|n| n.output.iter()));
    for name in produced {
        if !seen.insert(name.clone()) {
            return Err(Diagnostic::new(
                Location::Node {
                name: name.clone(),
                path: None,
            },
                "two ONNX values would share this name",
            )
            .expected("unique value names")
            .found(format!("`{name}` produced twice"))
            .in_file(model.to_string())
            .help("rename the node in model.json: names ending in .q/.k/.v/.matmul etc. are used by the exporter"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tread_compiler::compile::{compile_file, CompileOptions};
    use tread_compiler::params::param_specs;
    use tread_compiler::passes::strip_routes;

    fn tiny(name: &str) -> tread_compiler::compile::Compiled {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/models")
            .join(name);
        compile_file(&p, &CompileOptions::default()).unwrap()
    }

    fn zeros(g: &Graph) -> Weights {
        Weights {
            source: "test".into(),
            tensors: param_specs(g)
                .into_iter()
                .map(|s| (s.name.clone(), vec![0.0; s.numel()]))
                .collect(),
        }
    }

    fn ops_at(opset: i64) -> (pb::ModelProto, Vec<String>) {
        let c = tiny("all-ops.json");
        let opts = ExportOptions {
            opset,
            ..Default::default()
        };
        let m = export(&c.routed, Objective::Edm, &zeros(&c.routed), &opts).unwrap();
        let ops = m
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.clone())
            .collect();
        (m, ops)
    }

    #[test]
    fn route_ops_have_no_mapping_and_say_so() {
        let c = tiny("tiny.json");
        assert!(!c.routes.is_empty());
        let e = export(
            &c.routed,
            Objective::Edm,
            &zeros(&c.routed),
            &Default::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("has no ONNX mapping"), "{e}");
        assert!(e.contains("route"), "{e}");
        let dense = strip_routes(&c.routed).unwrap();
        export(&dense, Objective::Edm, &zeros(&dense), &Default::default()).unwrap();
    }

    #[test]
    fn every_op_is_valid_at_the_opset_written() {
        // Ops of the default ONNX domain that exist at opset 17 with the forms used here.
        let base = [
            "Add",
            "Concat",
            "Conv",
            "Cos",
            "Div",
            "Erf",
            "Gather",
            "Identity",
            "LayerNormalization",
            "MatMul",
            "Mul",
            "ReduceMean",
            "Reshape",
            "Sigmoid",
            "Sin",
            "Softmax",
            "Split",
            "Sqrt",
            "Transpose",
            "Unsqueeze",
            "Log",
            "Reciprocal",
        ];
        let (m17, ops17) = ops_at(17);
        assert!(
            ops17.iter().all(|o| base.contains(&o.as_str())),
            "{ops17:?}"
        );
        let g = m17.graph.unwrap();
        for n in &g.node {
            let names: Vec<_> = n.attribute.iter().map(|a| a.name.as_str()).collect();
            assert!(
                !names.contains(&"num_outputs"),
                "Split(num_outputs) is opset 18+"
            );
            if n.op_type == "ReduceMean" {
                assert_eq!(n.input.len(), 1, "axes are an attribute before 18");
                assert!(names.contains(&"axes"));
            }
        }
        let (m18, _) = ops_at(18);
        let rm = m18
            .graph
            .unwrap()
            .node
            .into_iter()
            .find(|n| n.op_type == "ReduceMean");
        assert_eq!(rm.unwrap().input.len(), 2, "axes are an input from 18");
        let (_, ops20) = ops_at(20);
        assert!(ops20.contains(&"Gelu".to_string()) && !ops20.contains(&"Erf".to_string()));
        let (_, ops23) = ops_at(23);
        assert!(ops23.contains(&"Attention".to_string()));
        assert!(ops23.contains(&"RMSNormalization".to_string()));
        assert!(!ops23.contains(&"Softmax".to_string()));
    }

    #[test]
    fn stream_ops_use_rotary_and_attention_from_opset_23_only() {
        let c = tiny("all-stream-ops.json");
        let ops = |opset| {
            let opts = ExportOptions {
                opset,
                ..Default::default()
            };
            let m = export(&c.routed, Objective::Edm, &zeros(&c.routed), &opts).unwrap();
            let g = m.graph.unwrap();
            g.node.into_iter().map(|n| n.op_type).collect::<Vec<_>>()
        };
        let (o17, o23) = (ops(17), ops(23));
        for op in ["RotaryEmbedding", "Attention"] {
            assert!(!o17.iter().any(|o| o == op), "{op} at 17");
            assert_eq!(
                o23.iter().filter(|o| *o == op).count(),
                4,
                "{op} at 23: {o23:?}"
            );
        }
        assert!(o17.iter().any(|o| o == "Softmax") && !o23.iter().any(|o| o == "Softmax"));
    }

    #[test]
    fn initialisers_carry_the_checkpoint_names() {
        let c = tiny("all-ops.json");
        let m = export(
            &c.routed,
            Objective::Edm,
            &zeros(&c.routed),
            &Default::default(),
        )
        .unwrap();
        let names: std::collections::HashSet<_> = m
            .graph
            .unwrap()
            .initializer
            .into_iter()
            .map(|t| t.name)
            .collect();
        for s in param_specs(&c.routed) {
            assert!(names.contains(&s.name), "{} missing", s.name);
        }
        assert!(names.contains("blocks.1.attn.qkv.weight"));
    }

    #[test]
    fn mismatched_weights_and_opsets_are_diagnostics() {
        let c = tiny("all-ops.json");
        let mut w = zeros(&c.routed);
        w.tensors.insert("blocks.0.fc1.weight".into(), vec![0.0; 3]);
        let e = export(&c.routed, Objective::Edm, &w, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tensor `blocks.0.fc1.weight`") && e.contains("3 values"),
            "{e}"
        );
        w.tensors.remove("blocks.0.fc1.weight");
        let e = export(&c.routed, Objective::Edm, &w, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such tensor"), "{e}");
        for bad in [16, 24] {
            let e = check_opset(bad).unwrap_err().to_string();
            assert!(e.contains("--opset") && e.contains("17 to 23"), "{e}");
        }
    }

    #[test]
    fn external_data_round_trips_and_corrupt_files_are_refused() {
        use file::{read_model, write_model, ExternalData};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let c = tiny("all-ops.json");
        let mut m = export(
            &c.routed,
            Objective::Edm,
            &zeros(&c.routed),
            &Default::default(),
        )
        .unwrap();
        let total = file::weight_bytes(&m);
        let path = dir.join("m.onnx");
        let w = write_model(&mut m, &path, ExternalData::Always).unwrap();
        let data = w.data_bytes.unwrap();
        assert!(data >= total * 9 / 10 && data <= total + 64 * 200);
        let back = read_model(&path).unwrap();
        let ext: Vec<_> = back
            .graph
            .unwrap()
            .initializer
            .into_iter()
            .filter(|t| t.data_location == Some(pb::tensor_proto::DataLocation::External as i32))
            .collect();
        assert!(!ext.is_empty());
        for t in &ext {
            let off: usize = t
                .external_data
                .iter()
                .find(|e| e.key == "offset")
                .unwrap()
                .value
                .parse()
                .unwrap();
            assert_eq!(off % 64, 0);
            assert!(t
                .external_data
                .iter()
                .any(|e| e.key == "location" && e.value == "m.onnx.data"));
        }
        std::fs::write(dir.join("bad.onnx"), b"\xff\xff\xff garbage").unwrap();
        let e = read_model(&dir.join("bad.onnx")).unwrap_err().to_string();
        assert!(
            e.contains("bad.onnx") && e.contains("not an ONNX model"),
            "{e}"
        );
        let e = read_model(&dir.join("missing.onnx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
