//! The burn reference output of a dense graph on the CPU, for comparing an exported ONNX file
//! with the model it came from (`treadc export --check`, the export tests).

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use tread_compiler::config::Objective;
use tread_compiler::ir::Graph;

use super::objective::predict;
use super::{forward, Inputs, ParamStore, TextInputs};
use crate::routing::NoRoutes;

/// The network's output on `image [n, C, H, W]` (`shape` = `[C, H, W]`), noise input `level`
/// and `labels`, with host weights in `param_specs(g)` order. With `precond`, the EDM denoiser
/// D(x; σ) where `level` is σ; otherwise the raw network with `level` as its noise input.
#[allow(clippy::too_many_arguments)]
pub fn dense_output(
    g: &Graph,
    objective: Objective,
    weights: &[Vec<f32>],
    image: &[f32],
    shape: [usize; 3],
    level: &[f32],
    labels: Option<&[i64]>,
    precond: bool,
) -> Result<Vec<f32>, String> {
    let device = Default::default();
    let store = ParamStore::<Flex>::from_host(g, weights, &device)?;
    let n = level.len();
    let [c, h, w] = shape;
    let x = Tensor::<Flex, 4>::from_data(TensorData::new(image.to_vec(), [n, c, h, w]), &device);
    let y = labels
        .map(|l| Tensor::<Flex, 1, Int>::from_data(TensorData::new(l.to_vec(), [n]), &device));
    let out = if precond {
        let lv: Vec<f64> = level.iter().map(|&s| s as f64).collect();
        super::Value::F4(predict(objective, g, &store, x, &lv, y, &mut NoRoutes)?)
    } else {
        let t = Tensor::<Flex, 1>::from_data(TensorData::new(level.to_vec(), [n]), &device);
        let inputs = Inputs {
            image: x,
            noise_level: t,
            label: y,
            text: TextInputs::default(),
        };
        forward(g, &store, &inputs, &mut NoRoutes)?
    };
    out.to_vec_f32()
}
