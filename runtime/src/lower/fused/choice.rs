//! The one place where the lowering chooses between the backend's fused kernels and their
//! reference decompositions (the defaults of [`FusedOps`], in [`super::reference`]).

use burn::tensor::{Int, Tensor};

use super::{reference, FusedOps, Mods, NormKind};

/// Which implementation of the fused ops a lowered graph runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// The backend's [`FusedOps`] (native kernels on burn-flex, the decompositions elsewhere).
    Fused,
    /// The decompositions into burn tensor ops, whatever the backend: `treadc bench
    /// --no-fuse` and the reference the tests compare the fused engine with.
    Reference,
}

impl Kernels {
    /// [`Kernels::Fused`] when `fused`, else [`Kernels::Reference`].
    pub fn from_fused(fused: bool) -> Self {
        if fused {
            Kernels::Fused
        } else {
            Kernels::Reference
        }
    }

    /// `x·W + b` on rows ([`FusedOps::fused_linear`]).
    pub fn linear<B: FusedOps>(
        self,
        x: Tensor<B, 2>,
        w: Tensor<B, 2>,
        b: Option<Tensor<B, 1>>,
    ) -> Tensor<B, 2> {
        match self {
            Kernels::Fused => B::fused_linear(x, w, b),
            Kernels::Reference => burn::tensor::module::linear(x, w, b),
        }
    }

    /// Layer or RMS norm over rows, then the optional modulation ([`FusedOps::fused_norm`]).
    pub fn norm<B: FusedOps>(
        self,
        x: Tensor<B, 2>,
        mods: Option<Mods<B>>,
        batch: usize,
        kind: NormKind,
        eps: f64,
    ) -> Tensor<B, 2> {
        match self {
            Kernels::Fused => B::fused_norm(x, mods, batch, kind, eps),
            Kernels::Reference => reference::norm(x, mods, batch, kind, eps),
        }
    }

    /// Self-attention on the packed `[B·N, 3·D]` projection ([`FusedOps::fused_attention`]).
    pub fn attention<B: FusedOps>(
        self,
        qkv: Tensor<B, 2>,
        batch: usize,
        heads: usize,
    ) -> Tensor<B, 2> {
        match self {
            Kernels::Fused => B::fused_attention(qkv, batch, heads),
            Kernels::Reference => reference::attention(qkv, batch, heads),
        }
    }

    /// Attention of `q [B·N, D]` on packed keys and values `[B·M, 2·D]` with an additive key
    /// bias ([`FusedOps::fused_cross_attention`]).
    pub fn cross_attention<B: FusedOps>(
        self,
        q: Tensor<B, 2>,
        kv: Tensor<B, 2>,
        bias: Option<Tensor<B, 2>>,
        batch: usize,
        heads: usize,
    ) -> Tensor<B, 2> {
        match self {
            Kernels::Fused => B::fused_cross_attention(q, kv, bias, batch, heads),
            Kernels::Reference => reference::cross_attention(q, kv, bias, batch, heads),
        }
    }

    /// Rotary embedding by angle tables ([`FusedOps::fused_rope`]).
    pub fn rope<B: FusedOps>(
        self,
        x: Tensor<B, 3>,
        cos: Tensor<B, 3>,
        sin: Tensor<B, 3>,
        heads: usize,
    ) -> Tensor<B, 3> {
        match self {
            Kernels::Fused => B::fused_rope(x, cos, sin, heads),
            Kernels::Reference => reference::rope(x, cos, sin, heads),
        }
    }

    /// tanh-GELU ([`FusedOps::fused_gelu_tanh`]).
    pub fn gelu_tanh<B: FusedOps>(self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Kernels::Fused => B::fused_gelu_tanh(x),
            Kernels::Reference => reference::gelu_tanh(x),
        }
    }

    /// `x + gate[b] ⊙ y` ([`FusedOps::fused_gated_residual`]).
    pub fn gated_residual<B: FusedOps>(
        self,
        x: Tensor<B, 2>,
        gate: Tensor<B, 2>,
        y: Tensor<B, 2>,
        batch: usize,
    ) -> Tensor<B, 2> {
        match self {
            Kernels::Fused => B::fused_gated_residual(x, gate, y, batch),
            Kernels::Reference => reference::gated_residual(x, gate, y, batch),
        }
    }

    /// TREAD's partition ([`FusedOps::fused_gather_tokens`]).
    pub fn gather_tokens<B: FusedOps>(
        self,
        x: Tensor<B, 3>,
        idx: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        match self {
            Kernels::Fused => B::fused_gather_tokens(x, idx),
            Kernels::Reference => reference::gather_tokens(x, idx),
        }
    }

    /// TREAD's merge ([`FusedOps::fused_merge_tokens`]).
    pub fn merge_tokens<B: FusedOps>(
        self,
        base: Tensor<B, 3>,
        kept: Tensor<B, 3>,
        idx: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        match self {
            Kernels::Fused => B::fused_merge_tokens(base, kept, idx),
            Kernels::Reference => reference::merge_tokens(base, kept, idx),
        }
    }
}
