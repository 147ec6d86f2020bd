//! AdamW and EMA on flat parameter tensors (PyTorch's AdamW semantics: decoupled weight decay,
//! bias-corrected moments, eps added after the square root).
//!
//! Why not burn's optimiser: its state lives in burn records, which do not go into our
//! safetensors checkpoints; owning the update (a few lines) makes save → resume exact and the
//! optimiser state an ordinary set of named tensors.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

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
    /// One update at 1-based step `t`; `grads[i] = None` leaves parameter `i` untouched.
    pub fn step<B: Backend>(
        &self,
        t: u64,
        params: &mut [Tensor<B, 1>],
        grads: Vec<Option<Tensor<B, 1>>>,
        state: &mut AdamState<B>,
    ) {
        let bc1 = 1.0 - self.beta1.powi(t as i32);
        let bc2 = 1.0 - self.beta2.powi(t as i32);
        for (i, g) in grads.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let m = state.m[i].clone() * self.beta1 + g.clone() * (1.0 - self.beta1);
            let v = state.v[i].clone() * self.beta2 + g.powi_scalar(2) * (1.0 - self.beta2);
            let mut p = params[i].clone();
            if self.weight_decay != 0.0 {
                p = p * (1.0 - self.lr * self.weight_decay);
            }
            let update = (m.clone() / bc1) / ((v.clone() / bc2).sqrt() + self.eps);
            params[i] = p - update * self.lr;
            state.m[i] = m;
            state.v[i] = v;
        }
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

/// `ema ← d·ema + (1−d)·params`.
pub fn ema_update<B: Backend>(ema: &mut [Tensor<B, 1>], params: &[Tensor<B, 1>], d: f64) {
    for (e, p) in ema.iter_mut().zip(params) {
        *e = e.clone() * d + p.clone() * (1.0 - d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    fn t(v: Vec<f32>) -> Tensor<Flex, 1> {
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [n]), &Default::default())
    }

    /// Two AdamW steps against the formula evaluated by hand in f64.
    #[test]
    fn adamw_matches_the_formula() {
        let opt = AdamW {
            lr: 0.1,
            weight_decay: 0.01,
            ..Default::default()
        };
        let mut p = vec![t(vec![1.0, -2.0])];
        let mut st = AdamState::zeros(&p);
        let gs = [[0.5f64, -1.0], [0.25, 2.0]];
        let (mut pr, mut m, mut v) = ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2]);
        for (k, g) in gs.iter().enumerate() {
            opt.step(
                k as u64 + 1,
                &mut p,
                vec![Some(t(g.iter().map(|&x| x as f32).collect()))],
                &mut st,
            );
            for i in 0..2 {
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
                let (mh, vh) = (
                    m[i] / (1.0 - 0.9f64.powi(k as i32 + 1)),
                    v[i] / (1.0 - 0.999f64.powi(k as i32 + 1)),
                );
                pr[i] = pr[i] * (1.0 - 0.1 * 0.01) - 0.1 * mh / (vh.sqrt() + 1e-8);
            }
        }
        let got: Vec<f32> = p[0].to_data().to_vec().unwrap();
        for i in 0..2 {
            assert!((got[i] as f64 - pr[i]).abs() < 1e-5, "{got:?} vs {pr:?}");
        }
    }

    #[test]
    fn ema_warmup_and_update() {
        assert_eq!(ema_decay(0.9999, false, 0), 0.9999);
        assert_eq!(ema_decay(0.9999, true, 0), 0.1);
        assert_eq!(ema_decay(0.99, true, 10_000), 0.99);
        let mut e = vec![t(vec![1.0])];
        ema_update(&mut e, &[t(vec![3.0])], 0.75);
        assert_eq!(e[0].to_data().to_vec::<f32>().unwrap(), [1.5]);
    }
}
