//! A video model's clips as the classifier's digits: every frame is enlarged back to MNIST's
//! scale and centred by its centre of mass (as MNIST's digits were), so each frame is scored like
//! a still digit.

use crate::data::clips::ClipShape;
use crate::data::resize::enlarge_bilinear;
use crate::lower::classifier::SIDE;

/// The frames of `n` tall clips `[1, F·H, W]` as `n·F` classifier digits `SIDE × SIDE`, clip
/// after clip, frame after frame.
pub fn frames_as_digits(clips: &[f32], n: usize, clip: ClipShape) -> Vec<f32> {
    let frame_len = clip.height * clip.width;
    // A clip's digit field is 7/8 of its frame, as MNIST's 28 is of the classifier's 32: a
    // frame enlarged to 32×32 holds its digit at MNIST's scale.
    let big = (SIDE, SIDE);
    clips
        .chunks(frame_len)
        .take(n * clip.frames)
        .flat_map(|frame| {
            let up = enlarge_bilinear(frame, (clip.height, clip.width), big);
            centred(&up, big)
        })
        .collect()
}

/// The share of `n` tall clips whose digit moves: its centre of mass in the last frame at
/// least one frame pixel from where it is in the first (every training clip moves further).
pub fn moving_share(clips: &[f32], n: usize, clip: ClipShape) -> f64 {
    let frame_len = clip.height * clip.width;
    let per_clip = clip.frames * frame_len;
    let moved = clips
        .chunks(per_clip)
        .take(n)
        .filter(|c| {
            let first = centre_of_mass(&c[..frame_len], clip.width);
            let last = centre_of_mass(&c[per_clip - frame_len..], clip.width);
            match (first, last) {
                (Some(a), Some(b)) => (a.0 - b.0).hypot(a.1 - b.1) >= 1.0,
                _ => false,
            }
        })
        .count();
    moved as f64 / n.max(1) as f64
}

/// The brightness-weighted centre (row, column) of an image of width `w` in [-1, 1]; `None`
/// for a blank one.
fn centre_of_mass(img: &[f32], w: usize) -> Option<(f64, f64)> {
    let (mut mass, mut sy, mut sx) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &v) in img.iter().enumerate() {
        let m = f64::from(v + 1.0).max(0.0);
        mass += m;
        sy += m * (i / w) as f64;
        sx += m * (i % w) as f64;
    }
    (mass > 0.0).then(|| (sy / mass, sx / mass))
}

/// A `SIDE × SIDE` crop of `img` (values in [-1, 1]) whose centre is the image's centre of mass
/// (brightness above the background -1), the rest background.
fn centred(img: &[f32], (h, w): (usize, usize)) -> Vec<f32> {
    let (cy, cx) = centre_of_mass(img, w).map_or((h as i64 / 2, w as i64 / 2), |(y, x)| {
        (y.round() as i64, x.round() as i64)
    });
    let half = SIDE as i64 / 2;
    let mut out = vec![-1.0f32; SIDE * SIDE];
    for y in 0..SIDE as i64 {
        for x in 0..SIDE as i64 {
            let (sy, sx) = (cy - half + y, cx - half + x);
            if (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx) {
                out[(y * SIDE as i64 + x) as usize] = img[(sy * w as i64 + sx) as usize];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clip_moves_when_its_digit_travels_a_pixel_or_more() {
        let clip = ClipShape {
            frames: 2,
            height: 4,
            width: 4,
        };
        let dot = |y: usize, x: usize| {
            let mut f = vec![-1.0f32; 16];
            f[y * 4 + x] = 1.0;
            f
        };
        let still = [dot(1, 1), dot(1, 1)].concat();
        let moved = [dot(1, 1), dot(2, 2)].concat();
        let blank = vec![-1.0f32; 32];
        let clips = [still, moved, blank].concat();
        assert!((moving_share(&clips, 3, clip) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_dot_anywhere_in_a_frame_lands_in_the_centre_of_its_digit() {
        let clip = ClipShape {
            frames: 2,
            height: 16,
            width: 16,
        };
        let mut clips = vec![-1.0f32; 2 * 256];
        for (f, (y, x)) in [(2usize, 3usize), (12, 11)].into_iter().enumerate() {
            for dy in 0..2 {
                for dx in 0..2 {
                    clips[f * 256 + (y + dy) * 16 + x + dx] = 1.0;
                }
            }
        }
        let digits = frames_as_digits(&clips, 1, clip);
        assert_eq!(digits.len(), 2 * SIDE * SIDE);
        for d in digits.chunks(SIDE * SIDE) {
            let bright: Vec<usize> = (0..d.len()).filter(|&i| d[i] > 0.5).collect();
            assert!(!bright.is_empty());
            for i in bright {
                let (y, x) = ((i / SIDE) as i64, (i % SIDE) as i64);
                assert!(
                    (y - 16).abs() <= 3 && (x - 16).abs() <= 3,
                    "bright at {y},{x}"
                );
            }
        }
    }
}
