//! Fixed tables computed on the host, identical on every backend and in ONNX exports: the 2-D
//! embedding and the timestep frequencies (tread.md §2), RoPE positions and frequencies.

/// 2-D sin-cos position table, row-major `[height·width, dim]`. For token `n = row·width + col`
/// the first `dim/2` channels encode the column and the last `dim/2` the row; each half is
/// `[sin(pos·ω), cos(pos·ω)]` with `ω_k = 1 / 10000^(k / (dim/4))`.
pub fn pos_embed_2d(height: usize, width: usize, dim: usize) -> Vec<f32> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let mut out = Vec::with_capacity(height * width * dim);
    for row in 0..height {
        for col in 0..width {
            for pos in [col as f64, row as f64] {
                out.extend(omega.iter().map(|w| (pos * w).sin() as f32));
                out.extend(omega.iter().map(|w| (pos * w).cos() as f32));
            }
        }
    }
    out
}

/// Timestep frequencies `exp(−ln(max_period)·k / half)` for `k < dim/2`.
pub fn timestep_freqs(dim: usize, max_period: f64) -> Vec<f32> {
    let half = dim / 2;
    (0..half)
        .map(|k| (-(max_period.ln()) * k as f64 / half as f64).exp() as f32)
        .collect()
}

/// The additive bias a masked key gets before the softmax (`sdpa`'s key mask, 0 = padding):
/// its weight underflows to exactly 0. One value for the burn lowering and the ONNX writer.
pub const MASKED_KEY_BIAS: f32 = -1.0e9;

/// RoPE positions, row-major `[tokens, axes]`: the last `grid.len()` axes hold each token's
/// coordinates on the row-major grid (frame, row, column), the leading axes zero (Flux's text
/// and image ids); an empty grid gives all zeros.
pub fn positions(tokens: usize, grid: &[usize], axes: usize) -> Vec<f32> {
    let lead = axes - grid.len();
    let mut out = Vec::with_capacity(tokens * axes);
    for n in 0..tokens {
        out.extend(std::iter::repeat_n(0.0, lead));
        let mut coords = vec![0usize; grid.len()];
        let mut rest = n;
        for (a, &size) in grid.iter().enumerate().rev() {
            coords[a] = rest % size.max(1);
            rest /= size.max(1);
        }
        out.extend(coords.iter().map(|&c| c as f32));
    }
    out
}

/// RoPE frequencies as a matrix `[axes, head_dim/2]`: pair `j` of axis `a` (columns after the
/// axes before it) turns by `θ^(−2j/dim_a)` per unit of that axis' position, so that
/// `angles = positions · M`.
pub fn rope_freqs(axes_dims: &[usize], theta: f64) -> Vec<f32> {
    let half: usize = axes_dims.iter().sum::<usize>() / 2;
    let mut m = vec![0.0f32; axes_dims.len() * half];
    let mut col = 0;
    for (a, &d) in axes_dims.iter().enumerate() {
        for j in 0..d / 2 {
            m[a * half + col + j] = theta.powf(-2.0 * j as f64 / d as f64) as f32;
        }
        col += d / 2;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_fill_the_last_axes_row_major() {
        // 2 rows × 3 columns, 3 axes: (0, row, col).
        let p = positions(6, &[2, 3], 3);
        assert_eq!(&p[..6], &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(&p[15..], &[0.0, 1.0, 2.0]);
        assert!(positions(4, &[], 3).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn rope_freqs_are_block_diagonal() {
        let m = rope_freqs(&[4, 2], 100.0);
        // 3 columns: axis 0 owns 0..2 (1, 100^-1/2), axis 1 owns column 2 (1).
        assert_eq!(m.len(), 6);
        assert_eq!(&m[..3], &[1.0, 0.1, 0.0]);
        assert_eq!(&m[3..], &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn pos_embed_layout() {
        let (h, w, d) = (2, 3, 8);
        let t = pos_embed_2d(h, w, d);
        assert_eq!(t.len(), h * w * d);
        // Token (row 1, col 2): column half first: sin(2·ω0)=sin(2), sin(2·ω1)=sin(0.02), cos...
        let tok = &t[(w + 2) * d..(w + 3) * d];
        let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-6;
        assert!(close(tok[0], 2f64.sin()));
        assert!(close(tok[1], (2.0 / 100.0f64).sin()));
        assert!(close(tok[2], 2f64.cos()));
        assert!(close(tok[4], 1f64.sin()), "row half");
        assert!(close(tok[6], 1f64.cos()));
    }

    #[test]
    fn timestep_freqs_span_one_to_one_over_max_period() {
        let f = timestep_freqs(256, 10000.0);
        assert_eq!(f.len(), 128);
        assert_eq!(f[0], 1.0);
        assert!((f[127] as f64 - (-(10000f64.ln()) * 127.0 / 128.0).exp()).abs() < 1e-9);
    }
}
