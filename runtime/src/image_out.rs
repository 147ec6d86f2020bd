//! Writing samples: a PNG grid (8-bit, grayscale or RGB) and a `.npy` array, both atomically.

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

/// Writes a little-endian f32 `.npy` (format 1.0, C order).
pub fn write_npy(path: &Path, data: &[f32], shape: &[usize]) -> Result<(), Diagnostic> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_readable() {
        let p = std::env::temp_dir().join(format!("treadc-npy-{}.npy", std::process::id()));
        write_npy(&p, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let b = std::fs::read(&p).unwrap();
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
        assert!(h.contains("'shape': (2, 3)"));
        assert_eq!(
            f32::from_le_bytes([
                b[10 + hl + 20],
                b[10 + hl + 21],
                b[10 + hl + 22],
                b[10 + hl + 23]
            ]),
            6.0
        );
    }

    #[test]
    fn grid_is_a_png_of_the_right_size() {
        let p = std::env::temp_dir().join(format!("treadc-grid-{}.png", std::process::id()));
        write_grid(&p, &vec![0.0; 5 * 4 * 4], 5, [1, 4, 4], 3).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap()));
        let r = dec.read_info().unwrap();
        assert_eq!((r.info().width, r.info().height), (3 * 6 + 2, 2 * 6 + 2));
    }
}
