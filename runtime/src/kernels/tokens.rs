//! TREAD's partition and merge on token rows, forward and backward: gather the kept tokens
//! `idx[b, k]` of `[B, N, D]` values, and merge processed kept tokens back into the saved full
//! value (routed positions keep the saved value: the identity bypass). Kept indices of one
//! sample are distinct (the route pass draws a subset), so the merge is an assignment.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::{copied, zeroed};

/// Sizes of one partition: `B` samples of `N` tokens of width `D`, `K` kept per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenShape {
    /// Samples.
    pub batch: usize,
    /// Tokens per sample in the full value.
    pub tokens: usize,
    /// Kept tokens per sample.
    pub kept: usize,
    /// Row width.
    pub width: usize,
}

impl TokenShape {
    fn check(&self, idx: &[usize]) {
        assert_eq!(idx.len(), self.batch * self.kept, "tokens: index count");
        assert!(
            idx.iter().all(|&i| i < self.tokens),
            "tokens: index out of range"
        );
    }
}

/// `out[b, k] = x[b, idx[b, k]]`.
pub fn gather(x: &[f32], idx: &[usize], s: TokenShape, out: &mut [MaybeUninit<f32>]) {
    s.check(idx);
    let (n, k, d) = (s.tokens, s.kept, s.width);
    assert_eq!(x.len(), s.batch * n * d, "gather: x length");
    assert_eq!(out.len(), s.batch * k * d, "gather: output length");
    out.par_chunks_mut(k * d).enumerate().for_each(|(b, o)| {
        for (j, row) in o.chunks_exact_mut(d).enumerate() {
            let t = idx[b * k + j];
            copied(row, &x[(b * n + t) * d..][..d]);
        }
    });
}

/// Backward of [`gather`]: `dx` is zero except `dx[b, idx[b, k]] = g[b, k]`.
pub fn gather_backward(g: &[f32], idx: &[usize], s: TokenShape, dx: &mut [MaybeUninit<f32>]) {
    s.check(idx);
    let (n, k, d) = (s.tokens, s.kept, s.width);
    assert_eq!(g.len(), s.batch * k * d, "gather backward: g length");
    assert_eq!(dx.len(), s.batch * n * d, "gather backward: dx length");
    dx.par_chunks_mut(n * d).enumerate().for_each(|(b, o)| {
        let o = zeroed(o);
        for j in 0..k {
            let t = idx[b * k + j];
            let (dst, src) = (&mut o[t * d..][..d], &g[(b * k + j) * d..][..d]);
            for (a, v) in dst.iter_mut().zip(src) {
                *a += v;
            }
        }
    });
}

/// `out = base` with `out[b, idx[b, k]] = kept[b, k]`.
pub fn merge(
    base: &[f32],
    kept: &[f32],
    idx: &[usize],
    s: TokenShape,
    out: &mut [MaybeUninit<f32>],
) {
    s.check(idx);
    let (n, k, d) = (s.tokens, s.kept, s.width);
    assert_eq!(base.len(), s.batch * n * d, "merge: base length");
    assert_eq!(kept.len(), s.batch * k * d, "merge: kept length");
    assert_eq!(out.len(), base.len(), "merge: output length");
    out.par_chunks_mut(n * d).enumerate().for_each(|(b, o)| {
        let o = copied(o, &base[b * n * d..][..n * d]);
        for j in 0..k {
            let t = idx[b * k + j];
            o[t * d..][..d].copy_from_slice(&kept[(b * k + j) * d..][..d]);
        }
    });
}

/// Backward of [`merge`]: `dbase = g` with the kept rows zeroed, `dkept[b, k] = g[b, idx[b, k]]`.
pub fn merge_backward(
    g: &[f32],
    idx: &[usize],
    s: TokenShape,
    dbase: &mut [MaybeUninit<f32>],
    dkept: &mut [MaybeUninit<f32>],
) {
    let (n, d) = (s.tokens, s.width);
    gather(g, idx, s, dkept);
    assert_eq!(dbase.len(), g.len(), "merge backward: dbase length");
    dbase.par_chunks_mut(n * d).enumerate().for_each(|(b, o)| {
        let o = copied(o, &g[b * n * d..][..n * d]);
        for j in 0..s.kept {
            o[idx[b * s.kept + j] * d..][..d].fill(0.0);
        }
    });
}
