//! Writing samples as a PNG grid (8-bit, grayscale or RGB), atomically (`.npy`: [`crate::npy`]).

use std::path::{Path, PathBuf};

use tread_compiler::diag::Diagnostic;

use crate::checkpoint::write_atomic;
use crate::data::clips::ClipShape;

/// Tiles `n` images `[C, H, W]` (values in [-1, 1]) into a PNG grid with `cols` columns and a
/// 2-pixel border. One channel → grayscale; three → RGB; otherwise the first channel.
pub fn write_grid(
    path: &Path,
    images: &[f32],
    n: usize,
    shape: [usize; 3],
    cols: usize,
) -> Result<(), Diagnostic> {
    let grid = tile(images, n, shape, cols);
    write_atomic(path, &encode(path, &[grid])?)
}

/// Writes `n` clips (tall images `[C, F·H, W]`, see [`crate::data::clips`]) twice: `path` is a
/// grid of frame strips (each clip one row of its frames, left to right), and the returned
/// path (`NAME.anim.png` beside it) an animated PNG of the clips' grid playing frame by frame.
pub fn write_clips(
    path: &Path,
    clips: &[f32],
    n: usize,
    channels: usize,
    clip: ClipShape,
    cols: usize,
) -> Result<PathBuf, Diagnostic> {
    let ClipShape {
        frames: f,
        height: h,
        width: w,
    } = clip;
    let per_clip = channels * f * h * w;
    let mut strips = Vec::with_capacity(n * per_clip);
    for c in clips.chunks(per_clip).take(n) {
        for ch in 0..channels {
            for y in 0..h {
                for k in 0..f {
                    let row = ((ch * f + k) * h + y) * w;
                    strips.extend_from_slice(&c[row..row + w]);
                }
            }
        }
    }
    write_grid(path, &strips, n, [channels, h, f * w], cols)?;
    let frames: Vec<Grid> = (0..f)
        .map(|k| {
            let frame: Vec<f32> = clips
                .chunks(per_clip)
                .take(n)
                .flat_map(|c| {
                    (0..channels).flat_map(move |ch| c[(ch * f + k) * h * w..][..h * w].iter())
                })
                .copied()
                .collect();
            tile(&frame, n, [channels, h, w], cols)
        })
        .collect();
    let animated = path.with_extension("anim.png");
    write_atomic(&animated, &encode(&animated, &frames)?)?;
    Ok(animated)
}

/// An 8-bit image: pixels, width, height, channels (1 or 3).
struct Grid(Vec<u8>, usize, usize, usize);

fn tile(images: &[f32], n: usize, shape: [usize; 3], cols: usize) -> Grid {
    let [c, h, w] = shape;
    let cols = cols.max(1).min(n.max(1));
    let rows = n.div_ceil(cols);
    let pad = 2;
    let (gw, gh) = (cols * (w + pad) + pad, rows * (h + pad) + pad);
    let out_c = if c == 3 { 3 } else { 1 };
    let mut buf = vec![0u8; gw * gh * out_c];
    let to_u8 = |v: f32| (((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round()) as u8;
    for i in 0..n {
        let (gr, gc) = (i / cols, i % cols);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..out_c {
                    let v = images[((i * c + ch) * h + y) * w + x];
                    let (py, px) = (pad + gr * (h + pad) + y, pad + gc * (w + pad) + x);
                    buf[(py * gw + px) * out_c + ch] = to_u8(v);
                }
            }
        }
    }
    Grid(buf, gw, gh, out_c)
}

/// The PNG bytes of one image, or an animated PNG (a quarter second a frame, looping) of
/// several of the same size.
fn encode(path: &Path, frames: &[Grid]) -> Result<Vec<u8>, Diagnostic> {
    let encode = |e: png::EncodingError| {
        Diagnostic::new(
            tread_compiler::diag::Location::File,
            format!("cannot encode PNG: {e}"),
        )
        .in_file(path.display().to_string())
    };
    let Some(Grid(_, gw, gh, out_c)) = frames.first() else {
        return Ok(vec![]);
    };
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, *gw as u32, *gh as u32);
        enc.set_color(if *out_c == 3 {
            png::ColorType::Rgb
        } else {
            png::ColorType::Grayscale
        });
        enc.set_depth(png::BitDepth::Eight);
        if frames.len() > 1 {
            enc.set_animated(frames.len() as u32, 0).map_err(encode)?;
            enc.set_frame_delay(1, 4).map_err(encode)?;
        }
        let mut wr = enc.write_header().map_err(encode)?;
        for Grid(buf, ..) in frames {
            wr.write_image_data(buf).map_err(encode)?;
        }
        wr.finish().map_err(encode)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_a_png_of_the_right_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grid.png");
        write_grid(&p, &vec![0.0; 5 * 4 * 4], 5, [1, 4, 4], 3).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap()));
        let r = dec.read_info().unwrap();
        assert_eq!((r.info().width, r.info().height), (3 * 6 + 2, 2 * 6 + 2));
    }

    #[test]
    fn clips_become_frame_strips_and_an_animation_of_their_frames() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clips.png");
        let clip = ClipShape {
            frames: 3,
            height: 2,
            width: 2,
        };
        // Two clips whose frame k is filled with the value k/2 - 1 (0, 127/128, 255 as bytes).
        let one: Vec<f32> = (0..3).flat_map(|k| [k as f32 - 1.0; 4]).collect();
        let anim = write_clips(&p, &one.repeat(2), 2, 1, clip, 1).unwrap();
        assert_eq!(anim, dir.path().join("clips.anim.png"));
        let open = |p: &Path| {
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()))
                .read_info()
                .unwrap()
        };
        let mut strip = open(&p);
        assert_eq!(
            (strip.info().width, strip.info().height),
            (3 * 2 + 4, 2 * 4 + 2)
        );
        let mut buf = vec![0; strip.output_buffer_size().unwrap()];
        strip.next_frame(&mut buf).unwrap();
        // Row 2 (first clip's first row): border, frames 0, 1, 2 side by side, border.
        assert_eq!(&buf[20..30], &[0, 0, 0, 0, 128, 128, 255, 255, 0, 0]);
        let mut anim = open(&anim);
        assert_eq!(
            anim.info().animation_control().map(|a| a.num_frames),
            Some(3)
        );
        let mut seen = vec![];
        for _ in 0..3 {
            let mut buf = vec![0; anim.output_buffer_size().unwrap()];
            anim.next_frame(&mut buf).unwrap();
            seen.push(buf[2 * 6 + 2]);
        }
        assert_eq!(seen, vec![0, 128, 255]);
    }
}
