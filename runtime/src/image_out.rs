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

/// The height of a grid label's strip, in pixels.
const LABEL_PX: usize = 16;

/// Like [`write_grid`], each sample's prompt shown (`labels[i]` is sample `i`'s): one prompt for
/// all is a title above the grid; several give each prompt its own rows, in order of first
/// appearance, with the prompt at the left of its first row.
pub fn write_labelled_grid(
    path: &Path,
    images: &[f32],
    n: usize,
    shape: [usize; 3],
    cols: usize,
    labels: &[String],
) -> Result<(), Diagnostic> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, l) in labels.iter().enumerate().take(n) {
        match groups.iter_mut().find(|g| g.0 == l) {
            Some(g) => g.1.push(i),
            None => groups.push((l, vec![i])),
        }
    }
    let [c, h, w] = shape;
    let (pad, out_c) = (2, if c == 3 { 3 } else { 1 });
    let strips: Vec<(Vec<u8>, usize)> = groups
        .iter()
        .map(|g| crate::plot::text_strip(g.0, LABEL_PX).unwrap_or((Vec::new(), 0)))
        .collect();
    // Each row of the grid: its samples, and the strip labelling it (a group's first row).
    let mut rows: Vec<(&[usize], Option<usize>)> = Vec::new();
    let (cols, label_w, title) = if groups.len() > 1 {
        let longest = groups.iter().map(|g| g.1.len()).max().unwrap_or(1);
        let cols = longest.min(2 * cols.max(1));
        for (k, g) in groups.iter().enumerate() {
            for (j, chunk) in g.1.chunks(cols).enumerate() {
                rows.push((chunk, (j == 0).then_some(k)));
            }
        }
        let widest = strips.iter().map(|s| s.1).max().unwrap_or(0);
        (cols, widest + 2 * pad, None)
    } else {
        let cols = cols.max(1).min(n.max(1));
        for g in &groups {
            for chunk in g.1.chunks(cols) {
                rows.push((chunk, None));
            }
        }
        (cols, 0, strips.first())
    };
    let top = title.map_or(0, |_| LABEL_PX + pad);
    let row_h = h.max(if label_w > 0 { LABEL_PX } else { 0 });
    let gw = (label_w + cols * (w + pad) + pad).max(title.map_or(0, |t| t.1 + 2 * pad));
    let gh = top + rows.len() * (row_h + pad) + pad;
    let mut buf = vec![0u8; gw * gh * out_c];
    if let Some((pixels, sw)) = title {
        paste_gray(&mut buf, gw, out_c, pixels, *sw, pad, pad);
    }
    for (r, (chunk, label)) in rows.iter().enumerate() {
        let y0 = top + pad + r * (row_h + pad);
        if let Some((pixels, sw)) = label.map(|k| &strips[k]) {
            paste_gray(
                &mut buf,
                gw,
                out_c,
                pixels,
                *sw,
                pad,
                y0 + (row_h - LABEL_PX) / 2,
            );
        }
        for (k, &i) in chunk.iter().enumerate() {
            let x0 = label_w + pad + k * (w + pad);
            let image = &images[i * c * h * w..][..c * h * w];
            put_image(
                &mut buf,
                (gw, out_c),
                image,
                shape,
                (x0, y0 + (row_h - h) / 2),
            );
        }
    }
    write_atomic(path, &encode(path, &[Grid(buf, gw, gh, out_c)])?)
}

/// Copies a grayscale strip `width` wide into `buf` (`gw` wide, `out_c` channels) at `(x0, y0)`.
fn paste_gray(
    buf: &mut [u8],
    gw: usize,
    out_c: usize,
    pixels: &[u8],
    width: usize,
    x0: usize,
    y0: usize,
) {
    for (y, row) in pixels.chunks_exact(width.max(1)).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            let at = ((y0 + y) * gw + x0 + x) * out_c;
            buf[at..at + out_c].fill(v);
        }
    }
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
    for (i, image) in images.chunks(c * h * w).take(n).enumerate() {
        let (gr, gc) = (i / cols, i % cols);
        put_image(
            &mut buf,
            (gw, out_c),
            image,
            shape,
            (pad + gc * (w + pad), pad + gr * (h + pad)),
        );
    }
    Grid(buf, gw, gh, out_c)
}

/// Writes one image `[C, H, W]` (values in [-1, 1]) into `buf` (`(width, channels)`) with its
/// top-left corner at `(x0, y0)`: grayscale from the first channel, RGB from three.
fn put_image(
    buf: &mut [u8],
    (gw, out_c): (usize, usize),
    image: &[f32],
    [_, h, w]: [usize; 3],
    (x0, y0): (usize, usize),
) {
    let to_u8 = |v: f32| (((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round()) as u8;
    for ch in 0..out_c {
        for y in 0..h {
            for x in 0..w {
                buf[((y0 + y) * gw + x0 + x) * out_c + ch] = to_u8(image[(ch * h + y) * w + x]);
            }
        }
    }
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

/// Writes samples as a grid (a video model's clips as frame strips, and an animated PNG whose
/// path is returned) and optionally as `.npy` (`[n, C, H, W]`, clips `[n, C, F, H, W]`).
pub fn write_samples(
    images: &[f32],
    n: usize,
    shape: [usize; 3],
    clip: Option<ClipShape>,
    png: &Path,
    npy: Option<&Path>,
    prompts: Option<&[String]>,
) -> Result<Option<std::path::PathBuf>, Diagnostic> {
    let animated = match clip {
        Some(c) => {
            let cols = ((n as f64).sqrt() / (c.frames as f64).sqrt()).ceil() as usize;
            Some(crate::image_out::write_clips(
                png, images, n, shape[0], c, cols,
            )?)
        }
        None => {
            let cols = (n as f64).sqrt().ceil() as usize;
            match prompts {
                Some(p) => write_labelled_grid(png, images, n, shape, cols, p)?,
                None => write_grid(png, images, n, shape, cols)?,
            }
            None
        }
    };
    if let Some(p) = npy {
        let dims = match clip {
            Some(c) => vec![n, shape[0], c.frames, c.height, c.width],
            None => vec![n, shape[0], shape[1], shape[2]],
        };
        crate::npy::write(p, images, &dims)?;
    }
    Ok(animated)
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

    /// The grayscale pixels and size of a PNG.
    fn read_gray(p: &Path) -> (Vec<u8>, usize, usize) {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
        let mut r = dec.read_info().unwrap();
        let (w, h) = (r.info().width as usize, r.info().height as usize);
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).unwrap();
        (buf, w, h)
    }

    #[test]
    fn a_labelled_grid_gives_each_prompt_its_rows_and_one_prompt_a_title() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grid.png");
        // Five 4×4 images, image i filled with the byte 40·(i+1).
        let images: Vec<f32> = (0..5)
            .flat_map(|i| [(40.0 * (i + 1) as f32) / 127.5 - 1.0; 16])
            .collect();
        let labels: Vec<String> = ["a one", "a two", "a one", "a three", "a two"]
            .map(String::from)
            .to_vec();
        write_labelled_grid(&p, &images, 5, [1, 4, 4], 3, &labels).unwrap();
        let (buf, w, h) = read_gray(&p);
        // Rows: "a one" [0, 2], "a two" [1, 4], "a three" [3]; each as tall as the label.
        assert_eq!(h, 3 * (LABEL_PX + 2) + 2);
        let label_w = w - (2 * (4 + 2) + 2);
        assert!(label_w > 20, "the labels take {label_w} pixels");
        let at = |row: usize, col: usize| {
            let y = 2 + row * (LABEL_PX + 2) + (LABEL_PX - 4) / 2;
            buf[y * w + label_w + 2 + col * 6]
        };
        assert_eq!(
            [at(0, 0), at(0, 1), at(1, 0), at(1, 1), at(2, 0)],
            [40, 120, 80, 200, 160]
        );
        assert_eq!(at(2, 1), 0, "an empty cell stays black");
        // The label column holds text: bright pixels left of every row's first image.
        for row in 0..3 {
            let y0 = 2 + row * (LABEL_PX + 2);
            let lit = (y0..y0 + LABEL_PX)
                .flat_map(|y| buf[y * w..y * w + label_w].iter())
                .filter(|&&v| v > 128)
                .count();
            assert!(lit > 5, "row {row}: {lit} bright pixels in its label");
        }

        // One prompt for all: a title strip above an ordinary grid.
        let same = vec!["the digit 7".to_string(); 5];
        write_labelled_grid(&p, &images, 5, [1, 4, 4], 3, &same).unwrap();
        let (buf, w, h) = read_gray(&p);
        assert_eq!(h, (LABEL_PX + 2) + 2 * 6 + 2);
        assert!(w > 3 * 6 + 2, "the title is wider than the grid");
        assert!(buf[..(LABEL_PX + 2) * w].iter().any(|&v| v > 128));
        assert_eq!(
            buf[(LABEL_PX + 2 + 2) * w + 2],
            40,
            "the first image under the title"
        );
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
