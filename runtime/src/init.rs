//! Initial parameter values, on the host from a seeded stream, so that every backend starts
//! from the same weights. Xavier (the official TREAD code) or DiT's adaLN-Zero.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tread_compiler::config::Init;
use tread_compiler::params::{InitRole, ParamSpec};

/// Initial values for each spec, in order.
pub fn init_values(specs: &[ParamSpec], scheme: Init, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    specs
        .iter()
        .map(|s| {
            let n = s.numel();
            match s.init {
                InitRole::LinearWeight {
                    fan_in,
                    fan_out,
                    zero_under_adaln,
                } => {
                    if zero_under_adaln && scheme == Init::AdalnZero {
                        vec![0.0; n]
                    } else {
                        let a = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                        (0..n).map(|_| rng.random_range(-a..a)).collect()
                    }
                }
                InitRole::Zeros => vec![0.0; n],
                InitRole::Ones => vec![1.0; n],
                InitRole::Normal { std } => (0..n).map(|_| normal(&mut rng) * std as f32).collect(),
                InitRole::ConvKernel { kernel } => {
                    let a = 1.0 / (kernel as f32).sqrt();
                    (0..n).map(|_| rng.random_range(-a..a)).collect()
                }
            }
        })
        .collect()
}

/// A standard normal draw (Box–Muller): the one normal sampler of treadc (initial values,
/// training noise, sampling noise, VAE latents drawn from their moments).
pub fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_is_roughly_standard_normal() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let xs: Vec<f64> = (0..20000).map(|_| normal(&mut rng) as f64).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
        assert!(xs.iter().all(|x| x.is_finite()));
    }
}
