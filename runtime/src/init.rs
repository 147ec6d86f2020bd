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

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}
