//! `treadc run`: sampling from an exported ONNX file on tract, with no burn in the path. The
//! file's `treadc.*` metadata says what it is (objective, whether EDM preconditioning is inside,
//! input names); the loop is [`crate::sampler`]'s, shared with `treadc sample`, and the noise is
//! the same seeded draw, so both agree up to the two runtimes' arithmetic.

use std::path::{Path, PathBuf};

use tread_compiler::config::Objective;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::edm::Precond;
use tread_compiler::ir::InputRole;
use tread_onnx::export::file::{metadata, read_model};
use tread_onnx::export::precond::{SIGMA, X_NOISY};
use tread_onnx::{keys, pb};

use crate::condition::Condition;
use crate::data::clips::ClipShape;
use crate::sampler::{conditioning, grid_labels, guide, initial_noise, run_sampler, SampleRequest};
use crate::text::vocab::DIGIT_WORDS;
use crate::text::{TextBatch, TextDims, TextEncoder, Tokenizer, BUNDLED_ENCODER, CAPTION_ENCODER};
use tread_onnx::tract::{HostValue, TractModel};

/// What a graph input carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Image,
    Level,
    Label,
    Context,
    Mask,
    Pooled,
}

/// An exported treadc model, read and understood.
pub struct Deployment {
    path: PathBuf,
    proto: pb::ModelProto,
    /// EDM or flow.
    pub objective: Objective,
    /// Whether EDM's preconditioning is inside the graph.
    pub precond: bool,
    /// Image shape `[C, H, W]` (a video file's clips as `[C, F·H, W]`, frames stacked in rows).
    pub shape: [usize; 3],
    /// The image input's own dims after the batch (`[C, F, H, W]` for video).
    image_dims: Vec<usize>,
    /// Class count (the null label is this value), for class-conditional models; the ten
    /// digits for a text model (drawn as their canonical prompts).
    pub classes: Option<usize>,
    /// The bundled text encoder, for a text-conditioned file (one with a context input).
    pub text: Option<TextEncoder>,
    slots: Vec<Slot>,
}

fn bad(path: &Path, at: &str, msg: &str, expected: &str, found: String) -> Diagnostic {
    Diagnostic::new(Location::Item(at.into()), msg)
        .expected(expected)
        .found(found)
        .in_file(path.display().to_string())
}

impl Deployment {
    /// Reads `path` and its metadata; refuses files that are not treadc exports.
    pub fn open(path: &Path) -> Result<Self, Diagnostic> {
        let proto = read_model(path)?;
        let objective = metadata(&proto, keys::OBJECTIVE)
            .and_then(Objective::from_name)
            .ok_or_else(|| {
                bad(
                    path,
                    "metadata `treadc.objective`",
                    "not a treadc export",
                    "an ONNX file written by `treadc export` (metadata treadc.objective = edm|flow)",
                    format!(
                        "{:?}",
                        metadata(&proto, keys::OBJECTIVE).unwrap_or("no such entry")
                    ),
                )
            })?;
        let precond = metadata(&proto, keys::PRECOND) == Some("edm");
        let classes = metadata(&proto, keys::CLASSES).and_then(|c| c.parse().ok());
        let g = proto
            .graph
            .as_ref()
            .ok_or_else(|| bad(path, "graph", "no graph", "a graph", "none".into()))?;
        let role_name = |r| metadata(&proto, &keys::input(r)).map(str::to_string);
        let (image, level, label) = (
            role_name(InputRole::Image),
            role_name(InputRole::NoiseLevel),
            role_name(InputRole::Label),
        );
        let (context, mask, pooled) = (
            role_name(InputRole::Context),
            role_name(InputRole::ContextMask),
            role_name(InputRole::Pooled),
        );
        let mut slots = vec![];
        let mut shape = None;
        let mut image_dims = vec![];
        let (mut context_dims, mut pooled_dims) = (None, None);
        for vi in &g.input {
            let n = vi.name.as_str();
            let slot = if n == X_NOISY || image.as_deref() == Some(n) {
                let dims = input_dims(vi);
                shape = match dims[..] {
                    [_, c, h, w] => Some([c, h, w]),
                    [_, c, f, h, w] => Some([c, f * h, w]),
                    _ => shape,
                };
                image_dims = dims.get(1..).map(<[usize]>::to_vec).unwrap_or_default();
                Slot::Image
            } else if n == SIGMA || level.as_deref() == Some(n) {
                Slot::Level
            } else if label.as_deref() == Some(n) {
                Slot::Label
            } else if context.as_deref() == Some(n) {
                context_dims = Some((n.to_string(), input_dims(vi)));
                Slot::Context
            } else if mask.as_deref() == Some(n) {
                Slot::Mask
            } else if pooled.as_deref() == Some(n) {
                pooled_dims = Some(input_dims(vi));
                Slot::Pooled
            } else {
                return Err(bad(
                    path,
                    &format!("input `{n}`"),
                    "unknown graph input",
                    "the image, noise-level, label and text inputs named in the metadata",
                    n.to_string(),
                ));
            };
            slots.push(slot);
        }
        let shape = shape.ok_or_else(|| {
            bad(
                path,
                "graph inputs",
                "no image input",
                "an input of shape [B, C, H, W] or [B, C, F, H, W]",
                format!("{:?}", g.input.iter().map(|v| &v.name).collect::<Vec<_>>()),
            )
        })?;
        let text = match context_dims {
            Some((name, ctx)) => Some(text_encoder(path, &proto, &name, &ctx, pooled_dims)?),
            None => None,
        };
        Ok(Deployment {
            path: path.to_path_buf(),
            proto,
            objective,
            precond,
            shape,
            image_dims,
            classes: if text.is_some() {
                Some(DIGIT_WORDS.len())
            } else {
                classes
            },
            text,
            slots,
        })
    }

    /// A video file's frame layout (an image input `[B, C, F, H, W]`).
    pub fn clip(&self) -> Option<ClipShape> {
        match self.image_dims[..] {
            [_, frames, height, width] => Some(ClipShape {
                frames,
                height,
                width,
            }),
            _ => None,
        }
    }

    /// Loads the model for `batch` images per call.
    fn load(&self, batch: usize) -> Result<TractModel, Diagnostic> {
        TractModel::load(&self.path, &self.proto, batch).map_err(|e| {
            bad(
                &self.path,
                "model",
                "tract cannot load the model",
                "an ONNX model tract can run",
                e,
            )
        })
    }

    /// One prediction (denoised image or velocity) of `x` at `level`, conditioned by `cond`
    /// (labels or texts per image; the null text where a text model gets none).
    fn predict(
        &self,
        m: &TractModel,
        x: &[f32],
        level: f64,
        cond: &Condition,
    ) -> Result<Vec<f32>, String> {
        let b = m.batch;
        let raw_edm = self.objective == Objective::Edm && !self.precond;
        let pc = Precond::edm(level);
        let (x_in, level_in) = if raw_edm {
            let s = pc.c_in as f32;
            (x.iter().map(|v| v * s).collect(), pc.c_noise as f32)
        } else {
            (x.to_vec(), level as f32)
        };
        let null_text;
        let text = match (cond, &self.text) {
            (Condition::Text(t), _) => Some(t),
            (_, Some(enc)) => {
                null_text = TextBatch::null(b, enc.dims);
                Some(&null_text)
            }
            (_, None) => None,
        };
        let text_input = |pick: fn(&TextBatch) -> (&[f32], Vec<usize>)| {
            text.map_or_else(
                || HostValue::F32(vec![], vec![b, 0]),
                |t| {
                    let (v, dims) = pick(t);
                    HostValue::F32(v.to_vec(), dims)
                },
            )
        };
        let mut inputs = vec![];
        let mut x_in = Some(x_in);
        for s in &self.slots {
            inputs.push(match s {
                Slot::Image => HostValue::F32(
                    x_in.take().unwrap_or_default(),
                    [b].iter().chain(&self.image_dims).copied().collect(),
                ),
                Slot::Level => HostValue::F32(vec![level_in; b], vec![b]),
                Slot::Label => HostValue::I64(
                    match cond {
                        Condition::Labels(l) => l.clone(),
                        _ => vec![0; b],
                    },
                    vec![b],
                ),
                Slot::Context => {
                    text_input(|t| (&t.context, vec![t.n, t.dims.len, t.dims.context]))
                }
                Slot::Mask => text_input(|t| (&t.mask, vec![t.n, t.dims.len])),
                Slot::Pooled => text_input(|t| (&t.pooled, vec![t.n, t.dims.pooled.unwrap_or(0)])),
            });
        }
        let f = m.run(inputs)?;
        if f.len() != x.len() {
            return Err(format!(
                "the model returned {} values for {} input values",
                f.len(),
                x.len()
            ));
        }
        Ok(if raw_edm {
            let (skip, out) = (pc.c_skip as f32, pc.c_out as f32);
            x.iter().zip(&f).map(|(x, f)| x * skip + f * out).collect()
        } else {
            f
        })
    }

    /// Draws `req.n` images, row-major `[n, C, H, W]`.
    pub fn sample(&self, req: &SampleRequest) -> Result<Vec<f32>, crate::run_error::RunError> {
        let n = req.n;
        let [c, h, w] = self.shape;
        if req.sparse.is_some() || req.raw {
            return Err(bad(
                &self.path,
                if req.raw {
                    "--raw"
                } else {
                    "--sparse-guidance"
                },
                "an exported file holds one dense graph with the weights chosen at export",
                "no --sparse-guidance or --raw with an ONNX file (use `treadc sample RUN_DIR`)",
                "one of them".into(),
            )
            .into());
        }
        let (_, cond) = conditioning(self.text.as_ref(), self.classes, req)?;
        let guided = req
            .cfg
            .map(|scale| (scale, cond.with_null(self.classes.unwrap_or(0) as i64)));
        if let Some((_, None)) = guided {
            return Err(bad(
                &self.path,
                "--cfg",
                "classifier-free guidance needs a conditional model",
                "a model with a label or text input",
                "an unconditional model".into(),
            )
            .into());
        }
        let noise = initial_noise(req.seed, n * c * h * w);
        let fail = crate::run_error::RunError::Failed;
        let out = match guided {
            None => {
                let m = self.load(n)?;
                run_sampler(self.objective, req.steps, noise, |x, level| {
                    self.predict(&m, x, level, &cond)
                })
            }
            Some((scale, both)) => {
                let m = self.load(2 * n)?;
                let both = both.unwrap_or(Condition::None);
                run_sampler(self.objective, req.steps, noise, |x, level| {
                    let xx: Vec<f32> = x.iter().chain(x).copied().collect();
                    let out = self.predict(&m, &xx, level, &both)?;
                    let (c, u) = out.split_at(x.len());
                    Ok(guide(c, u, scale))
                })
            }
        };
        out.map_err(fail)
    }
}

/// Forward-pass timings of an exported file on tract.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForwardTiming {
    /// Batch size.
    pub batch: usize,
    /// Seconds to load and optimise the model for that batch.
    pub load_seconds: f64,
    /// Median milliseconds per forward pass.
    pub median_ms: f64,
    /// Fastest forward pass, ms.
    pub min_ms: f64,
}

impl Deployment {
    /// Times `iters` forward passes at `batch` on tract (after `warmup` untimed ones), with
    /// fixed random inputs at σ = 1 (t = 0.5 for flow).
    pub fn time_forward(
        &self,
        batch: usize,
        warmup: usize,
        iters: usize,
    ) -> Result<ForwardTiming, crate::run_error::RunError> {
        let t0 = std::time::Instant::now();
        let m = self.load(batch)?;
        let load_seconds = t0.elapsed().as_secs_f64();
        let [c, h, w] = self.shape;
        let x = initial_noise(3, batch * c * h * w);
        let labels = grid_labels(batch, self.classes);
        let cond = Condition::of_classes(labels.as_deref(), self.text.as_ref())
            .map_err(|e| crate::run_error::RunError::Failed(e.to_string()))?;
        let level = if self.objective == Objective::Edm {
            1.0
        } else {
            0.5
        };
        let mut times = vec![];
        for i in 0..warmup + iters {
            let t = std::time::Instant::now();
            self.predict(&m, &x, level, &cond)
                .map_err(crate::run_error::RunError::Failed)?;
            if i >= warmup {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(ForwardTiming {
            batch,
            load_seconds,
            median_ms: times[times.len() / 2],
            min_ms: times[0],
        })
    }
}

/// The text encoder of a file whose context input `name` is `[B, L, Dc]` (`pooled`: `[B, Dp]`),
/// rebuilt from the encoder and vocabulary its metadata records: the bundled one, or one built
/// from a run's captions.
fn text_encoder(
    path: &Path,
    proto: &pb::ModelProto,
    name: &str,
    context: &[usize],
    pooled: Option<Vec<usize>>,
) -> Result<TextEncoder, Diagnostic> {
    let encoder = metadata(proto, keys::TEXT_ENCODER);
    let words = metadata(proto, keys::VOCABULARY);
    let refuse = || {
        bad(
            path,
            "metadata `treadc.text_encoder`",
            "the file's text encoder is not one treadc can rebuild",
            &format!(
                "`{BUNDLED_ENCODER}` with its vocabulary, or `{CAPTION_ENCODER}` with a \
                 vocabulary (a file from `treadc export`)"
            ),
            format!(
                "text_encoder {:?}, vocabulary {:?}",
                encoder.unwrap_or("absent"),
                words.unwrap_or("absent")
            ),
        )
    };
    let vocabulary = match (encoder, words) {
        (Some(BUNDLED_ENCODER), Some(w)) if w == Tokenizer::bundled().in_id_order() => None,
        (Some(CAPTION_ENCODER), Some(w)) => Some(Tokenizer::from_id_order(w).map_err(|m| {
            bad(
                path,
                "metadata `treadc.vocabulary`",
                "the file's vocabulary cannot be read",
                "`<pad>` then distinct lower-case words, space-separated",
                m,
            )
        })?),
        _ => return Err(refuse()),
    };
    let [_, len, width] = context[..] else {
        return Err(bad(
            path,
            &format!("input `{name}`"),
            "the text context has the wrong rank",
            "[B, L, Dc]",
            format!("{context:?}"),
        ));
    };
    let dims = TextDims {
        len,
        context: width,
        pooled: pooled.and_then(|p| p.get(1).copied()),
    };
    if let Some(words) = vocabulary {
        return Ok(TextEncoder::with_tokenizer(words, dims));
    }
    TextEncoder::fitting(dims).map_err(|longest| {
        bad(
            path,
            &format!("input `{name}`"),
            "the text context is shorter than the bundled captions",
            &format!("a context of at least {longest} tokens"),
            format!("{len} tokens"),
        )
    })
}

fn input_dims(vi: &pb::ValueInfoProto) -> Vec<usize> {
    match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => t.shape.as_ref().map_or(vec![], |s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => *v as usize,
                    _ => 0,
                })
                .collect()
        }),
        _ => vec![],
    }
}
