//! `treadc bench`: dense and routed training steps (forward, backward, AdamW, EMA), interleaved
//! in one process on the same random data, timed one step at a time; medians, their ratio, and
//! the ratio the compiler's FLOPs analysis predicts.

use std::time::Instant;

use serde::Serialize;
use tread_compiler::compile::Compiled;
use tread_compiler::passes::strip_routes;
use tread_compiler::report::Report;

use crate::data::Dataset;
use crate::init::normal;
use crate::lower::backends::{guarded, new_session, BackendKind};
use crate::lower::train::Recipe;
use crate::lower::Session;
use crate::model::{model_io, text_encoder};
use crate::run_error::RunError;

/// Which steps to time (peak memory of one kind needs a process of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// Dense and routed, interleaved.
    Both,
    /// Dense only.
    Dense,
    /// Routed only.
    Routed,
}

/// Benchmark figures. The keys are a public interface (`--json`): new ones are added, none
/// renamed.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Median dense step, ms (NaN if not timed), of the fused engine.
    pub dense_ms: f64,
    /// Median routed step, ms (NaN if not timed), of the fused engine.
    pub routed_ms: f64,
    /// routed / dense.
    pub ratio: f64,
    /// routed / dense forward FLOPs from the compiler.
    pub predicted_ratio: f64,
    /// Timed steps per kind.
    pub steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak resident memory of the process (VmHWM), MiB; `None` where /proc is missing.
    pub peak_rss_mib: Option<f64>,
    /// Cores busy while the fused engine's steps ran (process CPU time / wall time).
    pub cores_busy: Option<f64>,
    /// Micro-batches each fused step was split into (`--micro-batches`, or the engine's
    /// default); the unfused engine always runs whole steps.
    pub micro_batches: usize,
    /// The unfused engine (burn's decompositions), timed interleaved with the fused one when
    /// asked for (`--no-fuse`).
    pub unfused: Option<EngineTimes>,
}

/// One engine's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EngineTimes {
    /// Median dense step, ms.
    pub dense_ms: f64,
    /// Median routed step, ms.
    pub routed_ms: f64,
    /// Cores busy while its steps ran.
    pub cores_busy: Option<f64>,
}

/// Process CPU time (user + system), seconds.
fn cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(tv(u.ru_utime) + tv(u.ru_stime))
}

/// Step times and CPU use of one engine.
#[derive(Default)]
struct Timing {
    dense: Vec<f64>,
    routed: Vec<f64>,
    wall: f64,
    cpu: Option<f64>,
}

impl Timing {
    fn cores_busy(&self) -> Option<f64> {
        self.cpu.filter(|_| self.wall > 0.0).map(|c| c / self.wall)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident set size of this process in MiB (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the benchmark on backend `kind`.
pub fn bench(
    kind: BackendKind,
    compiled: &Compiled,
    batch: usize,
    steps: usize,
    warmup: usize,
    (mode, with_unfused): (BenchMode, bool),
    micro_batches: Option<usize>,
) -> Result<BenchResult, RunError> {
    guarded(
        kind,
        || {
            bench_in(
                kind,
                compiled,
                batch,
                steps,
                warmup,
                (mode, with_unfused, micro_batches),
            )
        },
        RunError::Failed,
    )
}

fn bench_in(
    kind: BackendKind,
    compiled: &Compiled,
    batch: usize,
    steps: usize,
    warmup: usize,
    (mode, with_unfused, micro_batches): (BenchMode, bool, Option<usize>),
) -> Result<BenchResult, RunError> {
    let (shape, classes) = model_io(compiled)?;
    let dense = strip_routes(&compiled.routed)?;
    let text = text_encoder(compiled, None)?;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let n = batch * 2;
    let len = shape.iter().product::<usize>();
    let data = std::sync::Arc::new(Dataset {
        images: (0..n * len).map(|_| normal(&mut rng)).collect(),
        labels: (0..n).map(|i| (i % classes.unwrap_or(1)) as i64).collect(),
        n,
        channels: shape[0],
        height: shape[1],
        width: shape[2],
        source: "random".into(),
        texts: None,
        captions: None,
    });
    let make =
        |routed: &tread_compiler::ir::Graph, fused: bool| -> Result<Box<dyn Session>, RunError> {
            let r = Recipe {
                routed: routed.clone(),
                dense: dense.clone(),
                training: compiled.model.training.clone(),
                batch,
                seed: 0,
                classes,
                text: text.clone(),
                fused,
                micro_batches: if fused { micro_batches } else { Some(1) },
                init: None,
            };
            new_session(kind, r).map_err(RunError::Failed)
        };
    // (engine is fused, dense trainer, routed trainer) for each engine timed.
    let mut engines = vec![];
    for fused in [true, false] {
        if !fused && !with_unfused {
            continue;
        }
        let td = (mode != BenchMode::Routed)
            .then(|| make(&dense, fused))
            .transpose()?;
        let tr = (mode != BenchMode::Dense)
            .then(|| make(&compiled.routed, fused))
            .transpose()?;
        engines.push((td, tr, Timing::default()));
    }
    for i in 0..warmup + steps {
        for (td, tr, timing) in engines.iter_mut() {
            for (t, routed) in [(td, false), (tr, true)] {
                let Some(t) = t.as_mut() else { continue };
                let cpu0 = cpu_seconds();
                let start = Instant::now();
                t.train_step(&data).map_err(RunError::Failed)?;
                let secs = start.elapsed().as_secs_f64();
                if i >= warmup {
                    let out = if routed {
                        &mut timing.routed
                    } else {
                        &mut timing.dense
                    };
                    out.push(secs * 1e3);
                    timing.wall += secs;
                    timing.cpu = match (timing.cpu.or(Some(0.0)), cpu0, cpu_seconds()) {
                        (Some(acc), Some(a), Some(b)) => Some(acc + (b - a)),
                        _ => None,
                    };
                }
            }
        }
    }
    let micro_used = engines
        .first()
        .and_then(|(td, tr, _)| td.as_ref().or(tr.as_ref()))
        .and_then(|s| s.micro_batches())
        .unwrap_or(1);
    let mut engines = engines.into_iter().map(|(_, _, t)| t);
    let fused = engines.next().unwrap_or_default();
    let unfused = engines.next().map(|t| EngineTimes {
        cores_busy: t.cores_busy(),
        dense_ms: median(t.dense),
        routed_ms: median(t.routed),
    });
    let (dense_ms, routed_ms) = (median(fused.dense.clone()), median(fused.routed.clone()));
    let report = Report::new(compiled);
    Ok(BenchResult {
        dense_ms,
        routed_ms,
        ratio: routed_ms / dense_ms,
        predicted_ratio: report.flops_ratio,
        steps,
        batch,
        peak_rss_mib: peak_rss_mib(),
        cores_busy: fused.cores_busy(),
        micro_batches: micro_used,
        unfused,
    })
}
