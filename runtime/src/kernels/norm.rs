//! LayerNorm / RMSNorm over the last axis without affine, optionally followed by adaLN's
//! modulation `·(1 + scale[b]) + shift[b]` with per-sample `[B, D]` vectors: DiT's
//! `modulate(norm(x), shift, scale)` as one pass forward and one pass backward.
//!
//! The forward keeps each row's mean and 1/σ (`stats`, `[B·N, 2]`); the backward recomputes the
//! normalised row from them:
//!
//! ```text
//! x̂ = (x − μ)·r     ĝ = g ⊙ (1 + scale[b])
//! dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂))       (RMSNorm: μ = 0 and no mean(ĝ) term)
//! dshift[b] = Σ_rows g     dscale[b] = Σ_rows g ⊙ x̂
//! ```

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::buffer::zeroed;
use super::elementwise::Rows;
use super::simd::{self, vectorized};
use super::ROW_CHUNK;

/// Which normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `(x − mean)/√(var + eps)`.
    Layer,
    /// `x/√(mean(x²) + eps)`.
    Rms,
}

/// Mean and 1/σ of one row (two passes: the mean, then the centred squares, which is exact
/// where `E[x²] − E[x]²` cancels).
#[inline(always)]
fn row_stats(x: &[f32], kind: NormKind, eps: f32) -> (f32, f32) {
    let inv_d = 1.0 / x.len() as f32;
    let mean = match kind {
        NormKind::Layer => simd::sum(x) * inv_d,
        NormKind::Rms => 0.0,
    };
    let var = simd::sum_sq_centred(x, mean) * inv_d;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Forward. `mods = Some((shift, scale))` applies the modulation; `stats`, when given, receives
/// `[mean, 1/σ]` per row for [`backward`].
pub fn forward(
    x: &[f32],
    mods: Option<(&[f32], &[f32])>,
    s: Rows,
    kind: NormKind,
    eps: f32,
    out: &mut [MaybeUninit<f32>],
    stats: Option<&mut [f32]>,
) {
    let d = s.width;
    assert_eq!(x.len(), s.len(), "norm: x length");
    assert_eq!(out.len(), s.len(), "norm: output length");
    if let Some((sh, sc)) = mods {
        assert_eq!(sh.len(), s.batch * d, "norm: shift length");
        assert_eq!(sc.len(), s.batch * d, "norm: scale length");
    }
    let mut scratch;
    let stats = match stats {
        Some(st) => st,
        None => {
            scratch = vec![0.0f32; 2 * s.batch * s.tokens];
            &mut scratch[..]
        }
    };
    assert_eq!(stats.len(), 2 * s.batch * s.tokens, "norm: stats length");
    out.par_chunks_mut(ROW_CHUNK * d)
        .zip(stats.par_chunks_mut(ROW_CHUNK * 2))
        .enumerate()
        .for_each(|(c, (o, st))| {
            vectorized(
                #[inline(always)]
                || {
                    for (i, (o, st)) in o
                        .chunks_exact_mut(d)
                        .zip(st.chunks_exact_mut(2))
                        .enumerate()
                    {
                        let r = c * ROW_CHUNK + i;
                        let xr = &x[r * d..][..d];
                        let (mean, rstd) = row_stats(xr, kind, eps);
                        st[0] = mean;
                        st[1] = rstd;
                        match mods {
                            Some((sh, sc)) => {
                                let b = s.sample_of(r);
                                let (sh, sc) = (&sh[b * d..][..d], &sc[b * d..][..d]);
                                for (((o, &x), &sc), &sh) in o.iter_mut().zip(xr).zip(sc).zip(sh) {
                                    o.write((x - mean) * rstd * (1.0 + sc) + sh);
                                }
                            }
                            None => {
                                for (o, &x) in o.iter_mut().zip(xr) {
                                    o.write((x - mean) * rstd);
                                }
                            }
                        }
                    }
                },
            )
        });
}

/// The modulation side of [`backward`]: the forward's scale vectors and where the shift and
/// scale gradients go (all `[B, D]`).
pub struct ModGrads<'a> {
    /// The forward's scale vectors.
    pub scale: &'a [f32],
    /// Receives the shift gradient (may start uninitialised: every value is written).
    pub dshift: &'a mut [MaybeUninit<f32>],
    /// Receives the scale gradient (may start uninitialised: every value is written).
    pub dscale: &'a mut [MaybeUninit<f32>],
}

/// One row of [`backward`]: `dxr` from the row's input and gradient `(x, g)`, its statistics
/// and the sample's scale; adds the modulation gradients into `acc`. Inlined into the
/// dispatched loops (a plain closure would not be, and would lose the wide SIMD units).
#[inline(always)]
fn row_backward(
    (xr, gr): (&[f32], &[f32]),
    (mean, rstd): (f32, f32),
    kind: NormKind,
    dxr: &mut [f32],
    sc: Option<&[f32]>,
    acc: Option<(&mut [f32], &mut [f32])>,
) {
    let inv_d = 1.0 / xr.len() as f32;
    // dx first holds ĝ.
    match sc {
        Some(sc) => {
            for ((dx, &g), &sc) in dxr.iter_mut().zip(gr).zip(sc) {
                *dx = g * (1.0 + sc);
            }
        }
        None => dxr.copy_from_slice(gr),
    }
    let sum_g = simd::sum(dxr);
    let sum_gx = rstd * simd::dot_centred(dxr, xr, mean);
    let a = match kind {
        NormKind::Layer => sum_g * inv_d,
        NormKind::Rms => 0.0,
    };
    let c = sum_gx * inv_d;
    for (dx, &x) in dxr.iter_mut().zip(xr) {
        let xh = (x - mean) * rstd;
        *dx = rstd * (*dx - a - xh * c);
    }
    if let Some((dsh, dsc)) = acc {
        for (((dsh, dsc), &g), &x) in dsh.iter_mut().zip(dsc.iter_mut()).zip(gr).zip(xr) {
            let xh = (x - mean) * rstd;
            *dsh += g;
            *dsc += g * xh;
        }
    }
}

/// Backward: `dx` from the output gradient `g`, and the modulation gradients when the forward
/// modulated (`mods`). Every value of `dx` is written, so it may start uninitialised; each
/// parallel task zeroes its own rows first (cheap: they are about to be written, and the
/// zeroing is split across the cores instead of a serial memset by the caller).
pub fn backward(
    x: &[f32],
    stats: &[f32],
    g: &[f32],
    (s, kind): (Rows, NormKind),
    dx: &mut [MaybeUninit<f32>],
    mods: Option<ModGrads<'_>>,
) {
    let (n, d) = (s.tokens, s.width);
    assert_eq!(x.len(), s.len(), "norm backward: x length");
    assert_eq!(g.len(), s.len(), "norm backward: g length");
    assert_eq!(dx.len(), s.len(), "norm backward: dx length");
    assert_eq!(stats.len(), 2 * s.batch * n, "norm backward: stats length");
    // Row r's input, gradient and statistics (a plain closure: only indexing, inlined).
    let at = |r: usize| {
        (
            (&x[r * d..][..d], &g[r * d..][..d]),
            (stats[2 * r], stats[2 * r + 1]),
        )
    };
    match mods {
        Some(ModGrads {
            scale: sc,
            dshift,
            dscale,
        }) => {
            assert_eq!(sc.len(), s.batch * d, "norm backward: scale length");
            assert_eq!(dshift.len(), s.batch * d, "norm backward: dshift length");
            assert_eq!(dscale.len(), s.batch * d, "norm backward: dscale length");
            dx.par_chunks_mut(n * d)
                .zip(dshift.par_chunks_mut(d).zip(dscale.par_chunks_mut(d)))
                .enumerate()
                .for_each(|(b, (dxs, (dsh, dsc)))| {
                    vectorized(
                        #[inline(always)]
                        || {
                            let (dxs, dsh, dsc) = (zeroed(dxs), zeroed(dsh), zeroed(dsc));
                            let scb = &sc[b * d..][..d];
                            for (t, dxr) in dxs.chunks_exact_mut(d).enumerate() {
                                let (rows, st) = at(b * n + t);
                                let acc = Some((&mut *dsh, &mut *dsc));
                                row_backward(rows, st, kind, dxr, Some(scb), acc);
                            }
                        },
                    )
                });
        }
        None => {
            dx.par_chunks_mut(ROW_CHUNK * d)
                .enumerate()
                .for_each(|(c, dxs)| {
                    vectorized(
                        #[inline(always)]
                        || {
                            let dxs = zeroed(dxs);
                            for (i, dxr) in dxs.chunks_exact_mut(d).enumerate() {
                                let (rows, st) = at(c * ROW_CHUNK + i);
                                row_backward(rows, st, kind, dxr, None, None);
                            }
                        },
                    )
                });
        }
    }
}
