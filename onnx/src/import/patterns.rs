//! The structural patterns of `treadc import`: each recognises one treadc op (or two, for a
//! strided patch convolution) in the node sequences torch's exporters and treadc's own writer
//! produce, checks every attribute the op fixes, and claims the nodes it spans. Shapes and folded
//! constants come from tract's analysis, so shape arithmetic is never matched node by node.

use serde_json::json;

use super::elementwise;
use super::recognise::{input_name, op_json, Ctx, IrNode};
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::ir::InputRole;
use tread_compiler::params::suffix;
use tread_compiler::tables;

/// Tries every pattern on live node `i`; `Ok(false)` when none explains it.
pub fn try_all(c: &mut Ctx, i: usize) -> Result<bool, Diagnostic> {
    let op = c.src.nodes[i].op.clone();
    Ok(match op.as_str() {
        "Conv" => patch_conv(c, i),
        "Reshape" => patchify_reshape(c, i) || unpatchify(c, i) || attention_decomposed(c, i),
        "MatMul" | "Gemm" => linear(c, i),
        "Split" => attention_fused(c, i) || split_chunks(c, i),
        "Slice" => slice_chunk(c, i),
        "Unsqueeze" => timestep(c, i) || unsqueeze(c, i),
        "LayerNormalization" => layer_norm(c, i),
        "Gather" => embedding(c, i),
        "Concat" => concat(c, i),
        "Dropout" => alias(c, i),
        _ if elementwise::is_elementwise(&op) => c.elementwise(i)?,
        _ => false,
    })
}

fn out0(c: &Ctx, i: usize) -> String {
    c.src.nodes[i].outputs[0].clone()
}

fn input(c: &Ctx, i: usize, k: usize) -> String {
    c.src.nodes[i].inputs.get(k).cloned().unwrap_or_default()
}

/// The treadc value of a live ONNX value (a graph input by its own name).
fn value(c: &Ctx, v: &str) -> Option<String> {
    match c.ir.get(v) {
        Some(n) if n != "?" => Some(n.clone()),
        Some(_) => None,
        None => c.roles.contains_key(v).then(|| input_name(v)),
    }
}

fn perm(c: &Ctx, i: usize) -> Option<Vec<i64>> {
    let n = &c.src.nodes[i];
    match n.op.as_str() {
        "Transpose" => n.ints("perm"),
        "Einsum" => {
            let eq = n.string("equation")?.replace(' ', "");
            let (lhs, rhs) = eq.split_once("->")?;
            if lhs.contains(',') {
                return None;
            }
            rhs.chars()
                .map(|ch| lhs.find(ch).map(|p| p as i64))
                .collect()
        }
        _ => None,
    }
}

/// A `linear` from `MatMul` (+ `Add` of a bias) or `Gemm`, without claiming anything yet.
struct LinearParts {
    x: String,
    fan_in: usize,
    out: usize,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    value: String,
    claimed: Vec<usize>,
}

fn linear_parts(c: &Ctx, i: usize) -> Option<LinearParts> {
    let n = &c.src.nodes[i];
    let x = input(c, i, 0);
    if c.src.is_constant(&x) {
        return None;
    }
    let (shape, w) = c.src.floats(&input(c, i, 1))?;
    if shape.len() != 2 {
        return None;
    }
    let trans = match n.op.as_str() {
        "MatMul" => false,
        "Gemm" => {
            if n.int("transA").unwrap_or(0) != 0
                || n.float("alpha").unwrap_or(1.0) != 1.0
                || n.float("beta").unwrap_or(1.0) != 1.0
            {
                return None;
            }
            n.int("transB").unwrap_or(0) != 0
        }
        _ => return None,
    };
    let (fan_in, out) = if trans {
        (shape[1], shape[0])
    } else {
        (shape[0], shape[1])
    };
    let weight = if trans {
        // In tiles: a DiT-XL/2 adaLN weight is 1152 × 6912.
        const TILE: usize = 32;
        let mut t = vec![0.0; w.len()];
        for o0 in (0..out).step_by(TILE) {
            for k0 in (0..fan_in).step_by(TILE) {
                for o in o0..(o0 + TILE).min(out) {
                    for k in k0..(k0 + TILE).min(fan_in) {
                        t[k * out + o] = w[o * fan_in + k];
                    }
                }
            }
        }
        t
    } else {
        w.to_vec()
    };
    let mut claimed = vec![i];
    let mut value = out0(c, i);
    let mut bias = None;
    if n.op == "Gemm" {
        if let Some((s, b)) = c.src.floats(&input(c, i, 2)) {
            if s.iter().product::<usize>() != out {
                return None;
            }
            bias = Some(b.to_vec());
        }
    } else if let Some(u) = c.sole_user(&value) {
        let un = &c.src.nodes[u];
        if un.op == "Add" {
            let other = un.inputs.iter().find(|v| **v != value)?;
            if let Some((s, b)) = c.src.floats(other) {
                if s == [out] {
                    bias = Some(b.to_vec());
                    claimed.push(u);
                    value = un.outputs[0].clone();
                }
            }
        }
    }
    Some(LinearParts {
        x,
        fan_in,
        out,
        weight,
        bias,
        value,
        claimed,
    })
}

/// The tensors of a linear, moved out of `p`.
fn linear_tensors(p: &mut LinearParts, prefix: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let weight = std::mem::take(&mut p.weight);
    let mut t = vec![(format!("{prefix}weight"), vec![p.fan_in, p.out], weight)];
    if let Some(b) = p.bias.take() {
        t.push((format!("{prefix}bias"), vec![p.out], b));
    }
    t
}

fn linear(c: &mut Ctx, i: usize) -> bool {
    let Some(mut p) = linear_parts(c, i) else {
        return false;
    };
    let Some(x) = value(c, &p.x) else {
        return false;
    };
    let name = c.name_for(&p.value, i, true, "linear");
    let matched = p
        .claimed
        .iter()
        .map(|&k| c.src.nodes[k].name.clone())
        .collect();
    let op = op_json("linear", json!({"out": p.out, "bias": p.bias.is_some()}));
    let node = IrNode {
        name,
        op,
        ins: vec![x],
        tensors: linear_tensors(&mut p, ""),
        matched,
    };
    c.emit(node, &p.value, &p.claimed);
    true
}

fn layer_norm(c: &mut Ctx, i: usize) -> bool {
    let n = &c.src.nodes[i];
    let x = input(c, i, 0);
    let Some(rank) = c.src.rank(&x) else {
        return false;
    };
    let axis = n.int("axis").unwrap_or(-1);
    if axis != -1 && axis != rank as i64 - 1 {
        return false;
    }
    let eps = n.float("epsilon").unwrap_or(1e-5);
    let Some((_, scale)) = c.src.floats(&input(c, i, 1)) else {
        return false;
    };
    let bias = c.src.floats(&input(c, i, 2)).map(|(_, b)| b.to_vec());
    // Learned when the scale is a parameter (an initialiser named `<module>.weight`, as torch
    // and treadc name them; constants are `Constant`s, `val_N` or `const.*`), or when it is not
    // the identity.
    let scale_name = input(c, i, 1);
    let learned = c.src.is_initialiser(&scale_name) && scale_name.ends_with(".weight");
    let affine = learned
        || scale.iter().any(|&s| s != 1.0)
        || bias.as_ref().is_some_and(|b| b.iter().any(|&v| v != 0.0));
    let d = scale.len();
    let Some(xv) = value(c, &x) else {
        return false;
    };
    let out = out0(c, i);
    let name = c.name_for(&out, i, true, "layer_norm");
    let mut tensors = vec![];
    if affine {
        tensors.push(("weight".into(), vec![d], scale.to_vec()));
        tensors.push(("bias".into(), vec![d], bias.unwrap_or_else(|| vec![0.0; d])));
    }
    // Written as f32 by the exporter: print the f32 value's shortest decimal.
    let eps = format!("{eps}").parse::<f64>().unwrap_or(eps as f64);
    let node = IrNode {
        name,
        op: op_json("layer_norm", json!({"eps": eps, "affine": affine})),
        ins: vec![xv],
        tensors,
        matched: vec![c.src.nodes[i].name.clone()],
    };
    c.emit(node, &out, &[i]);
    true
}

/// `Conv` with stride = kernel, then flatten and transpose to tokens: `patchify` + `linear`,
/// the kernel flattened to patchify's (row, column, channel) order.
fn patch_conv(c: &mut Ctx, i: usize) -> bool {
    let n = &c.src.nodes[i];
    let x = input(c, i, 0);
    let Some((ws, w)) = c.src.floats(&input(c, i, 1)) else {
        return false;
    };
    if ws.len() != 4 || ws[2] != ws[3] {
        return false;
    }
    let (d, ch, p) = (ws[0], ws[1], ws[2]);
    let k = n
        .ints("kernel_shape")
        .unwrap_or_else(|| vec![p as i64, p as i64]);
    let s = n.ints("strides").unwrap_or_default();
    let pads = n.ints("pads").unwrap_or_default();
    let dil = n.ints("dilations").unwrap_or_default();
    if k != [p as i64, p as i64]
        || s != [p as i64, p as i64]
        || pads.iter().any(|&v| v != 0)
        || dil.iter().any(|&v| v != 1)
        || n.int("group").unwrap_or(1) != 1
    {
        return false;
    }
    let bias = c.src.floats(&input(c, i, 2)).map(|(_, b)| b.to_vec());
    let conv_out = out0(c, i);
    let Some(grid) = c
        .src
        .shape(&conv_out)
        .and_then(|s| Some((s.get(2).copied()??, s.get(3).copied()??)))
    else {
        return false;
    };
    let Some(r) = c
        .sole_user(&conv_out)
        .filter(|&r| c.src.nodes[r].op == "Reshape")
    else {
        return false;
    };
    let flat = out0(c, r);
    if c.src.shape(&flat).map(|s| s.len()) != Some(3) {
        return false;
    }
    let Some(t) = c
        .sole_user(&flat)
        .filter(|&t| perm(c, t) == Some(vec![0, 2, 1]))
    else {
        return false;
    };
    let Some(xv) = value(c, &x) else {
        return false;
    };
    let tokens = out0(c, t);
    let lin = c.name_for(&tokens, i, true, "linear");
    let patches = c.unique(format!("{lin}_patches"));
    let mut weight = vec![0.0f32; p * p * ch * d];
    for o in 0..d {
        for ci in 0..ch {
            for r in 0..p {
                for q in 0..p {
                    let row = (r * p + q) * ch + ci;
                    weight[row * d + o] = w[((o * ch + ci) * p + r) * p + q];
                }
            }
        }
    }
    let names = [i, r, t].map(|k| c.src.nodes[k].name.clone()).to_vec();
    c.nodes.push(IrNode {
        name: patches.clone(),
        op: op_json("patchify", json!({"patch": p})),
        ins: vec![xv],
        tensors: vec![],
        matched: names.clone(),
    });
    let mut tensors = vec![("weight".into(), vec![p * p * ch, d], weight)];
    if let Some(b) = &bias {
        tensors.push(("bias".into(), vec![d], b.clone()));
    }
    let node = IrNode {
        name: lin,
        op: op_json("linear", json!({"out": d, "bias": bias.is_some()})),
        ins: vec![patches],
        tensors,
        matched: names,
    };
    c.grid = Some(grid);
    c.emit(node, &tokens, &[i, r, t]);
    true
}

/// treadc's own patchify: `[B,C,h,P,w,P]` → perm (0,2,4,3,5,1) → `[B, h·w, P·P·C]`.
fn patchify_reshape(c: &mut Ctx, i: usize) -> bool {
    let grid = out0(c, i);
    let Some(s) = c.src.shape(&grid) else {
        return false;
    };
    if s.len() != 6 || s[3] != s[5] || c.src.rank(&input(c, i, 0)) != Some(4) {
        return false;
    }
    let Some(t) = c
        .sole_user(&grid)
        .filter(|&t| perm(c, t) == Some(vec![0, 2, 4, 3, 5, 1]))
    else {
        return false;
    };
    let Some(r) = c
        .sole_user(&out0(c, t))
        .filter(|&r| c.src.nodes[r].op == "Reshape")
    else {
        return false;
    };
    let tokens = out0(c, r);
    let (Some(p), Some(h), Some(w)) = (s[3], s[2], s[4]) else {
        return false;
    };
    let Some(xv) = value(c, &input(c, i, 0)) else {
        return false;
    };
    let name = c.name_for(&tokens, i, true, "patchify");
    let names = [i, t, r].map(|k| c.src.nodes[k].name.clone()).to_vec();
    c.grid = Some((h, w));
    c.emit(
        IrNode {
            name,
            op: op_json("patchify", json!({"patch": p})),
            ins: vec![xv],
            tensors: vec![],
            matched: names,
        },
        &tokens,
        &[i, t, r],
    );
    true
}

/// Tokens back to an image: `[B,h,w,P,P,C]` → perm (0,5,1,3,2,4) (a `Transpose` or an
/// `Einsum`) → `[B, C, h·P, w·P]`.
fn unpatchify(c: &mut Ctx, i: usize) -> bool {
    let grid = out0(c, i);
    let Some(s) = c.src.shape(&grid) else {
        return false;
    };
    if s.len() != 6 || s[3] != s[4] || c.src.rank(&input(c, i, 0)) != Some(3) {
        return false;
    }
    let Some(t) = c
        .sole_user(&grid)
        .filter(|&t| perm(c, t) == Some(vec![0, 5, 1, 3, 2, 4]))
    else {
        return false;
    };
    let Some(r) = c
        .sole_user(&out0(c, t))
        .filter(|&r| c.src.nodes[r].op == "Reshape")
    else {
        return false;
    };
    let image = out0(c, r);
    let (Some(h), Some(w), Some(p)) = (s[1], s[2], s[3]) else {
        return false;
    };
    if c.src.shape(&image).map(|s| s.len()) != Some(4) {
        return false;
    }
    let Some(xv) = value(c, &input(c, i, 0)) else {
        return false;
    };
    let name = c.name_for(&image, i, true, "unpatchify");
    let names = [i, t, r].map(|k| c.src.nodes[k].name.clone()).to_vec();
    c.emit(
        IrNode {
            name,
            op: op_json(
                "unpatchify",
                json!({"patch": p, "height": h * p, "width": w * p}),
            ),
            ins: vec![xv],
            tensors: vec![],
            matched: names,
        },
        &image,
        &[i, t, r],
    );
    true
}

/// `t` → `Unsqueeze` → (`Cast`) → `Mul` by frequencies → `Cos`, `Sin` → `Concat`: the
/// sinusoidal timestep embedding, its frequencies checked against the op's table.
fn timestep(c: &mut Ctx, i: usize) -> bool {
    let t = input(c, i, 0);
    if c.roles.get(&t) != Some(&InputRole::NoiseLevel)
        && c.roles.get(&t) != Some(&InputRole::Guidance)
    {
        return false;
    }
    let mut chain = vec![i];
    let mut v = out0(c, i);
    let Some(mut m) = c.sole_user(&v) else {
        return false;
    };
    if c.src.nodes[m].op == "Cast" {
        chain.push(m);
        v = out0(c, m);
        match c.sole_user(&v) {
            Some(u) => m = u,
            None => return false,
        }
    }
    if c.src.nodes[m].op != "Mul" {
        return false;
    }
    let Some(freqs) = c.src.nodes[m]
        .inputs
        .iter()
        .find(|x| **x != v)
        .and_then(|f| c.src.floats(f))
        .map(|(_, d)| d.to_vec())
    else {
        return false;
    };
    chain.push(m);
    let args = out0(c, m);
    let users = c.live_users(&args);
    let (Some(&cos), Some(&sin)) = (
        users.iter().find(|&&u| c.src.nodes[u].op == "Cos"),
        users.iter().find(|&&u| c.src.nodes[u].op == "Sin"),
    ) else {
        return false;
    };
    if users.len() != 2 {
        return false;
    }
    let Some(cat) = c
        .sole_user(&out0(c, cos))
        .filter(|&k| c.sole_user(&out0(c, sin)) == Some(k))
    else {
        return false;
    };
    if c.src.nodes[cat].op != "Concat" || c.src.nodes[cat].inputs != [out0(c, cos), out0(c, sin)] {
        return false;
    }
    let half = freqs.len();
    if half < 2 || freqs[1] <= 0.0 || freqs[1] >= 1.0 {
        return false;
    }
    let max_period = (-(freqs[1] as f64).ln() * half as f64).exp().round();
    let table = tables::timestep_freqs(2 * half, max_period);
    if table
        .iter()
        .zip(&freqs)
        .any(|(a, b)| (a - b).abs() > 1e-6 * (1.0 + a.abs()))
    {
        return false;
    }
    let Some(tv) = value(c, &t) else {
        return false;
    };
    chain.extend([cos, sin, cat]);
    let out = out0(c, cat);
    let name = c.name_for(&out, i, true, "timestep_embed");
    let mut attrs = json!({"dim": 2 * half});
    if max_period != 10_000.0 {
        attrs["max_period"] = json!(max_period as u64);
    }
    let matched = chain.iter().map(|&k| c.src.nodes[k].name.clone()).collect();
    c.emit(
        IrNode {
            name,
            op: op_json("timestep_embed", attrs),
            ins: vec![tv],
            tensors: vec![],
            matched,
        },
        &out,
        &chain,
    );
    true
}

fn axes_of(c: &Ctx, i: usize, k: usize) -> Option<Vec<i64>> {
    c.src.nodes[i]
        .ints("axes")
        .or_else(|| c.src.ints(&input(c, i, k)))
}

fn norm_axis(a: i64, rank: usize) -> Option<usize> {
    let a = if a < 0 { a + rank as i64 } else { a };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

fn unsqueeze(c: &mut Ctx, i: usize) -> bool {
    let out = out0(c, i);
    let (Some(axes), Some(rank)) = (axes_of(c, i, 1), c.src.rank(&out)) else {
        return false;
    };
    let [a] = axes.as_slice() else {
        return false;
    };
    let (Some(axis), Some(xv)) = (norm_axis(*a, rank), value(c, &input(c, i, 0))) else {
        return false;
    };
    let name = c.name_for(&out, i, false, "unsqueeze");
    c.emit(
        IrNode {
            name,
            op: op_json("unsqueeze", json!({"axis": axis})),
            ins: vec![xv],
            tensors: vec![],
            matched: vec![c.src.nodes[i].name.clone()],
        },
        &out,
        &[i],
    );
    true
}

fn chunk_node(c: &mut Ctx, i: usize, out: &str, xv: &str, axis: usize, chunks: i64, index: i64) {
    let name = c.name_for(out, i, false, "chunk");
    c.emit(
        IrNode {
            name,
            op: op_json(
                "chunk",
                json!({"axis": axis, "chunks": chunks, "index": index}),
            ),
            ins: vec![xv.to_string()],
            tensors: vec![],
            matched: vec![c.src.nodes[i].name.clone()],
        },
        out,
        &[i],
    );
}

/// `Slice` of one axis with step 1 that cuts an equal share: `chunk`.
fn slice_chunk(c: &mut Ctx, i: usize) -> bool {
    let x = input(c, i, 0);
    let (Some(starts), Some(ends)) = (c.src.ints(&input(c, i, 1)), c.src.ints(&input(c, i, 2)))
    else {
        return false;
    };
    let Some(rank) = c.src.rank(&x) else {
        return false;
    };
    let axes = c
        .src
        .ints(&input(c, i, 3))
        .unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = c
        .src
        .ints(&input(c, i, 4))
        .unwrap_or_else(|| vec![1; starts.len()]);
    let ([s], [e], [a], [1]) = (
        starts.as_slice(),
        ends.as_slice(),
        axes.as_slice(),
        steps.as_slice(),
    ) else {
        return false;
    };
    let Some(axis) = norm_axis(*a, rank) else {
        return false;
    };
    let Some(dim) = c.src.dim(&x, axis as i64) else {
        return false;
    };
    let (s, e) = ((*s).clamp(0, dim), (*e).clamp(0, dim));
    let len = e - s;
    if len <= 0 || dim % len != 0 || s % len != 0 {
        return false;
    }
    let Some(xv) = value(c, &x) else {
        return false;
    };
    chunk_node(c, i, &out0(c, i), &xv, axis, dim / len, s / len);
    true
}

/// `Split` into equal parts: one `chunk` per used part.
fn split_chunks(c: &mut Ctx, i: usize) -> bool {
    let x = input(c, i, 0);
    let (Some(rank), Some(xv)) = (c.src.rank(&x), value(c, &x)) else {
        return false;
    };
    let Some(axis) = norm_axis(c.src.nodes[i].int("axis").unwrap_or(0), rank) else {
        return false;
    };
    let outs = c.src.nodes[i].outputs.clone();
    let sizes: Option<Vec<i64>> = outs.iter().map(|o| c.src.dim(o, axis as i64)).collect();
    let Some(sizes) = sizes else {
        return false;
    };
    if sizes.iter().any(|&s| s != sizes[0]) {
        return false;
    }
    for (k, o) in outs.iter().enumerate() {
        if !c.live_users(o).is_empty() {
            chunk_node(c, i, o, &xv, axis, outs.len() as i64, k as i64);
        }
    }
    c.done[i] = true;
    true
}

fn concat(c: &mut Ctx, i: usize) -> bool {
    let out = out0(c, i);
    let Some(rank) = c.src.rank(&out) else {
        return false;
    };
    let Some(axis) = norm_axis(c.src.nodes[i].int("axis").unwrap_or(0), rank) else {
        return false;
    };
    let mut ins = vec![];
    for v in c.src.nodes[i].inputs.clone() {
        match value(c, &v).or_else(|| c.value_of(&v)) {
            Some(x) => ins.push(x),
            None => return false,
        }
    }
    let name = c.name_for(&out, i, false, "concat");
    c.emit(
        IrNode {
            name,
            op: op_json("concat", json!({"axis": axis})),
            ins,
            tensors: vec![],
            matched: vec![c.src.nodes[i].name.clone()],
        },
        &out,
        &[i],
    );
    true
}

/// `Gather` of rows of a constant table by labels (`class_embed`, the last row the null label)
/// or by token ids (`embed`).
fn embedding(c: &mut Ctx, i: usize) -> bool {
    let ids = input(c, i, 1);
    let Some((s, table)) = c.src.floats(&input(c, i, 0)) else {
        return false;
    };
    if s.len() != 2 || c.src.nodes[i].int("axis").unwrap_or(0) != 0 {
        return false;
    }
    let (rows, dim) = (s[0], s[1]);
    let table = table.to_vec();
    let (kind, attrs) = match c.roles.get(&ids) {
        Some(InputRole::Label) if rows >= 2 => {
            ("class_embed", json!({"classes": rows - 1, "dim": dim}))
        }
        Some(InputRole::TokenIds) => ("embed", json!({"vocab": rows, "dim": dim})),
        _ => return false,
    };
    let Some(xv) = value(c, &ids) else {
        return false;
    };
    let out = out0(c, i);
    let name = c.name_for(&out, i, true, kind);
    c.emit(
        IrNode {
            name,
            op: op_json(kind, attrs),
            ins: vec![xv],
            tensors: vec![("table".into(), vec![rows, dim], table)],
            matched: vec![c.src.nodes[i].name.clone()],
        },
        &out,
        &[i],
    );
    true
}

fn alias(c: &mut Ctx, i: usize) -> bool {
    let Some(xv) = value(c, &input(c, i, 0)) else {
        return false;
    };
    c.ir.insert(out0(c, i), xv);
    c.done[i] = true;
    true
}

/// The `linear` op found earlier whose value is ONNX value `v`, by index.
fn linear_producing(c: &Ctx, v: &str) -> Option<usize> {
    let name = c.ir.get(v)?;
    c.nodes
        .iter()
        .position(|n| &n.name == name && n.op.get("op") == Some(&json!("linear")))
}

/// Replaces the qkv `linear` at `qkv` and the projection at ONNX node `proj` by one
/// `attention` op, claiming `region`.
fn fuse_attention(
    c: &mut Ctx,
    qkv: usize,
    region: Vec<usize>,
    proj: usize,
    heads: i64,
    anchor: usize,
) -> bool {
    let Some(mut p) = linear_parts(c, proj) else {
        return false;
    };
    let q = &c.nodes[qkv];
    let d = p.out;
    if q.op.get("out") != Some(&json!(3 * d)) || p.fan_in != d || d as i64 % heads != 0 {
        return false;
    }
    let qkv_bias = q.op.get("bias") == Some(&json!(true));
    let (q_ins, mut matched) = (q.ins.clone(), q.matched.clone());
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> =
        std::mem::take(&mut c.nodes[qkv].tensors)
            .into_iter()
            .map(|(s, sh, v)| (format!("qkv.{s}"), sh, v))
            .collect();
    let proj_bias = p.bias.is_some();
    tensors.extend(linear_tensors(&mut p, "proj."));
    if !proj_bias {
        tensors.push((suffix::PROJ_BIAS.into(), vec![d], vec![0.0; d]));
    }
    let name = c.name_for(&p.value, anchor, true, "attention");
    matched.extend(
        region
            .iter()
            .chain(&p.claimed)
            .map(|&k| c.src.nodes[k].name.clone()),
    );
    let mut claimed = region;
    claimed.extend(&p.claimed);
    c.dropped.insert(qkv);
    c.emit(
        IrNode {
            name,
            op: op_json("attention", json!({"heads": heads, "qkv_bias": qkv_bias})),
            ins: q_ins,
            tensors,
            matched,
        },
        &p.value,
        &claimed,
    );
    true
}

/// Attention written out: qkv `[B,N,3,H,Dh]`, heads moved forward, q·kᵀ scaled, `Softmax`,
/// ·v, heads moved back to `[B,N,H·Dh]`, then the projection. The span between the two
/// reshapes may only hold layout ops, the two products, scalar scales and the softmax.
fn attention_decomposed(c: &mut Ctx, i: usize) -> bool {
    let Some(qkv) = linear_producing(c, &input(c, i, 0)) else {
        return false;
    };
    let Some(s) = c.src.shape(&out0(c, i)) else {
        return false;
    };
    let (5, Some(3), Some(h), Some(dh)) = (s.len(), s[2], s[3], s[4]) else {
        return false;
    };
    if c.live_users(&input(c, i, 0)).len() != 1 {
        return false;
    }
    let mut region = vec![i];
    let mut end = None;
    let mut k = 0;
    while k < region.len() {
        let n = region[k];
        k += 1;
        for o in c.src.nodes[n].outputs.clone() {
            if o.is_empty() {
                continue;
            }
            let is_end = c.src.nodes[n].op == "Reshape"
                && n != i
                && c.src
                    .shape(&o)
                    .is_some_and(|s| s.len() == 3 && s[2] == Some(h * dh));
            if is_end {
                if end.is_some_and(|e| e != n) {
                    return false;
                }
                end = Some(n);
                continue;
            }
            for u in c.live_users(&o) {
                if !region.contains(&u) {
                    region.push(u);
                }
            }
        }
        if region.len() > 64 {
            return false;
        }
    }
    let Some(end) = end else {
        return false;
    };
    let allowed = [
        "Reshape",
        "Transpose",
        "Split",
        "Squeeze",
        "Unsqueeze",
        "Gather",
        "Slice",
        "Mul",
        "Div",
        "MatMul",
        "Softmax",
        "Cast",
    ];
    let count = |op: &str| region.iter().filter(|&&n| c.src.nodes[n].op == op).count();
    if region
        .iter()
        .any(|&n| !allowed.contains(&c.src.nodes[n].op.as_str()))
        || count("Softmax") != 1
        || count("MatMul") != 2
    {
        return false;
    }
    // The scales on q and k multiply to 1/√Dh.
    let mut scale = 1.0f64;
    for &n in &region {
        let nd = &c.src.nodes[n];
        if nd.op == "Mul" || nd.op == "Div" {
            let consts: Vec<f64> = nd
                .inputs
                .iter()
                .filter_map(|v| {
                    c.src
                        .floats(v)
                        .filter(|(_, d)| d.len() == 1)
                        .map(|(_, d)| d[0] as f64)
                })
                .collect();
            match (nd.op.as_str(), consts.as_slice()) {
                ("Mul", [s]) => scale *= s,
                ("Div", [s]) if nd.inputs[1] != nd.inputs[0] => scale /= s,
                _ => return false,
            }
        }
    }
    if (scale - 1.0 / (dh as f64).sqrt()).abs() > 1e-5 {
        return false;
    }
    let softmax = region
        .iter()
        .copied()
        .find(|&n| c.src.nodes[n].op == "Softmax")
        .unwrap_or(i);
    if !matches!(c.src.nodes[softmax].int("axis").unwrap_or(-1), -1 | 3 | 4) {
        return false;
    }
    let Some(proj) = c.sole_user(&out0(c, end)) else {
        return false;
    };
    region.push(end);
    fuse_attention(c, qkv, region, proj, h, softmax)
}

/// ONNX's own `Attention` (opset 23) on q, k, v split from one qkv projection.
fn attention_fused(c: &mut Ctx, i: usize) -> bool {
    let Some(qkv) = linear_producing(c, &input(c, i, 0)) else {
        return false;
    };
    let outs = c.src.nodes[i].outputs.clone();
    if outs.len() != 3 {
        return false;
    }
    let Some(att) = c.sole_user(&outs[0]) else {
        return false;
    };
    let a = &c.src.nodes[att];
    if a.op != "Attention"
        || a.inputs.len() != 3
        || a.inputs[..] != outs[..]
        || outs.iter().any(|o| c.sole_user(o) != Some(att))
        || a.int("is_causal").unwrap_or(0) != 0
        || a.outputs.iter().skip(1).any(|o| !o.is_empty())
    {
        return false;
    }
    let Some(heads) = a
        .int("q_num_heads")
        .filter(|&h| a.int("kv_num_heads") == Some(h))
    else {
        return false;
    };
    let Some(d) = c.src.dim(&outs[0], -1) else {
        return false;
    };
    if let Some(s) = a.float("scale") {
        if (s as f64 - 1.0 / ((d / heads) as f64).sqrt()).abs() > 1e-6 {
            return false;
        }
    }
    let Some(proj) = c.sole_user(&out0(c, att)) else {
        return false;
    };
    fuse_attention(c, qkv, vec![i, att], proj, heads, att)
}

/// Runs every pattern over the file; the first unexplained nodes become the error.
pub fn claim_all(c: &mut Ctx, file: &str) -> Result<(), Diagnostic> {
    let mut failed: Vec<usize> = vec![];
    for i in 0..c.src.nodes.len() {
        if c.done[i] || !c.live(i) {
            continue;
        }
        if elementwise::is_elementwise(&c.src.nodes[i].op) && c.absorbed_later(i) {
            continue;
        }
        // An elementwise region's inner values are known only to the region.
        let ready = elementwise::is_elementwise(&c.src.nodes[i].op) || c.inputs_known(i);
        let ok = ready && try_all(c, i)?;
        if !ok {
            failed.push(i);
            c.done[i] = true;
            for o in c.src.nodes[i].outputs.clone() {
                c.ir.insert(o, "?".into());
            }
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    let first = &c.src.nodes[failed[0]];
    let listing: Vec<String> = failed
        .iter()
        .take(8)
        .map(|&i| {
            let n = &c.src.nodes[i];
            format!("{} ({}) <- [{}]", n.name, n.op, n.inputs.join(", "))
        })
        .collect();
    Err(Diagnostic::new(
        Location::Node {
            name: first.name.clone(),
            path: None,
        },
        format!(
            "{} ONNX node(s) match no treadc op; the first {}:\n  {}",
            failed.len(),
            listing.len(),
            listing.join("\n  ")
        ),
    )
    .expected(
        "the patterns `treadc import` knows (docs/import.md): linear, layer norm, attention, \
         GELU, SiLU, patchify, unpatchify, timestep and class embeddings, chunks, add, mul, \
         modulate",
    )
    .found(format!("`{}` ({})", first.name, first.op))
    .in_file(file))
}
