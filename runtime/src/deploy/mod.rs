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

use crate::sampler::{guide, initial_noise, run_sampler, sample_labels, SampleRequest};
use tread_onnx::tract::{HostValue, TractModel};

/// What a graph input carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Image,
    Level,
    Label,
}

/// An exported treadc model, read and understood.
pub struct Deployment {
    path: PathBuf,
    proto: pb::ModelProto,
    /// EDM or flow.
    pub objective: Objective,
    /// Whether EDM's preconditioning is inside the graph.
    pub precond: bool,
    /// Image shape `[C, H, W]`.
    pub shape: [usize; 3],
    /// Class count (the null label is this value), for class-conditional models.
    pub classes: Option<usize>,
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
        let mut slots = vec![];
        let mut shape = None;
        for vi in &g.input {
            let n = vi.name.as_str();
            let slot = if n == X_NOISY || image.as_deref() == Some(n) {
                let dims = input_dims(vi);
                if dims.len() == 4 {
                    shape = Some([dims[1], dims[2], dims[3]]);
                }
                Slot::Image
            } else if n == SIGMA || level.as_deref() == Some(n) {
                Slot::Level
            } else if label.as_deref() == Some(n) {
                Slot::Label
            } else {
                return Err(bad(
                    path,
                    &format!("input `{n}`"),
                    "unknown graph input",
                    "the image, noise-level and label inputs named in the metadata",
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
                "an input of shape [B, C, H, W]",
                format!("{:?}", g.input.iter().map(|v| &v.name).collect::<Vec<_>>()),
            )
        })?;
        Ok(Deployment {
            path: path.to_path_buf(),
            proto,
            objective,
            precond,
            shape,
            classes,
            slots,
        })
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

    /// One prediction (denoised image or velocity) of `x` at `level`, `labels` per image.
    fn predict(
        &self,
        m: &TractModel,
        x: &[f32],
        level: f64,
        labels: Option<&[i64]>,
    ) -> Result<Vec<f32>, String> {
        let b = m.batch;
        let [c, h, w] = self.shape;
        let raw_edm = self.objective == Objective::Edm && !self.precond;
        let pc = Precond::edm(level);
        let (x_in, level_in) = if raw_edm {
            let s = pc.c_in as f32;
            (x.iter().map(|v| v * s).collect(), pc.c_noise as f32)
        } else {
            (x.to_vec(), level as f32)
        };
        let mut inputs = vec![];
        let mut x_in = Some(x_in);
        for s in &self.slots {
            inputs.push(match s {
                Slot::Image => HostValue::F32(x_in.take().unwrap_or_default(), vec![b, c, h, w]),
                Slot::Level => HostValue::F32(vec![level_in; b], vec![b]),
                Slot::Label => {
                    HostValue::I64(labels.map_or_else(|| vec![0; b], <[i64]>::to_vec), vec![b])
                }
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
    pub fn sample(&self, req: &SampleRequest) -> Result<Vec<f32>, crate::run::RunError> {
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
        let labels = sample_labels(self.classes, req.class, n)?;
        let has_label = self.slots.contains(&Slot::Label);
        if req.cfg.is_some() && (labels.is_none() || !has_label) {
            return Err(bad(
                &self.path,
                "--cfg",
                "classifier-free guidance needs a class-conditional model",
                "a model with a label input",
                "an unconditional model".into(),
            )
            .into());
        }
        let noise = initial_noise(req.seed, n * c * h * w);
        let fail = crate::run::RunError::Failed;
        let out = match req.cfg {
            None => {
                let m = self.load(n)?;
                run_sampler(self.objective, req.steps, noise, |x, level| {
                    self.predict(&m, x, level, labels.as_deref())
                })
            }
            Some(scale) => {
                let m = self.load(2 * n)?;
                let cond = labels.unwrap_or_default();
                let null = self.classes.unwrap_or(0) as i64;
                let both: Vec<i64> = cond.iter().copied().chain(vec![null; n]).collect();
                run_sampler(self.objective, req.steps, noise, |x, level| {
                    let xx: Vec<f32> = x.iter().chain(x).copied().collect();
                    let out = self.predict(&m, &xx, level, Some(&both))?;
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
    ) -> Result<ForwardTiming, crate::run::RunError> {
        let t0 = std::time::Instant::now();
        let m = self.load(batch)?;
        let load_seconds = t0.elapsed().as_secs_f64();
        let [c, h, w] = self.shape;
        let x = initial_noise(3, batch * c * h * w);
        let labels: Vec<i64> = (0..batch as i64)
            .map(|i| i % self.classes.unwrap_or(1) as i64)
            .collect();
        let level = if self.objective == Objective::Edm {
            1.0
        } else {
            0.5
        };
        let mut times = vec![];
        for i in 0..warmup + iters {
            let t = std::time::Instant::now();
            self.predict(&m, &x, level, Some(&labels))
                .map_err(crate::run::RunError::Failed)?;
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
