//! Shape inference: computes every node's type from its inputs' types, in topological order.
//!
//! Why: it runs after parsing and after every pass, so a malformed model or a pass that leaves
//! the graph ill-typed is reported here, naming the node, not by a backend at run time.

use crate::diag::{Diagnostic, Result};
use crate::ir::{DType, Dim, Graph, NodeId, Op, ValueType};

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
    Ok(ValueType {
        dtype: DType::F32,
        shape,
        token_axis,
    })
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
        } => ValueType {
            dtype: DType::F32,
            shape: shape.iter().map(|&d| Dim::Known(d)).collect(),
            token_axis: *token_axis,
        },
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
            o
        }
        Op::Concat { axis } => {
            let t = &x[0];
            axis_ok(t, *axis)?;
            let mut total = 0;
            for u in x {
                let same = u.shape.len() == t.shape.len()
                    && u.dtype == t.dtype
                    && u.token_axis == t.token_axis
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
        Op::RouteSelect { keep, .. } => {
            let t = &x[0];
            if t.token_axis != Some(1) {
                return Err(fail(
                    "routing needs tokens on axis 1",
                    "[batch, T:tokens, ...]",
                    t.to_string(),
                ));
            }
            ValueType {
                dtype: DType::I64,
                shape: vec![t.shape[0].clone(), Dim::Known(*keep)],
                token_axis: None,
            }
        }
        Op::GatherTokens { .. } => {
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
            o
        }
        Op::MergeTokens { .. } => {
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
        ValueType {
            dtype: DType::F32,
            shape: shape.iter().map(|&d| Dim::Known(d)).collect(),
            token_axis: tok,
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
