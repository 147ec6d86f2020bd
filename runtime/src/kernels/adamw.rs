//! AdamW and the EMA as one in-place pass per parameter (PyTorch's AdamW semantics: decoupled
//! weight decay, bias-corrected moments, eps added after the square root), parallel over chunks.
//! The tensor formulation spends about 14 allocating passes per parameter; this reads each of
//! `p, g, m, v, ema` once and writes four of them once.

use rayon::prelude::*;

use super::ELEM_CHUNK;

/// The scalars of one update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWEma {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to √v̂.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// `1 − β₁ᵗ`.
    pub bias_correction1: f32,
    /// `1 − β₂ᵗ`.
    pub bias_correction2: f32,
    /// EMA decay `d` in `ema ← d·ema + (1−d)·p` (applied to the updated `p`).
    pub ema_decay: f32,
}

/// One AdamW step on `p` with gradient `g` and moments `m`, `v`, then the EMA update of `ema`.
pub fn step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], ema: &mut [f32], h: AdamWEma) {
    let n = p.len();
    for (what, len) in [
        ("g", g.len()),
        ("m", m.len()),
        ("v", v.len()),
        ("ema", ema.len()),
    ] {
        assert_eq!(len, n, "adamw: {what} has {len} values for {n} parameters");
    }
    let decay = 1.0 - h.lr * h.weight_decay;
    let (ib1, ib2) = (1.0 / h.bias_correction1, 1.0 / h.bias_correction2);
    p.par_chunks_mut(ELEM_CHUNK)
        .zip(g.par_chunks(ELEM_CHUNK))
        .zip(m.par_chunks_mut(ELEM_CHUNK))
        .zip(v.par_chunks_mut(ELEM_CHUNK))
        .zip(ema.par_chunks_mut(ELEM_CHUNK))
        .for_each(|((((p, g), m), v), e)| {
            for i in 0..p.len() {
                let gi = g[i];
                let mi = m[i] * h.beta1 + gi * (1.0 - h.beta1);
                let vi = v[i] * h.beta2 + gi * gi * (1.0 - h.beta2);
                let update = (mi * ib1) / ((vi * ib2).sqrt() + h.eps);
                let pi = p[i] * decay - update * h.lr;
                m[i] = mi;
                v[i] = vi;
                p[i] = pi;
                e[i] = e[i] * h.ema_decay + pi * (1.0 - h.ema_decay);
            }
        });
}

/// `ema ← d·ema + (1−d)·p` alone (a parameter that got no gradient this step).
pub fn ema(ema: &mut [f32], p: &[f32], decay: f32) {
    assert_eq!(ema.len(), p.len(), "ema: lengths");
    ema.par_chunks_mut(ELEM_CHUNK)
        .zip(p.par_chunks(ELEM_CHUNK))
        .for_each(|(e, p)| {
            for (e, &p) in e.iter_mut().zip(p) {
                *e = *e * decay + p * (1.0 - decay);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps against the formula evaluated by hand in f64.
    #[test]
    fn matches_the_formula() {
        let (lr, wd, d) = (0.1f64, 0.01f64, 0.75f64);
        let mut p = vec![1.0f32, -2.0];
        let (mut m, mut v, mut e) = (vec![0.0f32; 2], vec![0.0f32; 2], p.clone());
        let (mut pr, mut mr, mut vr, mut er) =
            ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2], [1.0, -2.0]);
        for (k, g) in [[0.5f64, -1.0], [0.25, 2.0]].iter().enumerate() {
            let t = k as i32 + 1;
            let h = AdamWEma {
                lr: lr as f32,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: wd as f32,
                bias_correction1: 1.0 - 0.9f32.powi(t),
                bias_correction2: 1.0 - 0.999f32.powi(t),
                ema_decay: d as f32,
            };
            let gf: Vec<f32> = g.iter().map(|&x| x as f32).collect();
            step(&mut p, &gf, &mut m, &mut v, &mut e, h);
            for i in 0..2 {
                mr[i] = 0.9 * mr[i] + 0.1 * g[i];
                vr[i] = 0.999 * vr[i] + 0.001 * g[i] * g[i];
                let mh = mr[i] / (1.0 - 0.9f64.powi(t));
                let vh = vr[i] / (1.0 - 0.999f64.powi(t));
                pr[i] = pr[i] * (1.0 - lr * wd) - lr * mh / (vh.sqrt() + 1e-8);
                er[i] = d * er[i] + (1.0 - d) * pr[i];
            }
        }
        for i in 0..2 {
            assert!((p[i] as f64 - pr[i]).abs() < 1e-5, "{p:?} vs {pr:?}");
            assert!((e[i] as f64 - er[i]).abs() < 1e-5, "{e:?} vs {er:?}");
        }
    }
}
