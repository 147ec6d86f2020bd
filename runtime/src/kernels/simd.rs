//! Runtime SIMD dispatch and vectorisable reductions for the kernels.
//!
//! treadc is built for generic x86-64 (SSE2: four lanes, no FMA), so a plain loop vectorises
//! only that narrowly. [`vectorized`] runs a closure inside `pulp`'s runtime-dispatched
//! `#[target_feature]` context (AVX-512 or AVX2+FMA where the CPU has them, scalar elsewhere),
//! so the loops inlined into it are compiled for the wider units — the kernels' analogue of the
//! `gemm` crate's own dispatch (pulp is the crate gemm dispatches with, same version).
//!
//! A float reduction written as one running sum (`s += x[i]`) does not vectorise at all: the
//! compiler may not reorder float additions. [`sum`], [`dot`] and [`max`] keep [`LANES`]
//! independent partial results instead, which the compiler maps onto vector registers. They
//! change the order of additions (results differ from a serial sum in the last bits).

/// Independent partial sums per reduction: one AVX-512 register of f32.
pub const LANES: usize = 16;

/// Runs `f` compiled for the best instruction set this CPU has (checked at run time; the check
/// is cached). Put whole loops inside, not single elements: the dispatch is a function call.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// `Σ x`.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    fold(acc) + tail
}

/// `Σ a ⊙ b` (lengths must match; checked).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_centred(a, b, 0.0)
}

/// `Σ a ⊙ (b − c)`: a dot product with `b` centred first, so no cancellation when `b`'s mean
/// is large against its spread (the norms' backward).
#[inline(always)]
pub fn dot_centred(a: &[f32], b: &[f32], c: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths");
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * (y - c))
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * (y - c);
        }
    }
    fold(acc) + tail
}

/// `Σ (x − c)²`.
#[inline(always)]
pub fn sum_sq_centred(x: &[f32], c: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| (v - c) * (v - c)).sum();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += (v - c) * (v - c);
        }
    }
    fold(acc) + tail
}

/// `max x` (−∞ for an empty slice; NaNs are ignored, as `f32::max` does).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            // A compare-and-select, which vectorises (`f32::max`'s NaN rule does not).
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// Pairwise sum of the lanes.
#[inline(always)]
fn fold(mut acc: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            acc[i] += acc[i + w];
        }
        w /= 2;
    }
    acc[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect()
    }

    #[test]
    fn reductions_match_f64_references_for_every_tail_length() {
        for n in [0, 1, 5, 15, 16, 17, 31, 64, 100, 129] {
            let (a, b) = (data(n), data(n + 3)[3..].to_vec());
            let s64: f64 = a.iter().map(|&v| v as f64).sum();
            let d64: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let m = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert!(
                (vectorized(|| sum(&a)) as f64 - s64).abs() < 1e-3,
                "sum n={n}"
            );
            assert!(
                (vectorized(|| dot(&a, &b)) as f64 - d64).abs() < 1e-2,
                "dot n={n}"
            );
            assert_eq!(vectorized(|| max(&a)), m, "max n={n}");
            let c = 1.5f32;
            let q64: f64 = a.iter().map(|&v| (v as f64 - 1.5).powi(2)).sum();
            let dc64: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| x as f64 * (y as f64 - 1.5))
                .sum();
            assert!(
                (sum_sq_centred(&a, c) as f64 - q64).abs() < 1e-2,
                "sq n={n}"
            );
            assert!(
                (dot_centred(&a, &b, c) as f64 - dc64).abs() < 1e-2,
                "dotc n={n}"
            );
        }
    }

    #[test]
    fn max_skips_nan_like_f32_max() {
        let mut a = data(40);
        a[3] = f32::NAN;
        a[20] = f32::NAN;
        a[39] = f32::NAN;
        let want = a
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(max(&a), want);
    }
}
