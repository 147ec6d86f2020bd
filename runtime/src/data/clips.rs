//! Video training data made from still digits: each clip shows one digit moving in a straight
//! line across its frames, so a small video model has motion to learn on this machine.
//!
//! A clip is laid out as one tall image `[C, F·H, W]` (frame after frame), which is the same
//! memory as the model's `[C, F, H, W]` input: batches, noise, grids and checkpoints handle
//! clips as images, and only the graph's image input sees the frame axis.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tread_compiler::diag::{Diagnostic, Location};

use super::dataset::Dataset;
use super::resize::shrink_area;

/// The frame layout of a video model's clips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipShape {
    /// Frames per clip.
    pub frames: usize,
    /// Rows per frame.
    pub height: usize,
    /// Columns per frame.
    pub width: usize,
}

impl ClipShape {
    /// The clip as one tall image `[channels, frames·height, width]`.
    pub fn as_image(&self, channels: usize) -> [usize; 3] {
        [channels, self.frames * self.height, self.width]
    }

    /// The digit's size in a frame: 7/8 of the frame, as MNIST's 20-pixel strokes fill 20/28 of
    /// their field with a blank border of 4 (so the strokes fill about 5/8 of a frame).
    fn digit(&self) -> (usize, usize) {
        ((self.height * 7 / 8).max(1), (self.width * 7 / 8).max(1))
    }
}

/// One clip per image of `ds` (one-channel pixels in [-1, 1]): the image shrunk to 7/8 of a
/// frame, placed on the background value -1 and moved by a constant velocity per frame — up to
/// the speed that keeps its strokes in the frame for the whole clip, direction and start drawn
/// from `seed`. Labels are kept.
pub fn moving_digits(ds: &Dataset, clip: ClipShape, seed: u64) -> Result<Dataset, Diagnostic> {
    if ds.channels != 1 || ds.is_latents() {
        return Err(Diagnostic::new(
            Location::Item("data".into()),
            "a video model trains on clips made from one-channel digit images",
        )
        .expected("`mnist`, `idx:DIR` or `png:DIR` with one-channel images")
        .found(if ds.is_latents() {
            format!("latents {}", ds.shape_text())
        } else {
            format!("{}-channel images", ds.channels)
        })
        .in_file(ds.source.clone()));
    }
    let (dh, dw) = clip.digit();
    let frame_len = clip.height * clip.width;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(ds.n * clip.frames * frame_len);
    for i in 0..ds.n {
        let digit = shrink_area(ds.image(i), (ds.height, ds.width), (dh, dw));
        let (ys, xs) = loop {
            let ys = path(&mut rng, clip.frames, clip.height, dh);
            let xs = path(&mut rng, clip.frames, clip.width, dw);
            let still = ys.first() == ys.last() && xs.first() == xs.last();
            if !still
                || (speed(clip.frames, clip.height, dh) == 0
                    && speed(clip.frames, clip.width, dw) == 0)
            {
                break (ys, xs);
            }
        };
        for (&oy, &ox) in ys.iter().zip(&xs) {
            let start = images.len();
            images.resize(start + frame_len, -1.0);
            let frame = &mut images[start..];
            for y in 0..dh {
                for x in 0..dw {
                    let (fy, fx) = (oy + y as i64, ox + x as i64);
                    if (0..clip.height as i64).contains(&fy) && (0..clip.width as i64).contains(&fx)
                    {
                        frame[fy as usize * clip.width + fx as usize] = digit[y * dw + x];
                    }
                }
            }
        }
    }
    Ok(Dataset {
        images,
        labels: ds.labels.clone(),
        n: ds.n,
        channels: 1,
        height: clip.frames * clip.height,
        width: clip.width,
        source: ds.source.clone(),
        texts: ds.texts.clone(),
        captions: ds.captions.clone(),
    })
}

/// The blank border of a shrunk digit (MNIST's 4 of 28): it may leave the frame.
fn margin(digit: usize) -> i64 {
    (digit / 7) as i64
}

/// The largest whole-pixel speed per frame along an axis that keeps the strokes inside.
fn speed(frames: usize, side: usize, digit: usize) -> i64 {
    let travel = side as i64 - digit as i64 + 2 * margin(digit);
    if frames < 2 {
        0
    } else {
        (travel / (frames as i64 - 1)).max(0)
    }
}

/// The digit's offset along one axis in each frame: a start and a constant velocity drawn so
/// that every offset lies in `[-margin, side - digit + margin]`.
fn path(rng: &mut ChaCha8Rng, frames: usize, side: usize, digit: usize) -> Vec<i64> {
    let (lo, hi) = (-margin(digit), side as i64 - digit as i64 + margin(digit));
    let vmax = speed(frames, side, digit);
    let v = rng.random_range(-vmax..=vmax);
    let span = v * (frames as i64 - 1).max(0);
    let (first, last) = (lo.max(lo - span), hi.min(hi - span));
    let start = if first < last {
        rng.random_range(first..=last)
    } else {
        first.min(hi).max(lo)
    };
    (0..frames as i64).map(|f| start + v * f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(n: usize) -> Dataset {
        // A bright 20×20 square in a 28×28 field, like an MNIST stroke box.
        let mut img = vec![-1.0f32; 28 * 28];
        for y in 4..24 {
            for x in 4..24 {
                img[y * 28 + x] = 1.0;
            }
        }
        Dataset {
            images: img.repeat(n),
            labels: (0..n as i64).map(|i| i % 10).collect(),
            n,
            channels: 1,
            height: 28,
            width: 28,
            source: "test".into(),
            texts: None,
            captions: None,
        }
    }

    /// The centre of mass of a frame's bright pixels.
    fn centre(frame: &[f32], w: usize) -> (f64, f64) {
        let (mut m, mut sy, mut sx) = (0.0, 0.0, 0.0);
        for (i, &v) in frame.iter().enumerate() {
            let mass = f64::from(v + 1.0);
            m += mass;
            sy += mass * (i / w) as f64;
            sx += mass * (i % w) as f64;
        }
        (sy / m, sx / m)
    }

    #[test]
    fn every_clip_moves_its_whole_digit_at_a_constant_speed() {
        let clip = ClipShape {
            frames: 4,
            height: 16,
            width: 16,
        };
        let ds = moving_digits(&digits(200), clip, 3).unwrap();
        assert_eq!((ds.n, ds.height, ds.width), (200, 64, 16));
        let total: f32 = digits(1).images.iter().map(|v| v + 1.0).sum::<f32>() / 4.0;
        for i in 0..ds.n {
            let frames: Vec<&[f32]> = ds.image(i).chunks(256).collect();
            let centres: Vec<(f64, f64)> = frames.iter().map(|f| centre(f, 16)).collect();
            let step = (centres[1].0 - centres[0].0, centres[1].1 - centres[0].1);
            assert!(
                step.0.abs() + step.1.abs() >= 1.0,
                "clip {i} stands still: {centres:?}"
            );
            for (f, c) in frames.iter().zip(&centres) {
                // The 10×10 square (area 100 = 400/4) stays whole in every frame.
                let mass: f32 = f.iter().map(|v| v + 1.0).sum();
                assert!(
                    (mass - total).abs() < 1e-3,
                    "clip {i} loses strokes: {mass} vs {total}"
                );
                assert!(c.0 > 4.0 && c.0 < 11.0 && c.1 > 4.0 && c.1 < 11.0, "{c:?}");
            }
            for k in 1..centres.len() {
                let s = (
                    centres[k].0 - centres[k - 1].0,
                    centres[k].1 - centres[k - 1].1,
                );
                assert!((s.0 - step.0).abs() < 1e-9 && (s.1 - step.1).abs() < 1e-9);
            }
        }
        assert_eq!(ds.labels, digits(200).labels);
    }

    #[test]
    fn the_same_seed_makes_the_same_clips_and_another_seed_others() {
        let clip = ClipShape {
            frames: 6,
            height: 16,
            width: 16,
        };
        let a = moving_digits(&digits(20), clip, 1).unwrap();
        assert_eq!(a, moving_digits(&digits(20), clip, 1).unwrap());
        assert_ne!(
            a.images,
            moving_digits(&digits(20), clip, 2).unwrap().images
        );
    }

    #[test]
    fn latents_and_colour_images_are_refused_by_name() {
        let mut rgb = digits(1);
        rgb.channels = 3;
        rgb.images = rgb.images.repeat(3);
        let clip = ClipShape {
            frames: 4,
            height: 16,
            width: 16,
        };
        let e = moving_digits(&rgb, clip, 0).unwrap_err().to_string();
        assert!(
            e.contains("3-channel images") && e.contains("one-channel"),
            "{e}"
        );
    }
}
