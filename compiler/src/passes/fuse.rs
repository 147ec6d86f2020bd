//! The fusion pass: rewrites DiT-block patterns into the fused ops the burn runtime has
//! single-pass kernels for (`runtime/src/kernels/`); training and sampling graphs only, never ONNX.
//!
//! Patterns, each only where every intermediate value has this one user:
//! - `modulate(layer_norm(x) | rms_norm(x), shift, scale)`, norm without affine, with per-sample
//!   `[B, 1, D]` shift and scale → `norm_modulate(x, shift, scale)`;
//! - `add(x, mul(gate, y))` (either operand order of both ops), with a per-sample `[B, 1, D]`
//!   gate and `x`, `y` of one shape → `gated_residual(x, gate, y)`.
//!
//! The rewritten node keeps the replaced node's name, place and origin, so block records, outputs
//! and dumps stay put; parameters and counted FLOPs are unchanged. `linear → GELU` is not fused:
//! the `gemm` crate has no epilogue hook, and the GELU kernel is already one parallel pass.

use crate::diag::Result;
use crate::ir::{Dim, Graph, NodeId, Op, ValueType};

/// What the pass rewrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FuseReport {
    /// `norm → modulate` pairs fused.
    pub norm_modulate: usize,
    /// `mul → add` pairs fused.
    pub gated_residual: usize,
}

/// Returns `g` with the patterns above fused, and what was fused.
pub fn fuse(g: &Graph) -> Result<(Graph, FuseReport)> {
    let mut out = g.clone();
    let mut report = FuseReport::default();
    for id in out.node_ids() {
        let op = out.node(id).op.clone();
        match op {
            Op::Modulate if fuse_norm_modulate(&mut out, id) => report.norm_modulate += 1,
            Op::Add if fuse_gated_residual(&mut out, id) => report.gated_residual += 1,
            _ => {}
        }
    }
    crate::shape::infer(&mut out)?;
    crate::verify::verify(&out)?;
    Ok((out, report))
}

/// True when `id` has exactly one consumer and is no graph output.
fn single_use(g: &Graph, id: NodeId) -> bool {
    g.users_of(id).len() == 1 && !g.outputs.iter().any(|(_, o)| *o == id)
}

/// True when `v` is a per-sample vector `[B, 1, D]` for token values `x = [B, N, D]` (token
/// axis 1).
fn per_sample_of(v: &ValueType, x: &ValueType) -> bool {
    x.shape.len() == 3
        && x.token_axis == Some(1)
        && v.token_axis.is_none()
        && v.shape.len() == 3
        && v.shape[0] == x.shape[0]
        && v.shape[1] == Dim::Known(1)
        && v.shape[2] == x.shape[2]
}

fn fuse_norm_modulate(g: &mut Graph, m: NodeId) -> bool {
    let ins = g.inputs_of(m);
    let (norm, shift, scale) = (ins[0], ins[1], ins[2]);
    let (eps, rms) = match g.node(norm).op {
        Op::LayerNorm { eps, affine: false } => (eps, false),
        Op::RmsNorm { eps, affine: false } => (eps, true),
        _ => return false,
    };
    let x = g.inputs_of(norm)[0];
    let xt = g.ty(x);
    if !single_use(g, norm) || !per_sample_of(g.ty(shift), xt) || !per_sample_of(g.ty(scale), xt) {
        return false;
    }
    g.set_input(m, 0, x);
    g.node_mut(m).op = Op::NormModulate { eps, rms };
    g.remove_node(norm);
    true
}

fn fuse_gated_residual(g: &mut Graph, a: NodeId) -> bool {
    let ins = g.inputs_of(a);
    for (mul_slot, mul) in ins.iter().copied().enumerate() {
        if !matches!(g.node(mul).op, Op::Mul) || !single_use(g, mul) {
            continue;
        }
        let x = ins[1 - mul_slot];
        let mi = g.inputs_of(mul);
        for gate_slot in 0..2 {
            let (gate, y) = (mi[gate_slot], mi[1 - gate_slot]);
            let (xt, yt) = (g.ty(x), g.ty(y));
            if xt.shape == yt.shape
                && xt.token_axis == yt.token_axis
                && per_sample_of(g.ty(gate), xt)
            {
                g.set_input(a, 0, x);
                g.set_input(a, 1, gate);
                g.set_input(a, 2, y);
                g.node_mut(a).op = Op::GatedResidual;
                g.remove_node(mul);
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile_str, CompileOptions};
    use crate::params::param_specs;

    fn preset(text: &str, dense: bool) -> Graph {
        let opts = CompileOptions {
            dense,
            ..Default::default()
        };
        compile_str(text, "preset.json", &opts).unwrap().model.graph
    }

    #[test]
    fn fuses_every_dit_block_and_keeps_params_and_flops() {
        for dense in [true, false] {
            let g = preset(include_str!("../../../models/dit-s2.json"), dense);
            let (f, r) = fuse(&g).unwrap();
            // Two norm→modulate per block plus the final layer; two gated residuals per block.
            assert_eq!(
                r,
                FuseReport {
                    norm_modulate: 25,
                    gated_residual: 24
                }
            );
            assert_eq!(f.len(), g.len() - 49);
            assert_eq!(param_specs(&f), param_specs(&g));
            let (a, b) = (crate::analysis::analyse(&g), crate::analysis::analyse(&f));
            assert_eq!(a.total, b.total);
        }
    }

    #[test]
    fn a_norm_read_twice_is_left_alone() {
        let text = include_str!("../../../models/dit-s2.json");
        let mut g = preset(text, true);
        let norm = g.find("blocks.0.norm1").unwrap();
        // A second reader of the norm (the attention reads it directly).
        let attn = g.find("blocks.0.attn").unwrap();
        g.set_input(attn, 0, norm);
        let (f, _) = fuse(&g).unwrap();
        assert!(f.find("blocks.0.norm1").is_some());
        assert!(matches!(
            f.node(f.find("blocks.0.mod1").unwrap()).op,
            Op::Modulate
        ));
    }
}
