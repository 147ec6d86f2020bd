//! One function per IR op, on burn tensors. Shapes were checked by the compiler; the only
//! failures here are internal bugs, reported as strings. The fused ops run through
//! [`Kernels`], the one place that picks the backend's kernels or their decompositions.

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use tread_compiler::ir::{GeluApprox, GluAct, NormFlavour, Op, ValueType};
use tread_compiler::params::suffix;

use super::fused::choice::Kernels;
use super::fused::{FusedOps, NormKind};
use super::store::ParamStore;
use super::value::{OpResult, Value};
use crate::routing::RouteSource;

/// Everything an op may need besides its inputs.
pub struct OpCtx<'a, B: Backend> {
    /// Learned and fixed tensors.
    pub params: &'a ParamStore<B>,
    /// Source of kept indices for route nodes.
    pub routes: &'a mut dyn RouteSource,
    /// Device for created tensors.
    pub device: &'a B::Device,
    /// The fused kernels, or their reference decompositions (`treadc bench --no-fuse`, the
    /// tests' reference).
    pub kernels: Kernels,
    /// The current node's input types, for the ops that read a token axis' streams
    /// (`select_stream`); empty for the others.
    pub input_types: Vec<ValueType>,
}

/// True when `op`'s lowering reads its inputs' types ([`OpCtx::input_types`]).
pub fn needs_input_types(op: &Op) -> bool {
    matches!(op, Op::SelectStream { .. })
}

/// A node's inputs in order; a missing one is an internal error naming the node.
struct Inputs<'n, B: Backend> {
    node: &'n str,
    values: std::vec::IntoIter<Value<B>>,
}

impl<B: Backend> Inputs<'_, B> {
    fn next(&mut self) -> OpResult<Value<B>> {
        let node = self.node;
        self.values
            .next()
            .ok_or_else(|| format!("`{node}`: missing input"))
    }
}

/// A node's parameters, looked up by their suffix ([`suffix`]).
struct NodeParams<'a, B: Backend> {
    store: &'a ParamStore<B>,
    node: &'a str,
}

impl<B: Backend> NodeParams<'_, B> {
    fn get<const D: usize>(&self, suffix: &str) -> OpResult<Tensor<B, D>> {
        self.store.get::<D>(&format!("{}.{suffix}", self.node))
    }

    /// The parameter of any rank as a flat vector.
    fn flat(&self, suffix: &str) -> OpResult<Tensor<B, 1>> {
        self.store.flat(&format!("{}.{suffix}", self.node))
    }

    /// The parameter when the op has it (`present`), else `None`.
    fn optional<const D: usize>(
        &self,
        present: bool,
        suffix: &str,
    ) -> OpResult<Option<Tensor<B, D>>> {
        present.then(|| self.get::<D>(suffix)).transpose()
    }
}

/// Evaluates node `name` with op `op` on `x`.
pub fn eval<B: FusedOps>(
    op: &Op,
    name: &str,
    x: Vec<Value<B>>,
    ctx: &mut OpCtx<B>,
) -> OpResult<Value<B>> {
    let mut x = Inputs {
        node: name,
        values: x.into_iter(),
    };
    let params = NodeParams {
        store: ctx.params,
        node: name,
    };
    let k = ctx.kernels;
    Ok(match op {
        Op::Input { .. } => return Err("inputs are bound, not evaluated".into()),
        Op::Param { shape, .. } => {
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            reshape_value(params.flat(suffix::VALUE)?, &shape)?
        }
        Op::Linear { bias, .. } => {
            let w = params.get::<2>(suffix::WEIGHT)?;
            let b = params.optional::<1>(*bias, suffix::BIAS)?;
            on_rows(x.next()?, |r| k.linear(r, w.clone(), b.clone()))?
        }
        Op::LayerNorm { eps, affine } => {
            norm(x.next()?, &params, NormKind::Layer, *eps, *affine, 1, k)?
        }
        Op::RmsNorm { eps, affine } => {
            norm(x.next()?, &params, NormKind::Rms, *eps, *affine, 1, k)?
        }
        Op::HeadNorm {
            heads,
            norm: flavour,
            eps,
            affine,
        } => {
            let kind = match flavour {
                NormFlavour::Layer => NormKind::Layer,
                NormFlavour::Rms => NormKind::Rms,
            };
            norm(x.next()?, &params, kind, *eps, *affine, *heads as usize, k)?
        }
        Op::Attention { heads, qkv_bias } => Value::F3(attention(
            x.next()?.f3()?,
            &params,
            *heads as usize,
            *qkv_bias,
            k,
        )?),
        Op::Gelu {
            approximate: GeluApprox::Tanh,
        } => on_rows(x.next()?, |r| k.gelu_tanh(r))?,
        Op::Gelu {
            approximate: GeluApprox::None,
        } => map_float(x.next()?, activation::gelu, activation::gelu)?,
        Op::Silu => map_float(x.next()?, activation::silu, activation::silu)?,
        Op::Add => add(x.next()?, x.next()?)?,
        Op::Mul => binary(
            x.next()?,
            x.next()?,
            |a, b| a * b,
            |a, b| a * b,
            |a, b| a * b,
            |a, b| a * b,
        )?,
        Op::Modulate => {
            let (v, shift, scale) = (x.next()?, x.next()?, x.next()?);
            let scaled = binary(
                v,
                scale,
                |a, s| a.clone() + a * s,
                |a, s| a.clone() + a * s,
                |a, s| a.clone() + a * s,
                |a, s| a.clone() + a * s,
            )?;
            add(scaled, shift)?
        }
        Op::NormModulate { eps, rms } => {
            let (t, shift, scale) = (x.next()?.f3()?, x.next()?.f3()?, x.next()?.f3()?);
            let [b, n, d] = t.dims();
            let kind = if *rms { NormKind::Rms } else { NormKind::Layer };
            let mods = (per_sample(shift)?, per_sample(scale)?);
            let y = k.norm(t.reshape([b * n, d]), Some(mods), b, kind, *eps);
            Value::F3(y.reshape([b, n, d]))
        }
        Op::GatedResidual => {
            let (t, gate, y) = (x.next()?.f3()?, x.next()?.f3()?, x.next()?.f3()?);
            let [b, n, d] = t.dims();
            let rows = |t: Tensor<B, 3>| t.reshape([b * n, d]);
            let out = k.gated_residual(rows(t), per_sample(gate)?, rows(y), b);
            Value::F3(out.reshape([b, n, d]))
        }
        Op::Chunk {
            axis,
            chunks,
            index,
        } => {
            let v = x.next()?;
            let size = v.shape()[*axis] / *chunks as usize;
            narrow(v, *axis, size * *index as usize, size)?
        }
        Op::Concat { axis } => {
            let first = x.next()?;
            concat(std::iter::once(first).chain(x.values).collect(), *axis)?
        }
        Op::Unsqueeze { axis } => match x.next()? {
            Value::F1(t) => Value::F2(t.unsqueeze_dim(*axis)),
            Value::F2(t) => Value::F3(t.unsqueeze_dim(*axis)),
            Value::F3(t) => Value::F4(t.unsqueeze_dim(*axis)),
            v => return Err(format!("unsqueeze of rank {}", v.rank())),
        },
        Op::Patchify { patch } => Value::F3(patchify(x.next()?.f4()?, *patch as usize)),
        Op::Unpatchify {
            patch,
            height,
            width,
        } => Value::F4(unpatchify(
            x.next()?.f3()?,
            *patch as usize,
            *height as usize,
            *width as usize,
        )),
        Op::PatchifyVideo { patch_t, patch } => Value::F3(patchify_video(
            x.next()?.f5()?,
            *patch_t as usize,
            *patch as usize,
        )),
        Op::UnpatchifyVideo {
            patch_t,
            patch,
            frames,
            height,
            width,
        } => Value::F5(unpatchify_video(
            x.next()?.f3()?,
            [*patch_t as usize, *patch as usize],
            [*frames as usize, *height as usize, *width as usize],
        )),
        Op::PosEmbed2d { .. } | Op::Positions { .. } => {
            Value::F3(ctx.params.fixed(name)?.unsqueeze::<3>())
        }
        Op::TimestepEmbed { .. } => {
            let t = x.next()?.f1()?;
            let args = t.unsqueeze_dim::<2>(1) * ctx.params.fixed(name)?;
            Value::F2(Tensor::cat(vec![args.clone().cos(), args.sin()], 1))
        }
        Op::ClassEmbed { .. } => {
            let table = params.get::<2>(suffix::TABLE)?;
            Value::F2(table.select(0, x.next()?.i1()?))
        }
        Op::Embed { dim, .. } => {
            let ids = x.next()?.i2()?;
            let [b, l] = ids.dims();
            let table = params.get::<2>(suffix::TABLE)?;
            let rows = table.select(0, ids.reshape([b * l]));
            Value::F3(rows.reshape([b, l, *dim as usize]))
        }
        Op::TokenConv { kernel, causal } => {
            let t = x.next()?.f3()?;
            let w = params.get::<2>(suffix::WEIGHT)?;
            let bias = params.get::<1>(suffix::BIAS)?;
            Value::F3(token_conv(t, w, bias, *kernel as usize, *causal))
        }
        Op::RouteSelect {
            route,
            keep,
            sorted,
            ..
        } => {
            let shape = x.next()?.shape();
            let (b, n, keep) = (shape[0], shape[1], *keep as usize);
            let idx = ctx.routes.indices(*route, b, n, keep, *sorted);
            Value::I2(Tensor::<B, 2, Int>::from_data(
                TensorData::new(idx, [b, keep]),
                ctx.device,
            ))
        }
        Op::StreamIndices {
            before,
            tokens,
            after,
            ..
        } => {
            let counts = [*before, *tokens, *after].map(|c| c as i64);
            Value::I2(stream_indices(x.next()?.i2()?, counts, ctx.device))
        }
        Op::Sdpa { heads } => {
            let (q, kk, v) = (x.next()?.f3()?, x.next()?.f3()?, x.next()?.f3()?);
            let mask = x.values.next().map(Value::f2).transpose()?;
            Value::F3(sdpa_op(q, kk, v, mask, *heads as usize, k))
        }
        Op::Rope { heads, .. } => {
            let (t, pos) = (x.next()?.f3()?, x.next()?.f3()?);
            let freqs = ctx.params.fixed(name)?;
            Value::F3(rope(t, pos, freqs, *heads as usize, k))
        }
        Op::SelectStream { stream } => {
            let ty = ctx
                .input_types
                .first()
                .ok_or("select_stream without its input's type")?;
            let axis = ty
                .token_axis
                .ok_or("select_stream of a value without tokens")?;
            let (before, seg) = ty
                .segment(stream)
                .ok_or_else(|| format!("no `{stream}` tokens in {ty}"))?;
            narrow(x.next()?, axis, before as usize, seg.tokens as usize)?
        }
        Op::Glu { act } => {
            let act = *act;
            on_rows(x.next()?, |r| {
                let [_, d] = r.dims();
                let (a, b) = (r.clone().narrow(1, 0, d / 2), r.narrow(1, d / 2, d / 2));
                let a = match act {
                    GluAct::Silu => activation::silu(a),
                    GluAct::GeluTanh => k.gelu_tanh(a),
                };
                a * b
            })?
        }
        Op::GatherTokens { .. } => {
            let (v, idx) = (x.next()?.f3()?, x.next()?.i2()?);
            Value::F3(k.gather_tokens(v, idx))
        }
        Op::MergeTokens { .. } => {
            let (base, kept, idx) = (x.next()?.f3()?, x.next()?.f3()?, x.next()?.i2()?);
            Value::F3(k.merge_tokens(base, kept, idx))
        }
    })
}

/// A layer or RMS norm over the last axis with its optional affine (`weight`, and `bias` for a
/// layer norm). With `heads > 1` each head's slice of a row is normed on its own, and the
/// affine has the head width.
fn norm<B: FusedOps>(
    v: Value<B>,
    params: &NodeParams<B>,
    kind: NormKind,
    eps: f64,
    affine: bool,
    heads: usize,
    k: Kernels,
) -> OpResult<Value<B>> {
    let scale = params.optional::<1>(affine, suffix::WEIGHT)?;
    let shift = params.optional::<1>(affine && kind == NormKind::Layer, suffix::BIAS)?;
    on_rows(v, |r| {
        let [n, d] = r.dims();
        // One row per head's slice; the affine (of the head width) broadcasts over them.
        let mut y = k.norm(r.reshape([n * heads, d / heads]), None, 1, kind, eps);
        if let Some(w) = &scale {
            y = y * w.clone().unsqueeze::<2>();
        }
        if let Some(b) = &shift {
            y = y + b.clone().unsqueeze::<2>();
        }
        y.reshape([n, d])
    })
}

/// Self-attention with its packed `qkv` projection and output projection: 2-D GEMMs around one
/// attention kernel.
fn attention<B: FusedOps>(
    t: Tensor<B, 3>,
    params: &NodeParams<B>,
    heads: usize,
    qkv_bias: bool,
    k: Kernels,
) -> OpResult<Tensor<B, 3>> {
    let [b, n, d] = t.dims();
    let wqkv = params.get::<2>(suffix::QKV_WEIGHT)?;
    let bqkv = params.optional::<1>(qkv_bias, suffix::QKV_BIAS)?;
    let qkv = k.linear(t.reshape([b * n, d]), wqkv, bqkv);
    let o = k.attention(qkv, b, heads);
    let wp = params.get::<2>(suffix::PROJ_WEIGHT)?;
    let bp = params.get::<1>(suffix::PROJ_BIAS)?;
    Ok(k.linear(o, wp, Some(bp)).reshape([b, n, d]))
}

/// `len` entries of `v` from `start` along `axis`.
fn narrow<B: Backend>(v: Value<B>, axis: usize, start: usize, len: usize) -> OpResult<Value<B>> {
    Ok(match v {
        Value::F1(t) => Value::F1(t.narrow(axis, start, len)),
        Value::F2(t) => Value::F2(t.narrow(axis, start, len)),
        Value::F3(t) => Value::F3(t.narrow(axis, start, len)),
        Value::F4(t) => Value::F4(t.narrow(axis, start, len)),
        Value::I2(t) => Value::I2(t.narrow(axis, start, len)),
        v => return Err(format!("a slice of a rank-{} value", v.rank())),
    })
}

/// The float values `vs` (all of one rank) joined along `axis`.
fn concat<B: Backend>(vs: Vec<Value<B>>, axis: usize) -> OpResult<Value<B>> {
    Ok(match vs[0].rank() {
        2 => Value::F2(Tensor::cat(
            vs.into_iter().map(Value::f2).collect::<OpResult<_>>()?,
            axis,
        )),
        3 => Value::F3(Tensor::cat(
            vs.into_iter().map(Value::f3).collect::<OpResult<_>>()?,
            axis,
        )),
        4 => Value::F4(Tensor::cat(
            vs.into_iter().map(Value::f4).collect::<OpResult<_>>()?,
            axis,
        )),
        r => return Err(format!("concat of rank {r}")),
    })
}

/// The kept positions `idx [B, K]` of a stream inside its token axis: the `before` tokens
/// ahead of it and the `after` behind it (other streams, never routed) are always kept.
fn stream_indices<B: Backend>(
    idx: Tensor<B, 2, Int>,
    [before, tokens, after]: [i64; 3],
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let [b, _] = idx.dims();
    let all = |range: std::ops::Range<i64>| {
        Tensor::<B, 1, Int>::arange(range, device)
            .unsqueeze::<2>()
            .repeat_dim(0, b)
    };
    let mut parts = vec![];
    if before > 0 {
        parts.push(all(0..before));
    }
    parts.push(idx + before);
    if after > 0 {
        let from = before + tokens;
        parts.push(all(from..from + after));
    }
    Tensor::cat(parts, 1)
}

/// numpy-broadcasting addition.
fn add<B: Backend>(a: Value<B>, b: Value<B>) -> OpResult<Value<B>> {
    binary(a, b, |a, b| a + b, |a, b| a + b, |a, b| a + b, |a, b| a + b)
}

/// Attention of `q` on `k`, `v` with an optional key mask: through the attention kernels when
/// the keys and values pack beside each other (self-attention, joint attention's concatenated
/// streams, cross-attention to text), else the general decomposition [`sdpa`].
fn sdpa_op<B: FusedOps>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask: Option<Tensor<B, 2>>,
    heads: usize,
    kernels: Kernels,
) -> Tensor<B, 3> {
    let ([b, _, d], kd) = (q.dims(), k.dims());
    let packable = kd == v.dims() && kd[0] == b && kd[2] == d && d.is_multiple_of(heads);
    match mask {
        None if packable && q.dims() == kd => sdpa_self(q, k, v, heads, kernels),
        mask if packable => sdpa_cross(q, k, v, mask, heads, kernels),
        mask => sdpa(q, k, v, mask, heads),
    }
}

/// A key mask (1 = attend, 0 = padding) as the additive bias attention adds to its scores:
/// 0 for a key, a large negative number for padding.
fn key_bias<B: Backend>(mask: Tensor<B, 2>) -> Tensor<B, 2> {
    (mask.neg() + 1.0) * tread_compiler::tables::MASKED_KEY_BIAS
}

/// Scaled dot-product attention on `heads` heads: `softmax(q·kᵀ/√dh + bias)·v` with a key
/// mask `[B, Tk]` (1 = attend, 0 = padding) turned into a large negative bias.
pub fn sdpa<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask: Option<Tensor<B, 2>>,
    heads: usize,
) -> Tensor<B, 3> {
    let [b, tq, d] = q.dims();
    let [_, tk, dv] = v.dims();
    let split =
        |t: Tensor<B, 3>, n: usize, w: usize| t.reshape([b, n, heads, w / heads]).swap_dims(1, 2);
    let (q, k, v) = (split(q, tq, d), split(k, tk, d), split(v, tk, dv));
    let scale = 1.0 / ((d / heads) as f64).sqrt();
    let mut scores = q.matmul(k.swap_dims(2, 3)) * scale;
    if let Some(m) = mask {
        let bias = key_bias(m);
        let [bm, _] = bias.dims();
        scores = scores + bias.reshape([bm, 1, 1, tk]).expand([b, heads, tq, tk]);
    }
    let probs = activation::softmax(scores, 3);
    probs.matmul(v).swap_dims(1, 2).reshape([b, tq, dv])
}

/// Unmasked self-attention of same-shaped `q`, `k`, `v` through the attention kernel: packed
/// side by side as the `[B·N, 3·D]` projection it reads.
pub fn sdpa_self<B: FusedOps>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    heads: usize,
    kernels: Kernels,
) -> Tensor<B, 3> {
    let [b, n, d] = q.dims();
    let qkv = Tensor::cat(vec![q, k, v], 2).reshape([b * n, 3 * d]);
    kernels.attention(qkv, b, heads).reshape([b, n, d])
}

/// Attention of `q [B, N, D]` on other keys `k`, `v` (`[B, M, D]`: cross-attention to text),
/// or with a key mask `[B or 1, M]`, through the cross-attention kernel: `k` and `v` packed
/// side by side as `[B·M, 2·D]`, the mask as [`sdpa`]'s additive key bias.
pub fn sdpa_cross<B: FusedOps>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask: Option<Tensor<B, 2>>,
    heads: usize,
    kernels: Kernels,
) -> Tensor<B, 3> {
    let [b, n, d] = q.dims();
    let [_, m, _] = k.dims();
    let kv = Tensor::cat(vec![k, v], 2).reshape([b * m, 2 * d]);
    let bias = mask.map(|mk| key_bias(mk).expand([b, m]));
    kernels
        .cross_attention(q.reshape([b * n, d]), kv, bias, b, heads)
        .reshape([b, n, d])
}

/// Rotary position embedding: each head's pairs `(2i, 2i+1)` turned by the angles
/// `positions · freqs` (`freqs`: [`tread_compiler::tables::rope_freqs`], `[axes, dh/2]`).
pub fn rope<B: FusedOps>(
    x: Tensor<B, 3>,
    pos: Tensor<B, 3>,
    freqs: Tensor<B, 2>,
    heads: usize,
    kernels: Kernels,
) -> Tensor<B, 3> {
    let [_, _, d] = x.dims();
    let [bp, _, axes] = pos.dims();
    let half = d / heads / 2;
    let angles = pos.matmul(freqs.unsqueeze::<3>().expand([bp, axes, half]));
    let (cos, sin) = (angles.clone().cos(), angles.sin());
    kernels.rope(x, cos, sin, heads)
}

/// A per-sample `[B, 1, D]` vector (the fusion pass checked the shape) as `[B, D]`.
fn per_sample<B: Backend>(t: Tensor<B, 3>) -> OpResult<Tensor<B, 2>> {
    match t.dims() {
        [b, 1, d] => Ok(t.reshape([b, d])),
        other => Err(format!(
            "expected a per-sample [B, 1, D] vector, got {other:?}"
        )),
    }
}

fn reshape_value<B: Backend>(flat: Tensor<B, 1>, shape: &[usize]) -> OpResult<Value<B>> {
    Ok(match shape.len() {
        1 => Value::F1(flat),
        2 => Value::F2(flat.reshape([shape[0], shape[1]])),
        3 => Value::F3(flat.reshape([shape[0], shape[1], shape[2]])),
        4 => Value::F4(flat.reshape([shape[0], shape[1], shape[2], shape[3]])),
        r => return Err(format!("param of rank {r}")),
    })
}

/// Applies a rank-generic op to rank-2 and rank-3 floats (the ranks of token and
/// conditioning values).
fn map_float<B: Backend>(
    v: Value<B>,
    f2: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
    f3: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
) -> OpResult<Value<B>> {
    Ok(match v {
        Value::F2(t) => Value::F2(f2(t)),
        Value::F3(t) => Value::F3(f3(t)),
        other => return Err(format!("op on rank {} not supported", other.rank())),
    })
}

/// Applies a row-wise op to a `[R, F]` value, or to `[B, N, F]` as one `[B·N, F]` matrix.
fn on_rows<B: Backend>(
    v: Value<B>,
    f: impl Fn(Tensor<B, 2>) -> Tensor<B, 2>,
) -> OpResult<Value<B>> {
    map_float(v, &f, |t| per_row(t, &f))
}

/// Applies a last-axis op to `[B, N, F]` as one `[B·N, F]` matrix. Why: burn-flex 0.21 has fast
/// paths for contiguous and 2-D broadcasting element-wise ops but walks 3-D broadcasts element
/// by element, and a 3-D linear does a batched matmul plus a batch reduction in its weight gradient instead of one GEMM.
fn per_row<B: Backend>(
    t: Tensor<B, 3>,
    f: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [b, n, d] = t.dims();
    let out = f(t.reshape([b * n, d]));
    let [_, o] = out.dims();
    out.reshape([b, n, o])
}

/// Repeats size-1 axes of `t` up to `target` (a contiguous copy), so that the element-wise op
/// that follows takes burn-flex's contiguous fast path instead of a strided broadcast.
fn materialize<B: Backend, const D: usize>(
    mut t: Tensor<B, D>,
    target: [usize; D],
) -> Tensor<B, D> {
    let dims = t.dims();
    for a in 0..D {
        if dims[a] == 1 && target[a] > 1 {
            t = t.repeat_dim(a, target[a]);
        }
    }
    t
}

fn same_shape<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> (Tensor<B, D>, Tensor<B, D>) {
    let (da, db) = (a.dims(), b.dims());
    let mut target = [0; D];
    for k in 0..D {
        target[k] = da[k].max(db[k]);
    }
    (materialize(a, target), materialize(b, target))
}

/// numpy-broadcasting binary op: both sides brought to the larger rank with leading 1s, and
/// (rank 3 and 4) to the same shape.
fn binary<B: Backend>(
    a: Value<B>,
    b: Value<B>,
    f1: impl FnOnce(Tensor<B, 1>, Tensor<B, 1>) -> Tensor<B, 1>,
    f2: impl FnOnce(Tensor<B, 2>, Tensor<B, 2>) -> Tensor<B, 2>,
    f3: impl FnOnce(Tensor<B, 3>, Tensor<B, 3>) -> Tensor<B, 3>,
    f4: impl FnOnce(Tensor<B, 4>, Tensor<B, 4>) -> Tensor<B, 4>,
) -> OpResult<Value<B>> {
    Ok(match a.rank().max(b.rank()) {
        1 => Value::F1(f1(a.f1()?, b.f1()?)),
        2 => Value::F2(f2(a.f2()?, b.f2()?)),
        3 => {
            let (a, b) = same_shape(a.f3()?, b.f3()?);
            Value::F3(f3(a, b))
        }
        4 => {
            let (a, b) = same_shape(a.f4()?, b.f4()?);
            Value::F4(f4(a, b))
        }
        r => return Err(format!("binary op of rank {r}")),
    })
}

/// `[B, C, H, W] → [B, (H/p)(W/p), p·p·C]`, tokens row-major, patch vectors (row, col, channel).
pub fn patchify<B: Backend>(x: Tensor<B, 4>, p: usize) -> Tensor<B, 3> {
    let [b, c, h, w] = x.dims();
    let (gh, gw) = (h / p, w / p);
    x.reshape([b, c, gh, p, gw, p])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([b, gh * gw, p * p * c])
}

/// `[B, C, F, H, W] → [B, (F/pt)(H/p)(W/p), pt·p·p·C]`, tokens row-major over (frame, row,
/// column), patch vectors (frame, row, column, channel).
pub fn patchify_video<B: Backend>(x: Tensor<B, 5>, pt: usize, p: usize) -> Tensor<B, 3> {
    let [b, c, f, h, w] = x.dims();
    let (gf, gh, gw) = (f / pt, h / p, w / p);
    x.reshape([b, c, gf, pt, gh, p, gw, p])
        .permute([0, 2, 4, 6, 3, 5, 7, 1])
        .reshape([b, gf * gh * gw, pt * p * p * c])
}

/// Inverse of [`patchify_video`] for a clip of `[frames, height, width]`.
pub fn unpatchify_video<B: Backend>(
    x: Tensor<B, 3>,
    [pt, p]: [usize; 2],
    [f, h, w]: [usize; 3],
) -> Tensor<B, 5> {
    let [b, _, feat] = x.dims();
    let c = feat / (pt * p * p);
    let (gf, gh, gw) = (f / pt, h / p, w / p);
    x.reshape([b, gf, gh, gw, pt, p, p, c])
        .permute([0, 7, 1, 4, 2, 5, 3, 6])
        .reshape([b, c, f, h, w])
}

/// Inverse of [`patchify`].
pub fn unpatchify<B: Backend>(x: Tensor<B, 3>, p: usize, h: usize, w: usize) -> Tensor<B, 4> {
    let [b, _, f] = x.dims();
    let c = f / (p * p);
    let (gh, gw) = (h / p, w / p);
    x.reshape([b, gh, gw, p, p, c])
        .permute([0, 5, 1, 3, 2, 4])
        .reshape([b, c, h, w])
}

/// Depthwise convolution over tokens: `out[n] = Σ_j w[j] · x[n − (k−1) + j] + bias` (causal,
/// zero-padded before the first token), or centred (left pad ⌊(k−1)/2⌋) when not causal.
pub fn token_conv<B: Backend>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    k: usize,
    causal: bool,
) -> Tensor<B, 3> {
    let [b, n, d] = x.dims();
    let left = if causal { k - 1 } else { (k - 1) / 2 };
    let right = k - 1 - left;
    let device = x.device();
    let mut parts = vec![];
    if left > 0 {
        parts.push(Tensor::zeros([b, left, d], &device));
    }
    parts.push(x);
    if right > 0 {
        parts.push(Tensor::zeros([b, right, d], &device));
    }
    let padded = Tensor::cat(parts, 1);
    let mut out = bias.unsqueeze::<3>();
    for j in 0..k {
        let wj = w.clone().narrow(0, j, 1).unsqueeze::<3>();
        out = out + padded.clone().narrow(1, j, n) * wj;
    }
    out
}
