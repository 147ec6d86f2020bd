//! Precomputed text contexts: the `[N, L, Dc]` embeddings, `[N, L]` masks and `[N, Dp]` pooled
//! vectors that text-to-image pipelines extract once with a frozen T5 or CLIP and keep beside
//! their latents, so that training (`--data latents:FILE`) and sampling (`--context FILE`) need
//! no text encoder here.
//!
//! Layout, in a `.safetensors` file (other tensors are ignored):
//! - `context`: `[N, L, Dc]`, F32 (F16 and BF16 widened), finite;
//! - `context_mask` (optional): `[N, L]`, 1 for a token the model attends to and 0 for padding,
//!   as F32/F16/BF16/I64/I32/U8/BOOL; without it every token counts;
//! - `pooled` (optional, needed by a model with a pooled input): `[N, Dp]`, float, finite;
//! - `labels` (optional): `[N]` class indices, used to score samples of digit models.

use std::path::Path;

use safetensors::SafeTensors;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::read::read_bytes;

use super::dataset::StoredTexts;
use super::safetensors_fields::{check_finite, floats, ints, parse, read_labels, tensor};
use crate::text::{TextBatch, TextDims};

/// The tensor holding the contexts.
pub const CONTEXT: &str = "context";
/// The tensor holding the masks.
pub const MASK: &str = "context_mask";
/// The tensor holding the pooled vectors.
pub const POOLED: &str = "pooled";

/// Loads a contexts file for sampling (`--context FILE`): it must hold `context`.
pub fn load(path: &Path) -> Result<StoredTexts, Diagnostic> {
    let file = path.display().to_string();
    let bytes = read_bytes(path, "contexts file", "a readable .safetensors file")?;
    let st = parse(&bytes, &file)?;
    match read(&st, None, &file)? {
        Some(texts) => Ok(texts),
        None => Err(
            tensor(&st, CONTEXT, "[N, L, Dc] of F32, F16 or BF16", &file)
                .err()
                .unwrap_or_else(|| {
                    Diagnostic::new(Location::File, "the file stores no contexts").in_file(&file)
                }),
        ),
    }
}

/// The stored texts of a safetensors file (`None` when it has no `context`); `n`, when given,
/// is the row count the rest of the file has (the latents').
pub fn read(
    st: &SafeTensors<'_>,
    n: Option<usize>,
    file: &str,
) -> Result<Option<StoredTexts>, Diagnostic> {
    if st.tensor(CONTEXT).is_err() {
        return Ok(None);
    }
    let at = |name: &str| Location::Item(format!("tensor `{name}`"));
    let shape_err = |name: &str, want: String, found: &[usize]| {
        Diagnostic::new(at(name), format!("`{name}` has the wrong shape"))
            .expected(want)
            .found(format!("shape {found:?}"))
            .in_file(file)
    };
    let ctx = tensor(st, CONTEXT, "", file)?;
    let (rows, len, width) = match *ctx.shape() {
        [r, l, d] if r > 0 && l > 0 && d > 0 && n.is_none_or(|n| n == r) => (r, l, d),
        _ => {
            let rows = n.map_or("N".to_string(), |n| n.to_string());
            return Err(shape_err(
                CONTEXT,
                format!("[{rows}, L, Dc] with N, L, Dc > 0 (one context per latent)"),
                ctx.shape(),
            ));
        }
    };
    let context = floats(&ctx, &at(CONTEXT), file)?;
    check_finite(&context, len * width, ("tensor `context`", "row"), file)?;
    let mask = match st.tensor(MASK) {
        Err(_) => vec![1.0; rows * len],
        Ok(m) => {
            if m.shape() != [rows, len] {
                return Err(shape_err(MASK, format!("[{rows}, {len}]"), m.shape()));
            }
            let values = match floats(&m, &at(MASK), file) {
                Ok(v) => v,
                Err(_) => ints(&m, &at(MASK), file)?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
            };
            if let Some(j) = values.iter().position(|&v| v != 0.0 && v != 1.0) {
                return Err(Diagnostic::new(
                    Location::Item(format!("tensor `{MASK}`, row {}", j / len)),
                    "a mask value is neither 0 nor 1",
                )
                .expected("1 for a token, 0 for padding")
                .found(format!("{} at token {}", values[j], j % len))
                .in_file(file));
            }
            values
        }
    };
    let (pooled, pooled_width) = match st.tensor(POOLED) {
        Err(_) => (Vec::new(), None),
        Ok(p) => match *p.shape() {
            [r, d] if r == rows && d > 0 => {
                let values = floats(&p, &at(POOLED), file)?;
                check_finite(&values, d, ("tensor `pooled`", "row"), file)?;
                (values, Some(d))
            }
            _ => {
                return Err(shape_err(
                    POOLED,
                    format!("[{rows}, Dp] with Dp > 0"),
                    p.shape(),
                ))
            }
        },
    };
    let labels = match st.tensor("labels") {
        Err(_) => None,
        Ok(_) => Some(read_labels(st, rows, file)?),
    };
    Ok(Some(StoredTexts {
        batch: TextBatch {
            n: rows,
            dims: TextDims {
                len,
                context: width,
                pooled: pooled_width,
            },
            context,
            mask,
            pooled,
        },
        labels,
        file: file.to_string(),
    }))
}

impl StoredTexts {
    /// `n` texts taken in turn from the first (wrapping around), with their labels when stored:
    /// what a grid, an evaluation or `--context` draws for.
    pub fn in_turn(&self, n: usize) -> (Option<Vec<i64>>, TextBatch) {
        let rows: Vec<usize> = (0..n).map(|i| i % self.batch.n).collect();
        let labels = self
            .labels
            .as_ref()
            .map(|l| rows.iter().map(|&r| l[r]).collect());
        let picked: Vec<Option<usize>> = rows.into_iter().map(Some).collect();
        (labels, self.batch.gather(&picked))
    }

    /// These texts made to fit a model's text inputs `model` (from `model_file`): the context
    /// length and width must match; a pooled vector the model does not read is dropped (said in
    /// the returned note); one it reads must be stored.
    pub fn fit(
        self,
        model: Option<TextDims>,
        model_file: &str,
    ) -> Result<(StoredTexts, Option<String>), Diagnostic> {
        let have = self.batch.dims;
        let refuse = |name: &str, message: &str, expected: String, found: String| {
            Diagnostic::new(Location::Item(format!("tensor `{name}`")), message)
                .expected(expected)
                .found(found)
                .in_file(self.file.clone())
        };
        let Some(want) = model else {
            return Err(refuse(
                CONTEXT,
                "the file stores text contexts but the model is not text-conditioned",
                format!("a model with a `context` input (model file {model_file})"),
                "a model without one".into(),
            ));
        };
        if (have.len, have.context) != (want.len, want.context) {
            return Err(refuse(
                CONTEXT,
                "the stored contexts do not fit the model's context input",
                format!(
                    "[N, {}, {}] (the `context` input of {model_file})",
                    want.len, want.context
                ),
                format!("[{}, {}, {}]", self.batch.n, have.len, have.context),
            ));
        }
        match (want.pooled, have.pooled) {
            (Some(w), Some(h)) if w == h => Ok((self, None)),
            (Some(w), found) => Err(refuse(
                POOLED,
                "the model reads a pooled text vector the file does not store",
                format!("a tensor `{POOLED}` [N, {w}] (the `pooled` input of {model_file})"),
                found.map_or("no such tensor".into(), |h| format!("[N, {h}]")),
            )),
            (None, None) => Ok((self, None)),
            (None, Some(_)) => {
                let mut fitted = self;
                fitted.batch.pooled.clear();
                fitted.batch.dims.pooled = None;
                let note = format!(
                    "the model has no pooled input: ignored the `{POOLED}` tensor of {}",
                    fitted.file
                );
                Ok((fitted, Some(note)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// A safetensors file's bytes from `(name, dtype, shape, bytes)`.
    fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    /// Two texts of 3 tokens of width 2, their masks as int64 and pooled vectors of width 1.
    fn two_texts() -> Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> {
        let ctx: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mask: Vec<u8> = [1i64, 1, 0, 1, 0, 0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        vec![
            (CONTEXT, Dtype::F32, vec![2, 3, 2], f32s(&ctx)),
            (MASK, Dtype::I64, vec![2, 3], mask),
            (POOLED, Dtype::F32, vec![2, 1], f32s(&[0.5, -0.5])),
        ]
    }

    fn read_bytes(bytes: &[u8], n: Option<usize>) -> Result<Option<StoredTexts>, Diagnostic> {
        read(
            &SafeTensors::deserialize(bytes).unwrap(),
            n,
            "c.safetensors",
        )
    }

    #[test]
    fn reads_contexts_masks_pooled_vectors_and_labels() {
        let t = read_bytes(&file(&two_texts()), Some(2)).unwrap().unwrap();
        let dims = TextDims {
            len: 3,
            context: 2,
            pooled: Some(1),
        };
        assert_eq!(t.batch.dims, dims);
        assert_eq!(
            t.batch.context,
            (0..12).map(|v| v as f32).collect::<Vec<_>>()
        );
        assert_eq!(t.batch.mask, [1., 1., 0., 1., 0., 0.]);
        assert_eq!(t.batch.pooled, [0.5, -0.5]);
        assert_eq!(t.labels, None);
        // Without a mask every token counts; labels are read when present.
        let mut with_labels = two_texts();
        with_labels.remove(1);
        with_labels.push((
            "labels",
            Dtype::I32,
            vec![2],
            [7i32, 1].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
        let t = read_bytes(&file(&with_labels), None).unwrap().unwrap();
        assert_eq!(t.batch.mask, [1.0; 6]);
        assert_eq!(t.labels, Some(vec![7, 1]));
        // A file with no `context` stores no texts.
        let none = file(&[(POOLED, Dtype::F32, vec![1, 1], f32s(&[1.0]))]);
        assert_eq!(read_bytes(&none, Some(1)).unwrap(), None);
        // Texts in turn wrap around, labels following.
        let (labels, batch) = t.in_turn(3);
        assert_eq!(labels, Some(vec![7, 1, 7]));
        assert_eq!(batch.slice(2, 1), t.batch.slice(0, 1));
    }

    #[test]
    fn bad_contexts_are_named_errors() {
        let with = |name: &'static str, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>| {
            let mut t = two_texts();
            t.retain(|(n, ..)| *n != name);
            t.push((name, dtype, shape, bytes));
            read_bytes(&file(&t), Some(2)).unwrap_err()
        };
        let e = read_bytes(&file(&two_texts()), Some(5)).unwrap_err();
        assert!(e.to_string().contains("[5, L, Dc]"), "{e}");
        let e = with(CONTEXT, Dtype::F32, vec![2, 6], f32s(&[0.0; 12]));
        assert!(e.to_string().contains("tensor `context`"), "{e}");
        let mut bad = vec![0.0; 12];
        bad[7] = f32::NAN;
        let e = with(CONTEXT, Dtype::F32, vec![2, 3, 2], f32s(&bad));
        assert!(
            e.to_string().contains("row 1") && e.to_string().contains("NaN"),
            "{e}"
        );
        let e = with(
            MASK,
            Dtype::F32,
            vec![2, 3],
            f32s(&[1., 1., 2., 1., 0., 0.]),
        );
        assert!(
            e.to_string().contains("neither 0 nor 1") && e.to_string().contains("row 0"),
            "{e}"
        );
        let e = with(MASK, Dtype::F32, vec![3, 2], f32s(&[1.0; 6]));
        assert!(e.to_string().contains("[2, 3]"), "{e}");
        let e = with(POOLED, Dtype::F64, vec![2, 1], vec![0; 16]);
        assert!(e.to_string().contains("F32"), "{e}");
        let e = with(CONTEXT, Dtype::F32, vec![0, 3, 2], Vec::new());
        assert!(e.to_string().contains("N, L, Dc > 0"), "{e}");
    }

    #[test]
    fn fitting_a_model_checks_its_text_inputs() {
        let t = read_bytes(&file(&two_texts()), Some(2)).unwrap().unwrap();
        let dims = t.batch.dims;
        let (same, note) = t.clone().fit(Some(dims), "m.json").unwrap();
        assert_eq!((same, note), (t.clone(), None));
        let e = t.clone().fit(None, "m.json").unwrap_err();
        assert!(e.to_string().contains("not text-conditioned"), "{e}");
        let e = t
            .clone()
            .fit(Some(TextDims { len: 8, ..dims }), "m.json")
            .unwrap_err();
        assert!(
            e.to_string().contains("[N, 8, 2]") && e.to_string().contains("m.json"),
            "{e}"
        );
        let e = t
            .clone()
            .fit(
                Some(TextDims {
                    pooled: Some(4),
                    ..dims
                }),
                "m.json",
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("[N, 4]") && e.to_string().contains("[N, 1]"),
            "{e}"
        );
        let (dropped, note) = t
            .fit(
                Some(TextDims {
                    pooled: None,
                    ..dims
                }),
                "m.json",
            )
            .unwrap();
        assert!(dropped.batch.pooled.is_empty() && dropped.batch.dims.pooled.is_none());
        assert!(note.is_some_and(|n| n.contains("ignored the `pooled`")));
    }
}
