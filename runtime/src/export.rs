//! `treadc export`: from a run folder, a checkpoint or a bare model.json (fresh init) to an ONNX
//! file of the dense inference graph, plus `--check` (tract against the burn forward on random
//! inputs). The weights travel as host buffers; the ONNX writer is the compiler's and needs no
//! burn. Only [`check_against_burn`] touches burn, through the lowering module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tread_compiler::compile::Compiled;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::ir::{Graph, InputRole, Op};
use tread_compiler::params::param_specs;
use tread_compiler::passes::strip_routes;
use tread_onnx::export::file::{read_model, write_model, ExternalData, Written};
use tread_onnx::export::{export, ExportOptions, Weights};
use tread_onnx::{keys, pb};

use crate::init::{init_values, normal};
use crate::model::compile_model;
use crate::run_error::RunError;
use crate::run_folder::{SavedRun, ONNX_FILE};
use crate::text::Tokenizer;
use tread_onnx::tract::{HostValue, TractModel};

/// Which weights of a checkpoint to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhichWeights {
    /// The EMA weights (what samples are drawn with; the default).
    Ema,
    /// The raw optimiser weights.
    Raw,
}

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// A run folder, a checkpoint file, or a model.json (fresh weights from `seed`).
    pub source: PathBuf,
    /// The `.onnx` to write.
    pub output: PathBuf,
    /// ONNX opset.
    pub opset: i64,
    /// EDM preconditioning inside the graph.
    pub precond: bool,
    /// EMA or raw weights (checkpoints only).
    pub weights: WhichWeights,
    /// Weights inline or in a `.onnx.data` file.
    pub external: ExternalData,
    /// Seed of fresh weights for a bare model.json.
    pub seed: u64,
    /// Weights for a bare model.json instead of fresh ones (see [`crate::weights`]).
    pub init_from: Option<PathBuf>,
}

/// The dense graph and its weights, ready to export or check.
pub struct ExportSource {
    /// The dense inference graph.
    pub dense: Graph,
    /// The compiled model (routes, training recipe).
    pub compiled: Compiled,
    /// The tensors by name, in `param_specs(dense)` order as well.
    pub weights: Weights,
    /// Metadata describing where the weights came from.
    pub metadata: Vec<(String, String)>,
    /// The vocabulary of a run trained on captions (`None`: the bundled one).
    pub vocabulary: Option<Tokenizer>,
}

/// What an export wrote and how long it took.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    /// File sizes.
    pub written: Written,
    /// Seconds to build the graph and encode and write it (loading the source excluded).
    pub export_seconds: f64,
    /// The model as written (initialisers included unless external).
    pub model: pb::ModelProto,
}

fn bad(file: &Path, at: &str, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(Location::Item(at.into()), msg).in_file(file.display().to_string())
}

/// Where `treadc export SOURCE` writes without `-o`: `model.onnx` in a run folder, beside a
/// checkpoint file, or `<stem>.onnx` in the working directory for a model.json.
pub fn default_output(source: &Path) -> PathBuf {
    if source.is_dir() {
        source.join(ONNX_FILE)
    } else if source.extension().is_some_and(|e| e == "json") {
        let stem = source.file_stem().unwrap_or_default();
        PathBuf::from(format!("{}.onnx", stem.to_string_lossy()))
    } else {
        source.with_file_name(ONNX_FILE)
    }
}

/// Loads the graph and the weights to export from a run folder, checkpoint or model.json.
pub fn load_source(req: &ExportRequest) -> Result<ExportSource, Diagnostic> {
    let src = &req.source;
    let is_model = src.extension().is_some_and(|e| e == "json");
    if is_model {
        let text = std::fs::read_to_string(src).map_err(|e| {
            bad(src, "file", "cannot read the model file")
                .expected("a readable model.json")
                .found(e.to_string())
        })?;
        let compiled = compile_model(&text, &src.display().to_string(), &[])?;
        let dense = strip_routes(&compiled.routed)?;
        let specs = param_specs(&dense);
        let (values, source) = match &req.init_from {
            Some(file) => {
                let w = crate::weights::load(file, &dense)?;
                for n in &w.notes {
                    eprintln!("weights: {n}");
                }
                (w.values, format!("{}", file.display()))
            }
            None => (
                init_values(&specs, compiled.model.training.init, req.seed),
                format!("init seed {}", req.seed),
            ),
        };
        let tensors = specs.iter().map(|s| s.name.clone()).zip(values).collect();
        return Ok(ExportSource {
            dense,
            compiled,
            weights: Weights {
                source: source.clone(),
                tensors,
            },
            metadata: vec![
                (keys::WEIGHTS.into(), source),
                (keys::MODEL_FILE.into(), src.display().to_string()),
            ],
            vocabulary: None,
        });
    }
    if let Some(file) = &req.init_from {
        return Err(bad(
            src,
            "--init-from",
            "a run or checkpoint brings its own weights",
        )
        .expected("--init-from with a model.json source")
        .found(format!(
            "{} beside the run {}",
            file.display(),
            src.display()
        )));
    }
    let saved = SavedRun::open(src)?;
    let (ck, ckpt, settings) = (&saved.checkpoint, &saved.path, &saved.settings);
    let compiled = saved.compile()?;
    let dense = strip_routes(&compiled.routed)?;
    let prefix = match req.weights {
        WhichWeights::Ema => "ema",
        WhichWeights::Raw => "model",
    };
    let mut tensors = HashMap::new();
    for s in param_specs(&dense) {
        let key = format!("{prefix}/{}", s.name);
        let t = ck.tensors.get(&key).ok_or_else(|| {
            bad(
                ckpt,
                &format!("tensor `{key}`"),
                "the checkpoint does not match its model",
            )
            .expected(format!("a tensor of shape {:?}", s.shape))
            .found("no such tensor")
        })?;
        if t.shape != s.shape {
            return Err(bad(
                ckpt,
                &format!("tensor `{key}`"),
                "the checkpoint does not match its model",
            )
            .expected(format!("shape {:?}", s.shape))
            .found(format!("shape {:?}", t.shape)));
        }
        tensors.insert(s.name.clone(), t.data.clone());
    }
    let step = saved.step.to_string();
    Ok(ExportSource {
        dense,
        compiled,
        weights: Weights {
            source: ckpt.display().to_string(),
            tensors,
        },
        metadata: vec![
            (keys::WEIGHTS.into(), format!("{prefix} at step {step}")),
            (keys::CHECKPOINT.into(), ckpt.display().to_string()),
            (keys::MODEL_FILE.into(), settings.model_file.clone()),
        ],
        vocabulary: saved.vocabulary.clone(),
    })
}

/// Builds, encodes and writes the ONNX file.
pub fn export_source(src: &ExportSource, req: &ExportRequest) -> Result<ExportOutcome, Diagnostic> {
    let t0 = Instant::now();
    let mut metadata = src.metadata.clone();
    // A context too short for the bundled captions exports without them: the file cannot be
    // prompted by `treadc run`, but it is still the model.
    if let Ok(Some(enc)) = crate::model::text_encoder(&src.compiled, src.vocabulary.clone()) {
        metadata.push((keys::TEXT_ENCODER.into(), enc.name().into()));
        metadata.push((keys::VOCABULARY.into(), enc.tokenizer.in_id_order()));
    }
    let opts = ExportOptions {
        opset: req.opset,
        precond: req.precond,
        metadata,
    };
    let mut model = export(
        &src.dense,
        src.compiled.model.training.objective,
        &src.weights,
        &opts,
    )?;
    let written = write_model(&mut model, &req.output, req.external)?;
    Ok(ExportOutcome {
        written,
        export_seconds: t0.elapsed().as_secs_f64(),
        model,
    })
}

/// How closely the exported file matched the burn forward.
#[derive(Debug, Clone, Copy)]
pub struct CheckReport {
    /// Batch size of the random inputs.
    pub batch: usize,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Largest difference relative to the burn value, over values with |value| > 1.
    pub max_rel: f64,
    /// Largest |value| of the burn output (for scale).
    pub max_value: f64,
}

impl CheckReport {
    /// The acceptance rule: max abs ≤ 1e-4, or relative ≤ 1e-5 where values are large.
    pub fn passes(&self) -> bool {
        self.max_abs <= 1e-4 || (self.max_value > 10.0 && self.max_rel <= 1e-5)
    }
}

/// Random host values for every graph input of the dense graph `g`, by role: normal images
/// (or clips), noise levels (σ for a preconditioned file, the network's noise input otherwise),
/// labels (the null label included), text embeddings, pooled vectors and guidance scales; a text
/// mask that pads the last two tokens of the second sample; token ids within the vocabulary.
fn check_inputs(g: &Graph, batch: usize, precond: bool) -> Vec<(String, InputRole, HostValue)> {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let classes = g.node_ids().into_iter().find_map(|id| match g.node(id).op {
        Op::ClassEmbed { classes, .. } => Some(classes as i64),
        _ => None,
    });
    let vocab = g.node_ids().into_iter().find_map(|id| match g.node(id).op {
        Op::Embed { vocab, .. } => Some(vocab as i64),
        _ => None,
    });
    let mut out = vec![];
    for (name, id) in &g.inputs {
        let Op::Input { role } = g.node(*id).op else {
            continue;
        };
        let shape: Vec<usize> = g
            .ty(*id)
            .shape
            .iter()
            .map(|d| d.known().map_or(batch, |k| k as usize))
            .collect();
        let n: usize = shape.iter().product();
        let v = match role {
            InputRole::NoiseLevel if precond => HostValue::F32(
                (0..n)
                    .map(|_| (normal(&mut rng) * 1.2 - 1.2).exp())
                    .collect(),
                shape,
            ),
            InputRole::Label => HostValue::I64(
                (0..n)
                    .map(|_| rng.random_range(0..=classes.unwrap_or(0)))
                    .collect(),
                shape,
            ),
            InputRole::TokenIds => HostValue::I64(
                (0..n)
                    .map(|_| rng.random_range(0..vocab.unwrap_or(1)))
                    .collect(),
                shape,
            ),
            InputRole::ContextMask => {
                let l = shape[1];
                let pad = |i: usize| i / l == 1 && i % l + 2 >= l && l > 2;
                HostValue::F32(
                    (0..n).map(|i| if pad(i) { 0.0 } else { 1.0 }).collect(),
                    shape,
                )
            }
            InputRole::Image
            | InputRole::NoiseLevel
            | InputRole::Context
            | InputRole::Pooled
            | InputRole::Guidance => {
                HostValue::F32((0..n).map(|_| normal(&mut rng)).collect(), shape)
            }
        };
        out.push((name.clone(), role, v));
    }
    out
}

/// Inputs (by graph-input name, in the file's order) and the burn output for them: what any
/// ONNX runtime must reproduce.
pub struct ReferenceCase {
    /// Graph inputs in order.
    pub inputs: Vec<(String, HostValue)>,
    /// The burn output, row-major.
    pub expected: Vec<f32>,
}

/// Random inputs for `proto`'s graph inputs and the burn reference output on them.
pub fn reference_case(
    proto: &pb::ModelProto,
    src: &ExportSource,
    precond: bool,
    batch: usize,
) -> Result<ReferenceCase, RunError> {
    let by_role = check_inputs(&src.dense, batch, precond);
    let g = proto.graph.as_ref().map_or(&[][..], |g| &g.input[..]);
    let mut inputs = vec![];
    for vi in g {
        let n = vi.name.as_str();
        // A preconditioned file names its image and noise inputs itself; the others keep the
        // graph's names.
        let role = if n == tread_onnx::export::precond::SIGMA {
            Some(InputRole::NoiseLevel)
        } else if n == tread_onnx::export::precond::X_NOISY {
            Some(InputRole::Image)
        } else {
            by_role
                .iter()
                .find(|(name, ..)| name == n)
                .map(|(_, r, _)| *r)
        };
        let v = role
            .and_then(|r| by_role.iter().find(|(_, role, _)| *role == r))
            .map(|(.., v)| v.clone())
            .ok_or_else(|| {
                RunError::Failed(format!("the file has an input `{n}` the model does not"))
            })?;
        inputs.push((n.to_string(), v));
    }
    let specs = param_specs(&src.dense);
    let host: Vec<Vec<f32>> = specs
        .iter()
        .map(|s| src.weights.tensors[&s.name].clone())
        .collect();
    let roles: Vec<(InputRole, HostValue)> = by_role.into_iter().map(|(_, r, v)| (r, v)).collect();
    let expected = crate::lower::reference::dense_output(
        &src.dense,
        src.compiled.model.training.objective,
        &host,
        &roles,
        precond,
    )
    .map_err(RunError::Failed)?;
    Ok(ReferenceCase { inputs, expected })
}

/// Compares a runtime's output with the reference.
pub fn compare(batch: usize, got: &[f32], want: &[f32]) -> Result<CheckReport, RunError> {
    if got.len() != want.len() {
        return Err(RunError::Failed(format!(
            "the runtime returned {} values, burn {}",
            got.len(),
            want.len()
        )));
    }
    let mut r = CheckReport {
        batch,
        max_abs: 0.0,
        max_rel: 0.0,
        max_value: 0.0,
    };
    for (a, b) in got.iter().zip(want) {
        let (a, b) = (*a as f64, *b as f64);
        let d = (a - b).abs();
        r.max_abs = r.max_abs.max(if d.is_finite() { d } else { f64::INFINITY });
        r.max_value = r.max_value.max(b.abs());
        if b.abs() > 1.0 {
            r.max_rel = r.max_rel.max(d / b.abs());
        }
    }
    Ok(r)
}

/// Runs the written file on tract and the dense graph on burn (CPU) with the same random inputs
/// and weights, and compares.
pub fn check_against_burn(
    path: &Path,
    src: &ExportSource,
    precond: bool,
    batch: usize,
) -> Result<CheckReport, RunError> {
    let proto = read_model(path)?;
    let case = reference_case(&proto, src, precond, batch)?;
    let tract = TractModel::load(path, &proto, batch)
        .map_err(|e| RunError::Failed(format!("tract cannot load {}: {e}", path.display())))?;
    let got = tract
        .run(case.inputs.into_iter().map(|(_, v)| v).collect())
        .map_err(RunError::Failed)?;
    compare(batch, &got, &case.expected)
}
