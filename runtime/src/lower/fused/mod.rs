//! The fused engine's ops as a burn backend extension.
//!
//! [`FusedOps`] has one method per fused op. Its default bodies are the decompositions into burn
//! tensor ops ([`reference`]), so every backend is correct through them: ndarray, cuda and wgpu use
//! the defaults. [`choice::Kernels`] picks the fused ops or those decompositions for a whole
//! lowered graph (`treadc bench --no-fuse` runs the latter). burn-flex implements the trait with
//! the native kernels of [`crate::kernels`] (`flex.rs`), and `Autodiff<Flex>` with the same kernels
//! plus a hand-written backward for each op (`autodiff.rs`), so training under autodiff runs one
//! node per fused op instead of the 7–26 nodes of its decomposition.
//!
//! [`Engine`] ties a base backend to the autodiff backend training uses, so that generic code
//! (the trainer, the benchmark) can name both with one bound.

mod args;
mod autodiff;
pub mod choice;
mod flex;
pub mod reference;

pub use args::{AdamEmaState, Mods};

use burn::tensor::backend::{AutodiffBackend, Backend, BackendTypes};
use burn::tensor::{Int, Tensor};

use crate::kernels::adamw::AdamWEma;
pub use crate::kernels::norm::NormKind;

/// Fused ops, each on row-major `[rows, width]` matrices whose rows are `batch` equal groups of
/// tokens. Defaults decompose into burn ops (see [`reference`]).
pub trait FusedOps: Backend {
    /// A linear layer `x·W + b` (`x [R, I]`, `W [I, O]`, `b [O]`) as one op.
    fn fused_linear(
        x: Tensor<Self, 2>,
        w: Tensor<Self, 2>,
        b: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 2> {
        burn::tensor::module::linear(x, w, b)
    }

    /// Self-attention on the packed projection `qkv = [B·N, 3·D]` → `[B·N, D]`.
    fn fused_attention(qkv: Tensor<Self, 2>, batch: usize, heads: usize) -> Tensor<Self, 2> {
        reference::attention(qkv, batch, heads)
    }

    /// Attention of queries `q = [B·N, D]` on the packed keys and values `kv = [B·M, 2·D]`, with
    /// an additive key bias `[B, M]` (a constant: no gradient) → `[B·N, D]`.
    fn fused_cross_attention(
        q: Tensor<Self, 2>,
        kv: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 2>>,
        batch: usize,
        heads: usize,
    ) -> Tensor<Self, 2> {
        reference::cross_attention(q, kv, bias, batch, heads)
    }

    /// Layer or RMS norm over rows (no affine), then `·(1 + scale[b]) + shift[b]` if `mods`.
    fn fused_norm(
        x: Tensor<Self, 2>,
        mods: Option<Mods<Self>>,
        batch: usize,
        kind: NormKind,
        eps: f64,
    ) -> Tensor<Self, 2> {
        reference::norm(x, mods, batch, kind, eps)
    }

    /// Rotary position embedding of `x = [B, N, H·Dh]` by per-token angle tables `cos`, `sin`
    /// of `[Bt, N, Dh/2]` (`Bt` = 1 or B; constants: no gradient flows to them).
    fn fused_rope(
        x: Tensor<Self, 3>,
        cos: Tensor<Self, 3>,
        sin: Tensor<Self, 3>,
        heads: usize,
    ) -> Tensor<Self, 3> {
        reference::rope(x, cos, sin, heads)
    }

    /// tanh-GELU.
    fn fused_gelu_tanh(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        reference::gelu_tanh(x)
    }

    /// `x + gate[b] ⊙ y` with a per-sample gate `[B, D]`.
    fn fused_gated_residual(
        x: Tensor<Self, 2>,
        gate: Tensor<Self, 2>,
        y: Tensor<Self, 2>,
        batch: usize,
    ) -> Tensor<Self, 2> {
        reference::gated_residual(x, gate, y, batch)
    }

    /// TREAD's partition: the kept tokens `idx [B, K]` of `x [b, N, D]` (`b` = B, or 1 for a
    /// parameter shared by all samples).
    fn fused_gather_tokens(x: Tensor<Self, 3>, idx: Tensor<Self, 2, Int>) -> Tensor<Self, 3> {
        reference::gather_tokens(x, idx)
    }

    /// TREAD's merge: `base` with rows `idx` replaced by `kept`.
    fn fused_merge_tokens(
        base: Tensor<Self, 3>,
        kept: Tensor<Self, 3>,
        idx: Tensor<Self, 2, Int>,
    ) -> Tensor<Self, 3> {
        reference::merge_tokens(base, kept, idx)
    }

    /// AdamW then EMA on flat parameters; `grads[i] = None` leaves parameter `i` and its
    /// moments untouched (its EMA still moves toward it).
    fn fused_adamw_ema(
        params: &mut [Tensor<Self, 1>],
        grads: Vec<Option<Tensor<Self, 1>>>,
        state: AdamEmaState<'_, Self>,
        h: AdamWEma,
    ) {
        reference::adamw_ema(params, grads, state, h)
    }
}

/// A backend treadc trains on: fused ops on the base backend (sampling) and on its autodiff
/// wrapper (training).
pub trait Engine: FusedOps {
    /// The autodiff backend over `Self` that training differentiates through.
    type Ad: FusedOps
        + AutodiffBackend<InnerBackend = Self>
        + BackendTypes<Device = <Self as BackendTypes>::Device>;

    /// Micro-batches a fused training step splits its batch into by default (when they divide
    /// it): 2 on the CPU engine, where two concurrent micro-batches keep both cores of a small
    /// model busy (see [`crate::lower::pass`]); 1 where that is unmeasured (ndarray, cuda).
    const MICRO_BATCHES: usize = 1;
}

impl Engine for burn::backend::Flex {
    type Ad = burn::backend::Autodiff<burn::backend::Flex>;
    const MICRO_BATCHES: usize = 2;
}

impl FusedOps for burn::backend::NdArray {}
impl FusedOps for burn::backend::Autodiff<burn::backend::NdArray> {}
impl Engine for burn::backend::NdArray {
    type Ad = burn::backend::Autodiff<burn::backend::NdArray>;
}

#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Cuda {}
#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Autodiff<burn::backend::Cuda> {}
#[cfg(feature = "cuda")]
impl Engine for burn::backend::Cuda {
    type Ad = burn::backend::Autodiff<burn::backend::Cuda>;
}

#[cfg(feature = "wgpu")]
impl FusedOps for burn::backend::Wgpu {}
#[cfg(feature = "wgpu")]
impl FusedOps for burn::backend::Autodiff<burn::backend::Wgpu> {}
#[cfg(feature = "wgpu")]
impl Engine for burn::backend::Wgpu {
    type Ad = burn::backend::Autodiff<burn::backend::Wgpu>;
}

#[cfg(test)]
mod tests;
