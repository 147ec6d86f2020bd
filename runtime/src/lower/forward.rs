//! The graph interpreter: evaluates nodes in topological order on burn tensors.

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use tread_compiler::ir::{Dim, Graph, InputRole, NodeId, Op};

use super::fused::choice::Kernels;
use super::fused::FusedOps;
use super::ops::{eval, needs_input_types, OpCtx};
use super::store::ParamStore;
use super::value::{OpResult, Value};
use crate::condition::Condition;
use crate::routing::RouteSource;

/// The graph inputs, by role.
#[derive(Debug, Clone)]
pub struct Inputs<B: Backend> {
    /// `[B, C, H, W]`.
    pub image: Tensor<B, 4>,
    /// `[B]`.
    pub noise_level: Tensor<B, 1>,
    /// `[B]`, absent for unconditional models.
    pub label: Option<Tensor<B, 1, Int>>,
    /// Text conditioning and video, for the model families that read them.
    pub extra: ExtraInputs<B>,
}

/// The inputs of the newer families by role, each absent unless the model reads it: text
/// conditioning, and a video model's clip.
#[derive(Debug, Clone)]
pub struct ExtraInputs<B: Backend> {
    /// `[B, C, F, H, W]`: bound to the `image` role in place of `Inputs::image` when set.
    pub video: Option<Tensor<B, 5>>,
    /// `[B, L, Dc]` text embeddings.
    pub context: Option<Tensor<B, 3>>,
    /// `[B, L]` padding mask (1 = token).
    pub context_mask: Option<Tensor<B, 2>>,
    /// `[B, Dp]` pooled text vector.
    pub pooled: Option<Tensor<B, 2>>,
    /// `[B, L]` token ids.
    pub token_ids: Option<Tensor<B, 2, Int>>,
    /// `[B]` guidance scale.
    pub guidance: Option<Tensor<B, 1>>,
}

impl<B: Backend> Default for ExtraInputs<B> {
    fn default() -> Self {
        ExtraInputs {
            video: None,
            context: None,
            context_mask: None,
            pooled: None,
            token_ids: None,
            guidance: None,
        }
    }
}

/// A batch's conditioning as the model's inputs: class labels, or text inputs (and, for video
/// models, the clip) in [`ExtraInputs`].
#[derive(Debug, Clone)]
pub struct Conditioning<B: Backend> {
    /// `[B]` labels, absent for unconditional and text-conditioned models.
    pub label: Option<Tensor<B, 1, Int>>,
    /// The inputs beyond image, noise level and label.
    pub extra: ExtraInputs<B>,
}

impl<B: Backend> Conditioning<B> {
    /// No conditioning.
    pub fn none() -> Self {
        Conditioning {
            label: None,
            extra: ExtraInputs::default(),
        }
    }

    /// Labels only.
    pub fn labels(label: Option<Tensor<B, 1, Int>>) -> Self {
        Conditioning {
            label,
            extra: ExtraInputs::default(),
        }
    }

    /// The tensors of a host condition: labels, or a text batch's context, mask and pooled
    /// vector (each bound only where the model has an input of its role).
    pub fn from_host(c: &Condition, device: &B::Device) -> Self {
        match c {
            Condition::None => Self::none(),
            Condition::Labels(l) => Self::labels(Some(Tensor::from_data(
                TensorData::new(l.clone(), [l.len()]),
                device,
            ))),
            Condition::Text(t) => {
                let d = t.dims;
                let f = |v: &[f32], shape: Vec<usize>| TensorData::new(v.to_vec(), shape);
                Conditioning {
                    label: None,
                    extra: ExtraInputs {
                        context: Some(Tensor::from_data(
                            f(&t.context, vec![t.n, d.len, d.context]),
                            device,
                        )),
                        context_mask: Some(Tensor::from_data(f(&t.mask, vec![t.n, d.len]), device)),
                        pooled: d
                            .pooled
                            .map(|p| Tensor::from_data(f(&t.pooled, vec![t.n, p]), device)),
                        ..ExtraInputs::default()
                    },
                }
            }
        }
    }
}

/// The value bound to an input of `role` and `shape`, or why there is none. A video input
/// takes the image batch's tall clips `[B, C, F·H, W]` as `[B, C, F, H, W]`.
fn bind<B: Backend>(role: InputRole, inputs: &Inputs<B>, shape: &[Dim]) -> OpResult<Value<B>> {
    let missing = || {
        format!(
            "the model has a `{}` input and none was given (text-conditioned training and \
             sampling are not wired to data yet)",
            role.name()
        )
    };
    let t = &inputs.extra;
    Ok(match role {
        InputRole::Image => match (&t.video, shape) {
            (Some(v), _) => Value::F5(v.clone()),
            (None, [_, _, f, _, _]) => {
                let [b, c, fh, w] = inputs.image.dims();
                let f = f
                    .known()
                    .ok_or("a video input with an unknown frame count")?
                    as usize;
                if f == 0 || !fh.is_multiple_of(f) {
                    return Err(format!("{fh} rows of clips do not hold {f} frames"));
                }
                Value::F5(inputs.image.clone().reshape([b, c, f, fh / f, w]))
            }
            (None, _) => Value::F4(inputs.image.clone()),
        },
        InputRole::NoiseLevel => Value::F1(inputs.noise_level.clone()),
        InputRole::Label => Value::I1(
            inputs
                .label
                .clone()
                .ok_or("the model needs labels; none were given")?,
        ),
        InputRole::Context => Value::F3(t.context.clone().ok_or_else(missing)?),
        InputRole::ContextMask => Value::F2(t.context_mask.clone().ok_or_else(missing)?),
        InputRole::Pooled => Value::F2(t.pooled.clone().ok_or_else(missing)?),
        InputRole::TokenIds => Value::I2(t.token_ids.clone().ok_or_else(missing)?),
        InputRole::Guidance => Value::F1(t.guidance.clone().ok_or_else(missing)?),
    })
}

/// Runs `g` and returns the value of its first output. Route nodes draw from `routes`.
pub fn forward<B: FusedOps>(
    g: &Graph,
    params: &ParamStore<B>,
    inputs: &Inputs<B>,
    routes: &mut dyn RouteSource,
) -> OpResult<Value<B>> {
    let (_, out) = g.outputs.first().ok_or("graph without outputs")?;
    let mut vals = forward_all(g, params, inputs, routes, &[*out])?;
    vals.remove(out)
        .ok_or_else(|| "output not computed".to_string())
}

/// Runs `g` and returns the values of `keep` (for tests that inspect intermediate values).
/// Values are dropped as soon as their last consumer has run.
pub fn forward_all<B: FusedOps>(
    g: &Graph,
    params: &ParamStore<B>,
    inputs: &Inputs<B>,
    routes: &mut dyn RouteSource,
    keep: &[NodeId],
) -> OpResult<HashMap<NodeId, Value<B>>> {
    let order = g.topo_order().map_err(|c| format!("cycle through {c:?}"))?;
    let mut remaining: HashMap<NodeId, usize> =
        order.iter().map(|&id| (id, g.users_of(id).len())).collect();
    let device = inputs.image.device();
    let mut ctx = OpCtx {
        params,
        routes,
        device: &device,
        kernels: Kernels::from_fused(params.fused),
        input_types: vec![],
    };
    let mut vals: HashMap<NodeId, Value<B>> = HashMap::new();
    for id in order {
        let node = g.node(id);
        let v = if let Op::Input { role } = node.op {
            bind(role, inputs, &g.ty(id).shape)?
        } else {
            let ins = g.inputs_of(id);
            let mut args = Vec::with_capacity(ins.len());
            for i in &ins {
                let v = vals
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("`{}` read before it was computed", g.node(*i).name))?;
                args.push(v);
                let r = remaining.get_mut(i).ok_or("unknown node")?;
                *r -= 1;
                if *r == 0 && !keep.contains(i) {
                    vals.remove(i);
                }
            }
            ctx.input_types = if needs_input_types(&node.op) {
                ins.iter().map(|&i| g.ty(i).clone()).collect()
            } else {
                vec![]
            };
            eval(&node.op, &node.name, args, &mut ctx)
                .map_err(|e| format!("node `{}`: {e}", node.name))?
        };
        vals.insert(id, v);
    }
    Ok(vals)
}
