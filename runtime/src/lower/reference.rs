//! The burn reference output of a dense graph on the CPU, for comparing an exported ONNX file
//! with the model it came from (`treadc export --check`, the export tests).

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use tread_compiler::config::Objective;
use tread_compiler::ir::{Graph, InputRole};
use tread_onnx::tract::HostValue;

use super::objective::predict;
use super::{forward, Conditioning, ExtraInputs, Inputs, ParamStore};
use crate::routing::NoRoutes;

/// The network's output on host `inputs` (one per role the graph reads), with host weights in
/// `param_specs(g)` order. With `precond`, the EDM denoiser D(x; σ) where the noise level is σ;
/// otherwise the raw network with the level as its noise input.
pub fn dense_output(
    g: &Graph,
    objective: Objective,
    weights: &[Vec<f32>],
    inputs: &[(InputRole, HostValue)],
    precond: bool,
) -> Result<Vec<f32>, String> {
    let device = Default::default();
    let store = ParamStore::<Flex>::from_host(g, weights, &device)?;
    let find = |r: InputRole| inputs.iter().find(|(role, _)| *role == r).map(|(_, v)| v);
    let f32s = |r: InputRole| match find(r) {
        Some(HostValue::F32(d, s)) => Some(TensorData::new(d.clone(), s.clone())),
        _ => None,
    };
    let ints = |r: InputRole| match find(r) {
        Some(HostValue::I64(d, s)) => Some(TensorData::new(d.clone(), s.clone())),
        _ => None,
    };
    let image = f32s(InputRole::Image).ok_or("no image input")?;
    let level: Vec<f32> = match f32s(InputRole::NoiseLevel) {
        Some(t) => t.to_vec::<f32>().map_err(|e| format!("{e:?}"))?,
        None => return Err("no noise level input".into()),
    };
    let n = level.len();
    let video =
        (image.shape.len() == 5).then(|| Tensor::<Flex, 5>::from_data(image.clone(), &device));
    let x = match video {
        Some(_) => Tensor::<Flex, 4>::zeros([1, 1, 1, 1], &device),
        None => Tensor::<Flex, 4>::from_data(image, &device),
    };
    let y = ints(InputRole::Label).map(|t| Tensor::<Flex, 1, Int>::from_data(t, &device));
    let extra = ExtraInputs {
        video: video.clone(),
        context: f32s(InputRole::Context).map(|t| Tensor::from_data(t, &device)),
        context_mask: f32s(InputRole::ContextMask).map(|t| Tensor::from_data(t, &device)),
        pooled: f32s(InputRole::Pooled).map(|t| Tensor::from_data(t, &device)),
        token_ids: ints(InputRole::TokenIds).map(|t| Tensor::from_data(t, &device)),
        guidance: f32s(InputRole::Guidance).map(|t| Tensor::from_data(t, &device)),
    };
    let out = if precond {
        if video.is_some() {
            return Err("EDM preconditioning in the graph takes images, not video".into());
        }
        let lv: Vec<f64> = level.iter().map(|&s| s as f64).collect();
        let cond = Conditioning { label: y, extra };
        super::Value::F4(predict(objective, g, &store, x, &lv, &cond, &mut NoRoutes)?)
    } else {
        let t = Tensor::<Flex, 1>::from_data(TensorData::new(level, [n]), &device);
        let inputs = Inputs {
            image: x,
            noise_level: t,
            label: y,
            extra,
        };
        forward(g, &store, &inputs, &mut NoRoutes)?
    };
    out.to_vec_f32()
}
