//! The argument types of [`super::FusedOps`] that are more than a tensor.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// adaLN modulation vectors `(shift, scale)`, each `[B, D]`.
pub type Mods<B> = (Tensor<B, 2>, Tensor<B, 2>);

/// The optimiser state [`super::FusedOps::fused_adamw_ema`] updates with the parameters.
pub struct AdamEmaState<'a, B: Backend> {
    /// First moments.
    pub m: &'a mut [Tensor<B, 1>],
    /// Second moments.
    pub v: &'a mut [Tensor<B, 1>],
    /// EMA weights.
    pub ema: &'a mut [Tensor<B, 1>],
}
