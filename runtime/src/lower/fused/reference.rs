//! The decompositions of the fused ops into burn tensor ops: the defaults of
//! [`super::FusedOps`] (ndarray, cuda) and the reference the fused kernels are tested against.

use burn::tensor::backend::Backend;
use burn::tensor::module::attention as burn_attention;
use burn::tensor::Tensor;

use super::{AdamEmaState, Mods, NormKind};
use crate::kernels::adamw::AdamWEma;
use crate::lower::ops::{gelu_tanh as gelu_tanh_ops, layer_norm, rms_norm};

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

/// tanh-GELU as `x·sigmoid(2·√(2/π)·(x + 0.044715·x³))`.
pub fn gelu_tanh<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    gelu_tanh_ops(x)
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
