//! [`FusedOps`] for burn-flex: the native kernels on the tensors' contiguous f32 storage.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};

use super::{AdamEmaState, FusedOps, Mods, NormKind};
use crate::kernels::adamw::{self, AdamWEma};
use crate::kernels::attention::{self, AttnShape};
use crate::kernels::buffer::uninit_buffer;
use crate::kernels::cross_attention::{self, CrossShape};
use crate::kernels::elementwise::{self, Rows};
use crate::kernels::linear::{self, LinearShape};
use crate::kernels::norm;
use crate::kernels::rope::{self, RopeShape};
use crate::kernels::tokens::{self, TokenShape};

/// The burn-flex tensor behind a float tensor, contiguous (copied only if it was a strided view).
pub(super) fn flex<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    contiguous(t.into_primitive().tensor())
}

/// `t` itself when its f32 data is one contiguous slice, else a contiguous copy.
pub(super) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The f32 values of a contiguous tensor (an internal invariant: treadc's tensors are f32).
pub(super) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("fused kernels take contiguous f32 tensors")
}

/// A contiguous f32 tensor of `shape` holding `v`.
pub(super) fn tensor_of(v: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

pub(super) fn wrap<const D: usize>(t: FlexTensor) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// `[rows, width]` of a rank-2 tensor and the row layout for `batch` samples.
pub(super) fn rows_of(shape: &[usize], batch: usize) -> Rows {
    Rows {
        batch,
        tokens: shape[0] / batch.max(1),
        width: shape[1],
    }
}

fn attention_shape(qkv: &FlexTensor, batch: usize, heads: usize) -> AttnShape {
    let shape = qkv.layout().shape();
    AttnShape {
        batch,
        tokens: shape[0] / batch,
        heads,
        dim: shape[1] / 3,
    }
}

/// Attention forward on flex tensors (probabilities in per-task scratch, not kept).
pub(super) fn attention_forward(qkv: &FlexTensor, batch: usize, heads: usize) -> FlexTensor {
    let s = attention_shape(qkv, batch, heads);
    // SAFETY: the attention forward writes every value of its output.
    let out = unsafe {
        uninit_buffer(s.out_len(), |out| {
            attention::forward(values(qkv), s, out, None)
        })
    };
    tensor_of(out, vec![s.batch * s.tokens, s.dim])
}

/// Cross-attention forward on flex tensors (`q [B·N, D]`, `kv [B·M, 2D]`, bias `[B, M]`),
/// keeping the probabilities when `keep`: `(output, probs, sizes)`.
pub(super) fn cross_attention_forward(
    q: &FlexTensor,
    kv: &FlexTensor,
    bias: Option<&FlexTensor>,
    (batch, heads): (usize, usize),
    keep: bool,
) -> (FlexTensor, Option<FlexTensor>, CrossShape) {
    let (qs, kvs) = (q.layout().shape(), kv.layout().shape());
    let s = CrossShape {
        batch,
        queries: qs[0] / batch,
        keys: kvs[0] / batch,
        heads,
        dim: qs[1],
    };
    let bias = bias.map(values);
    let mut p = None;
    // SAFETY: the cross-attention forward writes every value of its output and probabilities.
    let out = unsafe {
        uninit_buffer(s.q_len(), |out| {
            if keep {
                p = Some(uninit_buffer(s.probs_len(), |p| {
                    cross_attention::forward(values(q), values(kv), bias, s, out, Some(p))
                }));
            } else {
                cross_attention::forward(values(q), values(kv), bias, s, out, None)
            }
        })
    };
    let out = tensor_of(out, vec![s.batch * s.queries, s.dim]);
    (out, p.map(|p| tensor_of(p, vec![s.probs_len()])), s)
}

/// Attention forward keeping the probabilities for the backward: `(output, probs, sizes)`.
pub(super) fn attention_forward_keep(
    qkv: &FlexTensor,
    batch: usize,
    heads: usize,
) -> (FlexTensor, FlexTensor, AttnShape) {
    let s = attention_shape(qkv, batch, heads);
    let mut p = Vec::new();
    // SAFETY: the attention forward writes every value of its output and probabilities.
    let out = unsafe {
        uninit_buffer(s.out_len(), |out| {
            p = uninit_buffer(s.probs_len(), |p| {
                attention::forward(values(qkv), s, out, Some(p))
            })
        })
    };
    let out = tensor_of(out, vec![s.batch * s.tokens, s.dim]);
    (out, tensor_of(p, vec![s.probs_len()]), s)
}

/// Linear forward on flex tensors (`x [R, I]`, `w [I, O]`, `b [O]`); returns the output and the
/// sizes.
pub(super) fn linear_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
) -> (FlexTensor, LinearShape) {
    let (xs, ws) = (x.layout().shape(), w.layout().shape());
    let s = LinearShape {
        rows: xs[0],
        inputs: xs[1],
        outputs: ws[1],
    };
    let out = linear::forward(values(x), values(w), b.map(values), s);
    (tensor_of(out, vec![s.rows, s.outputs]), s)
}

/// Norm forward on flex tensors; returns the output and the per-row statistics.
pub(super) fn norm_forward(
    x: &FlexTensor,
    mods: Option<(&FlexTensor, &FlexTensor)>,
    batch: usize,
    kind: NormKind,
    eps: f64,
) -> (FlexTensor, FlexTensor, Rows) {
    let shape = x.layout().shape().to_vec();
    let s = rows_of(&shape, batch);
    let mut stats = vec![0.0f32; 2 * shape[0]];
    // SAFETY: the norm writes every row of its output.
    let out = unsafe {
        uninit_buffer(s.len(), |out| {
            norm::forward(
                values(x),
                mods.map(|(a, b)| (values(a), values(b))),
                s,
                kind,
                eps as f32,
                out,
                Some(&mut stats),
            )
        })
    };
    (
        tensor_of(out, shape.clone()),
        tensor_of(stats, vec![2 * shape[0]]),
        s,
    )
}

/// Host copy of kept token indices (`i64` or `i32` storage).
pub(super) fn host_indices(idx: Tensor<Flex, 2, Int>) -> Vec<usize> {
    let t = idx.into_primitive();
    let t = if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    };
    if let Some(v) = t.as_slice::<i64>() {
        v.iter().map(|&i| i as usize).collect()
    } else if let Some(v) = t.as_slice::<i32>() {
        v.iter().map(|&i| i as usize).collect()
    } else {
        t.to_contiguous()
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("route indices are integers")
            .into_iter()
            .map(|i| i as usize)
            .collect()
    }
}

/// The sizes of a partition of `x` (`[B, N, D]`) by `idx` (`[B, K]`), or `None` when `x` is
/// shared by all samples (`[1, N, D]`, left to the decomposition).
pub(super) fn token_shape(x: &[usize], idx: [usize; 2]) -> Option<TokenShape> {
    (x[0] == idx[0]).then_some(TokenShape {
        batch: idx[0],
        tokens: x[1],
        kept: idx[1],
        width: x[2],
    })
}

/// tanh-GELU forward on a flex tensor.
pub(super) fn gelu_forward(x: &FlexTensor) -> FlexTensor {
    let shape = x.layout().shape().to_vec();
    // SAFETY: the GELU writes every value.
    let out = unsafe {
        uninit_buffer(values(x).len(), |out| {
            elementwise::gelu_tanh(values(x), out)
        })
    };
    tensor_of(out, shape)
}

/// The rotation's layout from `x = [B, N, D]` and a table `[Bt, N, D/H/2]`.
pub(super) fn rope_shape(x: &[usize; 3], table: &[usize; 3], heads: usize) -> RopeShape {
    RopeShape {
        batch: x[0],
        tokens: x[1],
        heads,
        half: table[2],
        table_batch: table[0],
    }
}

/// The rotation (or, `inverse`, its transpose: the gradient) on flex tensors.
pub(super) fn rope_forward(
    x: &FlexTensor,
    cos: &FlexTensor,
    sin: &FlexTensor,
    s: RopeShape,
    inverse: bool,
) -> FlexTensor {
    let shape = x.layout().shape().to_vec();
    // SAFETY: the rotation writes every value.
    let out = unsafe {
        uninit_buffer(values(x).len(), |out| {
            rope::rotate(values(x), values(cos), values(sin), s, inverse, out)
        })
    };
    tensor_of(out, shape)
}

/// Gated residual forward on flex tensors; returns the output and the row layout.
pub(super) fn gated_forward(
    x: &FlexTensor,
    gate: &FlexTensor,
    y: &FlexTensor,
    batch: usize,
) -> (FlexTensor, Rows) {
    let shape = x.layout().shape().to_vec();
    let s = rows_of(&shape, batch);
    // SAFETY: the gated residual writes every row.
    let out = unsafe {
        uninit_buffer(s.len(), |out| {
            elementwise::gated_residual(values(x), values(gate), values(y), s, out)
        })
    };
    (tensor_of(out, shape), s)
}

/// Partition forward: the kept rows `[B, K, D]`.
pub(super) fn gather_forward(x: &FlexTensor, idx: &[usize], s: TokenShape) -> FlexTensor {
    // SAFETY: the gather writes every value.
    let out = unsafe {
        uninit_buffer(s.batch * s.kept * s.width, |out| {
            tokens::gather(values(x), idx, s, out)
        })
    };
    tensor_of(out, vec![s.batch, s.kept, s.width])
}

/// Merge forward: `base` with the kept rows written back, `[B, N, D]`.
pub(super) fn merge_forward(
    base: &FlexTensor,
    kept: &FlexTensor,
    idx: &[usize],
    s: TokenShape,
) -> FlexTensor {
    // SAFETY: the merge writes every value.
    let out = unsafe {
        uninit_buffer(s.batch * s.tokens * s.width, |out| {
            tokens::merge(values(base), values(kept), idx, s, out)
        })
    };
    tensor_of(out, vec![s.batch, s.tokens, s.width])
}

impl FusedOps for Flex {
    fn fused_gather_tokens(x: Tensor<Flex, 3>, idx: Tensor<Flex, 2, Int>) -> Tensor<Flex, 3> {
        let Some(s) = token_shape(&x.dims(), idx.dims()) else {
            return crate::lower::fused::reference::gather_tokens(x, idx);
        };
        wrap(gather_forward(&flex(x), &host_indices(idx), s))
    }

    fn fused_merge_tokens(
        base: Tensor<Flex, 3>,
        kept: Tensor<Flex, 3>,
        idx: Tensor<Flex, 2, Int>,
    ) -> Tensor<Flex, 3> {
        let Some(s) = token_shape(&base.dims(), idx.dims()) else {
            return crate::lower::fused::reference::merge_tokens(base, kept, idx);
        };
        wrap(merge_forward(
            &flex(base),
            &flex(kept),
            &host_indices(idx),
            s,
        ))
    }

    fn fused_linear(
        x: Tensor<Flex, 2>,
        w: Tensor<Flex, 2>,
        b: Option<Tensor<Flex, 1>>,
    ) -> Tensor<Flex, 2> {
        let b = b.map(flex);
        wrap(linear_forward(&flex(x), &flex(w), b.as_ref()).0)
    }

    fn fused_attention(qkv: Tensor<Flex, 2>, batch: usize, heads: usize) -> Tensor<Flex, 2> {
        wrap(attention_forward(&flex(qkv), batch, heads))
    }

    fn fused_cross_attention(
        q: Tensor<Flex, 2>,
        kv: Tensor<Flex, 2>,
        bias: Option<Tensor<Flex, 2>>,
        batch: usize,
        heads: usize,
    ) -> Tensor<Flex, 2> {
        let bias = bias.map(flex);
        let (q, kv) = (flex(q), flex(kv));
        wrap(cross_attention_forward(&q, &kv, bias.as_ref(), (batch, heads), false).0)
    }

    fn fused_norm(
        x: Tensor<Flex, 2>,
        mods: Option<Mods<Flex>>,
        batch: usize,
        kind: NormKind,
        eps: f64,
    ) -> Tensor<Flex, 2> {
        let mods = mods.map(|(sh, sc)| (flex(sh), flex(sc)));
        let mods_ref = mods.as_ref().map(|(a, b)| (a, b));
        wrap(norm_forward(&flex(x), mods_ref, batch, kind, eps).0)
    }

    fn fused_gelu_tanh(x: Tensor<Flex, 2>) -> Tensor<Flex, 2> {
        wrap(gelu_forward(&flex(x)))
    }

    fn fused_rope(
        x: Tensor<Flex, 3>,
        cos: Tensor<Flex, 3>,
        sin: Tensor<Flex, 3>,
        heads: usize,
    ) -> Tensor<Flex, 3> {
        let s = rope_shape(&x.dims(), &cos.dims(), heads);
        wrap(rope_forward(&flex(x), &flex(cos), &flex(sin), s, false))
    }

    fn fused_gated_residual(
        x: Tensor<Flex, 2>,
        gate: Tensor<Flex, 2>,
        y: Tensor<Flex, 2>,
        batch: usize,
    ) -> Tensor<Flex, 2> {
        wrap(gated_forward(&flex(x), &flex(gate), &flex(y), batch).0)
    }

    fn fused_adamw_ema(
        params: &mut [Tensor<Flex, 1>],
        grads: Vec<Option<Tensor<Flex, 1>>>,
        state: AdamEmaState<'_, Flex>,
        h: AdamWEma,
    ) {
        // The tensors are taken out of their slots so that, the step's autodiff references
        // being gone, each buffer is uniquely owned and updated in place; `storage_mut` copies
        // once where a buffer is still shared (e.g. EMA = params at the first step).
        let take = |t: &mut Tensor<Flex, 1>| -> FlexTensor {
            let placeholder = Tensor::<Flex, 1>::empty([0], &Default::default());
            let owned = std::mem::replace(t, placeholder).into_primitive().tensor();
            // A contiguous tensor covering its whole buffer (`to_contiguous` copies otherwise).
            owned.to_contiguous()
        };
        for (i, g) in grads.into_iter().enumerate() {
            let (mut p, mut e) = (take(&mut params[i]), take(&mut state.ema[i]));
            let Some(g) = g else {
                adamw::ema(e.storage_mut::<f32>(), values(&p), h.ema_decay);
                params[i] = wrap(p);
                state.ema[i] = wrap(e);
                continue;
            };
            let (mut m, mut v, g) = (take(&mut state.m[i]), take(&mut state.v[i]), flex(g));
            adamw::step(
                p.storage_mut::<f32>(),
                values(&g),
                m.storage_mut::<f32>(),
                v.storage_mut::<f32>(),
                e.storage_mut::<f32>(),
                h,
            );
            params[i] = wrap(p);
            state.m[i] = wrap(m);
            state.v[i] = wrap(v);
            state.ema[i] = wrap(e);
        }
    }
}
