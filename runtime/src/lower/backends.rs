//! The burn backends treadc can run on, and the one place that names them. CPU: `flex` (the
//! default: burn's recommended CPU backend) and `ndarray`;
//! GPU: `cuda` and `wgpu` (Vulkan, Metal, DX12) behind the crate features of the same names.

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
    /// burn-wgpu (any Vulkan GPU, Metal on macOS; lavapipe in CI), with the `wgpu` feature.
    Wgpu,
}

impl BackendKind {
    /// Parses `flex`, `ndarray`, `cuda` or `wgpu` (the GPU ones only in builds with them).
    pub fn parse(s: &str) -> Result<Self, Diagnostic> {
        match s {
            "flex" => Ok(BackendKind::Flex),
            "ndarray" => Ok(BackendKind::NdArray),
            "cuda" if cfg!(feature = "cuda") => Ok(BackendKind::Cuda),
            "wgpu" if cfg!(feature = "wgpu") => Ok(BackendKind::Wgpu),
            other => Err(Diagnostic::new(
                Location::Item("--backend".into()),
                "unknown or unavailable backend",
            )
            .expected(Self::available())
            .found(other.to_string())
            .in_file("<command line>")),
        }
    }

    /// The backends of this build, and how to build the missing GPU ones.
    fn available() -> String {
        let mut have = vec!["flex", "ndarray"];
        let mut missing = vec![];
        for (name, built) in [
            ("cuda", cfg!(feature = "cuda")),
            ("wgpu", cfg!(feature = "wgpu")),
        ] {
            if built {
                have.push(name);
            } else {
                missing.push(name);
            }
        }
        let mut s = have.join(", ");
        for m in missing {
            s.push_str(&format!("; {m} needs a build with --features {m}"));
        }
        s
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
            BackendKind::Wgpu => crate::wgpu_adapters::require_adapter().map(|_| ()),
        }
    }
}

/// Runs a burn GPU call (cubecl: cuda or wgpu), turning a panic into `fail(message)` instead of
/// a backtrace. Why: cubecl panics on its device thread when the driver, NVRTC or the adapter
/// misbehaves at start-up (the probe of [`BackendKind::check_ready`] catches the missing ones
/// first); the caller's thread then panics on a closed channel. The first message, usually the
/// device thread's, is the one reported.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn guard_gpu<T, E>(
    name: &str,
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
            "the {name} backend failed: {what}; `treadc devices` shows what the drivers and \
             adapters report; --backend flex runs on the CPU"
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
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => $f::<burn::backend::Wgpu>($($arg,)* Default::default()),
            #[cfg(not(feature = "wgpu"))]
            BackendKind::Wgpu => unreachable!("parse refuses wgpu without the feature"),
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
        BackendKind::Wgpu if n > 1 => Err(format!(
            "--devices {n}: data-parallel training on wgpu is not supported (one adapter per \
             process); use --devices 1, or cuda"
        )),
        BackendKind::Wgpu => Ok(vec![first]),
    }
}

/// Runs `f`, which drives sessions of backend `kind`. On a GPU backend a panic of cubecl (see
/// `guard_gpu`) becomes `fail(message)` instead of a backtrace; the CPU backends run `f` as is.
pub fn guarded<T, E>(
    kind: BackendKind,
    f: impl FnOnce() -> Result<T, E>,
    fail: impl FnOnce(String) -> E,
) -> Result<T, E> {
    match kind {
        BackendKind::Flex | BackendKind::NdArray => f(),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => guard_gpu("cuda", f, fail),
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => Err(fail(
            "this build has no cuda backend (cargo build --release --features cuda)".into(),
        )),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => guard_gpu("wgpu", f, fail),
        #[cfg(not(feature = "wgpu"))]
        BackendKind::Wgpu => Err(fail(
            "this build has no wgpu backend (cargo build --release --features wgpu)".into(),
        )),
    }
}
