//! [`FusedOps`] for `Autodiff<Flex>`: each fused op is one autodiff node whose forward is the
//! native kernel and whose backward is hand-written (the `Backward` impls below), following
//! burn's backend-extension pattern (`examples/custom-cubecl-kernel` at v0.21.0). What each
//! backward keeps: attention and cross-attention their inputs and probabilities, the norms their
//! input and row statistics (and the scale vectors), GELU its input, the gated residual its gate
//! and branch.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::BackendTypes;
use burn::tensor::{Int, Tensor, TensorPrimitive};

use super::flex::{
    attention_forward_keep, contiguous, cross_attention_forward, gated_forward, gather_forward,
    gelu_forward, host_indices, linear_forward, merge_forward, norm_forward, rope_forward,
    rope_shape, tensor_of, token_shape, values,
};
use super::{AdamEmaState, FusedOps, Mods, NormKind};
use crate::kernels::adamw::AdamWEma;
use crate::kernels::attention::{self, AttnShape};
use crate::kernels::buffer::uninit_buffer;
use crate::kernels::cross_attention::{self, CrossShape};
use crate::kernels::elementwise::{self, Rows};
use crate::kernels::linear::{self, LinearGrads, LinearShape, Wanted};
use crate::kernels::norm::{self, ModGrads};
use crate::kernels::rope::RopeShape;
use crate::kernels::tokens::{self, TokenShape};

type Ad = Autodiff<Flex>;
/// The autodiff primitive: the flex tensor and its graph node.
type AdTensor = <Ad as BackendTypes>::FloatTensorPrimitive;

fn unwrap_ad<const D: usize>(t: Tensor<Ad, D>) -> AdTensor {
    t.into_primitive().tensor()
}

fn wrap_ad<const D: usize>(t: AdTensor) -> Tensor<Ad, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// Consumes the node's gradient, computes the parents' gradients with `f` (told which parents
/// are tracked) and registers those of the tracked parents.
fn backward_n<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    f: impl FnOnce(S, FlexTensor, [bool; N]) -> [Option<FlexTensor>; N],
) {
    let Ops {
        parents,
        node,
        state,
    } = ops;
    let g = contiguous(grads.consume::<Flex>(&node));
    let tracked = parents.each_ref().map(Option::is_some);
    let out = f(state, g, tracked);
    for (p, gp) in parents.into_iter().zip(out) {
        if let (Some(p), Some(gp)) = (p, gp) {
            grads.register::<Flex>(p.id, gp);
        }
    }
}

fn shape_of(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// The linear layer's backward, with a bias (parents x, W, b) or without (x, W).
#[derive(Debug)]
struct LinearBackward;

/// The gradients of a linear layer as flex tensors, for the tracked parents `[x, W, b]`.
fn linear_grads(
    (x, w, s): (FlexTensor, FlexTensor, LinearShape),
    g: &FlexTensor,
    [x_tracked, weight, bias]: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let want = Wanted {
        x: x_tracked,
        weight,
        bias,
    };
    let LinearGrads {
        x: dx,
        weight: dw,
        bias: db,
    } = linear::backward(values(&x), values(&w), values(g), s, want);
    [
        dx.map(|v| tensor_of(v, vec![s.rows, s.inputs])),
        dw.map(|v| tensor_of(v, vec![s.inputs, s.outputs])),
        db.map(|v| tensor_of(v, vec![s.outputs])),
    ]
}

impl Backward<Flex, 3> for LinearBackward {
    /// The input, the weight and the sizes.
    type State = (FlexTensor, FlexTensor, LinearShape);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |state, g, tracked| {
            linear_grads(state, &g, tracked)
        });
    }
}

impl Backward<Flex, 2> for LinearBackward {
    /// The input, the weight and the sizes.
    type State = (FlexTensor, FlexTensor, LinearShape);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |state, g, [x, w]| {
            let [dx, dw, _] = linear_grads(state, &g, [x, w, false]);
            [dx, dw]
        });
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 1> for AttentionBackward {
    /// The packed input, the probabilities and the sizes.
    type State = (FlexTensor, FlexTensor, AttnShape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |(qkv, probs, s), g, _| {
            // SAFETY: the attention backward writes every value of dqkv.
            let d = unsafe {
                uninit_buffer(s.qkv_len(), |d| {
                    attention::backward(values(&qkv), values(&probs), values(&g), s, d)
                })
            };
            [Some(tensor_of(d, shape_of(&qkv)))]
        });
    }
}

#[derive(Debug)]
struct CrossAttentionBackward;

impl Backward<Flex, 2> for CrossAttentionBackward {
    /// The queries, the packed keys and values, the probabilities and the sizes.
    type State = (FlexTensor, FlexTensor, FlexTensor, CrossShape);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |(q, kv, probs, s), g, _| {
            let mut dkv = Vec::new();
            // SAFETY: the cross-attention backward writes every value of dq and dkv.
            let dq = unsafe {
                uninit_buffer(s.q_len(), |dq| {
                    dkv = uninit_buffer(s.kv_len(), |dkv| {
                        cross_attention::backward(
                            (values(&q), values(&kv)),
                            values(&probs),
                            values(&g),
                            s,
                            (dq, dkv),
                        )
                    })
                })
            };
            [
                Some(tensor_of(dq, shape_of(&q))),
                Some(tensor_of(dkv, shape_of(&kv))),
            ]
        });
    }
}

#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 1> for NormBackward {
    /// Input, row statistics, layout, kind.
    type State = (FlexTensor, FlexTensor, Rows, NormKind);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |(x, stats, s, kind), g, _| {
            // SAFETY: the norm backward writes every value of dx.
            let dx = unsafe {
                uninit_buffer(s.len(), |dx| {
                    norm::backward(values(&x), values(&stats), values(&g), (s, kind), dx, None)
                })
            };
            [Some(tensor_of(dx, shape_of(&x)))]
        });
    }
}

#[derive(Debug)]
struct NormModulateBackward;

impl Backward<Flex, 3> for NormModulateBackward {
    /// Input, row statistics, scale vectors, layout, kind.
    type State = (FlexTensor, FlexTensor, FlexTensor, Rows, NormKind);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |(x, stats, scale, s, kind), g, _| {
            let per_sample_len = s.batch * s.width;
            let (mut dshift, mut dscale) = (Vec::new(), Vec::new());
            // SAFETY: the norm backward writes every value of dx, dshift and dscale.
            let dx = unsafe {
                uninit_buffer(s.len(), |dx| {
                    dshift = uninit_buffer(per_sample_len, |dshift| {
                        dscale = uninit_buffer(per_sample_len, |dscale| {
                            norm::backward(
                                values(&x),
                                values(&stats),
                                values(&g),
                                (s, kind),
                                dx,
                                Some(ModGrads {
                                    scale: values(&scale),
                                    dshift,
                                    dscale,
                                }),
                            )
                        })
                    })
                })
            };
            let per_sample = vec![s.batch, s.width];
            [
                Some(tensor_of(dx, shape_of(&x))),
                Some(tensor_of(dshift, per_sample.clone())),
                Some(tensor_of(dscale, per_sample)),
            ]
        });
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |x, g, _| {
            // SAFETY: the GELU backward writes every value.
            let dx = unsafe {
                uninit_buffer(values(&x).len(), |dx| {
                    elementwise::gelu_tanh_backward(values(&x), values(&g), dx)
                })
            };
            [Some(tensor_of(dx, shape_of(&x)))]
        });
    }
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    /// The angle tables (cos, sin) and the layout.
    type State = (FlexTensor, FlexTensor, RopeShape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |(cos, sin, s), g, _| {
            // The rotation is orthogonal: its gradient is the rotation by the opposite angle.
            [Some(rope_forward(&g, &cos, &sin, s, true))]
        });
    }
}

#[derive(Debug)]
struct GatedResidualBackward;

impl Backward<Flex, 3> for GatedResidualBackward {
    /// Gate, branch, layout.
    type State = (FlexTensor, FlexTensor, Rows);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |(gate, y, s), g, tracked| {
            let mut dgate = Vec::new();
            // SAFETY: the gated-residual backward writes every value of dgate and dy.
            let dy = unsafe {
                uninit_buffer(s.len(), |dy| {
                    dgate = uninit_buffer(s.batch * s.width, |dgate| {
                        elementwise::gated_residual_backward(
                            values(&gate),
                            values(&y),
                            values(&g),
                            s,
                            dgate,
                            dy,
                        )
                    })
                })
            };
            [
                tracked[0].then(|| g.clone()),
                Some(tensor_of(dgate, shape_of(&gate))),
                Some(tensor_of(dy, shape_of(&y))),
            ]
        });
    }
}

#[derive(Debug)]
struct GatherBackward;

impl Backward<Flex, 1> for GatherBackward {
    /// Kept indices and sizes.
    type State = (Vec<usize>, TokenShape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |(idx, s), g, _| {
            // SAFETY: the gather backward writes every value of dx.
            let dx = unsafe {
                uninit_buffer(s.batch * s.tokens * s.width, |dx| {
                    tokens::gather_backward(values(&g), &idx, s, dx)
                })
            };
            [Some(tensor_of(dx, vec![s.batch, s.tokens, s.width]))]
        });
    }
}

#[derive(Debug)]
struct MergeBackward;

impl Backward<Flex, 2> for MergeBackward {
    /// Kept indices and sizes.
    type State = (Vec<usize>, TokenShape);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_n(ops, grads, |(idx, s), g, _| {
            let mut dkept = Vec::new();
            // SAFETY: the merge backward writes every value of dbase and dkept.
            let dbase = unsafe {
                uninit_buffer(s.batch * s.tokens * s.width, |dbase| {
                    dkept = uninit_buffer(s.batch * s.kept * s.width, |dkept| {
                        tokens::merge_backward(values(&g), &idx, s, dbase, dkept)
                    })
                })
            };
            [
                Some(tensor_of(dbase, vec![s.batch, s.tokens, s.width])),
                Some(tensor_of(dkept, vec![s.batch, s.kept, s.width])),
            ]
        });
    }
}

/// Records `out` as one autodiff node computed from `parents`, whose backward is `bw` with
/// `state` (dropped when no parent is tracked).
fn record<BW: Backward<Flex, N>, const N: usize>(
    bw: BW,
    parents: [&AdTensor; N],
    state: BW::State,
    out: FlexTensor,
) -> AdTensor {
    match bw
        .prepare::<NoCheckpointing>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// The flex tensor behind an autodiff tensor, contiguous.
fn inner(t: &AdTensor) -> FlexTensor {
    contiguous(t.primitive.clone())
}

impl FusedOps for Ad {
    fn fused_gather_tokens(x: Tensor<Ad, 3>, idx: Tensor<Ad, 2, Int>) -> Tensor<Ad, 3> {
        let Some(s) = token_shape(&x.dims(), idx.dims()) else {
            return crate::lower::fused::reference::gather_tokens(x, idx);
        };
        let (x, idx) = (unwrap_ad(x), host_indices(idx.inner()));
        let out = gather_forward(&inner(&x), &idx, s);
        wrap_ad(record(GatherBackward, [&x], (idx, s), out))
    }

    fn fused_merge_tokens(
        base: Tensor<Ad, 3>,
        kept: Tensor<Ad, 3>,
        idx: Tensor<Ad, 2, Int>,
    ) -> Tensor<Ad, 3> {
        let Some(s) = token_shape(&base.dims(), idx.dims()) else {
            return crate::lower::fused::reference::merge_tokens(base, kept, idx);
        };
        let (base, kept, idx) = (unwrap_ad(base), unwrap_ad(kept), host_indices(idx.inner()));
        let out = merge_forward(&inner(&base), &inner(&kept), &idx, s);
        wrap_ad(record(MergeBackward, [&base, &kept], (idx, s), out))
    }

    fn fused_linear(x: Tensor<Ad, 2>, w: Tensor<Ad, 2>, b: Option<Tensor<Ad, 1>>) -> Tensor<Ad, 2> {
        let (x, w) = (unwrap_ad(x), unwrap_ad(w));
        let (xi, wi) = (inner(&x), inner(&w));
        wrap_ad(match b {
            Some(b) => {
                let b = unwrap_ad(b);
                let (out, s) = linear_forward(&xi, &wi, Some(&inner(&b)));
                record(LinearBackward, [&x, &w, &b], (xi, wi, s), out)
            }
            None => {
                let (out, s) = linear_forward(&xi, &wi, None);
                record(LinearBackward, [&x, &w], (xi, wi, s), out)
            }
        })
    }

    fn fused_attention(qkv: Tensor<Ad, 2>, batch: usize, heads: usize) -> Tensor<Ad, 2> {
        let qkv = unwrap_ad(qkv);
        let qi = inner(&qkv);
        let (out, probs, s) = attention_forward_keep(&qi, batch, heads);
        wrap_ad(record(AttentionBackward, [&qkv], (qi, probs, s), out))
    }

    fn fused_cross_attention(
        q: Tensor<Ad, 2>,
        kv: Tensor<Ad, 2>,
        bias: Option<Tensor<Ad, 2>>,
        batch: usize,
        heads: usize,
    ) -> Tensor<Ad, 2> {
        let bias = bias.map(|b| contiguous(b.inner().into_primitive().tensor()));
        let (q, kv) = (unwrap_ad(q), unwrap_ad(kv));
        let (qi, kvi) = (inner(&q), inner(&kv));
        let (out, probs, s) =
            cross_attention_forward(&qi, &kvi, bias.as_ref(), (batch, heads), true);
        let probs = probs.unwrap_or_else(|| tensor_of(vec![], vec![0]));
        wrap_ad(record(
            CrossAttentionBackward,
            [&q, &kv],
            (qi, kvi, probs, s),
            out,
        ))
    }

    fn fused_norm(
        x: Tensor<Ad, 2>,
        mods: Option<Mods<Ad>>,
        batch: usize,
        kind: NormKind,
        eps: f64,
    ) -> Tensor<Ad, 2> {
        let x = unwrap_ad(x);
        let xi = inner(&x);
        wrap_ad(match mods {
            None => {
                let (out, stats, s) = norm_forward(&xi, None, batch, kind, eps);
                record(NormBackward, [&x], (xi, stats, s, kind), out)
            }
            Some((shift, scale)) => {
                let (shift, scale) = (unwrap_ad(shift), unwrap_ad(scale));
                let (shi, sci) = (inner(&shift), inner(&scale));
                let (out, stats, s) = norm_forward(&xi, Some((&shi, &sci)), batch, kind, eps);
                let state = (xi, stats, sci, s, kind);
                record(NormModulateBackward, [&x, &shift, &scale], state, out)
            }
        })
    }

    fn fused_gelu_tanh(x: Tensor<Ad, 2>) -> Tensor<Ad, 2> {
        let x = unwrap_ad(x);
        let xi = inner(&x);
        let out = gelu_forward(&xi);
        wrap_ad(record(GeluBackward, [&x], xi, out))
    }

    fn fused_rope(
        x: Tensor<Ad, 3>,
        cos: Tensor<Ad, 3>,
        sin: Tensor<Ad, 3>,
        heads: usize,
    ) -> Tensor<Ad, 3> {
        let s = rope_shape(&x.dims(), &cos.dims(), heads);
        let (cos, sin) = (
            contiguous(cos.inner().into_primitive().tensor()),
            contiguous(sin.inner().into_primitive().tensor()),
        );
        let x = unwrap_ad(x);
        let out = rope_forward(&inner(&x), &cos, &sin, s, false);
        wrap_ad(record(RopeBackward, [&x], (cos, sin, s), out))
    }

    fn fused_gated_residual(
        x: Tensor<Ad, 2>,
        gate: Tensor<Ad, 2>,
        y: Tensor<Ad, 2>,
        batch: usize,
    ) -> Tensor<Ad, 2> {
        let (x, gate, y) = (unwrap_ad(x), unwrap_ad(gate), unwrap_ad(y));
        let (gi, yi) = (inner(&gate), inner(&y));
        let (out, s) = gated_forward(&inner(&x), &gi, &yi, batch);
        wrap_ad(record(
            GatedResidualBackward,
            [&x, &gate, &y],
            (gi, yi, s),
            out,
        ))
    }

    /// The optimiser never runs on autodiff tensors (the trainer steps the inner backend).
    fn fused_adamw_ema(
        params: &mut [Tensor<Ad, 1>],
        grads: Vec<Option<Tensor<Ad, 1>>>,
        state: AdamEmaState<'_, Ad>,
        h: AdamWEma,
    ) {
        super::reference::adamw_ema(params, grads, state, h)
    }
}
