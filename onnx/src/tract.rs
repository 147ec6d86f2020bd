//! The one file that speaks tract: load an ONNX file for a fixed batch size, optimise it, run it
//! on host buffers. Used by `treadc export --check` and by the deployment sampler `treadc run`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

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
