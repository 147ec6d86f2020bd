//! The decompositions of the fused ops into burn tensor ops: the defaults of
//! [`super::FusedOps`] (ndarray, cuda) and the reference the fused kernels are tested against.

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention as burn_attention;
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

use super::args::{AdamEmaState, Mods};
use crate::kernels::adamw::AdamWEma;
use crate::kernels::norm::NormKind;

/// `[B, D]` per-sample vectors repeated to `[B·N, D]` rows (materialised: burn-flex is fast
/// on contiguous element-wise ops, slow on 3-D broadcasts).
fn per_row<B: Backend>(v: Tensor<B, 2>, tokens: usize) -> Tensor<B, 2> {
    let [b, d] = v.dims();
    v.reshape([b, 1, d])
        .repeat_dim(1, tokens)
        .reshape([b * tokens, d])
}

/// Attention through burn's `attention` on `[B, H, N, Dh]` views of the packed projection.
pub fn attention<B: Backend>(qkv: Tensor<B, 2>, batch: usize, heads: usize) -> Tensor<B, 2> {
    let [rows, three_d] = qkv.dims();
    let (n, d) = (rows / batch, three_d / 3);
    let qkv = qkv.reshape([batch, n, three_d]);
    let split = |i: usize| {
        qkv.clone()
            .narrow(2, i * d, d)
            .reshape([batch, n, heads, d / heads])
            .swap_dims(1, 2)
    };
    let o = burn_attention(split(0), split(1), split(2), None, None, Default::default());
    o.swap_dims(1, 2).reshape([rows, d])
}

/// Cross-attention through burn's `attention`: queries `[B·N, D]` on the packed keys and values
/// `[B·M, 2D]`, with an additive key bias `[B, M]` broadcast over heads and queries.
pub fn cross_attention<B: Backend>(
    q: Tensor<B, 2>,
    kv: Tensor<B, 2>,
    bias: Option<Tensor<B, 2>>,
    batch: usize,
    heads: usize,
) -> Tensor<B, 2> {
    let ([rows, d], [kv_rows, _]) = (q.dims(), kv.dims());
    let (n, m) = (rows / batch, kv_rows / batch);
    let split = |t: Tensor<B, 2>, tokens: usize| {
        t.reshape([batch, tokens, heads, d / heads]).swap_dims(1, 2)
    };
    let kv = kv.reshape([batch, m, 2 * d]);
    let (k, v) = (kv.clone().narrow(2, 0, d), kv.narrow(2, d, d));
    let bias = bias.map(|b| b.reshape([batch, 1, 1, m]).expand([batch, heads, n, m]));
    let (k, v) = (k.reshape([batch * m, d]), v.reshape([batch * m, d]));
    let o = burn_attention(
        split(q, n),
        split(k, m),
        split(v, m),
        None,
        bias,
        Default::default(),
    );
    o.swap_dims(1, 2).reshape([rows, d])
}

/// Rotary position embedding through burn ops: each head's pairs `(2i, 2i+1)` turned by the
/// angle whose cosine and sine the `[Bt, N, Dh/2]` tables hold.
pub fn rope<B: Backend>(
    x: Tensor<B, 3>,
    cos: Tensor<B, 3>,
    sin: Tensor<B, 3>,
    heads: usize,
) -> Tensor<B, 3> {
    let [b, n, d] = x.dims();
    let [bp, _, half] = cos.dims();
    let table = |t: Tensor<B, 3>| t.reshape([bp, n, 1, half]).expand([b, n, heads, half]);
    let (cos, sin) = (table(cos), table(sin));
    let pairs = x.reshape([b, n, heads, half, 2]);
    let part = |i: usize| pairs.clone().narrow(4, i, 1).reshape([b, n, heads, half]);
    let (x0, x1) = (part(0), part(1));
    let y0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
    let y1 = x0 * sin + x1 * cos;
    let col = |t: Tensor<B, 4>| t.reshape([b, n, heads, half, 1]);
    Tensor::cat(vec![col(y0), col(y1)], 4).reshape([b, n, d])
}

/// Norm (no affine), then the optional modulation.
pub fn norm<B: Backend>(
    x: Tensor<B, 2>,
    mods: Option<Mods<B>>,
    batch: usize,
    kind: NormKind,
    eps: f64,
) -> Tensor<B, 2> {
    let [rows, _] = x.dims();
    let y = match kind {
        NormKind::Layer => layer_norm(x, eps),
        NormKind::Rms => rms_norm(x, eps),
    };
    match mods {
        Some((shift, scale)) => {
            let n = rows / batch;
            y.clone() + y * per_row(scale, n) + per_row(shift, n)
        }
        None => y,
    }
}

/// `x + gate[b] ⊙ y`.
pub fn gated_residual<B: Backend>(
    x: Tensor<B, 2>,
    gate: Tensor<B, 2>,
    y: Tensor<B, 2>,
    batch: usize,
) -> Tensor<B, 2> {
    let [rows, _] = x.dims();
    x + per_row(gate, rows / batch) * y
}

/// AdamW (PyTorch's semantics) then the EMA, as tensor ops.
pub fn adamw_ema<B: Backend>(
    params: &mut [Tensor<B, 1>],
    grads: Vec<Option<Tensor<B, 1>>>,
    state: AdamEmaState<'_, B>,
    h: AdamWEma,
) {
    let (b1, b2) = (h.beta1 as f64, h.beta2 as f64);
    let d = h.ema_decay as f64;
    for (i, g) in grads.into_iter().enumerate() {
        let Some(g) = g else {
            state.ema[i] = state.ema[i].clone() * d + params[i].clone() * (1.0 - d);
            continue;
        };
        let m = state.m[i].clone() * b1 + g.clone() * (1.0 - b1);
        let v = state.v[i].clone() * b2 + g.powi_scalar(2) * (1.0 - b2);
        let mut p = params[i].clone();
        if h.weight_decay != 0.0 {
            p = p * (1.0 - h.lr as f64 * h.weight_decay as f64);
        }
        let update = (m.clone() / h.bias_correction1 as f64)
            / ((v.clone() / h.bias_correction2 as f64).sqrt() + h.eps as f64);
        params[i] = p - update * h.lr as f64;
        state.m[i] = m;
        state.v[i] = v;
        state.ema[i] = state.ema[i].clone() * d + params[i].clone() * (1.0 - d);
    }
}

/// DiT's tanh-approximated GELU, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, written as
/// `x·sigmoid(2·√(2/π)·(x + 0.044715·x³))` (the same function) with `x³ = x·x·x`. Why: burn's
/// `gelu_approximate` uses `powf` and `tanh`, which were a quarter of a CPU training step.
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    const K: f64 = 2.0 * 0.797_884_560_802_865_4; // 2·√(2/π)
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044715) * K;
    x * activation::sigmoid(inner)
}

/// LayerNorm over the last axis, without affine.
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    let (var, mean) = x.clone().var_mean_bias(D - 1);
    (x - mean) / (var + eps).sqrt()
}

/// RMSNorm over the last axis, without affine.
pub fn rms_norm<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    let ms = x.clone().powi_scalar(2).mean_dim(D - 1);
    x / (ms + eps).sqrt()
}

/// Token indices `[B, keep]` expanded over the trailing axes of a `[B, N, F]` value.
fn expand_idx<B: Backend>(idx: Tensor<B, 2, Int>, features: usize) -> Tensor<B, 3, Int> {
    let [b, k] = idx.dims();
    idx.unsqueeze_dim::<3>(2).expand([b, k, features])
}

/// Gathers the kept tokens of a `[b, N, F]` value (`b` may be 1 for parameters).
pub fn gather_tokens<B: Backend>(t: Tensor<B, 3>, idx: Tensor<B, 2, Int>) -> Tensor<B, 3> {
    let [b, _, f] = t.dims();
    let [bi, _] = idx.dims();
    let t = if b == 1 && bi > 1 {
        let [_, n, _] = t.dims();
        t.expand([bi, n, f])
    } else {
        t
    };
    t.gather(1, expand_idx(idx, f))
}

/// Scatters the processed kept tokens into the saved full value. burn 0.21's float scatter
/// supports only `Add`, so this writes `base + scatter(kept − base[idx])`, which equals an
/// assignment in value and gradient: kept rows come from `kept`, the rest from `base`.
pub fn merge_tokens<B: Backend>(
    base: Tensor<B, 3>,
    kept: Tensor<B, 3>,
    idx: Tensor<B, 2, Int>,
) -> Tensor<B, 3> {
    let [b, n, f] = base.dims();
    let [bi, _] = idx.dims();
    let base = if b == 1 && bi > 1 {
        base.expand([bi, n, f])
    } else {
        base
    };
    let i = expand_idx(idx, f);
    let delta = kept - base.clone().gather(1, i.clone());
    base.scatter(1, i, delta, IndexingUpdateOp::Add)
}
