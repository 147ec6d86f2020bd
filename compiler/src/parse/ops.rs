//! Reads one node's op and attributes from model.json.
//!
//! Why a table of allowed keys per op: an unknown attribute is an error that lists the valid ones,
//! so a typo never silently changes the model.

use super::fields::{describe, Fields};
use crate::diag::{Diagnostic, Result};
use crate::dims::DimTable;
use crate::ir::{GeluApprox, GluAct, NormFlavour, Op, OpKind, ParamInit};

/// Keys every node may have besides its attributes.
pub const NODE_KEYS: [&str; 3] = ["name", "op", "in"];

/// The ops a model file may use as nodes, for error messages: derived from the op enum
/// ([`OpKind::user_ops`]), so a new op is listed without touching this file.
pub fn user_op_names() -> Vec<&'static str> {
    OpKind::user_ops().into_iter().map(OpKind::name).collect()
}

/// Parses the op of node object `f`, consuming its attributes and checking for unknown keys.
pub fn parse_op(f: &Fields, op_name: &str, dims: &DimTable) -> Result<Op> {
    let attrs: &[&str];
    let Some(kind) = OpKind::from_name(op_name) else {
        return Err(
            Diagnostic::at_path(f.at("op"), format!("unknown op `{op_name}`"))
                .expected(format!("one of {}", user_op_names().join(", ")))
                .found(format!("\"{op_name}\"")),
        );
    };
    let op = match kind {
        OpKind::Param => {
            attrs = &["shape", "token_axis", "init", "std"];
            let shape_v = f.req("shape", "an array of sizes")?;
            let arr = super::fields::as_array(shape_v, &f.at("shape"), "`shape`")?;
            let mut shape = vec![];
            for (i, d) in arr.iter().enumerate() {
                let p = super::fields::elem(&f.at("shape"), i);
                let n = super::fields::as_size(d, &p, dims)?;
                if n == 0 {
                    return Err(Diagnostic::at_path(p, "empty dimension")
                        .expected("a size ≥ 1")
                        .found("0"));
                }
                shape.push(n);
            }
            let token_axis = f.opt_size("token_axis", dims)?.map(|a| a as usize);
            if let Some(a) = token_axis {
                if a >= shape.len() {
                    return Err(
                        Diagnostic::at_path(f.at("token_axis"), "token axis out of range")
                            .expected(format!("an axis < {}", shape.len()))
                            .found(a.to_string()),
                    );
                }
            }
            let init = match f.opt_str("init")?.unwrap_or("normal") {
                "zeros" => {
                    if f.get("std").is_some() {
                        return Err(Diagnostic::at_path(
                            f.at("std"),
                            "`std` applies only to `\"init\": \"normal\"`",
                        )
                        .expected("no `std` with `\"init\": \"zeros\"`")
                        .found("a `std`"));
                    }
                    ParamInit::Zeros
                }
                "normal" => {
                    let std = f.opt_f64("std")?.unwrap_or(0.02);
                    if std < 0.0 {
                        return Err(Diagnostic::at_path(f.at("std"), "negative std")
                            .expected("std ≥ 0")
                            .found(std.to_string()));
                    }
                    ParamInit::Normal { std }
                }
                other => {
                    return Err(Diagnostic::at_path(f.at("init"), "unknown init")
                        .expected("\"zeros\" or \"normal\"")
                        .found(format!("\"{other}\"")))
                }
            };
            Op::Param {
                shape,
                token_axis,
                init,
            }
        }
        OpKind::Linear => {
            attrs = &["out", "bias"];
            Op::Linear {
                out: positive(f, "out", dims)?,
                bias: f.opt_bool("bias")?.unwrap_or(true),
            }
        }
        OpKind::LayerNorm | OpKind::RmsNorm => {
            attrs = &["eps", "affine"];
            let eps = f.opt_f64("eps")?.unwrap_or(1e-6);
            if eps <= 0.0 {
                return Err(Diagnostic::at_path(f.at("eps"), "eps must be positive")
                    .expected("eps > 0")
                    .found(eps.to_string()));
            }
            let affine = f.opt_bool("affine")?.unwrap_or(false);
            if kind == OpKind::LayerNorm {
                Op::LayerNorm { eps, affine }
            } else {
                Op::RmsNorm { eps, affine }
            }
        }
        OpKind::Attention => {
            attrs = &["heads", "qkv_bias"];
            Op::Attention {
                heads: positive(f, "heads", dims)?,
                qkv_bias: f.opt_bool("qkv_bias")?.unwrap_or(true),
            }
        }
        OpKind::Gelu => {
            attrs = &["approximate"];
            let approximate = match f.opt_str("approximate")?.unwrap_or("none") {
                "none" => GeluApprox::None,
                "tanh" => GeluApprox::Tanh,
                other => {
                    return Err(
                        Diagnostic::at_path(f.at("approximate"), "unknown GELU flavour")
                            .expected("\"none\" or \"tanh\"")
                            .found(format!("\"{other}\"")),
                    )
                }
            };
            Op::Gelu { approximate }
        }
        OpKind::Silu => {
            attrs = &[];
            Op::Silu
        }
        OpKind::Add => {
            attrs = &[];
            Op::Add
        }
        OpKind::Mul => {
            attrs = &[];
            Op::Mul
        }
        OpKind::Modulate => {
            attrs = &[];
            Op::Modulate
        }
        OpKind::Chunk => {
            attrs = &["axis", "chunks", "index"];
            Op::Chunk {
                axis: f.size("axis", dims)? as usize,
                chunks: positive(f, "chunks", dims)?,
                index: f.size("index", dims)?,
            }
        }
        OpKind::Concat => {
            attrs = &["axis"];
            Op::Concat {
                axis: f.size("axis", dims)? as usize,
            }
        }
        OpKind::Unsqueeze => {
            attrs = &["axis"];
            Op::Unsqueeze {
                axis: f.size("axis", dims)? as usize,
            }
        }
        OpKind::Patchify => {
            attrs = &["patch"];
            Op::Patchify {
                patch: positive(f, "patch", dims)?,
            }
        }
        OpKind::Unpatchify => {
            attrs = &["patch", "height", "width"];
            Op::Unpatchify {
                patch: positive(f, "patch", dims)?,
                height: positive(f, "height", dims)?,
                width: positive(f, "width", dims)?,
            }
        }
        OpKind::PatchifyVideo => {
            attrs = &["patch_t", "patch"];
            Op::PatchifyVideo {
                patch_t: positive(f, "patch_t", dims)?,
                patch: positive(f, "patch", dims)?,
            }
        }
        OpKind::UnpatchifyVideo => {
            attrs = &["patch_t", "patch", "frames", "height", "width"];
            Op::UnpatchifyVideo {
                patch_t: positive(f, "patch_t", dims)?,
                patch: positive(f, "patch", dims)?,
                frames: positive(f, "frames", dims)?,
                height: positive(f, "height", dims)?,
                width: positive(f, "width", dims)?,
            }
        }
        OpKind::PosEmbed2d => {
            attrs = &["height", "width", "dim"];
            Op::PosEmbed2d {
                height: positive(f, "height", dims)?,
                width: positive(f, "width", dims)?,
                dim: positive(f, "dim", dims)?,
            }
        }
        OpKind::TimestepEmbed => {
            attrs = &["dim", "max_period"];
            Op::TimestepEmbed {
                dim: positive(f, "dim", dims)?,
                max_period: match f.get("max_period") {
                    None => 10_000,
                    Some(_) => positive(f, "max_period", dims)?,
                },
            }
        }
        OpKind::ClassEmbed => {
            attrs = &["classes", "dim"];
            Op::ClassEmbed {
                classes: positive(f, "classes", dims)?,
                dim: positive(f, "dim", dims)?,
            }
        }
        OpKind::TokenConv => {
            attrs = &["kernel", "causal"];
            Op::TokenConv {
                kernel: positive(f, "kernel", dims)?,
                causal: f.opt_bool("causal")?.unwrap_or(true),
            }
        }
        OpKind::Sdpa => {
            attrs = &["heads"];
            Op::Sdpa {
                heads: positive(f, "heads", dims)?,
            }
        }
        OpKind::Rope => {
            attrs = &["heads", "axes_dims", "theta"];
            let axes_dims = sizes(f, "axes_dims", dims, true)?;
            if axes_dims.iter().any(|d| d % 2 != 0) {
                return Err(
                    Diagnostic::at_path(f.at("axes_dims"), "rotary dims come in pairs")
                        .expected("an even size per axis")
                        .found(format!("{axes_dims:?}")),
                );
            }
            let theta = f.opt_f64("theta")?.unwrap_or(10_000.0);
            if theta <= 1.0 {
                return Err(Diagnostic::at_path(f.at("theta"), "bad rotary base")
                    .expected("theta > 1")
                    .found(theta.to_string()));
            }
            Op::Rope {
                heads: positive(f, "heads", dims)?,
                axes_dims,
                theta,
            }
        }
        OpKind::Positions => {
            attrs = &["stream", "tokens", "grid", "axes"];
            let grid = match f.get("grid") {
                Some(_) => sizes(f, "grid", dims, false)?,
                None => vec![],
            };
            let axes = positive(f, "axes", dims)?;
            let tokens = positive(f, "tokens", dims)?;
            if grid.len() as u64 > axes {
                return Err(
                    Diagnostic::at_path(f.at("grid"), "more grid axes than position axes")
                        .expected(format!("at most {axes} grid sizes"))
                        .found(format!("{grid:?}")),
                );
            }
            if !grid.is_empty() && grid.iter().product::<u64>() != tokens {
                return Err(
                    Diagnostic::at_path(f.at("grid"), "the grid does not hold the tokens")
                        .expected(format!("sizes whose product is {tokens}"))
                        .found(format!("{grid:?}")),
                );
            }
            Op::Positions {
                stream: stream_name(f)?,
                tokens,
                grid,
                axes,
            }
        }
        OpKind::SelectStream => {
            attrs = &["stream"];
            Op::SelectStream {
                stream: stream_name(f)?,
            }
        }
        OpKind::HeadNorm => {
            attrs = &["heads", "norm", "eps", "affine"];
            let norm = match f.opt_str("norm")?.unwrap_or("rms") {
                "rms" => NormFlavour::Rms,
                "layer" => NormFlavour::Layer,
                other => {
                    return Err(Diagnostic::at_path(f.at("norm"), "unknown norm")
                        .expected("\"rms\" or \"layer\"")
                        .found(format!("\"{other}\"")))
                }
            };
            let eps = f.opt_f64("eps")?.unwrap_or(1e-6);
            if eps <= 0.0 {
                return Err(Diagnostic::at_path(f.at("eps"), "eps must be positive")
                    .expected("eps > 0")
                    .found(eps.to_string()));
            }
            Op::HeadNorm {
                heads: positive(f, "heads", dims)?,
                norm,
                eps,
                affine: f.opt_bool("affine")?.unwrap_or(true),
            }
        }
        OpKind::Glu => {
            attrs = &["act"];
            let act = match f.opt_str("act")?.unwrap_or("silu") {
                "silu" => GluAct::Silu,
                "gelu_tanh" => GluAct::GeluTanh,
                other => {
                    return Err(Diagnostic::at_path(f.at("act"), "unknown GLU activation")
                        .expected("\"silu\" (SwiGLU) or \"gelu_tanh\" (GEGLU)")
                        .found(format!("\"{other}\"")))
                }
            };
            Op::Glu { act }
        }
        OpKind::Embed => {
            attrs = &["vocab", "dim"];
            Op::Embed {
                vocab: positive(f, "vocab", dims)?,
                dim: positive(f, "dim", dims)?,
            }
        }
        OpKind::RouteSelect
        | OpKind::StreamIndices
        | OpKind::GatherTokens
        | OpKind::MergeTokens => {
            return Err(Diagnostic::at_path(
                f.at("op"),
                format!("`{op_name}` is inserted by the route pass and cannot be written by hand"),
            )
            .expected("a backbone op; declare routes under `routes` or with --route")
            .found(format!("\"{op_name}\"")))
        }
        OpKind::NormModulate | OpKind::GatedResidual => {
            return Err(Diagnostic::at_path(
                f.at("op"),
                format!("`{op_name}` is written by the fusion pass and cannot be written by hand"),
            )
            .expected(format!("one of {}", user_op_names().join(", ")))
            .found(format!("\"{op_name}\"")))
        }
        OpKind::Input => {
            return Err(Diagnostic::at_path(
                f.at("op"),
                "graph inputs are declared under `inputs`, not as nodes",
            )
            .expected(format!("one of {}", user_op_names().join(", ")))
            .found(format!("\"{op_name}\"")))
        }
    };
    let allowed: Vec<&str> = NODE_KEYS.iter().chain(attrs.iter()).copied().collect();
    f.finish(&allowed)?;
    Ok(op)
}

/// An array of positive sizes under `key`; `nonempty` refuses `[]`.
fn sizes(f: &Fields, key: &str, dims: &DimTable, nonempty: bool) -> Result<Vec<u64>> {
    let v = f.req(key, "an array of sizes")?;
    let arr = super::fields::as_array(v, &f.at(key), &format!("`{key}`"))?;
    if nonempty && arr.is_empty() {
        return Err(Diagnostic::at_path(f.at(key), format!("`{key}` is empty"))
            .expected("at least one size")
            .found("[]"));
    }
    let mut out = vec![];
    for (i, d) in arr.iter().enumerate() {
        let p = super::fields::elem(&f.at(key), i);
        let n = super::fields::as_size(d, &p, dims)?;
        if n == 0 {
            return Err(Diagnostic::at_path(p, format!("`{key}` must be positive"))
                .expected("a size ≥ 1")
                .found("0"));
        }
        out.push(n);
    }
    Ok(out)
}

/// A stream name (`stream`): an identifier such as `image` or `text`.
fn stream_name(f: &Fields) -> Result<String> {
    let s = f.str("stream")?;
    if crate::dims::is_identifier(s) {
        Ok(s.to_string())
    } else {
        Err(Diagnostic::at_path(f.at("stream"), "bad stream name")
            .expected("an identifier such as \"image\" or \"text\"")
            .found(format!("\"{s}\"")))
    }
}

fn positive(f: &Fields, key: &str, dims: &DimTable) -> Result<u64> {
    let v = f.size(key, dims)?;
    if v == 0 {
        let raw = f.get(key).map(describe).unwrap_or_default();
        return Err(
            Diagnostic::at_path(f.at(key), format!("`{key}` must be positive"))
                .expected("a size ≥ 1")
                .found(raw),
        );
    }
    Ok(v)
}
