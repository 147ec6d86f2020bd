//! Resampling one-channel images: area averaging to shrink (digits into video frames) and
//! bilinear interpolation to enlarge (video frames back to the classifier's 32×32).

/// Shrinks (or keeps) an `h0 × w0` image to `h1 × w1` (each ≤ the source's) by averaging the
/// source area under each output pixel, fractional pixel overlaps weighted by their share.
pub fn shrink_area(img: &[f32], (h0, w0): (usize, usize), (h1, w1): (usize, usize)) -> Vec<f32> {
    let rows = overlaps(h0, h1);
    let cols = overlaps(w0, w1);
    let mut out = Vec::with_capacity(h1 * w1);
    for row in &rows {
        for col in &cols {
            let mut sum = 0.0f64;
            let mut weight = 0.0f64;
            for &(y, wy) in row {
                for &(x, wx) in col {
                    sum += f64::from(img[y * w0 + x]) * wy * wx;
                    weight += wy * wx;
                }
            }
            out.push((sum / weight.max(f64::MIN_POSITIVE)) as f32);
        }
    }
    out
}

/// For each of `to` output cells along an axis of `from` source pixels: the source pixels it
/// covers and how much of each (in source pixels).
fn overlaps(from: usize, to: usize) -> Vec<Vec<(usize, f64)>> {
    let step = from as f64 / to.max(1) as f64;
    (0..to)
        .map(|o| {
            let (a, b) = (o as f64 * step, (o + 1) as f64 * step);
            (a.floor() as usize..(b.ceil() as usize).min(from))
                .map(|i| (i, (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0)))
                .filter(|&(_, w)| w > 0.0)
                .collect()
        })
        .collect()
}

/// Enlarges an `h0 × w0` image to `h1 × w1` by bilinear interpolation between pixel centres
/// (edges clamped), the convention of `align_corners = false`.
pub fn enlarge_bilinear(
    img: &[f32],
    (h0, w0): (usize, usize),
    (h1, w1): (usize, usize),
) -> Vec<f32> {
    let taps = |from: usize, to: usize| -> Vec<(usize, usize, f32)> {
        (0..to)
            .map(|o| {
                let s = ((o as f32 + 0.5) * from as f32 / to as f32 - 0.5).max(0.0);
                let i = (s.floor() as usize).min(from - 1);
                (i, (i + 1).min(from - 1), s - i as f32)
            })
            .collect()
    };
    let (ys, xs) = (taps(h0, h1), taps(w0, w1));
    let mut out = Vec::with_capacity(h1 * w1);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let at = |y: usize, x: usize| img[y * w0 + x];
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_two_by_two_blocks() {
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let out = shrink_area(&img, (4, 4), (2, 2));
        assert_eq!(out, vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn a_fractional_shrink_keeps_the_mean_of_a_constant_and_of_a_ramp() {
        let flat = vec![0.25f32; 28 * 28];
        assert!(shrink_area(&flat, (28, 28), (12, 12))
            .iter()
            .all(|v| (v - 0.25).abs() < 1e-6));
        let ramp: Vec<f32> = (0..3).map(|v| v as f32).collect();
        // Two output cells over three pixels: [0, 1.5) and [1.5, 3).
        let out = shrink_area(&ramp, (1, 3), (1, 2));
        assert!((out[0] - (0.0 + 0.5) / 1.5).abs() < 1e-6, "{out:?}");
        assert!((out[1] - (0.5 + 2.0) / 1.5).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn doubling_interpolates_between_pixel_centres() {
        let out = enlarge_bilinear(&[0.0, 1.0], (1, 2), (1, 4));
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
        assert_eq!(enlarge_bilinear(&[3.0], (1, 1), (2, 2)), vec![3.0; 4]);
    }
}
