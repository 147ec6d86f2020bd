//! Writing samples as a PNG grid (8-bit, grayscale or RGB), atomically (`.npy`: [`crate::npy`]).

use std::path::Path;

use tread_compiler::diag::Diagnostic;

use crate::checkpoint::write_atomic;

/// Tiles `n` images `[C, H, W]` (values in [-1, 1]) into a PNG grid with `cols` columns and a
/// 2-pixel border. One channel → grayscale; three → RGB; otherwise the first channel.
pub fn write_grid(
    path: &Path,
    images: &[f32],
    n: usize,
    shape: [usize; 3],
    cols: usize,
) -> Result<(), Diagnostic> {
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
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, gw as u32, gh as u32);
        enc.set_color(if out_c == 3 {
            png::ColorType::Rgb
        } else {
            png::ColorType::Grayscale
        });
        enc.set_depth(png::BitDepth::Eight);
        let encode = |e: png::EncodingError| {
            Diagnostic::new(
                tread_compiler::diag::Location::File,
                format!("cannot encode PNG: {e}"),
            )
            .in_file(path.display().to_string())
        };
        let mut wr = enc.write_header().map_err(encode)?;
        wr.write_image_data(&buf).map_err(encode)?;
    }
    write_atomic(path, &bytes)
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
}
