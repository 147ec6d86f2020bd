//! Multi-head attention of one set of tokens on another, as one op forward and backward:
//! queries `q = [B·N, D]` on the packed keys and values `kv = [B·M, 2·D]` (k | v side by side),
//! with an optional additive key bias `[B, M]` (a padding mask as `(1 − mask)·MASKED_KEY_BIAS`).
//! Cross-attention to text (PixArt, Wan) and masked attention take this path.
//!
//! One rayon task per (sample, head), reading strided views straight into GEMM calls as
//! [`super::attention`] does; the probabilities `P = softmax(q·kᵀ/√Dh + bias)` (`[B, H, N, M]`)
//! are kept for the backward:
//!
//! ```text
//! dV = Pᵀ·dO    dP = dO·Vᵀ    dS = P ⊙ (dP − rowsum(dP ⊙ P))    dQ = dS·K/√Dh    dK = dSᵀ·Q/√Dh
//! ```

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::attention::softmax_rows;
use super::buffer::zeroed;
use super::gemm::matmul;
use super::simd;
use super::SharedMut;

/// Probabilities below this are set to exactly 0 (far below f32's resolution of a row's sum).
const FLUSH_BELOW: f32 = 1e-30;

/// Sizes of one cross-attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossShape {
    /// Samples.
    pub batch: usize,
    /// Query tokens per sample (the kept count inside a routed region).
    pub queries: usize,
    /// Key (and value) tokens per sample.
    pub keys: usize,
    /// Heads.
    pub heads: usize,
    /// Model width `D` (heads × head width).
    pub dim: usize,
}

impl CrossShape {
    /// Head width `Dh = D / H`.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    /// Length of `q` and of the output, `B·N·D`.
    pub fn q_len(&self) -> usize {
        self.batch * self.queries * self.dim
    }

    /// Length of the packed `kv`, `B·M·2D`.
    pub fn kv_len(&self) -> usize {
        self.batch * self.keys * 2 * self.dim
    }

    /// Length of the key bias, `B·M`.
    pub fn bias_len(&self) -> usize {
        self.batch * self.keys
    }

    /// Length of the saved probabilities, `B·H·N·M`.
    pub fn probs_len(&self) -> usize {
        self.batch * self.heads * self.queries * self.keys
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }
}

/// Forward: `out = concat_h softmax(q_h·k_hᵀ/√Dh + bias)·v_h` as `[B·N, D]`. With `probs` given
/// (`[B, H, N, M]`), the probabilities are kept there for [`backward`]. Both outputs may start
/// uninitialised: every value is written.
pub fn forward(
    q: &[f32],
    kv: &[f32],
    bias: Option<&[f32]>,
    s: CrossShape,
    out: &mut [MaybeUninit<f32>],
    probs: Option<&mut [MaybeUninit<f32>]>,
) {
    assert_eq!(q.len(), s.q_len(), "cross-attention: q length");
    assert_eq!(kv.len(), s.kv_len(), "cross-attention: kv length");
    assert_eq!(out.len(), s.q_len(), "cross-attention: output length");
    if let Some(b) = bias {
        assert_eq!(b.len(), s.bias_len(), "cross-attention: bias length");
    }
    let (n, m, d, dh) = (s.queries, s.keys, s.dim, s.head_dim());
    let nm = n * m;
    let out_ptr = SharedMut::new(out.as_mut_ptr().cast());
    let task = |bh: usize, p: &mut [f32]| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let qp = q[b * n * d + h * dh..].as_ptr();
        let kp = kv[b * m * 2 * d + h * dh..].as_ptr();
        // SAFETY: q is an `n × dh` view with row stride d, k and v `m × dh` views with row
        // stride 2d (lengths checked); `p` is `n × m`; the output block (rows of sample b,
        // columns of head h) belongs to this task alone and the products write all of it.
        unsafe {
            matmul(
                (n, m, dh),
                (p.as_mut_ptr(), m),
                false,
                (qp, d, 1),
                (kp, 1, 2 * d),
                s.scale(),
            );
        }
        if let Some(bias) = bias {
            let row_bias = &bias[b * m..(b + 1) * m];
            for row in p.chunks_exact_mut(m) {
                for (x, &c) in row.iter_mut().zip(row_bias) {
                    *x += c;
                }
            }
        }
        simd::vectorized(
            #[inline(always)]
            || {
                softmax_rows(p, m);
                // A masked key's probability (e^(−1e9) in exact arithmetic) comes out of the
                // clamped exponential as ~1e-38; products of it are subnormal in the backward,
                // and subnormal arithmetic is slower by orders of magnitude. Exact zeros instead.
                for x in p.iter_mut() {
                    if *x < FLUSH_BELOW {
                        *x = 0.0;
                    }
                }
            },
        );
        // SAFETY: as above.
        unsafe {
            let o = out_ptr.get().add(b * n * d + h * dh);
            matmul(
                (n, dh, m),
                (o, d),
                false,
                (p.as_ptr(), m, 1),
                (kp.add(d), 2 * d, 1),
                1.0,
            );
        }
    };
    match probs {
        Some(probs) => {
            assert_eq!(probs.len(), s.probs_len(), "cross-attention: probs length");
            if nm == 0 {
                return;
            }
            probs
                .par_chunks_exact_mut(nm)
                .enumerate()
                .for_each(|(bh, p)| task(bh, zeroed(p)));
        }
        None => (0..s.batch * s.heads)
            .into_par_iter()
            .for_each_init(|| vec![0.0f32; nm], |p, bh| task(bh, p)),
    }
}

/// Backward: the gradients of `q` and of the packed `kv` from the output gradient `gout`
/// (`[B·N, D]`) and the probabilities kept by [`forward`] (the bias is a constant). Every
/// element of `dq` and `dkv` is written, so both may start uninitialised.
pub fn backward(
    (q, kv): (&[f32], &[f32]),
    probs: &[f32],
    gout: &[f32],
    s: CrossShape,
    (dq, dkv): (&mut [MaybeUninit<f32>], &mut [MaybeUninit<f32>]),
) {
    assert_eq!(q.len(), s.q_len(), "cross-attention backward: q length");
    assert_eq!(kv.len(), s.kv_len(), "cross-attention backward: kv length");
    assert_eq!(dq.len(), s.q_len(), "cross-attention backward: dq length");
    assert_eq!(
        dkv.len(),
        s.kv_len(),
        "cross-attention backward: dkv length"
    );
    assert_eq!(
        gout.len(),
        s.q_len(),
        "cross-attention backward: gout length"
    );
    assert_eq!(
        probs.len(),
        s.probs_len(),
        "cross-attention backward: probs length"
    );
    let (n, m, d, dh) = (s.queries, s.keys, s.dim, s.head_dim());
    let nm = n * m;
    let dq_ptr = SharedMut::new(dq.as_mut_ptr().cast());
    let dkv_ptr = SharedMut::new(dkv.as_mut_ptr().cast());
    (0..s.batch * s.heads).into_par_iter().for_each_init(
        || vec![0.0f32; nm],
        |ds, bh| {
            let (b, h) = (bh / s.heads, bh % s.heads);
            let p = &probs[bh * nm..(bh + 1) * nm];
            let (q_off, kv_off) = (b * n * d + h * dh, b * m * 2 * d + h * dh);
            let qp = q[q_off..].as_ptr();
            let kp = kv[kv_off..].as_ptr();
            let go = gout[q_off..].as_ptr();
            // SAFETY: as in `forward`; the dq block (rows of sample b, columns of head h) and
            // the dk and dv blocks (rows of sample b, columns of head h in each half) belong to
            // this task alone, and the non-accumulating products write all of them.
            unsafe {
                let dv = dkv_ptr.get().add(kv_off + d);
                // dV = Pᵀ·dO
                matmul(
                    (m, dh, n),
                    (dv, 2 * d),
                    false,
                    (p.as_ptr(), 1, m),
                    (go, d, 1),
                    1.0,
                );
                // dP = dO·Vᵀ
                matmul(
                    (n, m, dh),
                    (ds.as_mut_ptr(), m),
                    false,
                    (go, d, 1),
                    (kp.add(d), 1, 2 * d),
                    1.0,
                );
            }
            simd::vectorized(
                #[inline(always)]
                || {
                    for (dsr, pr) in ds.chunks_exact_mut(m).zip(p.chunks_exact(m)) {
                        let dot = simd::dot(dsr, pr);
                        for (x, &pv) in dsr.iter_mut().zip(pr) {
                            *x = pv * (*x - dot);
                        }
                    }
                },
            );
            // SAFETY: as above.
            unsafe {
                // dQ = dS·K·scale, dK = dSᵀ·Q·scale
                matmul(
                    (n, dh, m),
                    (dq_ptr.get().add(q_off), d),
                    false,
                    (ds.as_ptr(), m, 1),
                    (kp, 2 * d, 1),
                    s.scale(),
                );
                matmul(
                    (m, dh, n),
                    (dkv_ptr.get().add(kv_off), 2 * d),
                    false,
                    (ds.as_ptr(), 1, m),
                    (qp, d, 1),
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

    /// Plain loops in f64, the kernel's independent reference.
    fn naive(q: &[f32], kv: &[f32], bias: Option<&[f32]>, s: CrossShape) -> Vec<f64> {
        let (n, m, d, dh) = (s.queries, s.keys, s.dim, s.head_dim());
        let mut out = vec![0.0f64; s.q_len()];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..n {
                    let qi = |j: usize| q[(b * n + i) * d + h * dh + j] as f64;
                    let k = |t: usize, j: usize| kv[(b * m + t) * 2 * d + h * dh + j] as f64;
                    let v = |t: usize, j: usize| kv[(b * m + t) * 2 * d + d + h * dh + j] as f64;
                    let scores: Vec<f64> = (0..m)
                        .map(|t| {
                            (0..dh).map(|j| qi(j) * k(t, j)).sum::<f64>() / (dh as f64).sqrt()
                                + bias.map_or(0.0, |c| c[b * m + t] as f64)
                        })
                        .collect();
                    let mx = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for j in 0..dh {
                        out[(b * n + i) * d + h * dh + j] =
                            (0..m).map(|t| e[t] / z * v(t, j)).sum();
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

    /// A padding mask's bias: the last `pad` keys of each sample masked.
    fn padding_bias(s: CrossShape, pad: usize) -> Vec<f32> {
        (0..s.bias_len())
            .map(|i| {
                if i % s.keys >= s.keys - pad {
                    -1e4
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn forward_matches_the_naive_loops_with_and_without_a_mask() {
        let shapes = [
            CrossShape {
                batch: 2,
                queries: 5,
                keys: 3,
                heads: 3,
                dim: 12,
            },
            CrossShape {
                batch: 1,
                queries: 17,
                keys: 8,
                heads: 2,
                dim: 16,
            },
            CrossShape {
                batch: 3,
                queries: 4,
                keys: 9,
                heads: 1,
                dim: 4,
            },
        ];
        for s in shapes {
            let q = pseudo_random(s.q_len(), 7);
            let kv: Vec<f32> = pseudo_random(s.kv_len(), 9)
                .iter()
                .map(|x| 2.0 * x)
                .collect();
            let bias = padding_bias(s, 2);
            for bias in [None, Some(bias.as_slice())] {
                let mut out = poisoned(s.q_len());
                let mut probs = poisoned(s.probs_len());
                forward(&q, &kv, bias, s, &mut out, Some(&mut probs));
                let (out, probs) = (read(&out), read(&probs));
                let want = naive(&q, &kv, bias, s);
                for (a, b) in out.iter().zip(&want) {
                    assert!((*a as f64 - b).abs() < 1e-5, "{s:?}: {a} vs {b}");
                }
                if bias.is_some() {
                    let masked = probs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % s.keys >= s.keys - 2);
                    assert!(masked.clone().count() > 0);
                    for (_, p) in masked {
                        assert_eq!(*p, 0.0, "a masked key is attended");
                    }
                }
                let mut out2 = poisoned(s.q_len());
                forward(&q, &kv, bias, s, &mut out2, None);
                assert_eq!(out, read(&out2), "kept and scratch probabilities agree");
            }
        }
    }

    /// Central finite differences of `Σ out·w` against the analytic backward, masked.
    #[test]
    fn backward_matches_finite_differences() {
        let s = CrossShape {
            batch: 2,
            queries: 4,
            keys: 3,
            heads: 2,
            dim: 6,
        };
        let (q, kv) = (pseudo_random(s.q_len(), 3), pseudo_random(s.kv_len(), 5));
        let bias = padding_bias(s, 1);
        let w = pseudo_random(s.q_len(), 11);
        let mut out = poisoned(s.q_len());
        let mut probs = poisoned(s.probs_len());
        forward(&q, &kv, Some(&bias), s, &mut out, Some(&mut probs));
        let probs = read(&probs);
        let (mut dq, mut dkv) = (poisoned(s.q_len()), poisoned(s.kv_len()));
        backward((&q, &kv), &probs, &w, s, (&mut dq, &mut dkv));
        let (dq, dkv) = (read(&dq), read(&dkv));
        let loss = |q: &[f32], kv: &[f32]| -> f64 {
            let o = naive(q, kv, Some(&bias), s);
            o.iter().zip(&w).map(|(a, b)| a * *b as f64).sum()
        };
        let h = 1e-3f32;
        for i in 0..q.len() {
            let (mut up, mut down) = (q.clone(), q.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up, &kv) - loss(&down, &kv)) / (2.0 * h as f64);
            assert!(
                (dq[i] as f64 - fd).abs() < 1e-3,
                "dq {i}: {} vs {fd}",
                dq[i]
            );
        }
        for i in 0..kv.len() {
            let (mut up, mut down) = (kv.clone(), kv.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&q, &up) - loss(&q, &down)) / (2.0 * h as f64);
            assert!(
                (dkv[i] as f64 - fd).abs() < 1e-3,
                "dkv {i}: {} vs {fd}",
                dkv[i]
            );
        }
    }
}
