//! The one file that speaks tract: load an ONNX file for a fixed batch size, optimise it, run it
//! on host buffers. Used by `treadc export --check` and by the deployment sampler `treadc run`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// One input value on the host.
#[derive(Debug, Clone)]
pub enum HostValue {
    /// f32 values and their shape.
    F32(Vec<f32>, Vec<usize>),
    /// i64 values and their shape.
    I64(Vec<i64>, Vec<usize>),
}

/// An ONNX model, optimised by tract for one batch size.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    /// The batch size the model was specialised for.
    pub batch: usize,
}

fn msg(e: impl std::fmt::Display) -> String {
    format!("{e:#}")
}

/// Makes tract's matrix products use every core (tract defaults to one thread), once per process.
fn use_all_cores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        tract_linalg::multithread::set_default_executor(
            tract_linalg::multithread::Executor::multithread(n),
        );
    });
}

impl TractModel {
    /// Loads `path`, binds its symbolic batch dimension(s) (the `dim_param`s of the graph
    /// inputs in `proto`, the same file decoded) to `batch`, and optimises it. Binding after
    /// typing keeps the file's intermediate shape annotations consistent for tract's analysis.
    pub fn load(path: &Path, proto: &pb::ModelProto, batch: usize) -> Result<Self, String> {
        use_all_cores();
        crate::sanity::check_attributes(proto)?;
        let typed = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.into_typed())
            .map_err(msg)?;
        let mut subs = HashMap::new();
        for vi in proto.graph.as_ref().map_or(&[][..], |g| &g.input[..]) {
            if let Some(pb::type_proto::Value::TensorType(t)) =
                vi.r#type.as_ref().and_then(|t| t.value.as_ref())
            {
                for d in t.shape.iter().flat_map(|s| &s.dim) {
                    if let Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) = &d.value {
                        subs.insert(typed.sym(p), TDim::Val(batch as i64));
                    }
                }
            }
        }
        let plan = typed
            .set_symbols(&subs)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(msg)?;
        Ok(TractModel { plan, batch })
    }

    /// Runs the model on `inputs` (in graph-input order) and returns the first output as f32.
    pub fn run(&self, inputs: Vec<HostValue>) -> Result<Vec<f32>, String> {
        let mut tv: TVec<TValue> = tvec![];
        for v in inputs {
            let t = match v {
                HostValue::F32(d, s) => Tensor::from_shape(&s, &d),
                HostValue::I64(d, s) => Tensor::from_shape(&s, &d),
            }
            .map_err(msg)?;
            tv.push(t.into_tvalue());
        }
        let out = self.plan.run(tv).map_err(msg)?;
        let view = out[0].to_plain_array_view::<f32>().map_err(msg)?;
        Ok(view.iter().copied().collect())
    }
}

/// One dimension as tract's analysis knows it: a number, or a symbol (the batch `B`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactDim {
    /// A known size or integer value.
    Known(i64),
    /// A symbolic one, by its expression (`B`).
    Symbolic(String),
}

/// A value tract's analysis folded to a constant: an initialiser, or shape arithmetic.
#[derive(Debug, Clone, PartialEq)]
pub enum FactValue {
    /// Floating-point data (f16, bf16, f32 and f64 read as f32), with its shape.
    F32(Vec<usize>, Vec<f32>),
    /// Integer data (or shape values, which may hold the batch symbol), with its shape.
    Ints(Vec<usize>, Vec<FactDim>),
}

/// What tract's type analysis knows about one ONNX value, for the importer's pattern matching.
#[derive(Debug, Clone, Default)]
pub struct ValueFacts {
    /// Its shape, where every axis is known (sizes or symbols).
    pub shape: Option<Vec<FactDim>>,
    /// Its value, where the analysis folded it to a constant.
    pub value: Option<FactValue>,
}

fn fact_dim(d: &TDim) -> FactDim {
    match d.as_i64() {
        Some(v) => FactDim::Known(v),
        None => FactDim::Symbolic(d.to_string()),
    }
}

fn fact_value(t: &Tensor) -> Option<FactValue> {
    let shape = t.shape().to_vec();
    if t.datum_type().is_float() {
        let f = t.cast_to::<f32>().ok()?;
        return Some(FactValue::F32(
            shape,
            f.to_plain_array_view::<f32>()
                .ok()?
                .iter()
                .copied()
                .collect(),
        ));
    }
    if t.datum_type() == TDim::datum_type() {
        let dims = t
            .to_plain_array_view::<TDim>()
            .ok()?
            .iter()
            .map(fact_dim)
            .collect();
        return Some(FactValue::Ints(shape, dims));
    }
    if t.datum_type().is_integer() || t.datum_type() == bool::datum_type() {
        let i = t.cast_to::<i64>().ok()?;
        let dims = i
            .to_plain_array_view::<i64>()
            .ok()?
            .iter()
            .map(|&v| FactDim::Known(v))
            .collect();
        return Some(FactValue::Ints(shape, dims));
    }
    None
}

/// The largest folded value [`analyse`] copies out (elements): shape arithmetic and tables, not
/// weights.
pub const FOLDED_LIMIT: usize = 1 << 16;

/// Parses an ONNX model (external data relative to `dir`) into tract's inference model and runs
/// its type analysis, the graph inputs' symbolic dimensions kept symbolic: every ONNX value name
/// gets its shape and, where constant, its value. The importer reads this instead of
/// re-implementing shape inference.
pub fn analyse(proto: &pb::ModelProto, dir: &Path) -> Result<HashMap<String, ValueFacts>, String> {
    crate::sanity::check_attributes(proto)?;
    let parsed = tract_onnx::onnx().parse(proto, dir.to_str()).map_err(msg)?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(format!(
            "inputs never defined: {:?}",
            parsed.unresolved_inputs
        ));
    }
    let mut model = parsed.model;
    model.analyse(true).map_err(msg)?;
    let mut facts = HashMap::new();
    for node in model.nodes() {
        for (ix, out) in node.outputs.iter().enumerate() {
            let outlet = OutletId::new(node.id, ix);
            // Graph inputs and initialisers carry no outlet label: their node has the name.
            let label = match model.outlet_label(outlet) {
                Some(l) => l.to_string(),
                None if node.outputs.len() == 1 => node.name.clone(),
                None => continue,
            };
            let f = &out.fact;
            let shape = if f.shape.is_open() {
                None
            } else {
                f.shape
                    .dims()
                    .map(|d| d.concretize().map(|d| fact_dim(&d)))
                    .collect::<Option<Vec<_>>>()
            };
            // Weights are read from the file by the importer: only small folded values here.
            let value = f
                .value
                .concretize()
                .filter(|t| t.len() <= FOLDED_LIMIT)
                .and_then(|t| fact_value(&t));
            facts.insert(label, ValueFacts { shape, value });
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;
    use std::time::Duration;

    use prost::Message;
    use tread_compiler::compile::{compile_file, CompileOptions};
    use tread_compiler::config::Objective;
    use tread_compiler::params::param_specs;

    use super::TractModel;
    use crate::export::{export, ExportOptions, Weights};
    use crate::pb;

    /// How long one load may take before it counts as a hang: far above a tiny model's load in
    /// a debug build, far below the minutes tract spins on an absurd attribute.
    const HANG: Duration = Duration::from_secs(20);
    /// One-bit mutations tried per exported file.
    const MUTATIONS: usize = 40;

    /// A test model of `tests/models/` exported at `opset` with zero weights.
    fn exported(name: &str, opset: i64) -> pb::ModelProto {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/models")
            .join(name);
        let c = compile_file(&p, &CompileOptions::default()).unwrap();
        let weights = Weights {
            source: "test".into(),
            tensors: param_specs(&c.routed)
                .into_iter()
                .map(|s| (s.name.clone(), vec![0.0; s.numel()]))
                .collect(),
        };
        let opts = ExportOptions {
            opset,
            ..Default::default()
        };
        export(&c.routed, Objective::Edm, &weights, &opts).unwrap()
    }

    /// Loads `path` on a thread of its own; `None` when it is still loading after [`HANG`].
    fn load_within_bound(path: PathBuf, proto: pb::ModelProto) -> Option<Result<(), String>> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| TractModel::load(&path, &proto, 1).map(|_| ()));
            let _ = tx.send(r.unwrap_or_else(|_| Err("panicked".into())));
        });
        rx.recv_timeout(HANG).ok()
    }

    /// splitmix64: a fixed sequence of mutation sites, the same on every run.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// One bit flipped in the encoding of one node attribute of exported files (every op
    /// treadc writes, opsets 17 and 23): each file still decodes, and tract then loads it or
    /// refuses it, never spinning past [`HANG`] and never panicking. A flipped bit is how an
    /// axis of -536870913 once made `treadc run` spin for minutes.
    #[test]
    fn one_bit_attribute_mutations_load_or_fail_promptly() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = 7u64;
        let mut tried = 0;
        for (file, opset) in [("all-ops.json", 17), ("all-stream-ops.json", 23)] {
            let model = exported(file, opset);
            let clean = tmp.path().join("clean.onnx");
            std::fs::write(&clean, model.encode_to_vec()).unwrap();
            let loaded = load_within_bound(clean, model.clone());
            assert!(matches!(loaded, Some(Ok(()))), "{file}: {loaded:?}");
            let sites: Vec<(usize, usize)> = model
                .graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .enumerate()
                .flat_map(|(n, node)| (0..node.attribute.len()).map(move |a| (n, a)))
                .collect();
            let mut done = 0;
            while done < MUTATIONS {
                let (n, a) = sites[next(&mut state) as usize % sites.len()];
                let mut m = model.clone();
                let node = &mut m.graph.as_mut().unwrap().node[n];
                let mut bytes = node.attribute[a].encode_to_vec();
                let bit = next(&mut state) as usize % (bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
                // A flip that breaks the encoding is refused by the reader (tested there).
                let Ok(attr) = pb::AttributeProto::decode(bytes.as_slice()) else {
                    continue;
                };
                let what = format!("{file}: node `{}` attribute {attr:?}", node.name);
                node.attribute[a] = attr;
                let path = tmp.path().join(format!("mutated-{done}.onnx"));
                std::fs::write(&path, m.encode_to_vec()).unwrap();
                match load_within_bound(path, m) {
                    None => panic!("{what}: still loading after {HANG:?}"),
                    Some(Err(e)) if e == "panicked" => panic!("{what}: tract panicked"),
                    Some(_) => {}
                }
                done += 1;
            }
            tried += done;
        }
        assert_eq!(tried, 2 * MUTATIONS);
    }
}
