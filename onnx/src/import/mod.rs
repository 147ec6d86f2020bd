//! `treadc import`: an ONNX file (torch.onnx.export's TorchScript or dynamo exporter, or treadc's
//! own writer) back into a treadc model: the ops recognised by pattern ([`patterns`],
//! [`elementwise`]), the numbered module scopes folded into block templates ([`blocks`]), and
//! the initialisers renamed to the model's parameter names. Shapes and folded shape arithmetic
//! come from tract's analysis ([`crate::tract::analyse`]). Whatever matches no pattern is an
//! error listing the nodes, never an approximation.

pub mod blocks;
pub mod elementwise;
pub mod patterns;
pub mod recognise;
pub mod source;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use patterns::claim_all;
pub use recognise::input_name;
use recognise::{Ctx, IrInput, Recognised};
use source::Source;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::ir::InputRole;

/// An imported model.
pub struct Imported {
    /// The model file (model.json), as JSON.
    pub model: Value,
    /// Its weights under the model's parameter names: `(name, shape, data)`.
    pub weights: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// What each op was made from: `(op name, op kind, ONNX nodes)`, for `--report`.
    pub report: Vec<(String, String, Vec<String>)>,
    /// Blocks in the trunk.
    pub depth: usize,
    /// Block templates describing them.
    pub templates: usize,
    /// ONNX nodes in the file.
    pub onnx_nodes: usize,
}

/// Each graph input's role: from treadc's metadata when the file has it, else from its element
/// type and rank (image: float rank 4 or 5; noise level: float rank 1; label: integer rank 1;
/// context: float rank 3; token ids: integer rank 2; pooled: float rank 2).
fn roles(src: &Source, file: &str) -> Result<HashMap<String, InputRole>, Diagnostic> {
    let mut roles = HashMap::new();
    for inp in &src.inputs {
        let by_meta = InputRole::ALL
            .into_iter()
            .find(|r| src.meta(&crate::keys::input(*r)) == Some(inp.name.as_str()));
        let rank = src.rank(&inp.name);
        let role = by_meta.or(match (inp.integer, rank) {
            (false, Some(4 | 5)) => Some(InputRole::Image),
            (false, Some(1)) if !roles.values().any(|r| *r == InputRole::NoiseLevel) => {
                Some(InputRole::NoiseLevel)
            }
            (false, Some(1)) => Some(InputRole::Guidance),
            (true, Some(1)) => Some(InputRole::Label),
            (false, Some(3)) => Some(InputRole::Context),
            (true, Some(2)) => Some(InputRole::TokenIds),
            (false, Some(2)) => Some(InputRole::Pooled),
            _ => None,
        });
        let Some(role) = role else {
            return Err(Diagnostic::new(
                Location::Item(format!("input `{}`", inp.name)),
                "cannot tell what the graph input carries",
            )
            .expected("an image [B,C,H,W], a noise level [B], a label [B] (integer), a context [B,L,D], token ids [B,L] or a pooled vector [B,D]")
            .found(format!(
                "{} input of rank {}",
                if inp.integer { "an integer" } else { "a float" },
                rank.map_or("unknown".into(), |r| r.to_string())
            ))
            .in_file(file));
        };
        roles.insert(inp.name.clone(), role);
    }
    if !roles.values().any(|r| *r == InputRole::Image) {
        return Err(
            Diagnostic::new(Location::File, "the graph has no image input")
                .expected("a float input of rank 4 [B, C, H, W] (or 5 for video)")
                .found(format!(
                    "inputs {}",
                    src.inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .in_file(file),
        );
    }
    Ok(roles)
}

/// Imports the ONNX file at `path` (see the module doc). The model is named `name`.
pub fn import(path: &Path, name: &str) -> Result<Imported, Diagnostic> {
    let file = path.display().to_string();
    let mut proto = crate::export::file::read_model(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let inits = source::initialisers(&proto, dir).map_err(|(name, e)| {
        Diagnostic::new(
            Location::Item(format!("initialiser `{name}`")),
            "cannot read the tensor",
        )
        .expected("float (f32, f16, bf16, f64) or integer data, inline or as external data beside the file")
        .found(e)
        .in_file(&file)
    })?;
    let light = source::without_weights(&mut proto, crate::tract::FOLDED_LIMIT);
    let facts = crate::tract::analyse(&light, dir).map_err(|e| {
        Diagnostic::new(Location::File, "tract cannot load or type the ONNX graph")
            .expected("an ONNX model of standard operators (opsets 13 to 23)")
            .found(e)
            .in_file(&file)
    })?;
    drop(light);
    let paths = std::fs::read(path)
        .map(|b| source::dynamo_paths(&b))
        .unwrap_or_default();
    let src = Source::new(&proto, facts, inits, &paths);
    let roles = roles(&src, &file)?;
    let mut c = Ctx::new(&src, roles.clone());
    claim_all(&mut c, &file)?;
    let mut outputs = vec![];
    for o in &src.outputs {
        let v = match c.ir.get(o) {
            Some(v) => v.clone(),
            None if roles.contains_key(o) => input_name(o),
            None => {
                return Err(Diagnostic::new(
                    Location::Item(format!("output `{o}`")),
                    "the graph output is not computed from the inputs",
                )
                .expected("an output that depends on the model's inputs")
                .found("a constant output")
                .in_file(&file))
            }
        };
        outputs.push((input_name(o), v));
    }
    let inputs = src
        .inputs
        .iter()
        .map(|inp| {
            let shape = src.shape(&inp.name).unwrap_or_default();
            IrInput {
                name: input_name(&inp.name),
                role: roles[&inp.name],
                shape: shape
                    .iter()
                    .enumerate()
                    .map(|(k, d)| match (k, d) {
                        (0, _) | (_, None) => json!("B"),
                        (_, Some(v)) => json!(v),
                    })
                    .collect(),
                integer: inp.integer,
            }
        })
        .collect();
    let mut shapes: HashMap<String, Vec<Option<i64>>> = HashMap::new();
    for (onnx, ir) in &c.ir {
        if let Some(s) = src.shape(onnx) {
            shapes.insert(ir.clone(), s);
        }
    }
    for inp in &src.inputs {
        if let Some(s) = src.shape(&inp.name) {
            shapes.insert(input_name(&inp.name), s);
        }
    }
    let dropped = std::mem::take(&mut c.dropped);
    let nodes: Vec<_> = std::mem::take(&mut c.nodes)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, n)| n)
        .collect();
    let report = nodes
        .iter()
        .map(|n| {
            let kind =
                n.op.get("op")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
            (n.name.clone(), kind, n.matched.clone())
        })
        .collect();
    let r = Recognised {
        inputs,
        nodes,
        outputs,
    };
    let description = format!(
        "Imported by `treadc import` from {} ({} ONNX nodes{}).",
        path.file_name()
            .map_or(file.clone(), |f| f.to_string_lossy().into_owned()),
        src.nodes.len(),
        proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty())
            .map_or(String::new(), |o| format!(", opset {}", o.version))
    );
    let folded = blocks::fold(r, &shapes, name, &description, &file)?;
    Ok(Imported {
        model: folded.model,
        weights: folded.weights,
        report,
        depth: folded.depth,
        templates: folded.templates,
        onnx_nodes: src.nodes.len(),
    })
}
