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
