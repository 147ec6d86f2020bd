//! Samplers (tread.md §3–4): EDM's deterministic Heun (σ_min 0.002, σ_max 80, ρ 7) or Euler
//! for flow models, with classifier-free guidance or sparse guidance. Inference is dense unless
//! sparse guidance forces two routed passes, both *conditional*.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tread_compiler::config::Objective;
use tread_compiler::ir::Graph;

use super::objective::predict;
use super::store::ParamStore;
use super::value::OpResult;
use crate::init::normal;
use crate::routing::{NoRoutes, RandomRoutes};

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
    /// Labels, one per sample (`None` for unconditional models).
    pub labels: Option<Vec<i64>>,
    /// Number of samples when unlabelled.
    pub n: usize,
    /// Sampler steps (EDM default 40).
    pub steps: usize,
    /// Seed of the initial noise (and of sparse-guidance routes).
    pub seed: u64,
    /// The null label for CFG.
    pub null_label: i64,
}

/// EDM's noise levels: `steps` Karras σ's from 80 to 0.002, then 0.
pub fn edm_sigmas(steps: usize) -> Vec<f64> {
    let (smin, smax, rho) = (0.002f64, 80f64, 7f64);
    let mut s: Vec<f64> = (0..steps)
        .map(|i| {
            let f = if steps > 1 {
                i as f64 / (steps - 1) as f64
            } else {
                0.0
            };
            (smax.powf(1.0 / rho) + f * (smin.powf(1.0 / rho) - smax.powf(1.0 / rho))).powf(rho)
        })
        .collect();
    s.push(0.0);
    s
}

/// Draws samples with `dense` (routes stripped) and returns them row-major `[n, C, H, W]`.
pub fn sample<B: Backend>(
    objective: Objective,
    dense: &Graph,
    params: &ParamStore<B>,
    spec: &SampleSpec,
    guidance: &Guidance,
    device: &B::Device,
) -> OpResult<Vec<f32>> {
    let n = spec.labels.as_ref().map_or(spec.n, Vec::len);
    let [c, h, w] = spec.shape;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let noise: Vec<f32> = (0..n * c * h * w).map(|_| normal(&mut rng)).collect();
    let mut route_rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5eed_0f9a);
    let labels =
        |v: &[i64]| Tensor::<B, 1, Int>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
    let y = spec.labels.as_deref().map(labels);
    if matches!(guidance, Guidance::Cfg { .. }) && y.is_none() {
        return Err("classifier-free guidance needs a class-conditional model".into());
    }
    let null = spec.labels.as_ref().map(|l| vec![spec.null_label; l.len()]);
    let mut guided = |x: Tensor<B, 4>, level: f64| -> OpResult<Tensor<B, 4>> {
        let lv = vec![level; n];
        match guidance {
            Guidance::None => predict(objective, dense, params, x, &lv, y.clone(), &mut NoRoutes),
            Guidance::Cfg { scale } => {
                let both = Tensor::cat(vec![x.clone(), x], 0);
                let yy = Tensor::cat(
                    vec![
                        y.clone().ok_or("no labels")?,
                        labels(null.as_deref().unwrap_or(&[])),
                    ],
                    0,
                );
                let lv2 = vec![level; 2 * n];
                let out = predict(
                    objective,
                    dense,
                    params,
                    both,
                    &lv2,
                    Some(yy),
                    &mut NoRoutes,
                )?;
                let cond = out.clone().narrow(0, 0, n);
                let uncond = out.narrow(0, n, n);
                Ok(uncond.clone() + (cond - uncond) * *scale)
            }
            Guidance::Sparse {
                strong,
                weak,
                scale,
            } => {
                let mut r = RandomRoutes {
                    rng: &mut route_rng,
                };
                let s = predict(objective, strong, params, x.clone(), &lv, y.clone(), &mut r)?;
                let wk = predict(objective, weak, params, x, &lv, y.clone(), &mut r)?;
                Ok(wk.clone() + (s - wk) * *scale)
            }
        }
    };
    let mut x = Tensor::<B, 4>::from_data(TensorData::new(noise, [n, c, h, w]), device);
    match objective {
        Objective::Edm => {
            let sig = edm_sigmas(spec.steps);
            x = x * sig[0];
            for i in 0..spec.steps {
                let (s, s_next) = (sig[i], sig[i + 1]);
                let d = (x.clone() - guided(x.clone(), s)?) / s;
                let x_euler = x.clone() + d.clone() * (s_next - s);
                x = if s_next > 0.0 {
                    let d2 = (x_euler.clone() - guided(x_euler, s_next)?) / s_next;
                    x + (d + d2) * (0.5 * (s_next - s))
                } else {
                    x_euler
                };
            }
        }
        Objective::Flow => {
            let dt = 1.0 / spec.steps as f64;
            for i in 0..spec.steps {
                let t = 1.0 - i as f64 * dt;
                x = x.clone() - guided(x, t)? * dt;
            }
        }
    }
    x.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("cannot read samples: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edm_sigmas_run_from_80_to_0_002_then_0() {
        let s = edm_sigmas(40);
        assert_eq!(s.len(), 41);
        assert!((s[0] - 80.0).abs() < 1e-9);
        assert!((s[39] - 0.002).abs() < 1e-12);
        assert_eq!(s[40], 0.0);
        assert!(s.windows(2).all(|w| w[0] > w[1]));
    }
}
