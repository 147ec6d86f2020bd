//! The official DiT parameter names (facebookresearch/DiT; SiT and CompVis/tread keep them)
//! mapped onto treadc's DiT presets: renames, linear weights from torch's `[out, in]` to
//! treadc's `[in, out]`, the patch Conv2d `[D, C, p, p]` flattened to the patchify linear's
//! (row, column, channel) order, and a learned-sigma head's `2C` output channels cut to the `C`
//! a preset predicts. The fixed `pos_embed` must equal treadc's sin-cos table.

use std::collections::BTreeMap;

use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::ir::{Graph, Op};
use tread_compiler::tables::pos_embed_2d;

use crate::checkpoint::HostTensor;

/// The tensor whose presence marks a file as using the official names.
pub const MARKER: &str = "x_embedder.proj.weight";

/// The fixed position table's official name.
const POS_EMBED: &str = "pos_embed";

/// How a tensor's values change on the way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// As stored (biases, the label table).
    Same,
    /// A torch linear weight `[out, in]` to `[in, out]`.
    Transposed,
    /// The patch Conv2d weight `[D, C, p, p]` to `[p·p·C, D]`.
    PatchConv,
    /// The final linear's weight `[p·p·Co, D]`, cut to the model's channels and transposed.
    HeadWeight,
    /// The final linear's bias `[p·p·Co]`, cut to the model's channels.
    HeadBias,
}

/// Whether `names` use the official layout.
pub fn is_official<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|n| n == MARKER)
}

/// The treadc name and layout of an official tensor name (`None`: not a DiT tensor).
fn treadc_name(official: &str) -> Option<(String, Layout)> {
    let linear = |base: &str, suffix: &str| match suffix {
        "weight" => Some((format!("{base}.weight"), Layout::Transposed)),
        "bias" => Some((format!("{base}.bias"), Layout::Same)),
        _ => None,
    };
    match official {
        "x_embedder.proj.weight" => return Some(("x_embed.weight".into(), Layout::PatchConv)),
        "x_embedder.proj.bias" => return Some(("x_embed.bias".into(), Layout::Same)),
        "y_embedder.embedding_table.weight" => return Some(("y_emb.table".into(), Layout::Same)),
        "final_layer.linear.weight" => {
            return Some(("final_linear.weight".into(), Layout::HeadWeight))
        }
        "final_layer.linear.bias" => return Some(("final_linear.bias".into(), Layout::HeadBias)),
        _ => {}
    }
    let (module, suffix) = official.rsplit_once('.')?;
    match module {
        "t_embedder.mlp.0" => return linear("t_hidden", suffix),
        "t_embedder.mlp.2" => return linear("t_emb", suffix),
        "final_layer.adaLN_modulation.1" => return linear("final_ada", suffix),
        _ => {}
    }
    let rest = module.strip_prefix("blocks.")?;
    let (index, part) = rest.split_once('.')?;
    index.parse::<usize>().ok()?;
    let inner = match part {
        "adaLN_modulation.1" => "ada",
        "attn.qkv" => "attn.qkv",
        "attn.proj" => "attn.proj",
        "mlp.fc1" => "fc1",
        "mlp.fc2" => "fc2",
        _ => return None,
    };
    linear(&format!("blocks.{index}.{inner}"), suffix)
}

/// The official tensors of `file` under treadc's names and layouts for graph `g` (whose
/// parameters `want` gives by name and shape); notes say what was adapted. A tensor with no
/// DiT counterpart, a shape that cannot map, or a position table other than treadc's is an
/// error naming the official tensor.
pub fn to_treadc(
    tensors: BTreeMap<String, HostTensor>,
    g: &Graph,
    want: &BTreeMap<String, Vec<usize>>,
    file: &str,
) -> Result<(BTreeMap<String, HostTensor>, Vec<String>), Diagnostic> {
    let at = |name: &str| Location::Item(format!("tensor `{name}`"));
    let shape_err = |name: &str, expected: String, found: &[usize]| {
        Diagnostic::new(at(name), "the tensor's shape does not fit the model")
            .expected(expected)
            .found(format!("shape {found:?}"))
            .in_file(file)
    };
    // The patch size from the Conv2d (the head needs it).
    let patch = tensors
        .get(MARKER)
        .and_then(|t| match t.shape[..] {
            [_, _, p, q] if p == q => Some(p),
            _ => None,
        })
        .ok_or_else(|| {
            shape_err(
                MARKER,
                "[D, C, p, p] (a square patch Conv2d)".into(),
                tensors.get(MARKER).map_or(&[][..], |t| &t.shape[..]),
            )
        })?;
    let mut out = BTreeMap::new();
    let mut notes = Vec::new();
    for (name, t) in tensors {
        if name == POS_EMBED {
            check_positions(&t, g, file)?;
            continue;
        }
        let Some((to, layout)) = treadc_name(&name) else {
            return Err(
                Diagnostic::new(at(&name), "the tensor has no place in a DiT")
                    .expected(
                        "the official DiT names (x_embedder, t_embedder, y_embedder, pos_embed, \
                     blocks.N.{attn,mlp,adaLN_modulation}, final_layer)",
                    )
                    .found(format!("`{name}`, shape {:?}", t.shape))
                    .in_file(file),
            );
        };
        let Some(target) = want.get(&to) else {
            return Err(
                Diagnostic::new(at(&name), "the model has no such parameter")
                    .expected(format!("a model with `{to}` (the DiT presets' node names)"))
                    .found(format!("no `{to}` in the model"))
                    .in_file(file),
            );
        };
        let mapped = match layout {
            Layout::Same => t,
            Layout::Transposed => match t.shape[..] {
                [o, i] => transpose(&t.data, o, i),
                _ => return Err(shape_err(&name, "[out, in]".into(), &t.shape)),
            },
            Layout::PatchConv => match t.shape[..] {
                [d, c, p, q] => patch_conv(&t.data, d, c, p, q),
                _ => return Err(shape_err(&name, "[D, C, p, p]".into(), &t.shape)),
            },
            Layout::HeadWeight | Layout::HeadBias => {
                let per = patch * patch;
                let rows = t.shape[0];
                let model_out = target.last().copied().unwrap_or(0) / per.max(1);
                let stored = rows / per.max(1);
                let cols = t.data.len() / rows.max(1);
                let data = if stored == model_out {
                    t.data
                } else if stored == 2 * model_out && rows % per == 0 {
                    if layout == Layout::HeadWeight {
                        notes.push(format!(
                            "the final layer predicts {stored} channels (learned sigma): kept the \
                         first {model_out}, the model's output"
                        ));
                    }
                    keep_channels(&t.data, per, stored, model_out, cols)
                } else {
                    return Err(shape_err(
                        &name,
                        format!(
                            "{} or {} rows (p²·C, or p²·2C with learned sigma)",
                            per * model_out,
                            2 * per * model_out
                        ),
                        &t.shape,
                    ));
                };
                let kept = per * model_out;
                if layout == Layout::HeadWeight {
                    transpose(&data, kept, cols)
                } else {
                    HostTensor {
                        shape: vec![kept],
                        data,
                    }
                }
            }
        };
        if &mapped.shape != target {
            return Err(shape_err(
                &name,
                format!("{target:?} as `{to}` (after the layout change)"),
                &mapped.shape,
            ));
        }
        out.insert(to, mapped);
    }
    Ok((out, notes))
}

/// The official name of a treadc DiT parameter (`None`: not a DiT parameter); the inverse of
/// [`treadc_name`].
fn official_name(treadc: &str) -> Option<String> {
    let fixed = match treadc {
        "x_embed.weight" => Some("x_embedder.proj.weight"),
        "x_embed.bias" => Some("x_embedder.proj.bias"),
        "y_emb.table" => Some("y_embedder.embedding_table.weight"),
        "final_linear.weight" => Some("final_layer.linear.weight"),
        "final_linear.bias" => Some("final_layer.linear.bias"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let (module, suffix) = treadc.rsplit_once('.')?;
    let base = match module {
        "t_hidden" => "t_embedder.mlp.0".to_string(),
        "t_emb" => "t_embedder.mlp.2".to_string(),
        "final_ada" => "final_layer.adaLN_modulation.1".to_string(),
        _ => {
            let (index, part) = module.strip_prefix("blocks.")?.split_once('.')?;
            let inner = match part {
                "ada" => "adaLN_modulation.1",
                "attn.qkv" => "attn.qkv",
                "attn.proj" => "attn.proj",
                "fc1" => "mlp.fc1",
                "fc2" => "mlp.fc2",
                _ => return None,
            };
            format!("blocks.{index}.{inner}")
        }
    };
    let name = format!("{base}.{suffix}");
    // Only names the import reads back to `treadc` (weights and biases).
    (treadc_name(&name)?.0 == treadc).then_some(name)
}

/// A DiT's parameters (`params`: treadc name → tensor, for graph `g`) under the official names
/// and layouts, with the fixed `pos_embed`: a state dict PyTorch's DiT (with `learn_sigma=False`)
/// loads. A parameter with no official counterpart is an error naming it.
pub fn from_treadc(
    params: &BTreeMap<String, HostTensor>,
    g: &Graph,
) -> Result<BTreeMap<String, HostTensor>, String> {
    let mut out = BTreeMap::new();
    for (name, t) in params {
        let official = official_name(name).ok_or_else(|| {
            format!(
                "the parameter `{name}` has no official DiT name (only the DiT presets' node \
                 names map)"
            )
        })?;
        let layout = treadc_name(&official).map_or(Layout::Same, |(_, l)| l);
        let mapped = match (layout, &t.shape[..]) {
            (Layout::Same | Layout::HeadBias, _) => t.clone(),
            (Layout::Transposed | Layout::HeadWeight, [i, o]) => transpose(&t.data, *i, *o),
            (Layout::PatchConv, [rows, d]) => {
                let patch = g
                    .node_ids()
                    .into_iter()
                    .find_map(|id| match g.node(id).op {
                        Op::Patchify { patch } => Some(patch as usize),
                        _ => None,
                    })
                    .ok_or("the model has no patchify node")?;
                let c = rows / (patch * patch).max(1);
                conv_of_patch(&t.data, *d, c, patch)
            }
            (_, shape) => return Err(format!("`{name}` has the unexpected shape {shape:?}")),
        };
        out.insert(official, mapped);
    }
    let table = g.node_ids().into_iter().find_map(|id| match g.node(id).op {
        Op::PosEmbed2d { height, width, dim } => Some((
            pos_embed_2d(height as usize, width as usize, dim as usize),
            (height * width) as usize,
            dim as usize,
        )),
        _ => None,
    });
    if let Some((data, tokens, dim)) = table {
        out.insert(
            POS_EMBED.into(),
            HostTensor {
                shape: vec![1, tokens, dim],
                data,
            },
        );
    }
    Ok(out)
}

/// The patchify linear's `[(p·P + q)·C + c, d]` as a Conv2d weight `[d, c, p, q]`.
fn conv_of_patch(data: &[f32], d: usize, c: usize, patch: usize) -> HostTensor {
    let mut out = vec![0.0; data.len()];
    for o in 0..d {
        for ch in 0..c {
            for y in 0..patch {
                for x in 0..patch {
                    out[((o * c + ch) * patch + y) * patch + x] =
                        data[((y * patch + x) * c + ch) * d + o];
                }
            }
        }
    }
    HostTensor {
        shape: vec![d, c, patch, patch],
        data: out,
    }
}

/// `[rows, cols]` to `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> HostTensor {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    HostTensor {
        shape: vec![cols, rows],
        data: out,
    }
}

/// A Conv2d weight `[d, c, p, q]` as the patchify linear's `[(p·Q + q)·C + c, d]`.
fn patch_conv(data: &[f32], d: usize, c: usize, p: usize, q: usize) -> HostTensor {
    let rows = p * q * c;
    let mut out = vec![0.0; data.len()];
    for o in 0..d {
        for ch in 0..c {
            for y in 0..p {
                for x in 0..q {
                    let from = ((o * c + ch) * p + y) * q + x;
                    out[((y * q + x) * c + ch) * d + o] = data[from];
                }
            }
        }
    }
    HostTensor {
        shape: vec![rows, d],
        data: out,
    }
}

/// The rows of a head laid out `[(position · stored) + channel]` (each row `cols` wide) for
/// the first `keep` channels of every one of `per` patch positions.
fn keep_channels(data: &[f32], per: usize, stored: usize, keep: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(per * keep * cols);
    for pos in 0..per {
        for ch in 0..keep {
            let row = pos * stored + ch;
            out.extend_from_slice(&data[row * cols..(row + 1) * cols]);
        }
    }
    out
}

/// The stored `pos_embed` must be the graph's fixed sin-cos table (within 1e-4): a learned or
/// differently laid out table would change the model silently.
fn check_positions(t: &HostTensor, g: &Graph, file: &str) -> Result<(), Diagnostic> {
    let table = g.node_ids().into_iter().find_map(|id| match g.node(id).op {
        Op::PosEmbed2d { height, width, dim } => {
            Some(pos_embed_2d(height as usize, width as usize, dim as usize))
        }
        _ => None,
    });
    let at = Location::Item(format!("tensor `{POS_EMBED}`"));
    let Some(table) = table else {
        return Err(Diagnostic::new(at, "the model has no fixed position table")
            .expected("a model with a `pos_embed_2d` node")
            .found("none")
            .in_file(file));
    };
    if t.data.len() != table.len() {
        return Err(Diagnostic::new(at, "the position table has another size")
            .expected(format!(
                "{} values (the model's tokens × width)",
                table.len()
            ))
            .found(format!("shape {:?}", t.shape))
            .in_file(file));
    }
    let worst = t
        .data
        .iter()
        .zip(&table)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if worst.is_nan() || worst > 1e-4 {
        return Err(
            Diagnostic::new(at, "the position table is not the fixed sin-cos one")
                .expected("DiT's 2-D sin-cos table (columns in the first half, rows in the second)")
                .found(format!("a table differing by up to {worst:e}"))
                .in_file(file),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_onto_the_presets() {
        let cases = [
            (
                "t_embedder.mlp.0.weight",
                "t_hidden.weight",
                Layout::Transposed,
            ),
            ("t_embedder.mlp.2.bias", "t_emb.bias", Layout::Same),
            (
                "blocks.11.adaLN_modulation.1.weight",
                "blocks.11.ada.weight",
                Layout::Transposed,
            ),
            (
                "blocks.0.attn.qkv.bias",
                "blocks.0.attn.qkv.bias",
                Layout::Same,
            ),
            (
                "blocks.3.mlp.fc2.weight",
                "blocks.3.fc2.weight",
                Layout::Transposed,
            ),
            (
                "final_layer.adaLN_modulation.1.bias",
                "final_ada.bias",
                Layout::Same,
            ),
            (
                "final_layer.linear.weight",
                "final_linear.weight",
                Layout::HeadWeight,
            ),
        ];
        for (official, name, layout) in cases {
            assert_eq!(
                treadc_name(official),
                Some((name.to_string(), layout)),
                "{official}"
            );
        }
        for other in [
            "blocks.x.mlp.fc1.weight",
            "blocks.0.mlp.fc3.weight",
            "pos",
            "head.weight",
        ] {
            assert_eq!(treadc_name(other), None, "{other}");
        }
    }

    #[test]
    fn official_names_are_the_inverse_of_the_import() {
        for name in [
            "x_embed.weight",
            "t_hidden.bias",
            "t_emb.weight",
            "y_emb.table",
            "blocks.7.ada.weight",
            "blocks.0.attn.qkv.bias",
            "blocks.2.attn.proj.weight",
            "blocks.1.fc1.bias",
            "final_ada.weight",
            "final_linear.bias",
        ] {
            let official = official_name(name).unwrap();
            assert_eq!(treadc_name(&official).unwrap().0, name, "{official}");
        }
        assert_eq!(official_name("blocks.0.norm1.weight"), None);
        assert_eq!(official_name("context_embed.weight"), None);
        let conv: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let there = patch_conv(&conv, 2, 3, 2, 2);
        assert_eq!(conv_of_patch(&there.data, 2, 3, 2).data, conv);
    }

    #[test]
    fn the_patch_conv_and_the_head_keep_every_value_in_place() {
        // Conv [d=2, c=3, p=2, q=2]: value = the index, so each lands where the order says.
        let conv: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let t = patch_conv(&conv, 2, 3, 2, 2);
        assert_eq!(t.shape, [12, 2]);
        // Patch row 1, column 0, channel 2 (row (1·2+0)·3+2 = 8) of output 1 = conv[1, 2, 1, 0].
        assert_eq!(t.data[8 * 2 + 1], conv[((3 + 2) * 2 + 1) * 2]);
        // A learned-sigma head [p²·2C = 4·2, cols 1] keeps channel 0 of each position.
        let head: Vec<f32> = (0..8).map(|v| v as f32).collect();
        assert_eq!(keep_channels(&head, 4, 2, 1, 1), [0.0, 2.0, 4.0, 6.0]);
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).data,
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
