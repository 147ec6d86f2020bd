//! The burn backends treadc can run on, and the one place that names them. CPU: `flex` (the
//! default: burn's recommended CPU backend, measured faster than `ndarray` here) and `ndarray`;
//! GPU: `cuda` behind the crate feature of the same name.

use tread_compiler::diag::{Diagnostic, Location};

use super::fused::Engine;
use super::group::{Agreed, GroupStart, PeerGroup};
use super::session::Session;
use super::train::{Recipe, Trainer};
use crate::checkpoint::Checkpoint;
use crate::parallel::Parallel;

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

/// Runs a burn-cuda call, turning a panic into `fail(message)` instead of
/// a backtrace. Why: burn-cuda (cubecl, cudarc) panics on its device thread when the driver or
/// NVRTC misbehaves at start-up (the probe of [`BackendKind::check_ready`] catches the missing
/// ones first); the caller's thread then panics on a closed channel. The first message, usually
/// the device thread's, is the one reported.
#[cfg(feature = "cuda")]
fn guard_cuda<T, E>(
    f: impl FnOnce() -> Result<T, E>,
    fail: impl FnOnce(String) -> E,
) -> Result<T, E> {
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
        Err(fail(format!(
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
            BackendKind::Cuda => $f::<burn::backend::Cuda>($($arg,)* Default::default()),
            #[cfg(not(feature = "cuda"))]
            BackendKind::Cuda => unreachable!("parse refuses cuda without the feature"),
        }
    };
}

/// A fresh run (parameters from the recipe's seed) on backend `kind`.
pub fn new_session(kind: BackendKind, recipe: Recipe) -> Result<Box<dyn Session>, String> {
    fn go<B: Engine>(recipe: Recipe, device: B::Device) -> Result<Box<dyn Session>, String> {
        Ok(Box::new(Trainer::<B>::new(recipe, device)?))
    }
    dispatch!(kind, go, recipe)
}

/// A run restored from checkpoint tensors at `step` on backend `kind`; the error names the
/// first missing or mismatched tensor.
pub fn restore_session(
    kind: BackendKind,
    recipe: Recipe,
    ckpt: &Checkpoint,
    step: u64,
) -> Result<Box<dyn Session>, String> {
    fn go<B: Engine>(
        recipe: Recipe,
        ckpt: &Checkpoint,
        step: u64,
        device: B::Device,
    ) -> Result<Box<dyn Session>, String> {
        Ok(Box::new(Trainer::<B>::from_checkpoint(
            recipe, device, ckpt, step,
        )?))
    }
    dispatch!(kind, go, recipe, ckpt, step)
}

/// The data-parallel peers of `plan` in this process as one session on backend `kind`:
/// local peer `i` runs on GPU `i` with cuda, on the CPU (its share of the cores) otherwise.
/// Returns once all have joined; on a cluster, with the step and target agreed with node 0.
pub fn new_group(
    kind: BackendKind,
    recipe: Recipe,
    plan: &Parallel,
    start: GroupStart,
) -> Result<(Box<dyn Session>, Agreed), String> {
    fn go<B: Engine>(
        kind: BackendKind,
        recipe: Recipe,
        plan: &Parallel,
        start: GroupStart,
        first: B::Device,
    ) -> Result<(Box<dyn Session>, Agreed), String> {
        let devices = peer_devices::<B>(kind, plan.devices, first)?;
        let (g, agreed) = PeerGroup::start::<B>(recipe, plan, start, devices)?;
        Ok((Box::new(g), agreed))
    }
    dispatch!(kind, go, kind, recipe, plan, start)
}

/// One device per local peer: GPUs 0..n on cuda (an error naming the count when there are
/// fewer), the one CPU device otherwise.
fn peer_devices<B: Engine>(
    kind: BackendKind,
    n: usize,
    first: B::Device,
) -> Result<Vec<B::Device>, String> {
    use burn::tensor::backend::{Device as _, DeviceId};
    match kind {
        BackendKind::Flex | BackendKind::NdArray => Ok(vec![first; n]),
        BackendKind::Cuda => {
            let base = first.to_id();
            let have = B::device_count(base.type_id);
            if n > have {
                return Err(format!(
                    "--devices {n} asks for {n} GPUs; burn-cuda sees {have}"
                ));
            }
            Ok((0..n)
                .map(|i| {
                    B::Device::from_id(DeviceId {
                        type_id: base.type_id,
                        index_id: i as u16,
                    })
                })
                .collect())
        }
    }
}

/// Runs `f`, which drives sessions of backend `kind`. On cuda a panic of burn-cuda (see
/// `guard_cuda`) becomes `fail(message)` instead of a backtrace; the CPU backends run `f` as is.
pub fn guarded<T, E>(
    kind: BackendKind,
    f: impl FnOnce() -> Result<T, E>,
    fail: impl FnOnce(String) -> E,
) -> Result<T, E> {
    match kind {
        BackendKind::Flex | BackendKind::NdArray => f(),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => guard_cuda(f, fail),
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => Err(fail(
            "this build has no cuda backend (cargo build --release --features cuda)".into(),
        )),
    }
}
