//! EDM's constants and formulas (tread.md §3), in one place for everything that needs them: the
//! burn objective and sampler, the ONNX exporter's in-graph preconditioning and the tract
//! deployment sampler. Plain `f64` arithmetic, no tensors.

/// σ_data, the data standard deviation EDM assumes.
pub const SIGMA_DATA: f64 = 0.5;
/// The sampler's smallest noise level.
pub const SIGMA_MIN: f64 = 0.002;
/// The sampler's largest noise level.
pub const SIGMA_MAX: f64 = 80.0;
/// The Karras schedule exponent.
pub const RHO: f64 = 7.0;

/// EDM preconditioning scalars for one σ:
/// D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise, y).
#[derive(Debug, Clone, Copy)]
pub struct Precond {
    /// Input scale `1/√(σ² + σ_d²)`.
    pub c_in: f64,
    /// Skip scale `σ_d²/(σ² + σ_d²)`.
    pub c_skip: f64,
    /// Output scale `σ·σ_d/√(σ² + σ_d²)`.
    pub c_out: f64,
    /// Noise label fed to the network, `ln(σ)/4`.
    pub c_noise: f64,
    /// Loss weight λ(σ) = `(σ² + σ_d²)/(σ·σ_d)²`.
    pub weight: f64,
}

impl Precond {
    /// The EDM scalars at `sigma`.
    pub fn edm(sigma: f64) -> Self {
        let sd2 = SIGMA_DATA * SIGMA_DATA;
        let s2 = sigma * sigma;
        Precond {
            c_in: 1.0 / (s2 + sd2).sqrt(),
            c_skip: sd2 / (s2 + sd2),
            c_out: sigma * SIGMA_DATA / (s2 + sd2).sqrt(),
            c_noise: sigma.ln() / 4.0,
            weight: (s2 + sd2) / (sigma * SIGMA_DATA).powi(2),
        }
    }
}

/// EDM's noise levels: `steps` Karras σ's from σ_max to σ_min, then 0.
pub fn edm_sigmas(steps: usize) -> Vec<f64> {
    let (lo, hi) = (SIGMA_MIN.powf(1.0 / RHO), SIGMA_MAX.powf(1.0 / RHO));
    let mut s: Vec<f64> = (0..steps)
        .map(|i| {
            let f = if steps > 1 {
                i as f64 / (steps - 1) as f64
            } else {
                0.0
            };
            (hi + f * (lo - hi)).powf(RHO)
        })
        .collect();
    s.push(0.0);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// λ(σ)·c_out² = 1: the EDM weighting makes the loss an unweighted regression on F.
    #[test]
    fn edm_weight_cancels_c_out() {
        for s in [0.002, 0.1, 0.5, 3.0, 80.0] {
            let p = Precond::edm(s);
            assert!((p.weight * p.c_out * p.c_out - 1.0).abs() < 1e-12);
            assert!((p.c_in * (s * s + SIGMA_DATA * SIGMA_DATA).sqrt() - 1.0).abs() < 1e-12);
        }
        let p = Precond::edm(SIGMA_DATA);
        assert!((p.c_skip - 0.5).abs() < 1e-12);
    }

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
