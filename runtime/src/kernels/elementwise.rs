//! Element-wise kernels: a vectorisable `exp`, tanh-GELU and the gated residual
//! `x + gate·y`, each with its backward.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::zeroed;
use super::simd::vectorized;
use super::{ELEM_CHUNK, ROW_CHUNK};

/// `eˣ` to about 2 ulp over the f32 range, written with plain arithmetic and bit operations
/// so that loops calling it vectorise (libm's `expf` is a scalar call). Range reduction
/// `x = n·ln2 + r`, |r| ≤ ln2/2, then a degree-7 Taylor polynomial of `eʳ` and `2ⁿ` built in
/// the exponent bits. Inputs are clamped to [−87.3, 88.7], so the result is finite and ≥ 1e-38.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer in the low bits
    let x = x.clamp(-87.3, 88.7);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    p * scale
}

/// `2·√(2/π)`: tanh-GELU is `x·sigmoid(K·(x + 0.044715·x³))`.
const GELU_K: f32 = 2.0 * 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// tanh-GELU, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (DiT's MLP activation).
pub fn gelu_tanh(x: &[f32], out: &mut [MaybeUninit<f32>]) {
    assert_eq!(x.len(), out.len(), "gelu: lengths");
    out.par_chunks_mut(ELEM_CHUNK)
        .zip(x.par_chunks(ELEM_CHUNK))
        .for_each(|(o, x)| {
            vectorized(
                #[inline(always)]
                || {
                    for (o, &x) in o.iter_mut().zip(x) {
                        let z = GELU_K * (x + GELU_C * x * x * x);
                        o.write(x / (1.0 + exp_fast(-z)));
                    }
                },
            )
        });
}

/// Backward of [`gelu_tanh`]: `dx = g·(s + x·s·(1−s)·K·(1 + 3·0.044715·x²))` with
/// `s = sigmoid(K·(x + 0.044715·x³))`.
pub fn gelu_tanh_backward(x: &[f32], g: &[f32], dx: &mut [MaybeUninit<f32>]) {
    assert_eq!(x.len(), g.len(), "gelu backward: lengths");
    assert_eq!(x.len(), dx.len(), "gelu backward: lengths");
    dx.par_chunks_mut(ELEM_CHUNK)
        .zip(x.par_chunks(ELEM_CHUNK).zip(g.par_chunks(ELEM_CHUNK)))
        .for_each(|(d, (x, g))| {
            vectorized(
                #[inline(always)]
                || {
                    for ((d, &x), &g) in d.iter_mut().zip(x).zip(g) {
                        let z = GELU_K * (x + GELU_C * x * x * x);
                        let s = 1.0 / (1.0 + exp_fast(-z));
                        let dz = GELU_K * (1.0 + 3.0 * GELU_C * x * x);
                        d.write(g * (s + x * s * (1.0 - s) * dz));
                    }
                },
            )
        });
}

/// Gated residual `out[r] = x[r] + gate[r / N] ⊙ y[r]` over `[B·N, D]` rows: DiT's
/// `x + gate·block(x)` with a per-sample gate `[B, D]`.
pub fn gated_residual(x: &[f32], gate: &[f32], y: &[f32], s: Rows, out: &mut [MaybeUninit<f32>]) {
    s.check("gated residual", &[x, y], gate);
    assert_eq!(out.len(), s.len(), "gated residual: output length");
    let d = s.width;
    out.par_chunks_mut(ROW_CHUNK * d)
        .enumerate()
        .for_each(|(c, o)| {
            vectorized(
                #[inline(always)]
                || {
                    for (i, o) in o.chunks_exact_mut(d).enumerate() {
                        let r = c * ROW_CHUNK + i;
                        let gt = &gate[s.sample_of(r) * d..][..d];
                        let (xr, yr) = (&x[r * d..][..d], &y[r * d..][..d]);
                        for (((o, &x), &g), &y) in o.iter_mut().zip(xr).zip(gt).zip(yr) {
                            o.write(x + g * y);
                        }
                    }
                },
            )
        });
}

/// Backward of [`gated_residual`] for the gate and `y` (the gradient of `x` is `g` itself):
/// `dy = g ⊙ gate[b]`, `dgate[b] = Σ_{rows of b} g ⊙ y`. Both outputs may start uninitialised:
/// each task zeroes its sample's regions before writing them.
pub fn gated_residual_backward(
    gate: &[f32],
    y: &[f32],
    g: &[f32],
    s: Rows,
    dgate: &mut [MaybeUninit<f32>],
    dy: &mut [MaybeUninit<f32>],
) {
    s.check("gated residual backward", &[y, g], gate);
    assert_eq!(dy.len(), s.len(), "gated residual backward: dy length");
    assert_eq!(
        dgate.len(),
        gate.len(),
        "gated residual backward: dgate length"
    );
    let (n, d) = (s.tokens, s.width);
    dgate
        .par_chunks_mut(d)
        .zip(dy.par_chunks_mut(n * d))
        .enumerate()
        .for_each(|(b, (dg, dys))| {
            vectorized(
                #[inline(always)]
                || {
                    let (dg, dys) = (zeroed(dg), zeroed(dys));
                    let gt = &gate[b * d..][..d];
                    for (t, dyr) in dys.chunks_exact_mut(d).enumerate() {
                        let r = b * n + t;
                        let (gr, yr) = (&g[r * d..][..d], &y[r * d..][..d]);
                        for ((((dy, dg), &g), &gt), &y) in
                            dyr.iter_mut().zip(dg.iter_mut()).zip(gr).zip(gt).zip(yr)
                        {
                            *dy = g * gt;
                            *dg += g * y;
                        }
                    }
                },
            )
        });
}

/// The row layout shared by the per-sample kernels: `[B·N, D]` values with per-sample `[B, D]`
/// vectors (gates, shifts, scales).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    /// Samples `B`.
    pub batch: usize,
    /// Rows (tokens) per sample `N`.
    pub tokens: usize,
    /// Row width `D`.
    pub width: usize,
}

impl Rows {
    /// Number of values of a `[B·N, D]` buffer.
    pub fn len(&self) -> usize {
        self.batch * self.tokens * self.width
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample of row `r`.
    pub fn sample_of(&self, r: usize) -> usize {
        r / self.tokens
    }

    fn check(&self, what: &str, rows: &[&[f32]], per_sample: &[f32]) {
        for r in rows {
            assert_eq!(r.len(), self.len(), "{what}: row buffer length");
        }
        assert_eq!(
            per_sample.len(),
            self.batch * self.width,
            "{what}: per-sample length"
        );
    }
}
