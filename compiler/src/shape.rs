//! Shape inference: computes every node's type from its inputs' types, in topological order.
//!
//! Why: it runs after parsing and after every pass, so a malformed model or a pass that leaves
//! the graph ill-typed is reported here, naming the node, not by a backend at run time.

use crate::diag::{Diagnostic, Result};
use crate::ir::{DType, Dim, Graph, NodeId, Op, Segment, ValueType};

/// Infers and stores the type of every node. Input nodes must already carry their type.
pub fn infer(g: &mut Graph) -> Result<()> {
    let order = g.topo_order().map_err(|cycle| {
        Diagnostic::new(crate::diag::Location::File, "the graph has a cycle")
            .expected("an acyclic graph (a DAG)")
            .found(format!("a cycle through {}", cycle.join(", ")))
    })?;
    for id in order {
        let inputs = g.inputs_of(id);
        let node = g.node(id);
        if let Some(n) = node.op.arity() {
            if inputs.len() != n {
                return Err(
                    err(g, id, format!("`{}` takes {n} input(s)", node.op.name()))
                        .found(format!("{} input(s)", inputs.len())),
                );
            }
        } else if inputs.is_empty() {
            return Err(err(
                g,
                id,
                format!("`{}` needs at least one input", node.op.name()),
            ));
        }
        if matches!(node.op, Op::Input { .. }) {
            if node.ty.is_none() {
                return Err(err(g, id, "input has no declared type"));
            }
            continue;
        }
        let tys: Vec<ValueType> = inputs.iter().map(|&i| g.ty(i).clone()).collect();
        let ty = infer_node(&node.op, &tys).map_err(|e| {
            let mut d = err(g, id, e.message);
            if let Some(x) = e.expected {
                d = d.expected(x);
            }
            if let Some(x) = e.found {
                d = d.found(x);
            }
            d
        })?;
        g.node_mut(id).ty = Some(ty);
    }
    Ok(())
}

fn err(g: &Graph, id: NodeId, msg: impl Into<String>) -> Diagnostic {
    let n = g.node(id);
    Diagnostic::at_node(&n.name, n.origin.as_deref(), msg)
}

/// An inference failure before the node is known.
struct Fail {
    message: String,
    expected: Option<String>,
    found: Option<String>,
}

fn fail(message: impl Into<String>, expected: impl Into<String>, found: impl Into<String>) -> Fail {
    Fail {
        message: message.into(),
        expected: Some(expected.into()),
        found: Some(found.into()),
    }
}

fn known(d: &Dim, what: &str) -> std::result::Result<u64, Fail> {
    d.known().ok_or_else(|| {
        fail(
            format!("{what} must be a known size"),
            "a number",
            format!("the symbol `{d}`"),
        )
    })
}

fn rank(t: &ValueType, r: usize, what: &str) -> std::result::Result<(), Fail> {
    if t.shape.len() == r {
        Ok(())
    } else {
        Err(fail(
            format!("{what} has the wrong rank"),
            format!("rank {r}"),
            format!("{t}"),
        ))
    }
}

fn float(t: &ValueType) -> std::result::Result<(), Fail> {
    if t.dtype == DType::F32 {
        Ok(())
    } else {
        Err(fail("wrong element type", "f32", t.to_string()))
    }
}

/// Ops acting on the last axis must not act on the token axis.
fn last_not_tokens(t: &ValueType) -> std::result::Result<u64, Fail> {
    float(t)?;
    if t.shape.is_empty() {
        return Err(fail("needs a feature axis", "rank ≥ 1", t.to_string()));
    }
    if t.token_axis == Some(t.shape.len() - 1) {
        return Err(fail(
            "would act across tokens: the last axis is the token axis",
            "features on the last axis",
            t.to_string(),
        ));
    }
    known(&t.shape[t.shape.len() - 1], "the feature axis")
}

fn with_last(t: &ValueType, d: u64) -> ValueType {
    let mut o = t.clone();
    if let Some(l) = o.shape.last_mut() {
        *l = Dim::Known(d);
    }
    o
}

/// numpy broadcasting of several types; the token axis must line up.
fn broadcast(tys: &[ValueType]) -> std::result::Result<ValueType, Fail> {
    let r = tys.iter().map(|t| t.shape.len()).max().unwrap_or(0);
    let mut shape = vec![Dim::Known(1); r];
    for t in tys {
        float(t)?;
        let off = r - t.shape.len();
        for (k, d) in t.shape.iter().enumerate() {
            let o = &mut shape[off + k];
            if *o == Dim::Known(1) {
                *o = d.clone();
            } else if *d != Dim::Known(1) && d != o {
                return Err(fail(
                    "shapes do not broadcast",
                    "equal sizes or 1 on each axis (numpy broadcasting)",
                    tys.iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(" and "),
                ));
            }
        }
    }
    let mut token_axis = None;
    for t in tys {
        if let Some(a) = t.token_axis {
            let a = a + r - t.shape.len();
            if token_axis.is_some_and(|b| b != a) {
                return Err(fail(
                    "token axes do not line up",
                    "the same token axis after broadcasting",
                    tys.iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(" and "),
                ));
            }
            token_axis = Some(a);
        }
    }
    if let Some(a) = token_axis {
        // A value that spans the token axis but is not declared token-indexed would be
        // mis-routed (not gathered): refuse it.
        for t in tys {
            let k = a as isize - (r - t.shape.len()) as isize;
            if k >= 0 && t.token_axis.is_none() && t.shape[k as usize] != Dim::Known(1) {
                return Err(fail(
                    "a value spans the token axis but is not token-indexed",
                    "size 1 on the token axis, or a token-indexed value (param `token_axis`)",
                    t.to_string(),
                ));
            }
        }
    }
    // Token-indexed inputs that span the axis must agree on which stream holds which positions.
    let mut segments: Vec<Segment> = vec![];
    if let Some(a) = token_axis {
        for t in tys {
            let k = a as isize - (r - t.shape.len()) as isize;
            if k < 0 || t.token_axis.is_none() || t.shape[k as usize] == Dim::Known(1) {
                continue;
            }
            if segments.is_empty() {
                segments = t.segments.clone();
            } else if segments != t.segments {
                return Err(fail(
                    "token streams do not line up",
                    "the same streams in the same order on the token axis",
                    tys.iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(" and "),
                ));
            }
        }
        if segments.is_empty() {
            segments = tys
                .iter()
                .find(|t| t.token_axis.is_some())
                .map(|t| t.segments.clone())
                .unwrap_or_default();
        }
    }
    Ok(ValueType {
        dtype: DType::F32,
        shape,
        token_axis,
        segments,
    })
}

/// The token axis' streams after concatenating `parts` along it: runs of the same stream next
/// to each other join; a stream that would appear twice apart is refused.
fn join_segments(parts: &[ValueType]) -> std::result::Result<Vec<Segment>, Fail> {
    let mut out: Vec<Segment> = vec![];
    for p in parts {
        for s in &p.segments {
            match out.last_mut() {
                Some(last) if last.stream == s.stream => last.tokens += s.tokens,
                _ => {
                    if out.iter().any(|o| o.stream == s.stream) {
                        return Err(fail(
                            format!("stream `{}` would appear twice on the token axis", s.stream),
                            "each stream in one run of tokens",
                            parts
                                .iter()
                                .map(|t| t.to_string())
                                .collect::<Vec<_>>()
                                .join(" and "),
                        ));
                    }
                    out.push(s.clone());
                }
            }
        }
    }
    Ok(out)
}

/// `t` must carry tokens on axis 1.
fn tokens_on_1(t: &ValueType, what: &str) -> std::result::Result<(), Fail> {
    if t.token_axis == Some(1) {
        Ok(())
    } else {
        Err(fail(
            format!("{what} needs token-indexed input"),
            "[batch, T:tokens, ...]",
            t.to_string(),
        ))
    }
}

/// The routed stream's token count in a gathered value with `kept` tokens in all, other
/// streams passing whole.
fn routed_count(
    t: &ValueType,
    kept: &Dim,
    stream: &str,
) -> std::result::Result<Vec<Segment>, Fail> {
    let Some((_, seg)) = t.segment(stream) else {
        return Err(fail(
            "nothing to route in this value",
            format!("a token axis with `{stream}` tokens"),
            t.to_string(),
        ));
    };
    let total = known(&t.shape[1], "tokens")?;
    let kept = known(kept, "kept tokens")?;
    let others = total - seg.tokens;
    if kept < others || kept - others > seg.tokens {
        return Err(fail(
            "indices do not fit the routed stream",
            format!("{others}..={total} indices"),
            kept.to_string(),
        ));
    }
    Ok(t.segments
        .iter()
        .map(|s| Segment {
            stream: s.stream.clone(),
            tokens: if s.stream == stream {
                kept - others
            } else {
                s.tokens
            },
        })
        .collect())
}

fn axis_ok(t: &ValueType, axis: usize) -> std::result::Result<(), Fail> {
    if axis < t.shape.len() {
        Ok(())
    } else {
        Err(fail(
            "axis out of range",
            format!("an axis < {}", t.shape.len()),
            format!("axis {axis} of {t}"),
        ))
    }
}

fn infer_node(op: &Op, x: &[ValueType]) -> std::result::Result<ValueType, Fail> {
    Ok(match op {
        Op::Input { .. } => unreachable!("inputs are typed by the reader"),
        Op::Param {
            shape, token_axis, ..
        } => {
            let t = ValueType::f32(shape.iter().map(|&d| Dim::Known(d)).collect());
            match token_axis {
                Some(a) => t.with_tokens(*a),
                None => t,
            }
        }
        Op::Linear { out, .. } => {
            let t = &x[0];
            last_not_tokens(t)?;
            with_last(t, *out)
        }
        Op::LayerNorm { .. } | Op::RmsNorm { .. } => {
            last_not_tokens(&x[0])?;
            x[0].clone()
        }
        Op::Attention { heads, .. } => {
            let t = &x[0];
            rank(t, 3, "attention input")?;
            if t.token_axis != Some(1) {
                return Err(fail(
                    "attention needs token-indexed input",
                    "[batch, T:tokens, features]",
                    t.to_string(),
                ));
            }
            let d = last_not_tokens(t)?;
            if *heads == 0 || d % heads != 0 {
                return Err(fail(
                    "width is not divisible by the number of heads",
                    format!("a width divisible by {heads}"),
                    format!("width {d}"),
                ));
            }
            t.clone()
        }
        Op::Gelu { .. } | Op::Silu => {
            float(&x[0])?;
            x[0].clone()
        }
        Op::Add | Op::Mul => broadcast(x)?,
        Op::Modulate | Op::NormModulate { .. } | Op::GatedResidual => {
            let b = broadcast(x)?;
            if b.shape != x[0].shape {
                return Err(fail(
                    "shift and scale must broadcast to x's shape",
                    x[0].to_string(),
                    b.to_string(),
                ));
            }
            b
        }
        Op::Chunk {
            axis,
            chunks,
            index,
        } => {
            let t = &x[0];
            axis_ok(t, *axis)?;
            let n = known(&t.shape[*axis], "the chunked axis")?;
            if *chunks == 0 || n % chunks != 0 || index >= chunks {
                return Err(fail(
                    "bad chunk",
                    format!("chunks dividing {n} and index < chunks"),
                    format!("chunks={chunks}, index={index}"),
                ));
            }
            let mut o = t.clone();
            o.shape[*axis] = Dim::Known(n / chunks);
            if t.token_axis == Some(*axis) {
                if t.segments.len() != 1 {
                    return Err(fail(
                        "chunk along a token axis that joins streams",
                        "one stream (take it out with select_stream)",
                        t.to_string(),
                    ));
                }
                o.segments[0].tokens = n / chunks;
            }
            o
        }
        Op::Concat { axis } => {
            let t = &x[0];
            axis_ok(t, *axis)?;
            let mut total = 0;
            for u in x {
                let along_tokens = t.token_axis == Some(*axis);
                let same = u.shape.len() == t.shape.len()
                    && u.dtype == t.dtype
                    && u.token_axis == t.token_axis
                    && (along_tokens || u.segments == t.segments)
                    && u.shape
                        .iter()
                        .zip(&t.shape)
                        .enumerate()
                        .all(|(k, (a, b))| k == *axis || a == b);
                if !same {
                    return Err(fail(
                        "concat inputs differ off the concat axis",
                        t.to_string(),
                        u.to_string(),
                    ));
                }
                total += known(&u.shape[*axis], "the concat axis")?;
            }
            let mut o = t.clone();
            o.shape[*axis] = Dim::Known(total);
            if t.token_axis == Some(*axis) {
                o.segments = join_segments(x)?;
            }
            o
        }
        Op::Unsqueeze { axis } => {
            let t = &x[0];
            if *axis > t.shape.len() {
                return Err(fail(
                    "axis out of range",
                    format!("an axis ≤ {}", t.shape.len()),
                    axis.to_string(),
                ));
            }
            let mut o = t.clone();
            o.shape.insert(*axis, Dim::Known(1));
            o.token_axis = t.token_axis.map(|a| if a >= *axis { a + 1 } else { a });
            o
        }
        Op::Patchify { patch } => {
            let t = &x[0];
            rank(t, 4, "patchify input")?;
            float(t)?;
            let c = known(&t.shape[1], "channels")?;
            let h = known(&t.shape[2], "height")?;
            let w = known(&t.shape[3], "width")?;
            if *patch == 0 || h % patch != 0 || w % patch != 0 {
                return Err(fail(
                    "the patch size does not divide the image",
                    format!("height and width divisible by {patch}"),
                    format!("{h}×{w}"),
                ));
            }
            ValueType::f32(vec![
                t.shape[0].clone(),
                Dim::Known((h / patch) * (w / patch)),
                Dim::Known(patch * patch * c),
            ])
            .with_tokens(1)
        }
        Op::Unpatchify {
            patch,
            height,
            width,
        } => {
            let t = &x[0];
            rank(t, 3, "unpatchify input")?;
            let n = known(&t.shape[1], "tokens")?;
            let f = last_not_tokens(t)?;
            let grid = (height / patch.max(&1)) * (width / patch.max(&1));
            if *patch == 0 || height % patch != 0 || width % patch != 0 || n != grid {
                return Err(fail(
                    "token count does not match the image",
                    format!("{grid} tokens ({height}×{width} in {patch}×{patch} patches)"),
                    format!("{n} tokens"),
                ));
            }
            if f % (patch * patch) != 0 {
                return Err(fail(
                    "features are not patch×patch×channels",
                    format!("a multiple of {}", patch * patch),
                    f.to_string(),
                ));
            }
            ValueType::f32(vec![
                t.shape[0].clone(),
                Dim::Known(f / (patch * patch)),
                Dim::Known(*height),
                Dim::Known(*width),
            ])
        }
        Op::PatchifyVideo { patch_t, patch } => {
            let t = &x[0];
            rank(t, 5, "patchify_video input")?;
            float(t)?;
            let c = known(&t.shape[1], "channels")?;
            let f = known(&t.shape[2], "frames")?;
            let h = known(&t.shape[3], "height")?;
            let w = known(&t.shape[4], "width")?;
            if f % patch_t != 0 || h % patch != 0 || w % patch != 0 {
                return Err(fail(
                    "the patch size does not divide the clip",
                    format!("frames divisible by {patch_t}, height and width by {patch}"),
                    format!("{f}×{h}×{w}"),
                ));
            }
            ValueType::f32(vec![
                t.shape[0].clone(),
                Dim::Known((f / patch_t) * (h / patch) * (w / patch)),
                Dim::Known(patch_t * patch * patch * c),
            ])
            .with_tokens(1)
        }
        Op::UnpatchifyVideo {
            patch_t,
            patch,
            frames,
            height,
            width,
        } => {
            let t = &x[0];
            rank(t, 3, "unpatchify_video input")?;
            let n = known(&t.shape[1], "tokens")?;
            let feat = last_not_tokens(t)?;
            let divides = frames % patch_t == 0 && height % patch == 0 && width % patch == 0;
            let grid = (frames / patch_t) * (height / patch) * (width / patch);
            if !divides || n != grid {
                return Err(fail(
                    "token count does not match the clip",
                    format!("{grid} tokens ({frames}×{height}×{width} in {patch_t}×{patch}×{patch} patches)"),
                    format!("{n} tokens"),
                ));
            }
            let per = patch_t * patch * patch;
            if feat % per != 0 {
                return Err(fail(
                    "features are not patch volume × channels",
                    format!("a multiple of {per}"),
                    feat.to_string(),
                ));
            }
            ValueType::f32(vec![
                t.shape[0].clone(),
                Dim::Known(feat / per),
                Dim::Known(*frames),
                Dim::Known(*height),
                Dim::Known(*width),
            ])
        }
        Op::PosEmbed2d { height, width, dim } => {
            if dim % 4 != 0 {
                return Err(fail(
                    "sin-cos position tables need a width divisible by 4",
                    "dim % 4 == 0",
                    dim.to_string(),
                ));
            }
            ValueType::f32(vec![
                Dim::Known(1),
                Dim::Known(height * width),
                Dim::Known(*dim),
            ])
            .with_tokens(1)
        }
        Op::TimestepEmbed { dim, .. } => {
            let t = &x[0];
            rank(t, 1, "timestep input")?;
            float(t)?;
            if dim % 2 != 0 {
                return Err(fail("odd embedding width", "an even dim", dim.to_string()));
            }
            ValueType::f32(vec![t.shape[0].clone(), Dim::Known(*dim)])
        }
        Op::ClassEmbed { dim, .. } => {
            let t = &x[0];
            rank(t, 1, "label input")?;
            if t.dtype != DType::I64 {
                return Err(fail("labels must be integers", "i64", t.to_string()));
            }
            ValueType::f32(vec![t.shape[0].clone(), Dim::Known(*dim)])
        }
        Op::TokenConv { kernel, .. } => {
            let t = &x[0];
            rank(t, 3, "token_conv input")?;
            if t.token_axis != Some(1) {
                return Err(fail(
                    "token_conv needs token-indexed input",
                    "[batch, T:tokens, features]",
                    t.to_string(),
                ));
            }
            last_not_tokens(t)?;
            if *kernel == 0 {
                return Err(fail("empty kernel", "kernel ≥ 1", "0"));
            }
            t.clone()
        }
        Op::Sdpa { heads } => {
            if !(3..=4).contains(&x.len()) {
                return Err(fail(
                    "sdpa takes (q, k, v) or (q, k, v, key_mask)",
                    "3 or 4 inputs",
                    format!("{} input(s)", x.len()),
                ));
            }
            let (q, k, v) = (&x[0], &x[1], &x[2]);
            for (t, what) in [
                (q, "sdpa's queries"),
                (k, "sdpa's keys"),
                (v, "sdpa's values"),
            ] {
                rank(t, 3, what)?;
                tokens_on_1(t, what)?;
            }
            let dq = last_not_tokens(q)?;
            let dk = last_not_tokens(k)?;
            let dv = last_not_tokens(v)?;
            if dq != dk || *heads == 0 || dq % heads != 0 || dv % heads != 0 {
                return Err(fail(
                    "query and key widths must match and divide into heads",
                    format!(
                        "equal q and k widths divisible by {heads}, v width divisible by {heads}"
                    ),
                    format!("q {dq}, k {dk}, v {dv}"),
                ));
            }
            if k.shape[..2] != v.shape[..2] || k.segments != v.segments {
                return Err(fail(
                    "keys and values must have the same tokens",
                    k.to_string(),
                    v.to_string(),
                ));
            }
            if let Some(m) = x.get(3) {
                let ok = m.dtype == DType::F32
                    && m.shape.len() == 2
                    && m.shape[..] == k.shape[..2]
                    && m.token_axis == Some(1)
                    && m.segments == k.segments;
                if !ok {
                    let mut want = k.clone();
                    want.shape.truncate(2);
                    return Err(fail(
                        "the key mask does not fit the keys",
                        want.to_string(),
                        m.to_string(),
                    ));
                }
            }
            let mut o = q.clone();
            o.shape[2] = Dim::Known(dv);
            o
        }
        Op::Rope {
            heads, axes_dims, ..
        } => {
            let (t, pos) = (&x[0], &x[1]);
            rank(t, 3, "rope input")?;
            tokens_on_1(t, "rope")?;
            let d = last_not_tokens(t)?;
            if *heads == 0 || d % heads != 0 {
                return Err(fail(
                    "width is not divisible by the number of heads",
                    format!("a width divisible by {heads}"),
                    format!("width {d}"),
                ));
            }
            let sum: u64 = axes_dims.iter().sum();
            if sum != d / heads {
                return Err(fail(
                    "rotary dims do not sum to the head dim",
                    format!("axes_dims summing to {} ({d} / {heads} heads)", d / heads),
                    format!("{axes_dims:?} (sum {sum})"),
                ));
            }
            rank(pos, 3, "rope positions")?;
            float(pos)?;
            let same_tokens = pos.token_axis == Some(1)
                && pos.shape[1] == t.shape[1]
                && pos.segments == t.segments
                && (pos.shape[0] == Dim::Known(1) || pos.shape[0] == t.shape[0]);
            if !same_tokens || pos.shape[2] != Dim::Known(axes_dims.len() as u64) {
                return Err(fail(
                    "positions are not laid out like the rotated tokens",
                    format!(
                        "[1 or {}, T:{}, {}] (one position per token, per axis)",
                        t.shape[0],
                        t.layout(),
                        axes_dims.len()
                    ),
                    pos.to_string(),
                ));
            }
            t.clone()
        }
        Op::Positions {
            stream,
            tokens,
            axes,
            ..
        } => ValueType::f32(vec![Dim::Known(1), Dim::Known(*tokens), Dim::Known(*axes)])
            .with_stream(1, stream),
        Op::SelectStream { stream } => {
            let t = &x[0];
            let Some(a) = t.token_axis else {
                return Err(fail(
                    "select_stream needs a token axis",
                    "a token-indexed value",
                    t.to_string(),
                ));
            };
            let Some((_, seg)) = t.segment(stream) else {
                return Err(fail(
                    format!("no `{stream}` tokens in this value"),
                    format!("a token axis holding `{stream}`"),
                    t.to_string(),
                ));
            };
            let mut o = t.clone();
            o.shape[a] = Dim::Known(seg.tokens);
            o.segments = vec![seg.clone()];
            o
        }
        Op::HeadNorm { heads, .. } => {
            let d = last_not_tokens(&x[0])?;
            if d % heads != 0 {
                return Err(fail(
                    "width is not divisible by the number of heads",
                    format!("a width divisible by {heads}"),
                    format!("width {d}"),
                ));
            }
            x[0].clone()
        }
        Op::Glu { .. } => {
            let d = last_not_tokens(&x[0])?;
            if d % 2 != 0 {
                return Err(fail(
                    "a gated linear unit halves an even width",
                    "an even width",
                    d.to_string(),
                ));
            }
            with_last(&x[0], d / 2)
        }
        Op::Embed { dim, .. } => {
            let t = &x[0];
            rank(t, 2, "token ids")?;
            if t.dtype != DType::I64 {
                return Err(fail("token ids must be integers", "i64", t.to_string()));
            }
            let mut o = t.clone();
            o.dtype = DType::F32;
            o.shape.push(Dim::Known(*dim));
            o
        }
        Op::RouteSelect { keep, stream, .. } => {
            let t = &x[0];
            if t.token_axis != Some(1) {
                return Err(fail(
                    "routing needs tokens on axis 1",
                    "[batch, T:tokens, ...]",
                    t.to_string(),
                ));
            }
            if !t.is_only(stream) {
                return Err(fail(
                    "routing draws from the routed stream alone",
                    format!("[batch, T:tokens, ...] of `{stream}` tokens"),
                    t.to_string(),
                ));
            }
            ValueType {
                dtype: DType::I64,
                shape: vec![t.shape[0].clone(), Dim::Known(*keep)],
                token_axis: None,
                segments: vec![],
            }
        }
        Op::StreamIndices {
            before,
            tokens,
            after,
            ..
        } => {
            let idx = &x[0];
            if idx.dtype != DType::I64 || idx.shape.len() != 2 {
                return Err(fail(
                    "stream indices need i64 [batch, keep]",
                    "i64 [B, keep]",
                    idx.to_string(),
                ));
            }
            let keep = known(&idx.shape[1], "kept tokens")?;
            if keep > *tokens {
                return Err(fail(
                    "more kept tokens than the stream holds",
                    format!("≤ {tokens}"),
                    keep.to_string(),
                ));
            }
            ValueType {
                dtype: DType::I64,
                shape: vec![idx.shape[0].clone(), Dim::Known(before + keep + after)],
                token_axis: None,
                segments: vec![],
            }
        }
        Op::GatherTokens { stream, .. } => {
            let (t, idx) = (&x[0], &x[1]);
            if t.token_axis != Some(1) || idx.dtype != DType::I64 || idx.shape.len() != 2 {
                return Err(fail(
                    "gather needs [batch, T:tokens, ...] and i64 [batch, keep]",
                    "tokens on axis 1",
                    format!("{t} and {idx}"),
                ));
            }
            let mut o = t.clone();
            o.shape[0] = idx.shape[0].clone();
            o.shape[1] = idx.shape[1].clone();
            o.segments = routed_count(t, &idx.shape[1], stream)?;
            o
        }
        Op::MergeTokens { stream, .. } => {
            let (base, kept, idx) = (&x[0], &x[1], &x[2]);
            let mut expect = base.clone();
            expect.shape[0] = idx.shape[0].clone();
            if base.token_axis != Some(1) || kept.shape.len() != base.shape.len() {
                return Err(fail(
                    "merge needs base and kept values with tokens on axis 1",
                    base.to_string(),
                    kept.to_string(),
                ));
            }
            let mut kexp = expect.clone();
            kexp.shape[1] = idx.shape[1].clone();
            kexp.segments = routed_count(base, &idx.shape[1], stream)?;
            if *kept != kexp {
                return Err(fail(
                    "the kept value does not fit the saved full value",
                    kexp.to_string(),
                    kept.to_string(),
                ));
            }
            expect
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[u64], tok: Option<usize>) -> ValueType {
        let v = ValueType::f32(shape.iter().map(|&d| Dim::Known(d)).collect());
        match tok {
            Some(a) => v.with_tokens(a),
            None => v,
        }
    }

    #[test]
    fn broadcast_aligns_right_and_keeps_token_axis() {
        let o = broadcast(&[t(&[2, 256, 384], Some(1)), t(&[2, 1, 384], None)]).ok();
        assert_eq!(o, Some(t(&[2, 256, 384], Some(1))));
        let o = broadcast(&[t(&[2, 256, 384], Some(1)), t(&[1, 256, 384], Some(1))]).ok();
        assert_eq!(o, Some(t(&[2, 256, 384], Some(1))));
    }

    #[test]
    fn broadcast_refuses_untagged_token_spans_and_mismatch() {
        assert!(broadcast(&[t(&[2, 256, 384], Some(1)), t(&[1, 256, 384], None)]).is_err());
        assert!(broadcast(&[t(&[2, 256, 384], Some(1)), t(&[2, 384], None)]).is_err());
        assert!(broadcast(&[t(&[2, 3], None), t(&[4], None)]).is_err());
    }

    #[test]
    fn linear_refuses_token_last_axis() {
        let op = Op::Linear { out: 4, bias: true };
        assert!(infer_node(&op, &[t(&[2, 8], Some(1))]).is_err());
        assert_eq!(
            infer_node(&op, &[t(&[2, 8, 3], Some(1))]).ok(),
            Some(t(&[2, 8, 4], Some(1)))
        );
    }

    #[test]
    fn patchify_and_unpatchify_round_trip_shapes() {
        let p = infer_node(&Op::Patchify { patch: 2 }, &[t(&[1, 4, 32, 32], None)]).ok();
        assert_eq!(p, Some(t(&[1, 256, 16], Some(1))));
        let u = Op::Unpatchify {
            patch: 2,
            height: 32,
            width: 32,
        };
        assert_eq!(
            infer_node(&u, &[t(&[1, 256, 16], Some(1))]).ok(),
            Some(t(&[1, 4, 32, 32], None))
        );
        assert!(infer_node(&u, &[t(&[1, 255, 16], Some(1))]).is_err());
    }
}
