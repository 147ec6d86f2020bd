//! One function per IR op, on burn tensors. Shapes were checked by the compiler; the only
//! failures here are internal bugs, reported as strings.

use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::module::{attention, linear};
use burn::tensor::{Int, Tensor, TensorData};
use tread_compiler::ir::{GeluApprox, GluAct, NormFlavour, Op, ValueType};
use tread_compiler::params::suffix;

use super::fused::reference::{gather_tokens, gelu_tanh, layer_norm, merge_tokens, rms_norm};
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
    /// Run attention, norms and tanh-GELU through the fused kernels ([`FusedOps`]); `false`
    /// runs the burn decompositions (`treadc bench --no-fuse`, the tests' reference).
    pub fused: bool,
    /// The current node's input types, for the ops that read a token axis' streams
    /// (`select_stream`); empty for the others.
    pub input_types: Vec<ValueType>,
}

/// True when `op`'s lowering reads its inputs' types ([`OpCtx::input_types`]).
pub fn needs_input_types(op: &Op) -> bool {
    matches!(op, Op::SelectStream { .. })
}

/// Evaluates node `name` with op `op` on `x`.
pub fn eval<B: FusedOps>(
    op: &Op,
    name: &str,
    x: Vec<Value<B>>,
    ctx: &mut OpCtx<B>,
) -> OpResult<Value<B>> {
    let p = |suffix: &str| format!("{name}.{suffix}");
    let mut x = x.into_iter();
    let mut next = || x.next().ok_or_else(|| format!("`{name}`: missing input"));
    Ok(match op {
        Op::Input { .. } => return Err("inputs are bound, not evaluated".into()),
        Op::Param { shape, .. } => {
            let flat = ctx.params.flat(&p(suffix::VALUE))?;
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            reshape_value(flat, &shape)?
        }
        Op::Linear { bias, .. } => {
            let w = ctx.params.get::<2>(&p(suffix::WEIGHT))?;
            let b = if *bias {
                Some(ctx.params.get::<1>(&p(suffix::BIAS))?)
            } else {
                None
            };
            let fused = ctx.fused;
            let f = |r: Tensor<B, 2>| match fused {
                true => B::fused_linear(r, w.clone(), b.clone()),
                false => linear(r, w.clone(), b.clone()),
            };
            map_float(next()?, f, |t| per_row(t, f))?
        }
        Op::LayerNorm { eps, affine } | Op::RmsNorm { eps, affine } => {
            let eps = *eps;
            let rms = matches!(op, Op::RmsNorm { .. });
            let scale = if *affine {
                Some(ctx.params.get::<1>(&p(suffix::WEIGHT))?)
            } else {
                None
            };
            let shift = if *affine && !rms {
                Some(ctx.params.get::<1>(&p(suffix::BIAS))?)
            } else {
                None
            };
            let fused = ctx.fused;
            let f = |r: Tensor<B, 2>| {
                let mut y = match (fused, rms) {
                    (true, _) => {
                        let kind = if rms { NormKind::Rms } else { NormKind::Layer };
                        B::fused_norm(r, None, 1, kind, eps)
                    }
                    (false, true) => rms_norm(r, eps),
                    (false, false) => layer_norm(r, eps),
                };
                if let Some(w) = &scale {
                    y = y * w.clone().unsqueeze::<2>();
                }
                if let Some(b) = &shift {
                    y = y + b.clone().unsqueeze::<2>();
                }
                y
            };
            map_float(next()?, f, |t| per_row(t, f))?
        }
        Op::Attention { heads, qkv_bias } if ctx.fused => {
            // Plain 2-D GEMMs around one fused attention node.
            let t = next()?.f3()?;
            let [b, n, d] = t.dims();
            let wqkv = ctx.params.get::<2>(&p(suffix::QKV_WEIGHT))?;
            let bqkv = if *qkv_bias {
                Some(ctx.params.get::<1>(&p(suffix::QKV_BIAS))?)
            } else {
                None
            };
            let qkv = B::fused_linear(t.reshape([b * n, d]), wqkv, bqkv);
            let o = B::fused_attention(qkv, b, *heads as usize);
            let wp = ctx.params.get::<2>(&p(suffix::PROJ_WEIGHT))?;
            let bp = ctx.params.get::<1>(&p(suffix::PROJ_BIAS))?;
            Value::F3(B::fused_linear(o, wp, Some(bp)).reshape([b, n, d]))
        }
        Op::Attention { heads, qkv_bias } => {
            let t = next()?.f3()?;
            let [b, n, d] = t.dims();
            let h = *heads as usize;
            let wqkv = ctx.params.get::<2>(&p(suffix::QKV_WEIGHT))?;
            let bqkv = if *qkv_bias {
                Some(ctx.params.get::<1>(&p(suffix::QKV_BIAS))?)
            } else {
                None
            };
            let qkv = linear(t, wqkv, bqkv);
            let split = |i: usize| {
                qkv.clone()
                    .narrow(2, i * d, d)
                    .reshape([b, n, h, d / h])
                    .swap_dims(1, 2)
            };
            let o = attention(split(0), split(1), split(2), None, None, Default::default());
            let o = o.swap_dims(1, 2).reshape([b, n, d]);
            let wp = ctx.params.get::<2>(&p(suffix::PROJ_WEIGHT))?;
            let bp = ctx.params.get::<1>(&p(suffix::PROJ_BIAS))?;
            Value::F3(linear(o, wp, Some(bp)))
        }
        Op::Gelu { approximate } => match approximate {
            GeluApprox::Tanh if ctx.fused => map_float(next()?, B::fused_gelu_tanh, |t| {
                per_row(t, B::fused_gelu_tanh)
            })?,
            GeluApprox::Tanh => map_float(next()?, gelu_tanh, gelu_tanh)?,
            GeluApprox::None => map_float(next()?, activation::gelu, activation::gelu)?,
        },
        Op::Silu => map_float(next()?, activation::silu, activation::silu)?,
        Op::Add => binary(
            next()?,
            next()?,
            |a, b| a + b,
            |a, b| a + b,
            |a, b| a + b,
            |a, b| a + b,
        )?,
        Op::Mul => binary(
            next()?,
            next()?,
            |a, b| a * b,
            |a, b| a * b,
            |a, b| a * b,
            |a, b| a * b,
        )?,
        Op::Modulate => {
            let (v, shift, scale) = (next()?, next()?, next()?);
            let scaled = binary(
                v,
                scale,
                |a, s| a.clone() + a * s,
                |a, s| a.clone() + a * s,
                |a, s| a.clone() + a * s,
                |a, s| a.clone() + a * s,
            )?;
            binary(
                scaled,
                shift,
                |a, b| a + b,
                |a, b| a + b,
                |a, b| a + b,
                |a, b| a + b,
            )?
        }
        Op::NormModulate { eps, rms } => {
            let (x, shift, scale) = (next()?.f3()?, next()?.f3()?, next()?.f3()?);
            let [b, n, d] = x.dims();
            let kind = if *rms { NormKind::Rms } else { NormKind::Layer };
            let mods = (per_sample(shift)?, per_sample(scale)?);
            let y = B::fused_norm(x.reshape([b * n, d]), Some(mods), b, kind, *eps);
            Value::F3(y.reshape([b, n, d]))
        }
        Op::GatedResidual => {
            let (x, gate, y) = (next()?.f3()?, next()?.f3()?, next()?.f3()?);
            let [b, n, d] = x.dims();
            let rows = |t: Tensor<B, 3>| t.reshape([b * n, d]);
            let out = B::fused_gated_residual(rows(x), per_sample(gate)?, rows(y), b);
            Value::F3(out.reshape([b, n, d]))
        }
        Op::Chunk {
            axis,
            chunks,
            index,
        } => {
            let v = next()?;
            let size = v.shape()[*axis] / *chunks as usize;
            let start = size * *index as usize;
            let a = *axis;
            match v {
                Value::F1(t) => Value::F1(t.narrow(a, start, size)),
                Value::F2(t) => Value::F2(t.narrow(a, start, size)),
                Value::F3(t) => Value::F3(t.narrow(a, start, size)),
                Value::F4(t) => Value::F4(t.narrow(a, start, size)),
                _ => return Err("chunk of an integer tensor".into()),
            }
        }
        Op::Concat { axis } => {
            let vs: Vec<Value<B>> = std::iter::once(next()?).chain(x).collect();
            let a = *axis;
            match vs[0].rank() {
                2 => Value::F2(Tensor::cat(
                    vs.into_iter().map(Value::f2).collect::<OpResult<_>>()?,
                    a,
                )),
                3 => Value::F3(Tensor::cat(
                    vs.into_iter().map(Value::f3).collect::<OpResult<_>>()?,
                    a,
                )),
                4 => Value::F4(Tensor::cat(
                    vs.into_iter().map(Value::f4).collect::<OpResult<_>>()?,
                    a,
                )),
                r => return Err(format!("concat of rank {r}")),
            }
        }
        Op::Unsqueeze { axis } => match next()? {
            Value::F1(t) => Value::F2(t.unsqueeze_dim(*axis)),
            Value::F2(t) => Value::F3(t.unsqueeze_dim(*axis)),
            Value::F3(t) => Value::F4(t.unsqueeze_dim(*axis)),
            v => return Err(format!("unsqueeze of rank {}", v.rank())),
        },
        Op::Patchify { patch } => Value::F3(patchify(next()?.f4()?, *patch as usize)),
        Op::Unpatchify {
            patch,
            height,
            width,
        } => Value::F4(unpatchify(
            next()?.f3()?,
            *patch as usize,
            *height as usize,
            *width as usize,
        )),
        Op::PatchifyVideo { patch_t, patch } => Value::F3(patchify_video(
            next()?.f5()?,
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
            next()?.f3()?,
            [*patch_t as usize, *patch as usize],
            [*frames as usize, *height as usize, *width as usize],
        )),
        Op::PosEmbed2d { .. } => Value::F3(ctx.params.fixed(name)?.unsqueeze::<3>()),
        Op::TimestepEmbed { .. } => {
            let t = next()?.f1()?;
            let freqs = ctx.params.fixed(name)?;
            let args = t.unsqueeze_dim::<2>(1) * freqs;
            Value::F2(Tensor::cat(vec![args.clone().cos(), args.sin()], 1))
        }
        Op::ClassEmbed { .. } => {
            let y = next()?.i1()?;
            let table = ctx.params.get::<2>(&p(suffix::TABLE))?;
            Value::F2(table.select(0, y))
        }
        Op::TokenConv { kernel, causal } => {
            let t = next()?.f3()?;
            let w = ctx.params.get::<2>(&p(suffix::WEIGHT))?;
            let bias = ctx.params.get::<1>(&p(suffix::BIAS))?;
            Value::F3(token_conv(t, w, bias, *kernel as usize, *causal))
        }
        Op::RouteSelect {
            route,
            keep,
            sorted,
            ..
        } => {
            let t = next()?;
            let shape = t.shape();
            let (b, n, k) = (shape[0], shape[1], *keep as usize);
            let idx = ctx.routes.indices(*route, b, n, k, *sorted);
            Value::I2(Tensor::<B, 2, Int>::from_data(
                TensorData::new(idx, [b, k]),
                ctx.device,
            ))
        }
        Op::StreamIndices {
            before,
            tokens,
            after,
            ..
        } => {
            let idx = next()?.i2()?;
            let [b, _] = idx.dims();
            let (before, tokens, after) = (*before as i64, *tokens as i64, *after as i64);
            let mut parts = vec![];
            if before > 0 {
                parts.push(
                    Tensor::<B, 1, Int>::arange(0..before, ctx.device)
                        .unsqueeze::<2>()
                        .repeat_dim(0, b),
                );
            }
            parts.push(idx + before);
            if after > 0 {
                let from = before + tokens;
                parts.push(
                    Tensor::<B, 1, Int>::arange(from..from + after, ctx.device)
                        .unsqueeze::<2>()
                        .repeat_dim(0, b),
                );
            }
            Value::I2(Tensor::cat(parts, 1))
        }
        Op::Sdpa { heads } => {
            let (q, k, v) = (next()?.f3()?, next()?.f3()?, next()?.f3()?);
            let mask = match x.next() {
                Some(m) => Some(m.f2()?),
                None => None,
            };
            let h = *heads as usize;
            let ([b, _, d], kd) = (q.dims(), k.dims());
            let packable = kd == v.dims() && kd[0] == b && kd[2] == d && d.is_multiple_of(h);
            Value::F3(match mask {
                None if ctx.fused && q.dims() == kd && packable => sdpa_fused(q, k, v, h),
                mask if ctx.fused && packable => sdpa_cross_fused(q, k, v, mask, h),
                mask => sdpa(q, k, v, mask, h),
            })
        }
        Op::Rope { heads, .. } => {
            let (t, pos) = (next()?.f3()?, next()?.f3()?);
            let freqs = ctx.params.fixed(name)?;
            Value::F3(rope(t, pos, freqs, *heads as usize, ctx.fused))
        }
        Op::Positions { .. } => Value::F3(ctx.params.fixed(name)?.unsqueeze::<3>()),
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
            let (start, len) = (before as usize, seg.tokens as usize);
            match next()? {
                Value::F2(t) => Value::F2(t.narrow(axis, start, len)),
                Value::F3(t) => Value::F3(t.narrow(axis, start, len)),
                Value::F4(t) => Value::F4(t.narrow(axis, start, len)),
                Value::I2(t) => Value::I2(t.narrow(axis, start, len)),
                v => return Err(format!("select_stream of rank {}", v.rank())),
            }
        }
        Op::HeadNorm {
            heads,
            norm,
            eps,
            affine,
        } => {
            let (h, eps) = (*heads as usize, *eps);
            let scale = if *affine {
                Some(ctx.params.get::<1>(&p(suffix::WEIGHT))?)
            } else {
                None
            };
            let shift = if *affine && *norm == NormFlavour::Layer {
                Some(ctx.params.get::<1>(&p(suffix::BIAS))?)
            } else {
                None
            };
            let rms = *norm == NormFlavour::Rms;
            let fused = ctx.fused;
            let f =
                |r: Tensor<B, 2>| {
                    let [n, d] = r.dims();
                    let g = r.reshape([n, h, d / h]);
                    let mut y =
                        match (fused, rms) {
                            // Each head's slice is a row of its own: the fused norm over `[N·H, Dh]`.
                            (true, _) => {
                                let kind = if rms { NormKind::Rms } else { NormKind::Layer };
                                B::fused_norm(g.reshape([n * h, d / h]), None, 1, kind, eps)
                                    .reshape([n, h, d / h])
                            }
                            (false, true) => rms_norm(g, eps),
                            (false, false) => layer_norm(g, eps),
                        };
                    if let Some(w) = &scale {
                        y = y * w.clone().unsqueeze::<3>();
                    }
                    if let Some(b) = &shift {
                        y = y + b.clone().unsqueeze::<3>();
                    }
                    y.reshape([n, d])
                };
            map_float(next()?, f, |t| per_row(t, f))?
        }
        Op::Glu { act } => {
            let act = *act;
            let f = |r: Tensor<B, 2>| {
                let [_, d] = r.dims();
                let (a, b) = (r.clone().narrow(1, 0, d / 2), r.narrow(1, d / 2, d / 2));
                let a = match act {
                    GluAct::Silu => activation::silu(a),
                    GluAct::GeluTanh => gelu_tanh(a),
                };
                a * b
            };
            map_float(next()?, f, |t| per_row(t, f))?
        }
        Op::Embed { dim, .. } => {
            let ids = next()?.i2()?;
            let [b, l] = ids.dims();
            let table = ctx.params.get::<2>(&p(suffix::TABLE))?;
            Value::F3(
                table
                    .select(0, ids.reshape([b * l]))
                    .reshape([b, l, *dim as usize]),
            )
        }
        Op::GatherTokens { .. } => {
            let (v, idx) = (next()?.f3()?, next()?.i2()?);
            Value::F3(if ctx.fused {
                B::fused_gather_tokens(v, idx)
            } else {
                gather_tokens(v, idx)
            })
        }
        Op::MergeTokens { .. } => {
            let (base, kept, idx) = (next()?.f3()?, next()?.f3()?, next()?.i2()?);
            Value::F3(if ctx.fused {
                B::fused_merge_tokens(base, kept, idx)
            } else {
                merge_tokens(base, kept, idx)
            })
        }
    })
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

/// Unmasked self-attention of same-shaped `q`, `k`, `v` through the fused attention kernel:
/// packed side by side as the `[B·N, 3·D]` projection it reads (joint attention's concatenated
/// streams take this path).
pub fn sdpa_fused<B: FusedOps>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    heads: usize,
) -> Tensor<B, 3> {
    let [b, n, d] = q.dims();
    let qkv = Tensor::cat(vec![q, k, v], 2).reshape([b * n, 3 * d]);
    B::fused_attention(qkv, b, heads).reshape([b, n, d])
}

/// Attention of `q [B, N, D]` on other keys `k`, `v` (`[B, M, D]`: cross-attention to text),
/// or with a key mask `[B or 1, M]`, through the fused cross-attention kernel: `k` and `v`
/// packed side by side as `[B·M, 2·D]`, the mask as [`sdpa`]'s additive key bias.
pub fn sdpa_cross_fused<B: FusedOps>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask: Option<Tensor<B, 2>>,
    heads: usize,
) -> Tensor<B, 3> {
    let [b, n, d] = q.dims();
    let [_, m, _] = k.dims();
    let kv = Tensor::cat(vec![k, v], 2).reshape([b * m, 2 * d]);
    let bias = mask.map(|mk| key_bias(mk).expand([b, m]));
    B::fused_cross_attention(q.reshape([b * n, d]), kv, bias, b, heads).reshape([b, n, d])
}

/// Rotary position embedding: each head's pairs `(2i, 2i+1)` turned by the angles
/// `positions · freqs` (`freqs`: [`tread_compiler::tables::rope_freqs`], `[axes, dh/2]`).
pub fn rope<B: FusedOps>(
    x: Tensor<B, 3>,
    pos: Tensor<B, 3>,
    freqs: Tensor<B, 2>,
    heads: usize,
    fused: bool,
) -> Tensor<B, 3> {
    let [_, _, d] = x.dims();
    let [bp, _, axes] = pos.dims();
    let half = d / heads / 2;
    let angles = pos.matmul(freqs.unsqueeze::<3>().expand([bp, axes, half]));
    let (cos, sin) = (angles.clone().cos(), angles.sin());
    if fused {
        B::fused_rope(x, cos, sin, heads)
    } else {
        super::fused::reference::rope(x, cos, sin, heads)
    }
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

/// Applies a last-axis op to `[B, N, F]` as one `[B·N, F]` matrix. Why: burn-flex 0.21 has fast
/// paths for contiguous and 2-D broadcasting element-wise ops but walks 3-D broadcasts element
/// by element (measured: the largest cost of a training step), and a 3-D linear does a batched
/// matmul plus a batch reduction in its weight gradient instead of one GEMM.
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
