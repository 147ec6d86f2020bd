//! IR op → ONNX nodes. Each IR value keeps its IR name (`blocks.3.attn`); the nodes an op needs
//! internally are named below it (`blocks.3.attn.scores`), and its tensors by their checkpoint
//! names (`blocks.3.attn.qkv.weight`). Which ONNX ops are used depends on the opset written:
//! `ReduceMean` axes as an input from 18, `Gelu` from 20, `Attention`, `RotaryEmbedding` and
//! `RMSNormalization` from 23; below those the op is decomposed into ops valid at the opset.

use std::collections::HashMap;

use super::builder::{Attr, GraphBuilder};
use super::weights::Weights;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::ir::{GeluApprox, GluAct, Graph, NodeId, NormFlavour, Op};
use tread_compiler::params::suffix;
use tread_compiler::tables;

/// Lowers the nodes of a dense graph, in topological order, into a builder.
pub struct Lowering<'a> {
    g: &'a Graph,
    b: &'a mut GraphBuilder,
    weights: &'a Weights,
    opset: i64,
    /// The ONNX value holding each IR node's value.
    pub names: HashMap<NodeId, String>,
    /// Outputs of the `Split` emitted for (input, axis, chunks), by chunk index.
    splits: HashMap<(NodeId, usize, u64), Vec<String>>,
}

impl<'a> Lowering<'a> {
    /// A lowering of `g` at `opset` with its tensors from `weights`.
    pub fn new(g: &'a Graph, b: &'a mut GraphBuilder, weights: &'a Weights, opset: i64) -> Self {
        Lowering {
            g,
            b,
            weights,
            opset,
            names: HashMap::new(),
            splits: HashMap::new(),
        }
    }

    fn weight(&mut self, node: &str, tensor: &str, shape: &[usize]) -> Result<String, Diagnostic> {
        let name = format!("{node}.{tensor}");
        let data = self.weights.get(&name, shape)?;
        Ok(self.b.init_f32(&name, shape, data))
    }

    fn dim(&self, id: NodeId, axis: usize) -> usize {
        self.g.ty(id).shape[axis].known().unwrap_or(0) as usize
    }

    fn last(&self, id: NodeId) -> usize {
        let r = self.g.ty(id).shape.len();
        self.dim(id, r - 1)
    }

    /// Emits the nodes of IR node `id`, whose inputs are already lowered.
    pub fn lower(&mut self, id: NodeId) -> Result<(), Diagnostic> {
        let node = self.g.node(id);
        let name = node.name.clone();
        let ins: Vec<NodeId> = self.g.inputs_of(id);
        let x: Vec<String> = ins.iter().map(|i| self.names[i].clone()).collect();
        let out = match &node.op {
            Op::Input { .. } => return Ok(()),
            Op::Param { shape, .. } => {
                let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                self.weight(&name, suffix::VALUE, &shape)?
            }
            Op::Linear { out, bias } => {
                let w = self.weight(&name, suffix::WEIGHT, &[self.last(ins[0]), *out as usize])?;
                if *bias {
                    let b = self.weight(&name, suffix::BIAS, &[*out as usize])?;
                    let mm = self.b.op("MatMul", &[&x[0], &w], &format!("{name}.matmul"));
                    self.b.op("Add", &[&mm, &b], &name)
                } else {
                    self.b.op("MatMul", &[&x[0], &w], &name)
                }
            }
            Op::LayerNorm { eps, affine } => {
                let d = self.last(ins[0]);
                let (scale, bias) = if *affine {
                    (
                        self.weight(&name, suffix::WEIGHT, &[d])?,
                        Some(self.weight(&name, suffix::BIAS, &[d])?),
                    )
                } else {
                    (self.b.const_f32(1.0, &[d]), None)
                };
                let mut inputs = vec![x[0].as_str(), scale.as_str()];
                if let Some(b) = &bias {
                    inputs.push(b);
                }
                self.b.node(
                    "LayerNormalization",
                    &inputs,
                    &[&name],
                    vec![
                        ("axis", Attr::Int(-1)),
                        ("epsilon", Attr::Float(*eps as f32)),
                    ],
                )
            }
            Op::RmsNorm { eps, affine } => self.rms_norm(&name, &x[0], ins[0], *eps, *affine)?,
            Op::Attention { heads, qkv_bias } => {
                self.attention(&name, &x[0], ins[0], *heads as usize, *qkv_bias)?
            }
            Op::Gelu { approximate } => self.gelu(&name, &x[0], *approximate),
            Op::Silu => {
                let s = self.b.op("Sigmoid", &[&x[0]], &format!("{name}.sigmoid"));
                self.b.op("Mul", &[&x[0], &s], &name)
            }
            Op::Add => self.b.op("Add", &[&x[0], &x[1]], &name),
            Op::Mul => self.b.op("Mul", &[&x[0], &x[1]], &name),
            Op::Modulate => {
                let one = self.b.const_f32(1.0, &[]);
                let s1 = self
                    .b
                    .op("Add", &[&x[2], &one], &format!("{name}.one_plus_scale"));
                let scaled = self.b.op("Mul", &[&x[0], &s1], &format!("{name}.scaled"));
                self.b.op("Add", &[&scaled, &x[1]], &name)
            }
            Op::Chunk {
                axis,
                chunks,
                index,
            } => self.chunk(ins[0], &x[0], *axis, *chunks, *index),
            Op::Concat { axis } => {
                let refs: Vec<&str> = x.iter().map(String::as_str).collect();
                self.b.node(
                    "Concat",
                    &refs,
                    &[&name],
                    vec![("axis", Attr::Int(*axis as i64))],
                )
            }
            Op::Unsqueeze { axis } => {
                let axes = self.b.const_i64(&[*axis as i64]);
                self.b.op("Unsqueeze", &[&x[0], &axes], &name)
            }
            Op::Patchify { patch } => {
                let p = *patch as i64;
                let (c, h, w) = (
                    self.dim(ins[0], 1) as i64,
                    self.dim(ins[0], 2) as i64,
                    self.dim(ins[0], 3) as i64,
                );
                let s1 = self.b.const_i64(&[0, c, h / p, p, w / p, p]);
                let r = self.b.op("Reshape", &[&x[0], &s1], &format!("{name}.grid"));
                let t = self.b.node(
                    "Transpose",
                    &[&r],
                    &[&format!("{name}.permuted")],
                    vec![("perm", Attr::Ints(vec![0, 2, 4, 3, 5, 1]))],
                );
                let s2 = self.b.const_i64(&[0, (h / p) * (w / p), p * p * c]);
                self.b.op("Reshape", &[&t, &s2], &name)
            }
            Op::Unpatchify {
                patch,
                height,
                width,
            } => {
                let p = *patch as i64;
                let (h, w) = (*height as i64, *width as i64);
                let c = self.last(ins[0]) as i64 / (p * p);
                let s1 = self.b.const_i64(&[0, h / p, w / p, p, p, c]);
                let r = self.b.op("Reshape", &[&x[0], &s1], &format!("{name}.grid"));
                let t = self.b.node(
                    "Transpose",
                    &[&r],
                    &[&format!("{name}.permuted")],
                    vec![("perm", Attr::Ints(vec![0, 5, 1, 3, 2, 4]))],
                );
                let s2 = self.b.const_i64(&[0, c, h, w]);
                self.b.op("Reshape", &[&t, &s2], &name)
            }
            Op::PatchifyVideo { patch_t, patch } => {
                let (pt, p) = (*patch_t as i64, *patch as i64);
                let d = |a| self.dim(ins[0], a) as i64;
                let (c, f, h, w) = (d(1), d(2), d(3), d(4));
                let s1 = self.b.const_i64(&[0, c, f / pt, pt, h / p, p, w / p, p]);
                let r = self.b.op("Reshape", &[&x[0], &s1], &format!("{name}.grid"));
                let t = self.b.node(
                    "Transpose",
                    &[&r],
                    &[&format!("{name}.permuted")],
                    vec![("perm", Attr::Ints(vec![0, 2, 4, 6, 3, 5, 7, 1]))],
                );
                let s2 = self
                    .b
                    .const_i64(&[0, (f / pt) * (h / p) * (w / p), pt * p * p * c]);
                self.b.op("Reshape", &[&t, &s2], &name)
            }
            Op::UnpatchifyVideo {
                patch_t,
                patch,
                frames,
                height,
                width,
            } => {
                let (pt, p) = (*patch_t as i64, *patch as i64);
                let (f, h, w) = (*frames as i64, *height as i64, *width as i64);
                let c = self.last(ins[0]) as i64 / (pt * p * p);
                let s1 = self.b.const_i64(&[0, f / pt, h / p, w / p, pt, p, p, c]);
                let r = self.b.op("Reshape", &[&x[0], &s1], &format!("{name}.grid"));
                let t = self.b.node(
                    "Transpose",
                    &[&r],
                    &[&format!("{name}.permuted")],
                    vec![("perm", Attr::Ints(vec![0, 7, 1, 4, 2, 5, 3, 6]))],
                );
                let s2 = self.b.const_i64(&[0, c, f, h, w]);
                self.b.op("Reshape", &[&t, &s2], &name)
            }
            Op::PosEmbed2d { height, width, dim } => {
                let (h, w, d) = (*height as usize, *width as usize, *dim as usize);
                let table = tables::pos_embed_2d(h, w, d);
                self.b
                    .init_f32(&format!("{name}.table"), &[1, h * w, d], &table)
            }
            Op::TimestepEmbed { dim, max_period } => {
                let half = *dim as usize / 2;
                let freqs = tables::timestep_freqs(*dim as usize, *max_period as f64);
                let f = self
                    .b
                    .init_f32(&format!("{name}.freqs"), &[1, half], &freqs);
                let axes = self.b.const_i64(&[1]);
                let col = self
                    .b
                    .op("Unsqueeze", &[&x[0], &axes], &format!("{name}.column"));
                let args = self.b.op("Mul", &[&col, &f], &format!("{name}.args"));
                let cos = self.b.op("Cos", &[&args], &format!("{name}.cos"));
                let sin = self.b.op("Sin", &[&args], &format!("{name}.sin"));
                self.b.node(
                    "Concat",
                    &[&cos, &sin],
                    &[&name],
                    vec![("axis", Attr::Int(1))],
                )
            }
            Op::ClassEmbed { classes, dim } => {
                let t = self.weight(
                    &name,
                    suffix::TABLE,
                    &[*classes as usize + 1, *dim as usize],
                )?;
                self.b.node(
                    "Gather",
                    &[&t, &x[0]],
                    &[&name],
                    vec![("axis", Attr::Int(0))],
                )
            }
            Op::TokenConv { kernel, causal } => {
                self.token_conv(&name, &x[0], ins[0], *kernel as usize, *causal)?
            }
            Op::Sdpa { heads } => {
                let mask = x.get(3).map(String::as_str);
                self.sdpa(&name, [&x[0], &x[1], &x[2]], &ins, mask, *heads as usize)
            }
            Op::Rope {
                heads,
                axes_dims,
                theta,
            } => self.rope(
                &name,
                &x[0],
                &x[1],
                ins[0],
                *heads as usize,
                axes_dims,
                *theta,
            ),
            Op::Positions {
                tokens, grid, axes, ..
            } => {
                let grid: Vec<usize> = grid.iter().map(|&g| g as usize).collect();
                let (n, a) = (*tokens as usize, *axes as usize);
                let table = tables::positions(n, &grid, a);
                self.b
                    .init_f32(&format!("{name}.table"), &[1, n, a], &table)
            }
            Op::SelectStream { stream } => {
                let ty = self.g.ty(ins[0]);
                let axis = ty.token_axis.unwrap_or(1) as i64;
                let (before, seg) = ty.segment(stream).ok_or_else(|| {
                    Diagnostic::new(
                        Location::Node {
                            name: name.clone(),
                            path: node.origin.clone(),
                        },
                        format!("no `{stream}` tokens to select"),
                    )
                })?;
                let (start, end) = (before as i64, (before + seg.tokens) as i64);
                let starts = self.b.const_i64(&[start]);
                let ends = self.b.const_i64(&[end]);
                let axes = self.b.const_i64(&[axis]);
                self.b.op("Slice", &[&x[0], &starts, &ends, &axes], &name)
            }
            Op::HeadNorm {
                heads,
                norm,
                eps,
                affine,
            } => self.head_norm(&name, &x[0], ins[0], *heads as usize, *norm, *eps, *affine)?,
            Op::Glu { act } => {
                let f = self.last(ins[0]) as i64 / 2;
                let (a, b) = (format!("{name}.gate_in"), format!("{name}.value"));
                let sizes = self.b.const_i64(&[f, f]);
                self.b.node(
                    "Split",
                    &[&x[0], &sizes],
                    &[&a, &b],
                    vec![("axis", Attr::Int(-1))],
                );
                let gate = match act {
                    GluAct::Silu => {
                        let s = self.b.op("Sigmoid", &[&a], &format!("{name}.sigmoid"));
                        self.b.op("Mul", &[&a, &s], &format!("{name}.gate"))
                    }
                    GluAct::GeluTanh => self.gelu(&format!("{name}.gate"), &a, GeluApprox::Tanh),
                };
                self.b.op("Mul", &[&gate, &b], &name)
            }
            Op::Embed { vocab, dim } => {
                let t = self.weight(&name, suffix::TABLE, &[*vocab as usize, *dim as usize])?;
                self.b.node(
                    "Gather",
                    &[&t, &x[0]],
                    &[&name],
                    vec![("axis", Attr::Int(0))],
                )
            }
            Op::RouteSelect { .. }
            | Op::StreamIndices { .. }
            | Op::GatherTokens { .. }
            | Op::MergeTokens { .. }
            | Op::NormModulate { .. }
            | Op::GatedResidual => {
                let (expected, help) = if node.op.is_fused() {
                    (
                        "the unfused graph",
                        "the fusion pass is for the burn runtime only; export the graph before it",
                    )
                } else {
                    (
                        "a dense graph (routes are stripped before export)",
                        "export the dense inference graph: routing is a training-time transform",
                    )
                };
                return Err(Diagnostic::new(
                    Location::Node {
                        name: name.clone(),
                        path: node.origin.clone(),
                    },
                    format!("op `{}` has no ONNX mapping", node.op.name()),
                )
                .expected(expected)
                .found(format!("`{}` in the graph", node.op))
                .help(help));
            }
        };
        self.names.insert(id, out);
        Ok(())
    }

    fn rms_norm(
        &mut self,
        name: &str,
        x: &str,
        input: NodeId,
        eps: f64,
        affine: bool,
    ) -> Result<String, Diagnostic> {
        let d = self.last(input);
        let scale = if affine {
            Some(self.weight(name, suffix::WEIGHT, &[d])?)
        } else {
            None
        };
        if self.opset >= 23 {
            let scale = scale.unwrap_or_else(|| self.b.const_f32(1.0, &[d]));
            return Ok(self.b.node(
                "RMSNormalization",
                &[x, &scale],
                &[name],
                vec![
                    ("axis", Attr::Int(-1)),
                    ("epsilon", Attr::Float(eps as f32)),
                ],
            ));
        }
        let sq = self.b.op("Mul", &[x, x], &format!("{name}.square"));
        let ms = self.reduce_mean_last(&sq, &format!("{name}.mean_square"));
        let e = self.b.const_f32(eps as f32, &[]);
        let v = self.b.op("Add", &[&ms, &e], &format!("{name}.plus_eps"));
        let r = self.b.op("Sqrt", &[&v], &format!("{name}.rms"));
        match scale {
            Some(scale) => {
                let n = self.b.op("Div", &[x, &r], &format!("{name}.normed"));
                Ok(self.b.op("Mul", &[&n, &scale], name))
            }
            None => Ok(self.b.op("Div", &[x, &r], name)),
        }
    }

    /// `ReduceMean` over the last axis, keeping it: axes are an attribute before opset 18 and an
    /// input from 18 on.
    fn reduce_mean_last(&mut self, x: &str, out: &str) -> String {
        if self.opset >= 18 {
            let axes = self.b.const_i64(&[-1]);
            self.b.node(
                "ReduceMean",
                &[x, &axes],
                &[out],
                vec![("keepdims", Attr::Int(1))],
            )
        } else {
            self.b.node(
                "ReduceMean",
                &[x],
                &[out],
                vec![("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
            )
        }
    }

    fn gelu(&mut self, name: &str, x: &str, approx: GeluApprox) -> String {
        let mode = match approx {
            GeluApprox::None => "none",
            GeluApprox::Tanh => "tanh",
        };
        if self.opset >= 20 {
            return self.b.node(
                "Gelu",
                &[x],
                &[name],
                vec![("approximate", Attr::Str(mode.into()))],
            );
        }
        match approx {
            // 0.5·x·(1 + erf(x/√2))
            GeluApprox::None => {
                let r2 = self.b.const_f32(std::f32::consts::SQRT_2, &[]);
                let a = self.b.op("Div", &[x, &r2], &format!("{name}.scaled"));
                let e = self.b.op("Erf", &[&a], &format!("{name}.erf"));
                let one = self.b.const_f32(1.0, &[]);
                let p = self.b.op("Add", &[&e, &one], &format!("{name}.one_plus"));
                let m = self.b.op("Mul", &[x, &p], &format!("{name}.x_times"));
                let half = self.b.const_f32(0.5, &[]);
                self.b.op("Mul", &[&m, &half], name)
            }
            // x·sigmoid(2·√(2/π)·(x + 0.044715·x³)), the same function as the tanh form.
            GeluApprox::Tanh => {
                let x2 = self.b.op("Mul", &[x, x], &format!("{name}.x2"));
                let x3 = self.b.op("Mul", &[&x2, x], &format!("{name}.x3"));
                let c = self.b.const_f32(0.044715, &[]);
                let cx3 = self.b.op("Mul", &[&x3, &c], &format!("{name}.cubic"));
                let inner = self.b.op("Add", &[x, &cx3], &format!("{name}.inner"));
                let k = self.b.const_f32(2.0 * 0.797_884_6 /* √(2/π) */, &[]);
                let z = self.b.op("Mul", &[&inner, &k], &format!("{name}.arg"));
                let s = self.b.op("Sigmoid", &[&z], &format!("{name}.sigmoid"));
                self.b.op("Mul", &[x, &s], name)
            }
        }
    }

    fn attention(
        &mut self,
        name: &str,
        x: &str,
        input: NodeId,
        heads: usize,
        qkv_bias: bool,
    ) -> Result<String, Diagnostic> {
        let d = self.last(input);
        let dh = d / heads;
        let wqkv = self.weight(name, suffix::QKV_WEIGHT, &[d, 3 * d])?;
        let qkv_mm = self
            .b
            .op("MatMul", &[x, &wqkv], &format!("{name}.qkv.matmul"));
        let qkv = if qkv_bias {
            let b = self.weight(name, suffix::QKV_BIAS, &[3 * d])?;
            self.b.op("Add", &[&qkv_mm, &b], &format!("{name}.qkv"))
        } else {
            qkv_mm
        };
        let (q, k, v) = (
            format!("{name}.q"),
            format!("{name}.k"),
            format!("{name}.v"),
        );
        let attended = format!("{name}.attended");
        if self.opset >= 23 {
            let sizes = self.b.const_i64(&[d as i64; 3]);
            self.b.node(
                "Split",
                &[&qkv, &sizes],
                &[&q, &k, &v],
                vec![("axis", Attr::Int(-1))],
            );
            self.b.node(
                "Attention",
                &[&q, &k, &v],
                &[&attended],
                vec![
                    ("q_num_heads", Attr::Int(heads as i64)),
                    ("kv_num_heads", Attr::Int(heads as i64)),
                ],
            );
        } else {
            // [B, N, 3D] → [B, N, 3, H, Dh] → [3, B, H, N, Dh] → q, k, v [1, B, H, N, Dh]
            let s = self.b.const_i64(&[0, 0, 3, heads as i64, dh as i64]);
            let r = self
                .b
                .op("Reshape", &[&qkv, &s], &format!("{name}.qkv_heads"));
            let t = self.b.node(
                "Transpose",
                &[&r],
                &[&format!("{name}.qkv_split_major")],
                vec![("perm", Attr::Ints(vec![2, 0, 3, 1, 4]))],
            );
            let ones = self.b.const_i64(&[1, 1, 1]);
            self.b.node(
                "Split",
                &[&t, &ones],
                &[&q, &k, &v],
                vec![("axis", Attr::Int(0))],
            );
            let scale = self.b.const_f32(1.0 / (dh as f32).sqrt(), &[]);
            let qs = self.b.op("Mul", &[&q, &scale], &format!("{name}.q_scaled"));
            let kt = self.b.node(
                "Transpose",
                &[&k],
                &[&format!("{name}.k_t")],
                vec![("perm", Attr::Ints(vec![0, 1, 2, 4, 3]))],
            );
            let scores = self.b.op("MatMul", &[&qs, &kt], &format!("{name}.scores"));
            let p = self.b.node(
                "Softmax",
                &[&scores],
                &[&format!("{name}.probs")],
                vec![("axis", Attr::Int(-1))],
            );
            let o = self.b.op("MatMul", &[&p, &v], &format!("{name}.heads"));
            // [1, B, H, N, Dh] → [B, N, 1, H, Dh] → [B, N, D]
            let ot = self.b.node(
                "Transpose",
                &[&o],
                &[&format!("{name}.heads_t")],
                vec![("perm", Attr::Ints(vec![1, 3, 0, 2, 4]))],
            );
            let s2 = self.b.const_i64(&[0, 0, d as i64]);
            self.b.op("Reshape", &[&ot, &s2], &attended);
        }
        let wp = self.weight(name, suffix::PROJ_WEIGHT, &[d, d])?;
        let bp = self.weight(name, suffix::PROJ_BIAS, &[d])?;
        let mm = self
            .b
            .op("MatMul", &[&attended, &wp], &format!("{name}.proj.matmul"));
        Ok(self.b.op("Add", &[&mm, &bp], name))
    }

    /// `[B, T, D]` → `[B, H, T, D/H]`.
    fn heads(&mut self, x: &str, name: &str, heads: usize, width: usize) -> String {
        let s = self
            .b
            .const_i64(&[0, 0, heads as i64, (width / heads) as i64]);
        let r = self.b.op("Reshape", &[x, &s], &format!("{name}.split"));
        self.b.node(
            "Transpose",
            &[&r],
            &[&format!("{name}.heads")],
            vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        )
    }

    /// Scaled dot-product attention: ONNX `Attention` from opset 23, decomposed below it; the
    /// key mask becomes the same large negative bias as in the burn lowering.
    fn sdpa(
        &mut self,
        name: &str,
        x: [&str; 3],
        ins: &[NodeId],
        mask: Option<&str>,
        heads: usize,
    ) -> String {
        let (d, dv) = (self.last(ins[0]), self.last(ins[2]));
        let mask_bias = mask.map(|m| {
            let one = self.b.const_f32(1.0, &[]);
            let inv = self.b.op("Sub", &[&one, m], &format!("{name}.masked"));
            let big = self.b.const_f32(tables::MASKED_KEY_BIAS, &[]);
            let bias = self
                .b
                .op("Mul", &[&inv, &big], &format!("{name}.mask_bias"));
            let axes = self.b.const_i64(&[1, 2]);
            self.b
                .op("Unsqueeze", &[&bias, &axes], &format!("{name}.mask_bias4"))
        });
        if self.opset >= 23 {
            // The mask bias as [B, 1, Tq, Tk]: tract's attention takes no broadcast over queries.
            let tq = self.dim(ins[0], 1) as i64;
            let tk = self.dim(ins[1], 1) as i64;
            let full_mask = mask_bias.map(|b4| {
                let shape = self.b.const_i64(&[1, 1, tq, tk]);
                self.b
                    .op("Expand", &[&b4, &shape], &format!("{name}.mask_full"))
            });
            let mut inputs = vec![x[0], x[1], x[2]];
            if let Some(b) = &full_mask {
                inputs.push(b);
            }
            return self.b.node(
                "Attention",
                &inputs,
                &[name],
                vec![
                    ("q_num_heads", Attr::Int(heads as i64)),
                    ("kv_num_heads", Attr::Int(heads as i64)),
                ],
            );
        }
        let q = self.heads(x[0], &format!("{name}.q"), heads, d);
        let k = self.heads(x[1], &format!("{name}.k"), heads, d);
        let v = self.heads(x[2], &format!("{name}.v"), heads, dv);
        let scale = self.b.const_f32(1.0 / ((d / heads) as f32).sqrt(), &[]);
        let qs = self.b.op("Mul", &[&q, &scale], &format!("{name}.q_scaled"));
        let kt = self.b.node(
            "Transpose",
            &[&k],
            &[&format!("{name}.k_t")],
            vec![("perm", Attr::Ints(vec![0, 1, 3, 2]))],
        );
        let mut scores = self.b.op("MatMul", &[&qs, &kt], &format!("{name}.scores"));
        if let Some(b4) = &mask_bias {
            scores = self
                .b
                .op("Add", &[&scores, b4], &format!("{name}.scores_masked"));
        }
        let p = self.b.node(
            "Softmax",
            &[&scores],
            &[&format!("{name}.probs")],
            vec![("axis", Attr::Int(-1))],
        );
        let o = self.b.op("MatMul", &[&p, &v], &format!("{name}.attended"));
        let ot = self.b.node(
            "Transpose",
            &[&o],
            &[&format!("{name}.attended_t")],
            vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let s = self.b.const_i64(&[0, 0, dv as i64]);
        self.b.op("Reshape", &[&ot, &s], name)
    }

    /// Rotary embedding: angles = positions · the frequency matrix, then each pair
    /// `(x0, x1)` → `(x0·cos − x1·sin, x0·sin + x1·cos)`: ONNX `RotaryEmbedding` (interleaved
    /// pairs) from opset 23, decomposed below it.
    #[allow(clippy::too_many_arguments)]
    fn rope(
        &mut self,
        name: &str,
        x: &str,
        pos: &str,
        input: NodeId,
        heads: usize,
        axes_dims: &[u64],
        theta: f64,
    ) -> String {
        let d = self.last(input);
        let half = d / heads / 2;
        let dims: Vec<usize> = axes_dims.iter().map(|&a| a as usize).collect();
        let m = tables::rope_freqs(&dims, theta);
        let freqs = self
            .b
            .init_f32(&format!("{name}.freqs"), &[dims.len(), half], &m);
        let angles = self
            .b
            .op("MatMul", &[pos, &freqs], &format!("{name}.angles"));
        if self.opset >= 23 {
            // RotaryEmbedding takes caches [B, T, dh/2]: the angles' batch of 1 expanded to x's.
            let x_bt = self.b.node(
                "Shape",
                &[x],
                &[&format!("{name}.batch_tokens")],
                vec![("start", Attr::Int(0)), ("end", Attr::Int(2))],
            );
            let h = self.b.const_i64(&[half as i64]);
            let shape = self.b.node(
                "Concat",
                &[&x_bt, &h],
                &[&format!("{name}.cache_shape")],
                vec![("axis", Attr::Int(0))],
            );
            let full = self
                .b
                .op("Expand", &[&angles, &shape], &format!("{name}.angles_b"));
            let cos = self.b.op("Cos", &[&full], &format!("{name}.cos"));
            let sin = self.b.op("Sin", &[&full], &format!("{name}.sin"));
            return self.b.node(
                "RotaryEmbedding",
                &[x, &cos, &sin],
                &[name],
                vec![
                    ("num_heads", Attr::Int(heads as i64)),
                    ("interleaved", Attr::Int(1)),
                ],
            );
        }
        let axes = self.b.const_i64(&[2]);
        let a4 = self
            .b
            .op("Unsqueeze", &[&angles, &axes], &format!("{name}.angles4"));
        let cos = self.b.op("Cos", &[&a4], &format!("{name}.cos"));
        let sin = self.b.op("Sin", &[&a4], &format!("{name}.sin"));
        let s = self.b.const_i64(&[0, 0, heads as i64, half as i64, 2]);
        let pairs = self.b.op("Reshape", &[x, &s], &format!("{name}.pairs"));
        let (x0, x1) = (format!("{name}.x0"), format!("{name}.x1"));
        let ones = self.b.const_i64(&[1, 1]);
        self.b.node(
            "Split",
            &[&pairs, &ones],
            &[&x0, &x1],
            vec![("axis", Attr::Int(-1))],
        );
        let last = self.b.const_i64(&[-1]);
        let x0 = self.b.op("Squeeze", &[&x0, &last], &format!("{name}.x0s"));
        let x1 = self.b.op("Squeeze", &[&x1, &last], &format!("{name}.x1s"));
        let x0c = self.b.op("Mul", &[&x0, &cos], &format!("{name}.x0cos"));
        let x1s = self.b.op("Mul", &[&x1, &sin], &format!("{name}.x1sin"));
        let x0s = self.b.op("Mul", &[&x0, &sin], &format!("{name}.x0sin"));
        let x1c = self.b.op("Mul", &[&x1, &cos], &format!("{name}.x1cos"));
        let y0 = self.b.op("Sub", &[&x0c, &x1s], &format!("{name}.y0"));
        let y1 = self.b.op("Add", &[&x0s, &x1c], &format!("{name}.y1"));
        let y0 = self
            .b
            .op("Unsqueeze", &[&y0, &last], &format!("{name}.y0u"));
        let y1 = self
            .b
            .op("Unsqueeze", &[&y1, &last], &format!("{name}.y1u"));
        let y = self.b.node(
            "Concat",
            &[&y0, &y1],
            &[&format!("{name}.rotated")],
            vec![("axis", Attr::Int(-1))],
        );
        let s2 = self.b.const_i64(&[0, 0, d as i64]);
        self.b.op("Reshape", &[&y, &s2], name)
    }

    /// A norm of each head's features: `[.., D]` → `[.., H, D/H]`, normalised, affine of the
    /// head dim, back to `[.., D]`.
    #[allow(clippy::too_many_arguments)]
    fn head_norm(
        &mut self,
        name: &str,
        x: &str,
        input: NodeId,
        heads: usize,
        norm: NormFlavour,
        eps: f64,
        affine: bool,
    ) -> Result<String, Diagnostic> {
        let d = self.last(input);
        let dh = d / heads;
        let rank = self.g.ty(input).shape.len();
        let mut split = vec![0i64; rank - 1];
        split.extend([heads as i64, dh as i64]);
        let s = self.b.const_i64(&split);
        let r = self.b.op("Reshape", &[x, &s], &format!("{name}.per_head"));
        let scale = if affine {
            self.weight(name, suffix::WEIGHT, &[dh])?
        } else {
            self.b.const_f32(1.0, &[dh])
        };
        let normed = format!("{name}.normed");
        match norm {
            NormFlavour::Layer => {
                let mut inputs = vec![r.as_str(), scale.as_str()];
                let bias = if affine {
                    Some(self.weight(name, suffix::BIAS, &[dh])?)
                } else {
                    None
                };
                if let Some(b) = &bias {
                    inputs.push(b);
                }
                self.b.node(
                    "LayerNormalization",
                    &inputs,
                    &[&normed],
                    vec![
                        ("axis", Attr::Int(-1)),
                        ("epsilon", Attr::Float(eps as f32)),
                    ],
                );
            }
            NormFlavour::Rms => {
                let sq = self.b.op("Mul", &[&r, &r], &format!("{name}.square"));
                let ms = self.reduce_mean_last(&sq, &format!("{name}.mean_square"));
                let e = self.b.const_f32(eps as f32, &[]);
                let v = self.b.op("Add", &[&ms, &e], &format!("{name}.plus_eps"));
                let rms = self.b.op("Sqrt", &[&v], &format!("{name}.rms"));
                let n = self.b.op("Div", &[&r, &rms], &format!("{name}.unscaled"));
                self.b.op("Mul", &[&n, &scale], &normed);
            }
        }
        let mut back = vec![0i64; rank - 1];
        back.push(d as i64);
        let s2 = self.b.const_i64(&back);
        Ok(self.b.op("Reshape", &[&normed, &s2], name))
    }

    /// One `Split` per (input, axis, chunks), however many `chunk` nodes read it.
    fn chunk(&mut self, input: NodeId, x: &str, axis: usize, chunks: u64, index: u64) -> String {
        let key = (input, axis, chunks);
        if let Some(outs) = self.splits.get(&key) {
            return outs[index as usize].clone();
        }
        let mut outs: Vec<Option<String>> = vec![None; chunks as usize];
        for (user, _) in self.g.users_of(input) {
            if let Op::Chunk {
                axis: a,
                chunks: c,
                index: i,
            } = self.g.node(user).op
            {
                if a == axis && c == chunks && outs[i as usize].is_none() {
                    outs[i as usize] = Some(self.g.node(user).name.clone());
                }
            }
        }
        let base = self.g.node(input).name.clone();
        let outs: Vec<String> = outs
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.unwrap_or_else(|| format!("{base}.chunk{i}")))
            .collect();
        let size = (self.dim(input, axis) as u64 / chunks) as i64;
        let sizes = self.b.const_i64(&vec![size; chunks as usize]);
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.b.node(
            "Split",
            &[x, &sizes],
            &refs,
            vec![("axis", Attr::Int(axis as i64))],
        );
        let out = outs[index as usize].clone();
        self.splits.insert(key, outs);
        out
    }

    /// A depthwise convolution over tokens as ONNX `Conv` on `[B, D, N]` with `group = D`; the
    /// `[kernel, D]` kernel is written transposed as `[D, 1, kernel]`.
    fn token_conv(
        &mut self,
        name: &str,
        x: &str,
        input: NodeId,
        k: usize,
        causal: bool,
    ) -> Result<String, Diagnostic> {
        let d = self.last(input);
        let w = format!("{name}.weight");
        let kernel = self.weights.get(&w, &[k, d])?;
        let mut t = vec![0f32; k * d];
        for j in 0..k {
            for c in 0..d {
                t[c * k + j] = kernel[j * d + c];
            }
        }
        let w = self.b.init_f32(&w, &[d, 1, k], &t);
        let bias = self.weight(name, suffix::BIAS, &[d])?;
        let left = if causal { k - 1 } else { (k - 1) / 2 };
        let right = k - 1 - left;
        let xt = self.b.node(
            "Transpose",
            &[x],
            &[&format!("{name}.channels_first")],
            vec![("perm", Attr::Ints(vec![0, 2, 1]))],
        );
        let c = self.b.node(
            "Conv",
            &[&xt, &w, &bias],
            &[&format!("{name}.conv")],
            vec![
                ("group", Attr::Int(d as i64)),
                ("kernel_shape", Attr::Ints(vec![k as i64])),
                ("pads", Attr::Ints(vec![left as i64, right as i64])),
            ],
        );
        Ok(self.b.node(
            "Transpose",
            &[&c],
            &[name],
            vec![("perm", Attr::Ints(vec![0, 2, 1]))],
        ))
    }
}
