//! `treadc bench`: dense and routed training steps (forward, backward, AdamW, EMA), interleaved
//! in one process on the same random data, timed one step at a time; medians, their ratio, and
//! the ratio the compiler's FLOPs analysis predicts.

use std::time::Instant;

use burn::tensor::backend::Backend;
use serde::Serialize;
use tread_compiler::compile::Compiled;
use tread_compiler::passes::strip_routes;
use tread_compiler::report::Report;

use crate::data::Dataset;
use crate::init::normal;
use crate::lower::train::{Recipe, Trainer};
use crate::run::{model_io, RunError};

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

/// Benchmark figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Median dense step, ms (NaN if not timed).
    pub dense_ms: f64,
    /// Median routed step, ms (NaN if not timed).
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

/// Runs the benchmark.
pub fn bench<B: Backend>(
    compiled: &Compiled,
    batch: usize,
    steps: usize,
    warmup: usize,
    mode: BenchMode,
    device: B::Device,
) -> Result<BenchResult, RunError> {
    let (shape, classes) = model_io(compiled)?;
    let dense = strip_routes(&compiled.routed)?;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let n = batch * 2;
    let len = shape.iter().product::<usize>();
    let data = Dataset {
        images: (0..n * len).map(|_| normal(&mut rng)).collect(),
        labels: (0..n).map(|i| (i % classes.unwrap_or(1)) as i64).collect(),
        n,
        channels: shape[0],
        height: shape[1],
        width: shape[2],
        source: "random".into(),
    };
    let make = |routed: &tread_compiler::ir::Graph| -> Result<Trainer<B>, RunError> {
        let r = Recipe {
            routed: routed.clone(),
            dense: dense.clone(),
            training: compiled.model.training.clone(),
            batch,
            seed: 0,
            classes,
        };
        Trainer::new(r, device.clone()).map_err(RunError::Failed)
    };
    let mut td = if mode != BenchMode::Routed {
        Some(make(&dense)?)
    } else {
        None
    };
    let mut tr = if mode != BenchMode::Dense {
        Some(make(&compiled.routed)?)
    } else {
        None
    };
    let (mut dms, mut rms) = (vec![], vec![]);
    for i in 0..warmup + steps {
        for (t, out) in [(&mut td, &mut dms), (&mut tr, &mut rms)] {
            if let Some(t) = t.as_mut() {
                let start = Instant::now();
                t.train_step(&data).map_err(RunError::Failed)?;
                let ms = start.elapsed().as_secs_f64() * 1e3;
                if i >= warmup {
                    out.push(ms);
                }
            }
        }
    }
    let (dense_ms, routed_ms) = (median(dms), median(rms));
    let report = Report::new(compiled);
    Ok(BenchResult {
        dense_ms,
        routed_ms,
        ratio: routed_ms / dense_ms,
        predicted_ratio: report.flops_ratio,
        steps,
        batch,
        peak_rss_mib: peak_rss_mib(),
    })
}
