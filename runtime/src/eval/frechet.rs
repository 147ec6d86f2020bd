//! Gaussian fits of feature vectors and the Fréchet distance between two of them (FID's
//! formula, on the digit classifier's features instead of Inception's):
//! `‖μa − μb‖² + Tr Σa + Tr Σb − 2 Tr (Σa Σb)^½`.
//!
//! The trace of the square root is taken as `Tr (Σa^½ Σb Σa^½)^½` (the same eigenvalues as
//! `Σa Σb`, but a symmetric matrix), with nalgebra's symmetric eigen-decomposition in f64.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Mean and (unbiased) covariance of a set of feature vectors.
#[derive(Debug, Clone)]
pub struct Gaussian {
    /// Mean vector.
    pub mean: DVector<f64>,
    /// Covariance matrix (divided by n − 1).
    pub cov: DMatrix<f64>,
    /// How many vectors were fitted.
    pub n: usize,
}

impl Gaussian {
    /// Fits `rows` (`n × dim` values, row after row); needs at least two rows.
    pub fn fit(rows: &[f32], dim: usize) -> Result<Self, String> {
        if dim == 0 || !rows.len().is_multiple_of(dim) || rows.len() / dim < 2 {
            return Err(format!(
                "a Gaussian fit needs at least 2 vectors of {dim} values, got {} values",
                rows.len()
            ));
        }
        let n = rows.len() / dim;
        let m = DMatrix::from_row_iterator(n, dim, rows.iter().map(|v| *v as f64));
        let mean = m.row_mean().transpose();
        let centred = DMatrix::from_fn(n, dim, |i, j| m[(i, j)] - mean[j]);
        let cov = centred.transpose() * &centred / (n as f64 - 1.0);
        Ok(Gaussian { mean, cov, n })
    }
}

/// The square root of a symmetric positive semi-definite matrix (eigenvalues below zero, from
/// rounding, are taken as zero).
pub fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = (m + m.transpose()) * 0.5;
    let e = SymmetricEigen::new(sym);
    let roots = e.eigenvalues.map(|l| l.max(0.0).sqrt());
    &e.eigenvectors * DMatrix::from_diagonal(&roots) * e.eigenvectors.transpose()
}

/// `Tr M^½` of a symmetric positive semi-definite matrix.
fn trace_sqrt_psd(m: &DMatrix<f64>) -> f64 {
    let sym = (m + m.transpose()) * 0.5;
    SymmetricEigen::new(sym)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum()
}

/// The Fréchet distance between two Gaussians (≥ 0 up to rounding).
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    let diff = &a.mean - &b.mean;
    let ra = sqrt_psd(&a.cov);
    let cross = trace_sqrt_psd(&(&ra * &b.cov * &ra));
    (diff.norm_squared() + a.cov.trace() + b.cov.trace() - 2.0 * cross).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_spd(dim: usize, seed: u64) -> (DMatrix<f64>, DMatrix<f64>) {
        // R = Q diag(λ) Qᵀ with λ in [0.5, 3]: R is the known square root of A = R².
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let g = DMatrix::from_fn(dim, dim, |_, _| rng.random_range(-1.0..1.0));
        let q = g.qr().q();
        let lambda = DVector::from_fn(dim, |_, _| rng.random_range(0.5..3.0));
        let r = &q * DMatrix::from_diagonal(&lambda) * q.transpose();
        (&r * &r, r)
    }

    fn samples(n: usize, dim: usize, shift: f32, scale: f32, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * dim)
            .map(|i| {
                let z: f32 = (0..12).map(|_| rng.random::<f32>()).sum::<f32>() - 6.0;
                shift + scale * z * (1.0 + (i % dim) as f32 / dim as f32)
            })
            .collect()
    }

    #[test]
    fn square_root_matches_the_known_root_of_a_random_spd_matrix() {
        let (a, r) = random_spd(12, 7);
        let s = sqrt_psd(&a);
        assert!((&s - &r).abs().max() < 1e-9, "{}", (&s - &r).abs().max());
    }

    #[test]
    fn distance_of_a_fit_to_itself_is_zero_and_the_formula_matches_closed_forms() {
        let x = samples(400, 8, 0.0, 1.0, 1);
        let g = Gaussian::fit(&x, 8).unwrap();
        assert!(frechet_distance(&g, &g) < 1e-9);
        // Two isotropic Gaussians: FD = ‖Δμ‖² + d (σa − σb)².
        let iso = |mu: f64, s: f64| Gaussian {
            mean: DVector::from_element(4, mu),
            cov: DMatrix::identity(4, 4) * (s * s),
            n: 0,
        };
        let fd = frechet_distance(&iso(1.0, 2.0), &iso(0.0, 0.5));
        assert!((fd - (4.0 + 4.0 * 1.5 * 1.5)).abs() < 1e-9, "{fd}");
    }

    #[test]
    fn distance_is_symmetric_and_grows_with_the_shift() {
        let a = Gaussian::fit(&samples(500, 6, 0.0, 1.0, 2), 6).unwrap();
        let b = Gaussian::fit(&samples(500, 6, 0.3, 1.5, 3), 6).unwrap();
        let c = Gaussian::fit(&samples(500, 6, 3.0, 1.5, 4), 6).unwrap();
        let (ab, ba) = (frechet_distance(&a, &b), frechet_distance(&b, &a));
        assert!((ab - ba).abs() < 1e-9 * ab.max(1.0), "{ab} vs {ba}");
        assert!(frechet_distance(&a, &c) > 10.0 * ab);
    }

    #[test]
    fn too_few_vectors_is_an_error() {
        assert!(Gaussian::fit(&[1.0, 2.0], 2).is_err());
        assert!(Gaussian::fit(&[1.0, 2.0, 3.0], 2).is_err());
    }
}
