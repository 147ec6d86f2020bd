//! Parameter and FLOP counts, per node, per block and in total.
//!
//! Convention (the DiT paper's): FLOPs are multiply-adds of one forward pass for ONE sample
//! (symbolic dims such as the batch count as 1), counting matrix products only — linear layers,
//! the two attention products (QKᵀ and AV) and token convolutions. Elementwise ops, norms,
//! softmax, embeddings lookups and route gathers/scatters count zero, so the dense DiT sizes
//! reproduce the paper's GFLOPs within 1% (tested in `tests/analysis.rs`).

use serde::Serialize;

use crate::ir::{Graph, NodeId, NormFlavour, Op, Place, ValueType};

/// Parameters and FLOPs of one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Trainable parameters.
    pub params: u64,
    /// Fixed (non-trainable) tensors such as the sin-cos position table.
    pub fixed: u64,
    /// Forward multiply-adds per sample.
    pub flops: u64,
    /// The part of `flops` that mixes tokens (attention's QKᵀ and AV, token convolutions):
    /// it grows with the product of the token counts, the rest (projections, MLPs) with one.
    pub mixing_flops: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.params += o.params;
        self.fixed += o.fixed;
        self.flops += o.flops;
        self.mixing_flops += o.mixing_flops;
    }
}

/// Per-block summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockCost {
    /// Block index.
    pub block: usize,
    /// Tokens the block processes (per sample).
    pub tokens: u64,
    /// Cost of the block's nodes.
    pub cost: Cost,
}

/// Whole-graph summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// Everything.
    pub total: Cost,
    /// Stem (embeddings, conditioning), including inserted route nodes (which cost nothing).
    pub stem: Cost,
    /// Each trunk block.
    pub blocks: Vec<BlockCost>,
    /// Head (final layer).
    pub head: Cost,
}

/// Cost of node `id` given the graph's types.
pub fn node_cost(g: &Graph, id: NodeId) -> Cost {
    let n = g.node(id);
    let ins: Vec<&ValueType> = g.inputs_of(id).into_iter().map(|i| g.ty(i)).collect();
    let last = |t: &ValueType| t.last().map_or(1, |d| d.per_sample());
    let mut c = Cost::default();
    match &n.op {
        Op::Linear { out, bias } => {
            let d_in = last(ins[0]);
            c.params = d_in * out + if *bias { *out } else { 0 };
            c.flops = ins[0].per_sample_elems() / d_in.max(1) * d_in * out;
        }
        Op::LayerNorm { affine, .. } => c.params = if *affine { 2 * last(ins[0]) } else { 0 },
        Op::RmsNorm { affine, .. } => c.params = if *affine { last(ins[0]) } else { 0 },
        Op::Attention { qkv_bias, .. } => {
            let d = last(ins[0]);
            let t = ins[0].shape[1].per_sample();
            c.params = 4 * d * d + if *qkv_bias { 3 * d } else { 0 } + d;
            c.flops = 4 * d * d * t + 2 * t * t * d;
            c.mixing_flops = 2 * t * t * d;
        }
        Op::TokenConv { kernel, .. } => {
            let d = last(ins[0]);
            let t = ins[0].shape[1].per_sample();
            c.params = kernel * d + d;
            c.flops = kernel * d * t;
            c.mixing_flops = c.flops;
        }
        Op::Sdpa { .. } => {
            // QKᵀ and AV: Tq·Tk·D each.
            let tq = ins[0].shape[1].per_sample();
            let tk = ins[1].shape[1].per_sample();
            c.flops = tq * tk * last(ins[0]) + tq * tk * last(ins[2]);
            c.mixing_flops = c.flops;
        }
        Op::HeadNorm {
            heads,
            norm,
            affine,
            ..
        } => {
            let dh = last(ins[0]) / (*heads).max(1);
            c.params = match (affine, norm) {
                (false, _) => 0,
                (true, NormFlavour::Rms) => dh,
                (true, NormFlavour::Layer) => 2 * dh,
            };
        }
        Op::Embed { vocab, dim } => c.params = vocab * dim,
        Op::ClassEmbed { classes, dim } => c.params = (classes + 1) * dim,
        Op::Param { shape, .. } => c.params = shape.iter().product(),
        Op::PosEmbed2d { height, width, dim } => c.fixed = height * width * dim,
        // No parameters and no matrix products (the convention above): elementwise ops, norms
        // without affine, shape ops, inputs, sinusoidal features and route gathers/scatters.
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
        | Op::TimestepEmbed { .. }
        | Op::RouteSelect { .. }
        | Op::StreamIndices { .. }
        | Op::GatherTokens { .. }
        | Op::MergeTokens { .. }
        | Op::Rope { .. }
        | Op::Positions { .. }
        | Op::SelectStream { .. }
        | Op::Glu { .. } => {}
    }
    c
}

/// Analyses a (dense or routed) graph.
pub fn analyse(g: &Graph) -> Analysis {
    let mut a = Analysis {
        total: Cost::default(),
        stem: Cost::default(),
        blocks: (0..g.depth())
            .map(|b| BlockCost {
                block: b,
                tokens: 0,
                cost: Cost::default(),
            })
            .collect(),
        head: Cost::default(),
    };
    for id in g.node_ids() {
        let c = node_cost(g, id);
        a.total += c;
        match g.node(id).place {
            Place::Block(b) => {
                let bc = &mut a.blocks[b];
                bc.cost += c;
                if let Some(t) = g.ty(id).tokens() {
                    bc.tokens = bc.tokens.max(t);
                }
            }
            Place::Head => a.head += c,
            _ => a.stem += c,
        }
    }
    a
}
