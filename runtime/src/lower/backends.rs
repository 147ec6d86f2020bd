//! The burn backends treadc can run on, and the one place that names them. CPU: `flex` (the
//! default: burn's recommended CPU backend, measured faster than `ndarray` here) and `ndarray`;
//! GPU: `cuda` behind the crate feature of the same name.

use std::path::Path;

use tread_compiler::diag::{Diagnostic, Location};

use crate::bench::{bench, BenchMode, BenchResult};
use crate::run::{load_run, train, RunError, RunSettings};

/// A backend choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// burn-flex (CPU).
    Flex,
    /// burn-ndarray (CPU).
    NdArray,
    /// burn-cuda (NVIDIA GPU), with the `cuda` feature.
    Cuda,
}

impl BackendKind {
    /// Parses `flex`, `ndarray` or `cuda`.
    pub fn parse(s: &str) -> Result<Self, Diagnostic> {
        match s {
            "flex" => Ok(BackendKind::Flex),
            "ndarray" => Ok(BackendKind::NdArray),
            "cuda" if cfg!(feature = "cuda") => Ok(BackendKind::Cuda),
            other => Err(Diagnostic::new(
                Location::Item("--backend".into()),
                "unknown or unavailable backend",
            )
            .expected(if cfg!(feature = "cuda") {
                "flex, ndarray or cuda"
            } else {
                "flex or ndarray (cuda needs a build with --features cuda)"
            })
            .found(other.to_string())
            .in_file("<command line>")),
        }
    }
}

impl BackendKind {
    /// `Ok` when the backend can start on this machine. cuda is probed (driver, NVRTC, a GPU)
    /// before any burn-cuda call, because burn-cuda panics on a device thread without them;
    /// the CPU backends always can.
    pub fn check_ready(self) -> Result<(), String> {
        match self {
            BackendKind::Flex | BackendKind::NdArray => Ok(()),
            BackendKind::Cuda => crate::devices::require_cuda().map(|_| ()),
        }
    }
}

/// Runs a burn-cuda call, turning a panic into [`RunError::Failed`] with its message instead of
/// a backtrace. Why: burn-cuda (cubecl, cudarc) panics on its device thread when the driver or
/// NVRTC misbehaves at start-up (the probe of [`BackendKind::check_ready`] catches the missing
/// ones first); the caller's thread then panics on a closed channel. The first message, usually
/// the device thread's, is the one reported.
#[cfg(feature = "cuda")]
fn guard_cuda<T>(f: impl FnOnce() -> Result<T, RunError>) -> Result<T, RunError> {
    use std::sync::{Arc, Mutex};
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let sink = first.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut m) = sink.lock() {
            m.get_or_insert_with(|| info.to_string());
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    result.unwrap_or_else(|_| {
        let what = first
            .lock()
            .ok()
            .and_then(|m| m.clone())
            .unwrap_or_else(|| "a panic without a message".into());
        Err(RunError::Failed(format!(
            "the cuda backend failed: {what}; `treadc devices` shows what the driver and NVRTC \
             report; --backend flex runs on the CPU"
        )))
    })
}

macro_rules! dispatch {
    ($kind:expr, $f:ident, $($arg:expr),*) => {
        match $kind {
            BackendKind::Flex => $f::<burn::backend::Flex>($($arg,)* Default::default()),
            BackendKind::NdArray => $f::<burn::backend::NdArray>($($arg,)* Default::default()),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => guard_cuda(|| $f::<burn::backend::Cuda>($($arg,)* Default::default())),
            #[cfg(not(feature = "cuda"))]
            BackendKind::Cuda => unreachable!("parse refuses cuda without the feature"),
        }
    };
}

/// Trains on the chosen backend.
pub fn train_on(
    kind: BackendKind,
    settings: RunSettings,
    model_text: String,
    out_dir: &Path,
    resume: bool,
    bundled_mnist: &Path,
    progress: bool,
) -> Result<(), RunError> {
    fn go<B: super::fused::Engine>(
        settings: RunSettings,
        text: String,
        out: &Path,
        resume: bool,
        mnist: &Path,
        progress: bool,
        device: B::Device,
    ) -> Result<(), RunError> {
        train::<B>(settings, text, out, resume, mnist, device, progress).map(|_| ())
    }
    dispatch!(
        kind,
        go,
        settings,
        model_text,
        out_dir,
        resume,
        bundled_mnist,
        progress
    )
}

/// What `sample_on` draws.
pub struct SampleRequest {
    /// Number of samples.
    pub n: usize,
    /// Sampler steps.
    pub steps: usize,
    /// Seed.
    pub seed: u64,
    /// CFG scale.
    pub cfg: Option<f64>,
    /// Sparse guidance (strong rate, weak rate, scale).
    pub sparse: Option<(f64, f64, f64)>,
    /// Use the raw weights instead of the EMA.
    pub raw: bool,
    /// Fixed class for every sample (default: 0, 1, 2, ... cycling).
    pub class: Option<i64>,
}

/// What `sample_on` drew, and from what.
#[derive(Debug, Clone)]
pub struct Samples {
    /// `n × C × H × W` values in the training data's range.
    pub images: Vec<f32>,
    /// Number of samples.
    pub n: usize,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// The class each sample was drawn for (`None`: an unconditional model).
    pub labels: Option<Vec<i64>>,
    /// The model's class count (`None`: unconditional).
    pub classes: Option<usize>,
    /// The checkpoint's training step.
    pub step: u64,
}

/// Samples from a checkpoint.
pub fn sample_on(kind: BackendKind, ckpt: &Path, req: &SampleRequest) -> Result<Samples, RunError> {
    fn go<B: super::fused::Engine>(
        ckpt: &Path,
        req: &SampleRequest,
        device: B::Device,
    ) -> Result<Samples, RunError> {
        use crate::lower::sample::{Guidance, SampleSpec};
        let (t, compiled, settings) = load_run::<B>(ckpt, device)?;
        let (shape, classes) = crate::run::model_io(&compiled)?;
        let labels = crate::run::sample_labels(classes, req.class, req.n)?;
        let guidance = match (req.cfg, req.sparse) {
            (Some(s), None) => Guidance::Cfg { scale: s },
            (None, Some((strong, weak, s))) => {
                let g = |rate: f64| -> Result<tread_compiler::ir::Graph, RunError> {
                    if compiled.routes.is_empty() {
                        return Err(RunError::Input(
                            Diagnostic::new(
                                Location::Item("--sparse-guidance".into()),
                                "the model was trained without routes",
                            )
                            .expected("a routed run")
                            .found("no routes")
                            .in_file("<command line>"),
                        ));
                    }
                    let routes: Vec<_> = compiled
                        .routes
                        .iter()
                        .map(|r| tread_compiler::route_spec::Route { rate, ..*r })
                        .collect();
                    Ok(tread_compiler::passes::apply_routes(
                        &compiled.model.graph,
                        &routes,
                    )?)
                };
                Guidance::Sparse {
                    strong: Box::new(g(strong)?),
                    weak: Box::new(g(weak)?),
                    scale: s,
                }
            }
            _ => Guidance::None,
        };
        let spec = SampleSpec {
            shape,
            labels: labels.clone(),
            n: req.n,
            steps: req.steps,
            seed: req.seed,
            null_label: classes.unwrap_or(0) as i64,
        };
        let _ = settings;
        let images = t
            .sample(&spec, &guidance, !req.raw)
            .map_err(RunError::Failed)?;
        Ok(Samples {
            images,
            n: req.n,
            shape,
            labels,
            classes,
            step: t.step,
        })
    }
    dispatch!(kind, go, ckpt, req)
}

/// Benchmarks on the chosen backend.
pub fn bench_on(
    kind: BackendKind,
    compiled: &tread_compiler::compile::Compiled,
    batch: usize,
    steps: usize,
    warmup: usize,
    mode: BenchMode,
    with_unfused: bool,
) -> Result<BenchResult, RunError> {
    let modes = (mode, with_unfused);
    dispatch!(kind, bench, compiled, batch, steps, warmup, modes)
}
