//! The learned tensors of each op: names, shapes and init roles.
//!
//! Why in the compiler: the burn runtime creates, trains and checkpoints these tensors, and the
//! ONNX exporter writes them as initialisers; both must agree on names and layouts, so the one
//! definition lives here, next to the ops. Names are `<node>.<tensor>` (`blocks.3.attn.qkv.weight`)
//! and survive the route and strip passes (route nodes own no tensors).

use crate::ir::{Graph, NodeId, NormFlavour, Op, ParamInit};

/// The suffixes of a node's learned tensors (`<node>.<suffix>`, `blocks.3.attn.qkv.weight`):
/// the one spelling of them that the runtime, the exporter and the importer use.
pub mod suffix {
    /// A linear layer's matrix, a norm's scale, a token convolution's kernel.
    pub const WEIGHT: &str = "weight";
    /// A linear layer's, a norm's or a token convolution's bias.
    pub const BIAS: &str = "bias";
    /// Attention's packed q, k, v projection `[D, 3D]`.
    pub const QKV_WEIGHT: &str = "qkv.weight";
    /// Its bias `[3D]`.
    pub const QKV_BIAS: &str = "qkv.bias";
    /// Attention's output projection `[D, D]`.
    pub const PROJ_WEIGHT: &str = "proj.weight";
    /// Its bias `[D]`.
    pub const PROJ_BIAS: &str = "proj.bias";
    /// An embedding's table.
    pub const TABLE: &str = "table";
    /// A `param` node's tensor.
    pub const VALUE: &str = "value";
}

/// How a tensor is initialised; the runtime implements each role.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InitRole {
    /// A linear weight `[in, out]`: Xavier-uniform, or zero under adaLN-Zero when the linear is a
    /// modulation / output projection (`zero_under_adaln`).
    LinearWeight {
        fan_in: u64,
        fan_out: u64,
        zero_under_adaln: bool,
    },
    /// A bias or a norm shift: zeros.
    Zeros,
    /// A norm scale: ones.
    Ones,
    /// An embedding table or learned position table: normal with this std.
    Normal { std: f64 },
    /// A depthwise token-conv kernel `[kernel, D]`: uniform ±1/sqrt(kernel).
    ConvKernel { kernel: u64 },
}

/// One learned tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// `<node>.<tensor>`.
    pub name: String,
    /// Owning node.
    pub node: NodeId,
    /// Shape.
    pub shape: Vec<usize>,
    /// Init.
    pub init: InitRole,
}

impl ParamSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every learned tensor of `g`, in topological order (deterministic).
pub fn param_specs(g: &Graph) -> Vec<ParamSpec> {
    let order = g.topo_order().expect("param_specs runs on verified graphs");
    let mut out = vec![];
    for id in order {
        let n = g.node(id);
        let ins = g.inputs_of(id);
        let last = |i: usize| -> u64 { g.ty(ins[i]).last().and_then(|d| d.known()).unwrap_or(1) };
        let mut push = |suffix: &str, shape: Vec<u64>, init: InitRole| {
            out.push(ParamSpec {
                name: format!("{}.{suffix}", n.name),
                node: id,
                shape: shape.into_iter().map(|d| d as usize).collect(),
                init,
            })
        };
        match &n.op {
            Op::Linear { out: o, bias } => {
                let i = last(0);
                let zero = is_adaln_zero_linear(g, id);
                let role = if is_timestep_mlp_linear(g, id) {
                    InitRole::Normal { std: 0.02 }
                } else {
                    InitRole::LinearWeight {
                        fan_in: i,
                        fan_out: *o,
                        zero_under_adaln: zero,
                    }
                };
                push(suffix::WEIGHT, vec![i, *o], role);
                if *bias {
                    push(suffix::BIAS, vec![*o], InitRole::Zeros);
                }
            }
            Op::LayerNorm { affine, .. } => {
                if *affine {
                    push(suffix::WEIGHT, vec![last(0)], InitRole::Ones);
                    push(suffix::BIAS, vec![last(0)], InitRole::Zeros);
                }
            }
            Op::RmsNorm { affine, .. } => {
                if *affine {
                    push(suffix::WEIGHT, vec![last(0)], InitRole::Ones)
                }
            }
            Op::Attention { qkv_bias, .. } => {
                let d = last(0);
                push(
                    suffix::QKV_WEIGHT,
                    vec![d, 3 * d],
                    InitRole::LinearWeight {
                        fan_in: d,
                        fan_out: 3 * d,
                        zero_under_adaln: false,
                    },
                );
                if *qkv_bias {
                    push(suffix::QKV_BIAS, vec![3 * d], InitRole::Zeros);
                }
                push(
                    suffix::PROJ_WEIGHT,
                    vec![d, d],
                    InitRole::LinearWeight {
                        fan_in: d,
                        fan_out: d,
                        zero_under_adaln: false,
                    },
                );
                push(suffix::PROJ_BIAS, vec![d], InitRole::Zeros);
            }
            Op::HeadNorm {
                heads,
                norm,
                affine,
                ..
            } => {
                if *affine {
                    let dh = last(0) / heads.max(&1);
                    push(suffix::WEIGHT, vec![dh], InitRole::Ones);
                    if *norm == NormFlavour::Layer {
                        push(suffix::BIAS, vec![dh], InitRole::Zeros);
                    }
                }
            }
            Op::Embed { vocab, dim } => push(
                suffix::TABLE,
                vec![*vocab, *dim],
                InitRole::Normal { std: 0.02 },
            ),
            Op::ClassEmbed { classes, dim } => push(
                suffix::TABLE,
                vec![classes + 1, *dim],
                InitRole::Normal { std: 0.02 },
            ),
            Op::TokenConv { kernel, .. } => {
                push(
                    suffix::WEIGHT,
                    vec![*kernel, last(0)],
                    InitRole::ConvKernel { kernel: *kernel },
                );
                push(suffix::BIAS, vec![last(0)], InitRole::Zeros);
            }
            Op::Param { shape, init, .. } => push(
                suffix::VALUE,
                shape.clone(),
                match init {
                    ParamInit::Zeros => InitRole::Zeros,
                    ParamInit::Normal { std } => InitRole::Normal { std: *std },
                },
            ),
            // No learned tensors: inputs, fixed tables, shape and elementwise ops, route nodes.
            // The fused norm has no affine (the fusion pass only fuses `affine: false`).
            Op::Input { .. }
            | Op::Gelu { .. }
            | Op::Silu
            | Op::Add
            | Op::Mul
            | Op::Modulate
            | Op::NormModulate { .. }
            | Op::GatedResidual
            | Op::Chunk { .. }
            | Op::Concat { .. }
            | Op::Unsqueeze { .. }
            | Op::Patchify { .. }
            | Op::Unpatchify { .. }
            | Op::PatchifyVideo { .. }
            | Op::UnpatchifyVideo { .. }
            | Op::PosEmbed2d { .. }
            | Op::TimestepEmbed { .. }
            | Op::RouteSelect { .. }
            | Op::StreamIndices { .. }
            | Op::GatherTokens { .. }
            | Op::MergeTokens { .. }
            | Op::Sdpa { .. }
            | Op::Rope { .. }
            | Op::Positions { .. }
            | Op::SelectStream { .. }
            | Op::Glu { .. } => {}
        }
    }
    out
}

/// The timestep embedder's MLP (`linear(timestep_embed)` and the linear after its activation):
/// the official DiT code re-initialises both weights from normal(0, 0.02) after the Xavier
/// pass, under either init scheme.
fn is_timestep_mlp_linear(g: &Graph, id: NodeId) -> bool {
    let input = |n: NodeId| g.inputs_of(n).first().copied();
    let is = |n: Option<NodeId>, f: fn(&Op) -> bool| n.is_some_and(|n| f(&g.node(n).op));
    let first = |n: Option<NodeId>| {
        is(n, |o| matches!(o, Op::Linear { .. }))
            && is(n.and_then(input), |o| matches!(o, Op::TimestepEmbed { .. }))
    };
    let me = Some(id);
    first(me) || {
        let act = input(id);
        is(act, |o| matches!(o, Op::Silu | Op::Gelu { .. })) && first(act.and_then(input))
    }
}

/// DiT's adaLN-Zero zeroes (a) linears that turn the conditioning (no token axis) into
/// modulation shifts, scales and gates, and (b) the final projection feeding the output.
/// Decided structurally: (a) the input has no token axis and the output reaches a `modulate` or
/// `mul` through unsqueeze/chunk only; (b) the output reaches a graph output through
/// `unpatchify` (or `unpatchify_video`) only.
fn is_adaln_zero_linear(g: &Graph, id: NodeId) -> bool {
    let input_has_tokens = g
        .inputs_of(id)
        .first()
        .is_some_and(|&i| g.ty(i).token_axis.is_some());
    let mut stack = vec![id];
    let mut feeds_modulation = false;
    let mut feeds_output = false;
    while let Some(n) = stack.pop() {
        if g.outputs.iter().any(|(_, o)| *o == n) {
            feeds_output = true;
        }
        for (u, _) in g.users_of(n) {
            match g.node(u).op {
                Op::Unsqueeze { .. } | Op::Chunk { .. } => stack.push(u),
                Op::Unpatchify { .. } | Op::UnpatchifyVideo { .. } => {
                    stack.push(u);
                }
                Op::Modulate | Op::Mul | Op::NormModulate { .. } | Op::GatedResidual => {
                    feeds_modulation = true
                }
                _ => {}
            }
        }
    }
    (!input_has_tokens && feeds_modulation) || (input_has_tokens && feeds_output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile_str, CompileOptions};

    fn dit_s2() -> Graph {
        let text = include_str!("../../models/dit-s2.json");
        compile_str(
            text,
            "dit-s2.json",
            &CompileOptions {
                dense: true,
                ..Default::default()
            },
        )
        .unwrap()
        .model
        .graph
    }

    #[test]
    fn param_count_matches_the_analysis() {
        let g = dit_s2();
        let specs = param_specs(&g);
        let total: usize = specs.iter().map(ParamSpec::numel).sum();
        assert_eq!(total as u64, crate::analysis::analyse(&g).total.params);
    }

    #[test]
    fn adaln_zero_targets_modulation_and_output_linears_only() {
        let g = dit_s2();
        let zeroed: Vec<String> = param_specs(&g)
            .into_iter()
            .filter(|p| {
                matches!(
                    p.init,
                    InitRole::LinearWeight {
                        zero_under_adaln: true,
                        ..
                    }
                )
            })
            .map(|p| p.name)
            .collect();
        assert_eq!(zeroed.len(), 12 + 2, "{zeroed:?}");
        assert!(zeroed.contains(&"blocks.0.ada.weight".to_string()));
        assert!(zeroed.contains(&"final_ada.weight".to_string()));
        assert!(zeroed.contains(&"final_linear.weight".to_string()));
        assert!(!zeroed.contains(&"t_hidden.weight".to_string()));
    }

    #[test]
    fn the_timestep_mlp_starts_from_normal_002_and_nothing_else_does() {
        let g = dit_s2();
        let normal: Vec<String> = param_specs(&g)
            .into_iter()
            .filter(|p| p.init == InitRole::Normal { std: 0.02 } && p.name.ends_with(".weight"))
            .map(|p| p.name)
            .collect();
        assert_eq!(normal, ["t_hidden.weight", "t_emb.weight"]);
    }
}
