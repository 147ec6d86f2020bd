//! Reads one node's op and attributes from model.json.
//!
//! Why a table of allowed keys per op: an unknown attribute is an error that lists the valid ones,
//! so a typo never silently changes the model.

use super::fields::{describe, Fields};
use crate::diag::{Diagnostic, Result};
use crate::dims::DimTable;
use crate::ir::{GeluApprox, Op, ParamInit};

/// Keys every node may have besides its attributes.
pub const NODE_KEYS: [&str; 3] = ["name", "op", "in"];

/// The ops a model file may use (route ops are inserted by the compiler only).
pub const USER_OPS: [&str; 19] = [
    "param",
    "linear",
    "layer_norm",
    "rms_norm",
    "attention",
    "gelu",
    "silu",
    "add",
    "mul",
    "modulate",
    "chunk",
    "concat",
    "unsqueeze",
    "patchify",
    "unpatchify",
    "pos_embed_2d",
    "timestep_embed",
    "class_embed",
    "token_conv",
];

/// Parses the op of node object `f`, consuming its attributes and checking for unknown keys.
pub fn parse_op(f: &Fields, op_name: &str, dims: &DimTable) -> Result<Op> {
    let attrs: &[&str];
    let op = match op_name {
        "param" => {
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
        "linear" => {
            attrs = &["out", "bias"];
            Op::Linear {
                out: positive(f, "out", dims)?,
                bias: f.opt_bool("bias")?.unwrap_or(true),
            }
        }
        "layer_norm" | "rms_norm" => {
            attrs = &["eps", "affine"];
            let eps = f.opt_f64("eps")?.unwrap_or(1e-6);
            if eps <= 0.0 {
                return Err(Diagnostic::at_path(f.at("eps"), "eps must be positive")
                    .expected("eps > 0")
                    .found(eps.to_string()));
            }
            let affine = f.opt_bool("affine")?.unwrap_or(false);
            if op_name == "layer_norm" {
                Op::LayerNorm { eps, affine }
            } else {
                Op::RmsNorm { eps, affine }
            }
        }
        "attention" => {
            attrs = &["heads", "qkv_bias"];
            Op::Attention {
                heads: positive(f, "heads", dims)?,
                qkv_bias: f.opt_bool("qkv_bias")?.unwrap_or(true),
            }
        }
        "gelu" => {
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
        "silu" => {
            attrs = &[];
            Op::Silu
        }
        "add" => {
            attrs = &[];
            Op::Add
        }
        "mul" => {
            attrs = &[];
            Op::Mul
        }
        "modulate" => {
            attrs = &[];
            Op::Modulate
        }
        "chunk" => {
            attrs = &["axis", "chunks", "index"];
            Op::Chunk {
                axis: f.size("axis", dims)? as usize,
                chunks: positive(f, "chunks", dims)?,
                index: f.size("index", dims)?,
            }
        }
        "concat" => {
            attrs = &["axis"];
            Op::Concat {
                axis: f.size("axis", dims)? as usize,
            }
        }
        "unsqueeze" => {
            attrs = &["axis"];
            Op::Unsqueeze {
                axis: f.size("axis", dims)? as usize,
            }
        }
        "patchify" => {
            attrs = &["patch"];
            Op::Patchify {
                patch: positive(f, "patch", dims)?,
            }
        }
        "unpatchify" => {
            attrs = &["patch", "height", "width"];
            Op::Unpatchify {
                patch: positive(f, "patch", dims)?,
                height: positive(f, "height", dims)?,
                width: positive(f, "width", dims)?,
            }
        }
        "pos_embed_2d" => {
            attrs = &["height", "width", "dim"];
            Op::PosEmbed2d {
                height: positive(f, "height", dims)?,
                width: positive(f, "width", dims)?,
                dim: positive(f, "dim", dims)?,
            }
        }
        "timestep_embed" => {
            attrs = &["dim", "max_period"];
            Op::TimestepEmbed {
                dim: positive(f, "dim", dims)?,
                max_period: match f.get("max_period") {
                    None => 10_000,
                    Some(_) => positive(f, "max_period", dims)?,
                },
            }
        }
        "class_embed" => {
            attrs = &["classes", "dim"];
            Op::ClassEmbed {
                classes: positive(f, "classes", dims)?,
                dim: positive(f, "dim", dims)?,
            }
        }
        "token_conv" => {
            attrs = &["kernel", "causal"];
            Op::TokenConv {
                kernel: positive(f, "kernel", dims)?,
                causal: f.opt_bool("causal")?.unwrap_or(true),
            }
        }
        "route_select" | "gather_tokens" | "merge_tokens" => {
            return Err(Diagnostic::at_path(
                f.at("op"),
                format!("`{op_name}` is inserted by the route pass and cannot be written by hand"),
            )
            .expected("a backbone op; declare routes under `routes` or with --route")
            .found(format!("\"{op_name}\"")))
        }
        other => {
            return Err(
                Diagnostic::at_path(f.at("op"), format!("unknown op `{other}`"))
                    .expected(format!("one of {}", USER_OPS.join(", ")))
                    .found(format!("\"{other}\"")),
            )
        }
    };
    let allowed: Vec<&str> = NODE_KEYS.iter().chain(attrs.iter()).copied().collect();
    f.finish(&allowed)?;
    Ok(op)
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
