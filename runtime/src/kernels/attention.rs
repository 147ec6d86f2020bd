//! Multi-head self-attention as one op, forward and backward, on the packed projection
//! `qkv = [B·N, 3·D]` (q, k, v side by side; head `h` owns columns `h·Dh..(h+1)·Dh` of each).
//!
//! One rayon task per (sample, head). Each task reads its q, k and v as strided views of `qkv`
//! (row stride 3·D) straight into GEMM calls, so nothing is transposed or copied; the softmax
//! probabilities `P = softmax(q·kᵀ/√Dh)` are kept for the backward (`[B, H, N, N]`), which
//! then needs no recomputation:
//!
//! ```text
//! dV = Pᵀ·dO    dP = dO·Vᵀ    dS = P ⊙ (dP − rowsum(dP ⊙ P))    dQ = dS·K/√Dh    dK = dSᵀ·Q/√Dh
//! ```

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::zeroed;
use super::elementwise::exp_fast;
use super::gemm::matmul;
use super::simd;
use super::SharedMut;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    /// Samples.
    pub batch: usize,
    /// Tokens per sample (the kept count inside a routed region).
    pub tokens: usize,
    /// Heads.
    pub heads: usize,
    /// Model width `D` (heads × head width).
    pub dim: usize,
}

impl AttnShape {
    /// Head width `Dh = D / H`.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    /// Length of the packed `qkv` input, `B·N·3D`.
    pub fn qkv_len(&self) -> usize {
        self.batch * self.tokens * 3 * self.dim
    }

    /// Length of the output, `B·N·D`.
    pub fn out_len(&self) -> usize {
        self.batch * self.tokens * self.dim
    }

    /// Length of the saved probabilities, `B·H·N·N`.
    pub fn probs_len(&self) -> usize {
        self.batch * self.heads * self.tokens * self.tokens
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }
}

/// Row-wise softmax of a matrix with rows of `n`, in place: max, exponentials, sum and scaling as
/// separate passes so each vectorises (see [`simd`]).
#[inline(always)]
pub(super) fn softmax_rows(p: &mut [f32], n: usize) {
    for row in p.chunks_exact_mut(n) {
        let max = simd::max(row);
        for x in row.iter_mut() {
            *x = exp_fast(*x - max);
        }
        let inv = 1.0 / simd::sum(row);
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

/// Forward: `out = concat_h softmax(q_h·k_hᵀ/√Dh)·v_h` as `[B·N, D]`. With `probs` given
/// (`[B, H, N, N]`), the probabilities are kept there for [`backward`]. Both outputs may start
/// uninitialised: the heads' GEMMs write every value of `out`, and each task zeroes its own
/// block of `probs` before its GEMM writes it.
pub fn forward(
    qkv: &[f32],
    s: AttnShape,
    out: &mut [MaybeUninit<f32>],
    probs: Option<&mut [MaybeUninit<f32>]>,
) {
    assert_eq!(qkv.len(), s.qkv_len(), "attention: qkv length");
    assert_eq!(out.len(), s.out_len(), "attention: output length");
    let (n, d, dh) = (s.tokens, s.dim, s.head_dim());
    let nn = n * n;
    let out_ptr = SharedMut::new(out.as_mut_ptr().cast());
    let task = |bh: usize, p: &mut [f32]| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let q = qkv[b * n * 3 * d + h * dh..].as_ptr();
        // SAFETY: q, k, v are `n × dh` views with row stride 3d inside `qkv` (length checked);
        // `p` is `n × n`; the output block (rows of sample b, columns of head h) belongs to this
        // task alone. The product writes every value of that block (no accumulation, k = n > 0
        // or an empty block), and the heads' blocks tile the output.
        unsafe {
            let (k, v) = (q.add(d), q.add(2 * d));
            matmul(
                (n, n, dh),
                (p.as_mut_ptr(), n),
                false,
                (q, 3 * d, 1),
                (k, 1, 3 * d),
                s.scale(),
            );
            simd::vectorized(
                #[inline(always)]
                || softmax_rows(p, n),
            );
            let o = out_ptr.get().add(b * n * d + h * dh);
            matmul(
                (n, dh, n),
                (o, d),
                false,
                (p.as_ptr(), n, 1),
                (v, 3 * d, 1),
                1.0,
            );
        }
    };
    match probs {
        Some(probs) => {
            assert_eq!(probs.len(), s.probs_len(), "attention: probs length");
            probs
                .par_chunks_exact_mut(nn)
                .enumerate()
                .for_each(|(bh, p)| task(bh, zeroed(p)));
        }
        None => (0..s.batch * s.heads)
            .into_par_iter()
            .for_each_init(|| vec![0.0f32; nn], |p, bh| task(bh, p)),
    }
}

/// Backward: the gradient of the packed `qkv` from the output gradient `gout` (`[B·N, D]`) and
/// the probabilities kept by [`forward`]. Every element of `dqkv` is written (by GEMMs that do
/// not accumulate), so it may start uninitialised.
pub fn backward(
    qkv: &[f32],
    probs: &[f32],
    gout: &[f32],
    s: AttnShape,
    dqkv: &mut [MaybeUninit<f32>],
) {
    assert_eq!(qkv.len(), s.qkv_len(), "attention backward: qkv length");
    assert_eq!(dqkv.len(), s.qkv_len(), "attention backward: dqkv length");
    assert_eq!(gout.len(), s.out_len(), "attention backward: gout length");
    assert_eq!(
        probs.len(),
        s.probs_len(),
        "attention backward: probs length"
    );
    let (n, d, dh) = (s.tokens, s.dim, s.head_dim());
    let nn = n * n;
    let dqkv_ptr = SharedMut::new(dqkv.as_mut_ptr().cast());
    (0..s.batch * s.heads).into_par_iter().for_each_init(
        || vec![0.0f32; nn],
        |ds, bh| {
            let (b, h) = (bh / s.heads, bh % s.heads);
            let p = &probs[bh * nn..(bh + 1) * nn];
            let off = b * n * 3 * d + h * dh;
            let q = qkv[off..].as_ptr();
            let go = gout[b * n * d + h * dh..].as_ptr();
            // SAFETY: as in `forward`; the dq, dk, dv blocks (rows of sample b, columns of
            // head h in each third) belong to this task alone.
            unsafe {
                let v = q.add(2 * d);
                let dv = dqkv_ptr.get().add(off + 2 * d);
                // dV = Pᵀ·dO
                matmul(
                    (n, dh, n),
                    (dv, 3 * d),
                    false,
                    (p.as_ptr(), 1, n),
                    (go, d, 1),
                    1.0,
                );
                // dP = dO·Vᵀ
                matmul(
                    (n, n, dh),
                    (ds.as_mut_ptr(), n),
                    false,
                    (go, d, 1),
                    (v, 1, 3 * d),
                    1.0,
                );
            }
            simd::vectorized(
                #[inline(always)]
                || {
                    for (dsr, pr) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
                        let dot = simd::dot(dsr, pr);
                        for (x, &pv) in dsr.iter_mut().zip(pr) {
                            *x = pv * (*x - dot);
                        }
                    }
                },
            );
            // SAFETY: as above.
            unsafe {
                let k = q.add(d);
                let dq = dqkv_ptr.get().add(off);
                let dk = dq.add(d);
                // dQ = dS·K·scale, dK = dSᵀ·Q·scale
                matmul(
                    (n, dh, n),
                    (dq, 3 * d),
                    false,
                    (ds.as_ptr(), n, 1),
                    (k, 3 * d, 1),
                    s.scale(),
                );
                matmul(
                    (n, dh, n),
                    (dk, 3 * d),
                    false,
                    (ds.as_ptr(), 1, n),
                    (q, 3 * d, 1),
                    s.scale(),
                );
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::super::buffer::{poisoned, read};
    use super::*;

    /// Plain triple-loop attention in f64, the kernel's independent reference.
    fn naive(qkv: &[f32], s: AttnShape) -> Vec<f64> {
        let (n, d, dh) = (s.tokens, s.dim, s.head_dim());
        let mut out = vec![0.0f64; s.out_len()];
        let at = |b: usize, t: usize, part: usize, h: usize, j: usize| {
            qkv[(b * n + t) * 3 * d + part * d + h * dh + j] as f64
        };
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..n {
                    let scores: Vec<f64> = (0..n)
                        .map(|t| {
                            (0..dh)
                                .map(|j| at(b, i, 0, h, j) * at(b, t, 1, h, j))
                                .sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for j in 0..dh {
                        out[(b * n + i) * d + h * dh + j] =
                            (0..n).map(|t| e[t] / z * at(b, t, 2, h, j)).sum();
                    }
                }
            }
        }
        out
    }

    fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn forward_matches_the_naive_loops() {
        for s in [
            AttnShape {
                batch: 2,
                tokens: 5,
                heads: 3,
                dim: 12,
            },
            AttnShape {
                batch: 1,
                tokens: 17,
                heads: 2,
                dim: 16,
            },
        ] {
            let qkv: Vec<f32> = pseudo_random(s.qkv_len(), 7)
                .iter()
                .map(|x| 2.0 * x)
                .collect();
            let mut out = poisoned(s.out_len());
            let mut probs = poisoned(s.probs_len());
            forward(&qkv, s, &mut out, Some(&mut probs));
            let (out, probs) = (read(&out), read(&probs));
            assert!(
                probs.iter().all(|p| p.is_finite()),
                "every probability written"
            );
            let want = naive(&qkv, s);
            for (a, b) in out.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
            }
            let mut out2 = poisoned(s.out_len());
            forward(&qkv, s, &mut out2, None);
            let out2 = read(&out2);
            assert_eq!(
                out, out2,
                "kept and scratch probabilities give the same output"
            );
        }
    }

    /// Central finite differences of `Σ out·w` against the analytic backward.
    #[test]
    fn backward_matches_finite_differences() {
        let s = AttnShape {
            batch: 2,
            tokens: 4,
            heads: 2,
            dim: 6,
        };
        let qkv = pseudo_random(s.qkv_len(), 3);
        let w = pseudo_random(s.out_len(), 11);
        let mut out = poisoned(s.out_len());
        let mut probs = poisoned(s.probs_len());
        forward(&qkv, s, &mut out, Some(&mut probs));
        let probs = read(&probs);
        let mut dqkv = poisoned(s.qkv_len());
        backward(&qkv, &probs, &w, s, &mut dqkv);
        let dqkv = read(&dqkv);
        let loss = |x: &[f32]| -> f64 {
            let o = naive(x, s);
            o.iter().zip(&w).map(|(a, b)| a * *b as f64).sum()
        };
        let h = 1e-3f32;
        for i in 0..qkv.len() {
            let (mut up, mut down) = (qkv.clone(), qkv.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            assert!(
                (dqkv[i] as f64 - fd).abs() < 1e-3,
                "element {i}: {} vs {fd}",
                dqkv[i]
            );
        }
    }
}
