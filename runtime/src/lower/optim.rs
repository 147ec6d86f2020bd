//! AdamW and EMA on flat parameter tensors (PyTorch's AdamW semantics: decoupled weight decay,
//! bias-corrected moments, eps added after the square root).
//!
//! Why not burn's optimiser: its state lives in burn records, which do not go into our
//! safetensors checkpoints; owning the update (a few lines) makes save → resume exact and the
//! optimiser state an ordinary set of named tensors.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::kernels::adamw::AdamWEma;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to √v̂.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Optimiser state: first and second moments per parameter.
#[derive(Debug, Clone)]
pub struct AdamState<B: Backend> {
    /// First moments.
    pub m: Vec<Tensor<B, 1>>,
    /// Second moments.
    pub v: Vec<Tensor<B, 1>>,
}

impl<B: Backend> AdamState<B> {
    /// Zero moments shaped like `params`.
    pub fn zeros(params: &[Tensor<B, 1>]) -> Self {
        let z = || params.iter().map(Tensor::zeros_like).collect();
        AdamState { m: z(), v: z() }
    }
}

impl AdamW {
    /// The scalars of the update at 1-based step `t` with EMA decay `ema_decay`, for
    /// [`super::fused::FusedOps::fused_adamw_ema`].
    pub fn with_step(&self, t: u64, ema_decay: f64) -> AdamWEma {
        AdamWEma {
            lr: self.lr as f32,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            eps: self.eps as f32,
            weight_decay: self.weight_decay as f32,
            bias_correction1: (1.0 - self.beta1.powi(t as i32)) as f32,
            bias_correction2: (1.0 - self.beta2.powi(t as i32)) as f32,
            ema_decay: ema_decay as f32,
        }
    }
}

/// The learning-rate multiplier at `step` (0-based) of a linear warm-up over `warmup` steps.
pub fn lr_warmup_factor(warmup: u64, step: u64) -> f64 {
    if warmup == 0 {
        1.0
    } else {
        ((step + 1) as f64 / warmup as f64).min(1.0)
    }
}

/// The EMA decay at `step` (0-based): `decay`, or with warm-up `min(decay, (1+step)/(10+step))`.
pub fn ema_decay(decay: f64, warmup: bool, step: u64) -> f64 {
    if warmup {
        decay.min((1.0 + step as f64) / (10.0 + step as f64))
    } else {
        decay
    }
}

#[cfg(test)]
mod tests {
    use super::super::fused::{reference, AdamEmaState, FusedOps};
    use super::*;
    use burn::backend::{Flex, NdArray};
    use burn::tensor::backend::Backend;
    use burn::tensor::TensorData;

    fn t<B: Backend>(v: Vec<f32>) -> Tensor<B, 1> {
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [n]), &Default::default())
    }

    /// Two AdamW + EMA steps against the formula evaluated by hand in f64, through `update`.
    fn check<B: Backend>(
        update: impl Fn(&mut [Tensor<B, 1>], Vec<Option<Tensor<B, 1>>>, AdamEmaState<'_, B>, AdamWEma),
    ) {
        let opt = AdamW {
            lr: 0.1,
            weight_decay: 0.01,
            ..Default::default()
        };
        let d = 0.75;
        let mut p = vec![t::<B>(vec![1.0, -2.0])];
        let mut st = AdamState::zeros(&p);
        let mut ema = p.clone();
        let gs = [[0.5f64, -1.0], [0.25, 2.0]];
        let (mut pr, mut m, mut v, mut er) =
            ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2], [1.0f64, -2.0]);
        for (k, g) in gs.iter().enumerate() {
            let state = AdamEmaState {
                m: &mut st.m,
                v: &mut st.v,
                ema: &mut ema,
            };
            let gt = t::<B>(g.iter().map(|&x| x as f32).collect());
            update(
                &mut p,
                vec![Some(gt)],
                state,
                opt.with_step(k as u64 + 1, d),
            );
            for i in 0..2 {
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
                let (mh, vh) = (
                    m[i] / (1.0 - 0.9f64.powi(k as i32 + 1)),
                    v[i] / (1.0 - 0.999f64.powi(k as i32 + 1)),
                );
                pr[i] = pr[i] * (1.0 - 0.1 * 0.01) - 0.1 * mh / (vh.sqrt() + 1e-8);
                er[i] = d * er[i] + (1.0 - d) * pr[i];
            }
        }
        let got: Vec<f32> = p[0].to_data().to_vec().unwrap();
        let got_ema: Vec<f32> = ema[0].to_data().to_vec().unwrap();
        for i in 0..2 {
            assert!((got[i] as f64 - pr[i]).abs() < 1e-5, "{got:?} vs {pr:?}");
            assert!(
                (got_ema[i] as f64 - er[i]).abs() < 1e-5,
                "{got_ema:?} vs {er:?}"
            );
        }
    }

    #[test]
    fn adamw_ema_matches_the_formula() {
        check::<NdArray>(reference::adamw_ema);
        check::<Flex>(reference::adamw_ema);
        check::<Flex>(<Flex as FusedOps>::fused_adamw_ema);
    }

    #[test]
    fn lr_warmup_is_linear_then_flat() {
        assert_eq!(lr_warmup_factor(0, 0), 1.0);
        assert_eq!(lr_warmup_factor(4, 0), 0.25);
        assert_eq!(lr_warmup_factor(4, 3), 1.0);
        assert_eq!(lr_warmup_factor(4, 100), 1.0);
    }

    #[test]
    fn ema_warmup() {
        assert_eq!(ema_decay(0.9999, false, 0), 0.9999);
        assert_eq!(ema_decay(0.9999, true, 0), 0.1);
        assert_eq!(ema_decay(0.99, true, 10_000), 0.99);
    }
}
