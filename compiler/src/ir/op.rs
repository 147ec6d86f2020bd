//! The op set: every operation a backbone may use, with its attributes and token-axis behaviour.
//!
//! Why this granularity: small enough that a new backbone needs no Rust (linear, norms, attention,
//! activations, broadcasting add/mul, chunk/concat/unsqueeze, patchify, embeddings, a token conv),
//! big enough that a DiT block reads like the paper (attention is one op with its projections).
//! Each op declares how it treats the token axis; the route pass reasons with that, not names.

use std::fmt;

/// How an op treats the token axis of its inputs. The route pass uses this to decide whether
/// a region may be routed and whether kept indices must be sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenBehaviour {
    /// Acts on each token independently (linear, norms, activations, elementwise ops).
    PerToken,
    /// Mixes tokens but is equivariant under permutation of tokens (attention without
    /// positional bias): any subset in any order is fine.
    PermutationEquivariant,
    /// Mixes tokens in an order-dependent way (scans, convolutions over tokens): routing keeps
    /// the kept tokens in their original order.
    OrderSensitive,
    /// Depends on absolute token positions or on the full token count (patchify, unpatchify,
    /// slicing or concatenating along tokens, position tables): cannot run on a token subset.
    Positional,
    /// Joins streams along the token axis or takes one back out (`concat` along tokens,
    /// `select_stream`): allowed in a routed region while every stream stays one segment,
    /// because types carry which positions belong to which stream.
    Streams,
    /// Has no token axis at all (conditioning, embeddings of labels and timesteps).
    NoTokenAxis,
}

impl TokenBehaviour {
    /// Short name for dumps and diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            TokenBehaviour::PerToken => "per-token",
            TokenBehaviour::PermutationEquivariant => "permutation-equivariant",
            TokenBehaviour::OrderSensitive => "order-sensitive",
            TokenBehaviour::Positional => "positional",
            TokenBehaviour::Streams => "streams",
            TokenBehaviour::NoTokenAxis => "no-token-axis",
        }
    }
}

/// What a graph input carries; the runtime feeds inputs by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputRole {
    /// The noisy image or latent `[B, C, H, W]`.
    Image,
    /// The noise level / timestep `[B]`.
    NoiseLevel,
    /// The class label `[B]` (integer; `classes` is the null label).
    Label,
    /// Text embeddings `[B, L, Dc]` (e.g. precomputed T5 states): tokens of the `text` stream.
    Context,
    /// The text padding mask `[B, L]`: 1 where a text token is real, 0 where it is padding.
    ContextMask,
    /// A pooled text vector `[B, Dp]` (SD3's CLIP pooled embedding).
    Pooled,
    /// Text token ids `[B, L]` (i64) for a model that carries its own text embedding.
    TokenIds,
    /// The guidance scale `[B]` (Flux-dev's distilled guidance input).
    Guidance,
}

impl InputRole {
    /// Name used in model.json.
    pub fn name(self) -> &'static str {
        match self {
            InputRole::Image => "image",
            InputRole::NoiseLevel => "noise_level",
            InputRole::Label => "label",
            InputRole::Context => "context",
            InputRole::ContextMask => "context_mask",
            InputRole::Pooled => "pooled",
            InputRole::TokenIds => "token_ids",
            InputRole::Guidance => "guidance",
        }
    }

    /// All roles, for error messages and parsing.
    pub const ALL: [InputRole; 8] = [
        InputRole::Image,
        InputRole::NoiseLevel,
        InputRole::Label,
        InputRole::Context,
        InputRole::ContextMask,
        InputRole::Pooled,
        InputRole::TokenIds,
        InputRole::Guidance,
    ];

    /// The stream whose tokens the input carries on axis 1, if any.
    pub fn stream(self) -> Option<&'static str> {
        match self {
            InputRole::Context | InputRole::ContextMask | InputRole::TokenIds => {
                Some(super::types::TEXT_STREAM)
            }
            InputRole::Image
            | InputRole::NoiseLevel
            | InputRole::Label
            | InputRole::Pooled
            | InputRole::Guidance => None,
        }
    }
}

/// Which normalisation a per-head norm applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormFlavour {
    /// LayerNorm (mean and variance).
    Layer,
    /// RMSNorm (root mean square only).
    Rms,
}

impl NormFlavour {
    /// Name in model.json and dumps.
    pub fn name(self) -> &'static str {
        match self {
            NormFlavour::Layer => "layer",
            NormFlavour::Rms => "rms",
        }
    }
}

/// The gate's activation in a gated linear unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GluAct {
    /// SwiGLU.
    Silu,
    /// GEGLU with tanh-approximated GELU.
    GeluTanh,
}

impl GluAct {
    /// Name in model.json and dumps.
    pub fn name(self) -> &'static str {
        match self {
            GluAct::Silu => "silu",
            GluAct::GeluTanh => "gelu_tanh",
        }
    }
}

/// GELU flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeluApprox {
    /// Exact, with erf.
    None,
    /// The tanh approximation (DiT's MLP).
    Tanh,
}

/// How a learned tensor is initialised (the runtime implements these).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamInit {
    /// All zeros.
    Zeros,
    /// Normal with the given standard deviation.
    Normal { std: f64 },
}

/// One operation with its attributes. Inputs are graph edges, not attributes.
///
/// Every fact about an op (name, who may write it, arity, token behaviour, parameters, FLOPs,
/// lowering, export) is an exhaustive `match`: a new variant does not compile until each is
/// declared. [`OpKind`] is the attribute-free twin (derived), for lists of ops.
#[derive(Debug, Clone, PartialEq, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(OpKind),
    derive(strum::EnumIter, Hash),
    doc = "The kind of an [`Op`] without its attributes: the op set as a list (`OpKind::iter()`)."
)]
pub enum Op {
    /// A graph input; its type is declared in model.json.
    Input { role: InputRole },
    /// A learned tensor with no inputs (e.g. a learned, token-indexed position embedding).
    Param {
        shape: Vec<u64>,
        token_axis: Option<usize>,
        init: ParamInit,
    },
    /// `y = x·W + b` over the last axis.
    Linear { out: u64, bias: bool },
    /// LayerNorm over the last axis.
    LayerNorm { eps: f64, affine: bool },
    /// RMSNorm over the last axis.
    RmsNorm { eps: f64, affine: bool },
    /// Multi-head self-attention over the token axis, with its qkv and output projections.
    Attention { heads: u64, qkv_bias: bool },
    /// GELU.
    Gelu { approximate: GeluApprox },
    /// SiLU (x·sigmoid(x)).
    Silu,
    /// Elementwise add with numpy broadcasting.
    Add,
    /// Elementwise multiply with numpy broadcasting.
    Mul,
    /// adaLN modulation `x·(1 + scale) + shift`; inputs `(x, shift, scale)`.
    Modulate,
    /// The `index`-th of `chunks` equal slices along `axis`.
    Chunk {
        axis: usize,
        chunks: u64,
        index: u64,
    },
    /// Concatenation along `axis`.
    Concat { axis: usize },
    /// Inserts a size-1 axis at `axis`.
    Unsqueeze { axis: usize },
    /// `[B, C, H, W] → [B, (H/p)·(W/p), p·p·C]`, tokens row-major over the patch grid, each patch
    /// vector ordered (row in patch, column in patch, channel).
    Patchify { patch: u64 },
    /// Inverse of `Patchify` for an image of `height × width`.
    Unpatchify { patch: u64, height: u64, width: u64 },
    /// `[B, C, F, H, W] → [B, (F/pt)·(H/p)·(W/p), pt·p·p·C]`: video patches, tokens row-major
    /// over (frame, row, column), each patch vector ordered (frame, row, column, channel).
    PatchifyVideo { patch_t: u64, patch: u64 },
    /// Inverse of `PatchifyVideo` for a clip of `frames × height × width`.
    UnpatchifyVideo {
        patch_t: u64,
        patch: u64,
        frames: u64,
        height: u64,
        width: u64,
    },
    /// Fixed 2-D sin-cos position table `[1, h·w, dim]` (first half columns, second half rows).
    PosEmbed2d { height: u64, width: u64, dim: u64 },
    /// Sinusoidal timestep features `[B] → [B, dim]`, ordered `[cos, sin]`.
    TimestepEmbed { dim: u64, max_period: u64 },
    /// Class embedding table with `classes + 1` rows (the last is the null label).
    ClassEmbed { classes: u64, dim: u64 },
    /// Depthwise convolution over tokens (order-sensitive, Mamba/RWKV-like local mixing).
    TokenConv { kernel: u64, causal: bool },
    /// Scaled dot-product attention without projections on `heads` heads: inputs `(q, k, v)`
    /// or `(q, k, v, key_mask)`; keys and values may be another stream (cross-attention) or a
    /// concatenation of streams (joint attention). The output has q's tokens.
    Sdpa { heads: u64 },
    /// Rotary position embedding of each head of `x`: inputs `(x, positions)` with positions
    /// `[1 or B, T, axes]` laid out like x's tokens; head dim split into `axes_dims`, pairs
    /// `(2i, 2i+1)` rotated by `position · θ^(−2i/dim)` per axis.
    Rope {
        heads: u64,
        axes_dims: Vec<u64>,
        theta: f64,
    },
    /// Per-token RoPE positions of one stream, `[1, T:tokens, axes]`: the last `grid.len()`
    /// axes hold the row-major grid coordinates (frame, row, column), the others zero.
    Positions {
        stream: String,
        tokens: u64,
        grid: Vec<u64>,
        axes: u64,
    },
    /// The tokens of one stream, taken from a value whose token axis joins several.
    SelectStream { stream: String },
    /// A norm over each head's features alone (QK-norm): `heads` groups of the last axis,
    /// with an optional affine of the head dim shared by all heads.
    HeadNorm {
        heads: u64,
        norm: NormFlavour,
        eps: f64,
        affine: bool,
    },
    /// Gated linear unit over the last axis `[.., 2F] → [.., F]`: `act(a) · b`.
    Glu { act: GluAct },
    /// Embedding table for token ids `[B, T] → [B, T, dim]` (a model's own text encoder).
    Embed { vocab: u64, dim: u64 },
    /// Fused (never in model.json; written by the fusion pass for training and sampling):
    /// `modulate(layer_norm(x) or rms_norm(x), shift, scale)` without affine; inputs
    /// `(x, shift, scale)` with per-sample `[B, 1, D]` shift and scale.
    NormModulate { eps: f64, rms: bool },
    /// Fused (written by the fusion pass): the gated residual `x + gate·y`; inputs
    /// `(x, gate, y)` with a per-sample `[B, 1, D]` gate.
    GatedResidual,
    /// Route `route`: draws per-sample kept token indices `[B, keep]` from the trunk value.
    RouteSelect {
        route: usize,
        rate: f64,
        keep: u64,
        sorted: bool,
        stream: String,
    },
    /// Route `route`: the select's indices over the image stream shifted into a token axis that
    /// also holds other streams, which pass whole: `[0, before) ++ (idx + before) ++
    /// [before + tokens, before + tokens + after)`. Input: the select's `[B, keep]`.
    StreamIndices {
        route: usize,
        before: u64,
        tokens: u64,
        after: u64,
    },
    /// Route `route`: gathers the kept tokens of a token-indexed value; inputs `(x, indices)`;
    /// `stream` is the routed stream (others in x pass whole).
    GatherTokens { route: usize, stream: String },
    /// Route `route`: scatters processed kept tokens into the saved full value;
    /// inputs `(base, kept, indices)`. Positions not kept keep `base` (identity bypass).
    MergeTokens { route: usize, stream: String },
}

impl Op {
    /// The op's name in model.json and dumps.
    pub fn name(&self) -> &'static str {
        OpKind::from(self).name()
    }

    /// True for the ops only the fusion pass writes (never read from model.json, never exported).
    pub fn is_fused(&self) -> bool {
        OpKind::from(self).written_by() == WrittenBy::FusionPass
    }

    /// The route this op belongs to, for the nodes the route pass inserts.
    pub fn route(&self) -> Option<usize> {
        match self {
            Op::RouteSelect { route, .. }
            | Op::StreamIndices { route, .. }
            | Op::GatherTokens { route, .. }
            | Op::MergeTokens { route, .. } => Some(*route),
            _ => None,
        }
    }

    /// How many inputs the op takes (`None` = one or more).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Input { .. } | Op::Param { .. } | Op::PosEmbed2d { .. } | Op::Positions { .. } => {
                Some(0)
            }
            Op::Add | Op::Mul | Op::GatherTokens { .. } | Op::Rope { .. } => Some(2),
            Op::Modulate | Op::NormModulate { .. } | Op::GatedResidual | Op::MergeTokens { .. } => {
                Some(3)
            }
            Op::Concat { .. } | Op::Sdpa { .. } => None,
            Op::Linear { .. }
            | Op::SelectStream { .. }
            | Op::HeadNorm { .. }
            | Op::Glu { .. }
            | Op::Embed { .. }
            | Op::LayerNorm { .. }
            | Op::RmsNorm { .. }
            | Op::Attention { .. }
            | Op::Gelu { .. }
            | Op::Silu
            | Op::Chunk { .. }
            | Op::Unsqueeze { .. }
            | Op::Patchify { .. }
            | Op::Unpatchify { .. }
            | Op::PatchifyVideo { .. }
            | Op::UnpatchifyVideo { .. }
            | Op::TimestepEmbed { .. }
            | Op::ClassEmbed { .. }
            | Op::TokenConv { .. }
            | Op::StreamIndices { .. }
            | Op::RouteSelect { .. } => Some(1),
        }
    }

    /// Token-axis behaviour given the token axis of the op's first input (`None` if it has none).
    pub fn token_behaviour(&self, input_token_axis: Option<usize>) -> TokenBehaviour {
        use TokenBehaviour::*;
        let has_tokens = input_token_axis.is_some();
        match self {
            Op::Input { .. } | Op::TimestepEmbed { .. } | Op::ClassEmbed { .. } => NoTokenAxis,
            Op::Sdpa { .. } => PermutationEquivariant,
            Op::Positions { .. } => Positional,
            Op::SelectStream { .. } => Streams,
            Op::Concat { axis } if input_token_axis == Some(*axis) => Streams,
            Op::Param { token_axis, .. } => {
                if token_axis.is_some() {
                    Positional
                } else {
                    NoTokenAxis
                }
            }
            Op::Patchify { .. }
            | Op::Unpatchify { .. }
            | Op::PatchifyVideo { .. }
            | Op::UnpatchifyVideo { .. }
            | Op::PosEmbed2d { .. } => Positional,
            Op::Attention { .. } => PermutationEquivariant,
            Op::TokenConv { .. } => OrderSensitive,
            Op::Chunk { axis, .. } if input_token_axis == Some(*axis) => Positional,
            Op::RouteSelect { .. }
            | Op::StreamIndices { .. }
            | Op::GatherTokens { .. }
            | Op::MergeTokens { .. } => Positional,
            // Act on each token alone (or on the feature axis of a value without tokens).
            Op::Linear { .. }
            | Op::LayerNorm { .. }
            | Op::RmsNorm { .. }
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
            | Op::Rope { .. }
            | Op::HeadNorm { .. }
            | Op::Glu { .. }
            | Op::Embed { .. } => {
                if has_tokens {
                    PerToken
                } else {
                    NoTokenAxis
                }
            }
        }
    }

    /// Attributes as `key=value` pairs, in a fixed order, for dumps.
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        match self {
            Op::Input { role } => vec![("role", role.name().into())],
            Op::Param {
                shape,
                token_axis,
                init,
            } => {
                let mut v = vec![("shape", format!("{shape:?}"))];
                if let Some(a) = token_axis {
                    v.push(("token_axis", a.to_string()));
                }
                v.push(("init", init.to_string()));
                v
            }
            Op::Linear { out, bias } => {
                let mut v = vec![("out", out.to_string())];
                if !bias {
                    v.push(("bias", "false".into()));
                }
                v
            }
            Op::LayerNorm { eps, affine } | Op::RmsNorm { eps, affine } => {
                vec![("eps", format!("{eps:e}")), ("affine", affine.to_string())]
            }
            Op::Attention { heads, qkv_bias } => {
                let mut v = vec![("heads", heads.to_string())];
                if !qkv_bias {
                    v.push(("qkv_bias", "false".into()));
                }
                v
            }
            Op::Gelu { approximate } => vec![(
                "approximate",
                match approximate {
                    GeluApprox::None => "none",
                    GeluApprox::Tanh => "tanh",
                }
                .into(),
            )],
            Op::Silu | Op::Add | Op::Mul | Op::Modulate | Op::GatedResidual => vec![],
            Op::NormModulate { eps, rms } => vec![
                ("eps", format!("{eps:e}")),
                ("norm", if *rms { "rms" } else { "layer" }.into()),
            ],
            Op::Chunk {
                axis,
                chunks,
                index,
            } => vec![
                ("axis", axis.to_string()),
                ("chunks", chunks.to_string()),
                ("index", index.to_string()),
            ],
            Op::Concat { axis } | Op::Unsqueeze { axis } => vec![("axis", axis.to_string())],
            Op::Patchify { patch } => vec![("patch", patch.to_string())],
            Op::Unpatchify {
                patch,
                height,
                width,
            } => vec![
                ("patch", patch.to_string()),
                ("height", height.to_string()),
                ("width", width.to_string()),
            ],
            Op::PatchifyVideo { patch_t, patch } => vec![
                ("patch_t", patch_t.to_string()),
                ("patch", patch.to_string()),
            ],
            Op::UnpatchifyVideo {
                patch_t,
                patch,
                frames,
                height,
                width,
            } => vec![
                ("patch_t", patch_t.to_string()),
                ("patch", patch.to_string()),
                ("frames", frames.to_string()),
                ("height", height.to_string()),
                ("width", width.to_string()),
            ],
            Op::PosEmbed2d { height, width, dim } => vec![
                ("height", height.to_string()),
                ("width", width.to_string()),
                ("dim", dim.to_string()),
            ],
            Op::TimestepEmbed { dim, max_period } => vec![
                ("dim", dim.to_string()),
                ("max_period", max_period.to_string()),
            ],
            Op::ClassEmbed { classes, dim } => {
                vec![("classes", classes.to_string()), ("dim", dim.to_string())]
            }
            Op::TokenConv { kernel, causal } => vec![
                ("kernel", kernel.to_string()),
                ("causal", causal.to_string()),
            ],
            Op::RouteSelect {
                route,
                rate,
                keep,
                sorted,
                stream,
            } => {
                let mut v = vec![
                    ("route", route.to_string()),
                    ("rate", rate.to_string()),
                    ("keep", keep.to_string()),
                    ("sorted", sorted.to_string()),
                ];
                if stream != super::types::IMAGE_STREAM {
                    v.push(("stream", stream.clone()));
                }
                v
            }
            Op::GatherTokens { route, stream } | Op::MergeTokens { route, stream } => {
                let mut v = vec![("route", route.to_string())];
                if stream != super::types::IMAGE_STREAM {
                    v.push(("stream", stream.clone()));
                }
                v
            }
            Op::StreamIndices {
                route,
                before,
                tokens,
                after,
            } => vec![
                ("route", route.to_string()),
                ("before", before.to_string()),
                ("tokens", tokens.to_string()),
                ("after", after.to_string()),
            ],
            Op::Sdpa { heads } => vec![("heads", heads.to_string())],
            Op::Rope {
                heads,
                axes_dims,
                theta,
            } => vec![
                ("heads", heads.to_string()),
                ("axes_dims", format!("{axes_dims:?}")),
                ("theta", theta.to_string()),
            ],
            Op::Positions {
                stream,
                tokens,
                grid,
                axes,
            } => vec![
                ("stream", stream.clone()),
                ("tokens", tokens.to_string()),
                ("grid", format!("{grid:?}")),
                ("axes", axes.to_string()),
            ],
            Op::SelectStream { stream } => vec![("stream", stream.clone())],
            Op::HeadNorm {
                heads,
                norm,
                eps,
                affine,
            } => vec![
                ("heads", heads.to_string()),
                ("norm", norm.name().into()),
                ("eps", format!("{eps:e}")),
                ("affine", affine.to_string()),
            ],
            Op::Glu { act } => vec![("act", act.name().into())],
            Op::Embed { vocab, dim } => {
                vec![("vocab", vocab.to_string()), ("dim", dim.to_string())]
            }
        }
    }
}

/// Who writes an op into a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenBy {
    /// A node of model.json.
    ModelFile,
    /// The graph's inputs (declared under `inputs` in model.json, not as nodes).
    Inputs,
    /// The fusion pass (training and sampling graphs only; never exported).
    FusionPass,
    /// The route pass.
    RoutePass,
}

impl OpKind {
    /// The op's name in model.json and dumps.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Input => "input",
            OpKind::Param => "param",
            OpKind::Linear => "linear",
            OpKind::LayerNorm => "layer_norm",
            OpKind::RmsNorm => "rms_norm",
            OpKind::Attention => "attention",
            OpKind::Gelu => "gelu",
            OpKind::Silu => "silu",
            OpKind::Add => "add",
            OpKind::Mul => "mul",
            OpKind::Modulate => "modulate",
            OpKind::NormModulate => "norm_modulate",
            OpKind::GatedResidual => "gated_residual",
            OpKind::Chunk => "chunk",
            OpKind::Concat => "concat",
            OpKind::Unsqueeze => "unsqueeze",
            OpKind::Patchify => "patchify",
            OpKind::Unpatchify => "unpatchify",
            OpKind::PatchifyVideo => "patchify_video",
            OpKind::UnpatchifyVideo => "unpatchify_video",
            OpKind::PosEmbed2d => "pos_embed_2d",
            OpKind::TimestepEmbed => "timestep_embed",
            OpKind::ClassEmbed => "class_embed",
            OpKind::TokenConv => "token_conv",
            OpKind::RouteSelect => "route_select",
            OpKind::GatherTokens => "gather_tokens",
            OpKind::MergeTokens => "merge_tokens",
            OpKind::StreamIndices => "stream_indices",
            OpKind::Sdpa => "sdpa",
            OpKind::Rope => "rope",
            OpKind::Positions => "positions",
            OpKind::SelectStream => "select_stream",
            OpKind::HeadNorm => "head_norm",
            OpKind::Glu => "glu",
            OpKind::Embed => "embed",
        }
    }

    /// Who writes this op: only [`WrittenBy::ModelFile`] kinds may appear as model.json nodes.
    pub fn written_by(self) -> WrittenBy {
        match self {
            OpKind::Input => WrittenBy::Inputs,
            OpKind::NormModulate | OpKind::GatedResidual => WrittenBy::FusionPass,
            OpKind::RouteSelect
            | OpKind::StreamIndices
            | OpKind::GatherTokens
            | OpKind::MergeTokens => WrittenBy::RoutePass,
            OpKind::Param
            | OpKind::Linear
            | OpKind::LayerNorm
            | OpKind::RmsNorm
            | OpKind::Attention
            | OpKind::Gelu
            | OpKind::Silu
            | OpKind::Add
            | OpKind::Mul
            | OpKind::Modulate
            | OpKind::Chunk
            | OpKind::Concat
            | OpKind::Unsqueeze
            | OpKind::Patchify
            | OpKind::Unpatchify
            | OpKind::PatchifyVideo
            | OpKind::UnpatchifyVideo
            | OpKind::PosEmbed2d
            | OpKind::TimestepEmbed
            | OpKind::ClassEmbed
            | OpKind::TokenConv
            | OpKind::Sdpa
            | OpKind::Rope
            | OpKind::Positions
            | OpKind::SelectStream
            | OpKind::HeadNorm
            | OpKind::Glu
            | OpKind::Embed => WrittenBy::ModelFile,
        }
    }

    /// The kind named `name` in model.json and dumps, if any.
    pub fn from_name(name: &str) -> Option<OpKind> {
        use strum::IntoEnumIterator;
        OpKind::iter().find(|k| k.name() == name)
    }

    /// The ops a model file may use as nodes, in declaration order (derived from the enum).
    pub fn user_ops() -> Vec<OpKind> {
        use strum::IntoEnumIterator;
        OpKind::iter()
            .filter(|k| k.written_by() == WrittenBy::ModelFile)
            .collect()
    }
}

impl fmt::Display for ParamInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamInit::Zeros => f.write_str("zeros"),
            ParamInit::Normal { std } => write!(f, "normal({std})"),
        }
    }
}

impl fmt::Display for Op {
    /// `linear[out=384]`, `silu`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let attrs = self.attrs();
        if !attrs.is_empty() {
            f.write_str("[")?;
            for (i, (k, v)) in attrs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}={v}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_behaviour_depends_on_axis() {
        let chunk = Op::Chunk {
            axis: 1,
            chunks: 2,
            index: 0,
        };
        assert_eq!(chunk.token_behaviour(Some(1)), TokenBehaviour::Positional);
        assert_eq!(chunk.token_behaviour(Some(0)), TokenBehaviour::PerToken);
        assert_eq!(chunk.token_behaviour(None), TokenBehaviour::NoTokenAxis);
        let conv = Op::TokenConv {
            kernel: 4,
            causal: true,
        };
        assert_eq!(
            conv.token_behaviour(Some(1)),
            TokenBehaviour::OrderSensitive
        );
        let attn = Op::Attention {
            heads: 6,
            qkv_bias: true,
        };
        assert_eq!(
            attn.token_behaviour(Some(1)),
            TokenBehaviour::PermutationEquivariant
        );
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        use strum::IntoEnumIterator;
        let mut seen = std::collections::HashSet::new();
        for k in OpKind::iter() {
            assert!(seen.insert(k.name()), "{} named twice", k.name());
            assert_eq!(OpKind::from_name(k.name()), Some(k));
        }
        assert_eq!(OpKind::from_name("softmax"), None);
        let users: Vec<&str> = OpKind::user_ops().into_iter().map(OpKind::name).collect();
        assert!(users.contains(&"token_conv") && users.contains(&"param"));
        assert!(!users.contains(&"merge_tokens") && !users.contains(&"norm_modulate"));
        assert!(!users.contains(&"input"));
    }

    #[test]
    fn display_lists_attrs() {
        assert_eq!(
            Op::Linear {
                out: 384,
                bias: true
            }
            .to_string(),
            "linear[out=384]"
        );
        assert_eq!(Op::Silu.to_string(), "silu");
    }
}
