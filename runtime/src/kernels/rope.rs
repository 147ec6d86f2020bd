//! Rotary position embedding on `[B·N, H·2·half]` rows: each head's pairs `(2i, 2i+1)` turned by
//! the token's angle `i` (tables `cos`, `sin` of `[Bt·N, half]`, `Bt` = 1 or B). The backward is
//! the same rotation by the opposite angle, so one kernel serves both.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::simd::vectorized;
use super::ROW_CHUNK;

/// The layout of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopeShape {
    /// Samples `B`.
    pub batch: usize,
    /// Tokens per sample `N`.
    pub tokens: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Pairs per head (`Dh / 2`).
    pub half: usize,
    /// Samples the angle tables hold: 1 (shared) or `B`.
    pub table_batch: usize,
}

impl RopeShape {
    /// Values per token row.
    pub fn width(&self) -> usize {
        self.heads * 2 * self.half
    }
}

/// `out = rotate(x)` by the tables' angles, or by their opposites when `inverse` (the gradient).
pub fn rotate(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    s: RopeShape,
    inverse: bool,
    out: &mut [MaybeUninit<f32>],
) {
    let (w, half) = (s.width(), s.half);
    assert_eq!(x.len(), s.batch * s.tokens * w, "rope: input length");
    assert_eq!(out.len(), x.len(), "rope: output length");
    assert_eq!(
        cos.len(),
        s.table_batch * s.tokens * half,
        "rope: cos table"
    );
    assert_eq!(sin.len(), cos.len(), "rope: sin table");
    assert!(
        s.table_batch == 1 || s.table_batch == s.batch,
        "rope: table batch"
    );
    let sign = if inverse { -1.0f32 } else { 1.0 };
    out.par_chunks_mut(ROW_CHUNK * w)
        .zip(x.par_chunks(ROW_CHUNK * w))
        .enumerate()
        .for_each(|(chunk, (o, x))| {
            vectorized(
                #[inline(always)]
                || {
                    for (r, (o, x)) in o.chunks_mut(w).zip(x.chunks(w)).enumerate() {
                        let row = chunk * ROW_CHUNK + r;
                        let (b, t) = (row / s.tokens, row % s.tokens);
                        let at = ((b % s.table_batch) * s.tokens + t) * half;
                        let (c, sn) = (&cos[at..at + half], &sin[at..at + half]);
                        for (o, x) in o.chunks_mut(2 * half).zip(x.chunks(2 * half)) {
                            for i in 0..half {
                                let (a, b) = (x[2 * i], x[2 * i + 1]);
                                let (c, s) = (c[i], sign * sn[i]);
                                o[2 * i].write(a * c - b * s);
                                o[2 * i + 1].write(a * s + b * c);
                            }
                        }
                    }
                },
            )
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::buffer::uninit_buffer;

    fn run(x: &[f32], cos: &[f32], sin: &[f32], s: RopeShape, inverse: bool) -> Vec<f32> {
        // SAFETY: the rotation writes every value.
        unsafe { uninit_buffer(x.len(), |o| rotate(x, cos, sin, s, inverse, o)) }
    }

    #[test]
    fn rotates_pairs_like_naive_loops_and_inverts() {
        for table_batch in [1, 3] {
            let s = RopeShape {
                batch: 3,
                tokens: 70,
                heads: 2,
                half: 3,
                table_batch,
            };
            let x: Vec<f32> = (0..s.batch * s.tokens * s.width())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let angles: Vec<f32> = (0..table_batch * s.tokens * s.half)
                .map(|i| i as f32 * 0.173)
                .collect();
            let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
            let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
            let y = run(&x, &cos, &sin, s, false);
            for b in 0..s.batch {
                for t in 0..s.tokens {
                    for h in 0..s.heads {
                        for i in 0..s.half {
                            let base = (b * s.tokens + t) * s.width() + h * 2 * s.half + 2 * i;
                            let a = angles[((b % table_batch) * s.tokens + t) * s.half + i];
                            let (x0, x1) = (x[base], x[base + 1]);
                            let want = [x0 * a.cos() - x1 * a.sin(), x0 * a.sin() + x1 * a.cos()];
                            assert!((y[base] - want[0]).abs() < 1e-5);
                            assert!((y[base + 1] - want[1]).abs() < 1e-5);
                        }
                    }
                }
            }
            let back = run(&y, &cos, &sin, s, true);
            for (a, b) in back.iter().zip(&x) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "the inverse rotation undoes the rotation"
                );
            }
        }
    }
}
