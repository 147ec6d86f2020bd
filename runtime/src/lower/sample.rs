//! Sampling on burn (tread.md §3–4): the denoiser with classifier-free or sparse guidance, driven
//! by the host loops in [`crate::sampler`] (EDM Heun or flow Euler). Inference is dense unless
//! sparse guidance forces two routed passes, both *conditional*.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tread_compiler::config::Objective;
use tread_compiler::ir::Graph;

use super::forward::Conditioning;
use super::fused::FusedOps;
use super::objective::predict;
use super::store::ParamStore;
use super::value::OpResult;
use crate::condition::Condition;
use crate::routing::{NoRoutes, RandomRoutes};
use crate::sampler::{guide, initial_noise, run_sampler};

/// How to guide.
#[derive(Debug, Clone)]
pub enum Guidance {
    /// Plain conditional (or unconditional) sampling.
    None,
    /// Classifier-free guidance `uncond + s·(cond − uncond)`, both dense.
    Cfg { scale: f64 },
    /// Sparse guidance `weak + s·(strong − weak)`: two conditional passes of the routed graph at
    /// a low routing rate (`strong`) and a high one (`weak`).
    Sparse {
        strong: Box<Graph>,
        weak: Box<Graph>,
        scale: f64,
    },
}

/// What to draw.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    /// Image shape `[C, H, W]`.
    pub shape: [usize; 3],
    /// The samples' labels or prompts (their count is the sample count), or none.
    pub cond: Condition,
    /// Number of samples when unconditional.
    pub n: usize,
    /// Sampler steps (EDM default 40).
    pub steps: usize,
    /// Seed of the initial noise (and of sparse-guidance routes).
    pub seed: u64,
    /// The null label for CFG.
    pub null_label: i64,
}

/// Samples per dense denoiser call: bounds one call's activations, which for hundreds of samples
/// outgrow the caches and make each sample slower.
const SAMPLE_CHUNK: usize = 100;

/// Draws samples with `dense` (routes stripped) and returns them row-major `[n, C, H, W]`.
pub fn sample<B: FusedOps>(
    objective: Objective,
    dense: &Graph,
    params: &ParamStore<B>,
    spec: &SampleSpec,
    guidance: &Guidance,
    device: &B::Device,
) -> OpResult<Vec<f32>> {
    let n = spec.cond.count().unwrap_or(spec.n);
    let [c, h, w] = spec.shape;
    let noise = initial_noise(spec.seed, n * c * h * w);
    let mut route_rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5eed_0f9a);
    if matches!(guidance, Guidance::Cfg { .. }) && spec.cond == Condition::None {
        return Err("classifier-free guidance needs a conditional model".into());
    }
    let len = c * h * w;
    // One dense denoiser call on samples `from..from + m`.
    let dense_chunk = |xs: &[f32], level: f64, from: usize, m: usize| -> OpResult<Vec<f32>> {
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(xs[from * len..(from + m) * len].to_vec(), [m, c, h, w]),
            device,
        );
        let part = spec.cond.slice(from, m);
        match guidance {
            Guidance::Cfg { scale } => {
                let both = Tensor::cat(vec![x.clone(), x], 0);
                let cond = part.with_null(spec.null_label).ok_or("no conditioning")?;
                let out = predict(
                    objective,
                    dense,
                    params,
                    both,
                    &vec![level; 2 * m],
                    &Conditioning::from_host(&cond, device),
                    &mut NoRoutes,
                )?;
                let cond = host(out.clone().narrow(0, 0, m))?;
                let uncond = host(out.narrow(0, m, m))?;
                Ok(guide(&cond, &uncond, *scale))
            }
            _ => host(predict(
                objective,
                dense,
                params,
                x,
                &vec![level; m],
                &Conditioning::from_host(&part, device),
                &mut NoRoutes,
            )?),
        }
    };
    let whole = Conditioning::<B>::from_host(&spec.cond, device);
    let guided = |xs: &[f32], level: f64| -> OpResult<Vec<f32>> {
        match guidance {
            // Dense passes run in chunks of SAMPLE_CHUNK samples: each sample is denoised on
            // its own, and big batches cost more per sample (allocation, cache).
            Guidance::None | Guidance::Cfg { .. } => {
                let mut out = Vec::with_capacity(n * len);
                for from in (0..n).step_by(SAMPLE_CHUNK) {
                    out.extend(dense_chunk(xs, level, from, SAMPLE_CHUNK.min(n - from))?);
                }
                Ok(out)
            }
            Guidance::Sparse {
                strong,
                weak,
                scale,
            } => {
                let x =
                    Tensor::<B, 4>::from_data(TensorData::new(xs.to_vec(), [n, c, h, w]), device);
                let lv = vec![level; n];
                let mut r = RandomRoutes {
                    rng: &mut route_rng,
                };
                let s = predict(objective, strong, params, x.clone(), &lv, &whole, &mut r)?;
                let wk = predict(objective, weak, params, x, &lv, &whole, &mut r)?;
                Ok(guide(&host(s)?, &host(wk)?, *scale))
            }
        }
    };
    run_sampler(objective, spec.steps, noise, guided)
}

fn host<B: Backend>(t: Tensor<B, 4>) -> OpResult<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("cannot read samples: {e:?}"))
}
