//! A folder of PNG images with one sub-folder per class.
//!
//! Why: the simplest way to bring your own images (`DIR/cat/001.png`, `DIR/dog/002.png`, ...),
//! the layout torchvision's `ImageFolder` reads.
//!
//! Rules:
//! - every non-hidden sub-folder of `DIR` is a class; class index = position in the byte-wise
//!   sorted list of folder names; files directly in `DIR` are ignored;
//! - inside a class folder, files ending in `.png` (any case) are read in sorted name order;
//!   other files are ignored, and a class folder without any PNG is an error;
//! - images are decoded to 8 bits per sample (palette and low-bit grayscale expanded, 16-bit
//!   samples reduced to their high byte), alpha dropped: grayscale gives 1 channel, RGB 3;
//! - every image must have the size and channel count of the first, else the error names the
//!   file;
//! - pixels are scaled to [-1, 1] as `x / 127.5 - 1`; images are stored class after class.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use png::{ColorType, Transformations};
use tread_compiler::diag::{Diagnostic, Location};

use super::dataset::Dataset;

/// Whether `dir` has at least one class sub-folder (used to recognise a bare path).
pub fn has_class_folders(dir: &Path) -> bool {
    class_folders(dir).is_ok_and(|c| !c.is_empty())
}

/// The class names of a PNG folder, in class-index order (sorted sub-folder names).
pub fn class_names(dir: &Path) -> Result<Vec<String>, Diagnostic> {
    Ok(class_folders(dir)?.into_iter().map(|(n, _)| n).collect())
}

/// Loads every PNG under `dir`'s class folders into a [`Dataset`] (see the module doc).
pub fn load(dir: &Path) -> Result<Dataset, Diagnostic> {
    let classes = class_folders(dir)?;
    if classes.is_empty() {
        return Err(
            Diagnostic::new(Location::File, "the PNG folder has no class sub-folders")
                .expected("one sub-folder of .png images per class (DIR/<class>/*.png)")
                .found("no sub-folders")
                .in_file(dir.display().to_string()),
        );
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    // The shape of the first image, and its file, which every other image must match.
    let mut first: Option<(Decoded, PathBuf)> = None;
    for (label, (name, folder)) in classes.iter().enumerate() {
        let files = png_files(folder)?;
        if files.is_empty() {
            return Err(Diagnostic::new(
                Location::Item(format!("class folder `{name}`")),
                "class folder has no PNG images",
            )
            .expected("at least one .png file")
            .found("none")
            .in_file(dir.display().to_string()));
        }
        for file in files {
            let img = decode(&file)?;
            match &first {
                None => first = Some((img.shape_only(), file.clone())),
                Some((f, f_path))
                    if (f.channels, f.height, f.width) != (img.channels, img.height, img.width) =>
                {
                    return Err(Diagnostic::new(
                        Location::Item("image size".into()),
                        "image size or channel count differs from the first image",
                    )
                    .expected(format!("{} (like {})", f.shape_text(), f_path.display()))
                    .found(img.shape_text())
                    .in_file(file.display().to_string()));
                }
                Some(_) => {}
            }
            images.extend(img.planar().map(|b| b as f32 / 127.5 - 1.0));
            labels.push(label as i64);
        }
    }
    // Never None: every class folder was checked to hold at least one image.
    let shape = first.map_or(
        Decoded {
            channels: 0,
            height: 0,
            width: 0,
            interleaved: Vec::new(),
        },
        |(shape, _)| shape,
    );
    Ok(Dataset {
        images,
        n: labels.len(),
        labels,
        channels: shape.channels,
        height: shape.height,
        width: shape.width,
        source: format!("png:{}", dir.display()),
        texts: None,
        captions: None,
    })
}

/// The class folders of `dir`: (name, path), sorted by name, hidden folders skipped.
fn class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, Diagnostic> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Diagnostic::new(Location::File, "cannot read the PNG folder")
            .expected("a readable directory with one sub-folder per class")
            .found(e.to_string())
            .in_file(dir.display().to_string())
    })?;
    let mut folders: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, path)| !name.starts_with('.') && path.is_dir())
        .collect();
    folders.sort();
    Ok(folders)
}

/// The `.png` files of one class folder, sorted by name.
fn png_files(folder: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(folder).map_err(|e| {
        Diagnostic::new(Location::File, "cannot read the class folder")
            .expected("a readable directory of .png files")
            .found(e.to_string())
            .in_file(folder.display().to_string())
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            !name.starts_with('.')
                && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png"))
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// One decoded image: interleaved 8-bit samples, alpha already dropped.
pub(super) struct Decoded {
    /// 1 (grayscale) or 3 (RGB).
    pub(super) channels: usize,
    /// Rows.
    pub(super) height: usize,
    /// Columns.
    pub(super) width: usize,
    /// `height * width * channels` samples, pixel after pixel.
    interleaved: Vec<u8>,
}

impl Decoded {
    /// A copy with no pixels, kept to compare shapes against.
    pub(super) fn shape_only(&self) -> Decoded {
        Decoded {
            interleaved: Vec::new(),
            ..*self
        }
    }

    /// "C×H×W" for messages.
    pub(super) fn shape_text(&self) -> String {
        format!("{}x{}x{}", self.channels, self.height, self.width)
    }

    /// The samples in channel-major (planar) order, as the dataset stores them.
    pub(super) fn planar(&self) -> impl Iterator<Item = u8> + '_ {
        (0..self.channels).flat_map(move |c| {
            self.interleaved
                .iter()
                .skip(c)
                .step_by(self.channels)
                .copied()
        })
    }
}

/// Decodes one PNG to 8-bit grayscale or RGB.
pub(super) fn decode(path: &Path) -> Result<Decoded, Diagnostic> {
    let file_name = path.display().to_string();
    let png_error = |e: png::DecodingError| {
        Diagnostic::new(
            Location::Item("PNG data".into()),
            "cannot decode the PNG image",
        )
        .expected("a valid PNG image")
        .found(e.to_string())
        .in_file(&file_name)
    };
    let file = File::open(path).map_err(|e| {
        Diagnostic::new(Location::File, "cannot open the image")
            .expected("a readable .png file")
            .found(e.to_string())
            .in_file(&file_name)
    })?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(png_error)?;
    let Some(size) = reader.output_buffer_size() else {
        return Err(
            Diagnostic::new(Location::Item("header".into()), "the image is too large")
                .expected("an image that fits in memory")
                .found(format!(
                    "{}x{} pixels",
                    reader.info().width,
                    reader.info().height
                ))
                .in_file(&file_name),
        );
    };
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(png_error)?;
    let (samples, keep) = match info.color_type {
        ColorType::Grayscale => (1, 1),
        ColorType::GrayscaleAlpha => (2, 1),
        ColorType::Rgb => (3, 3),
        ColorType::Rgba => (4, 3),
        ColorType::Indexed => {
            return Err(Diagnostic::new(
                Location::Item("header".into()),
                "the palette image was not expanded",
            )
            .expected("grayscale or RGB(A) samples")
            .found("indexed colour")
            .in_file(&file_name))
        }
    };
    let (width, height) = (info.width as usize, info.height as usize);
    let mut interleaved = Vec::with_capacity(width * height * keep);
    for row in buf[..info.buffer_size()].chunks_exact(info.line_size) {
        for px in row[..width * samples].chunks_exact(samples) {
            interleaved.extend_from_slice(&px[..keep]);
        }
    }
    Ok(Decoded {
        channels: keep,
        height,
        width,
        interleaved,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_dir;
    use super::*;
    use png::BitDepth;

    /// Writes a PNG with the given colour type and depth; `data` is the raw interleaved samples.
    fn write_png(path: &Path, w: u32, h: u32, color: ColorType, depth: BitDepth, data: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::io::BufWriter::new(File::create(path).unwrap());
        let mut enc = png::Encoder::new(file, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if color == ColorType::Indexed {
            enc.set_palette(vec![0, 0, 0, 255, 255, 255]);
        }
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(data).unwrap();
        writer.finish().unwrap();
    }

    fn gray(path: &Path, w: u32, h: u32, v: u8) {
        let data = vec![v; (w * h) as usize];
        write_png(path, w, h, ColorType::Grayscale, BitDepth::Eight, &data);
    }

    #[test]
    fn loads_grayscale_classes_in_sorted_order() {
        let tmp = temp_dir("png-gray");
        let d = tmp.path();
        gray(&d.join("b_dog/1.png"), 3, 2, 255);
        gray(&d.join("a_cat/2.PNG"), 3, 2, 0);
        gray(&d.join("a_cat/1.png"), 3, 2, 51);
        // Gray+alpha: alpha dropped; 16-bit: high byte kept.
        write_png(
            &d.join("c_owl/x.png"),
            3,
            2,
            ColorType::GrayscaleAlpha,
            BitDepth::Eight,
            &[255, 7].repeat(6),
        );
        write_png(
            &d.join("c_owl/y.png"),
            3,
            2,
            ColorType::Grayscale,
            BitDepth::Sixteen,
            &[0, 9].repeat(6),
        );
        std::fs::write(d.join("a_cat/notes.txt"), b"ignored").unwrap();
        std::fs::write(d.join("README"), b"ignored").unwrap();
        std::fs::create_dir_all(d.join(".hidden")).unwrap();

        assert!(has_class_folders(d));
        assert_eq!(class_names(d).unwrap(), ["a_cat", "b_dog", "c_owl"]);
        let ds = load(d).unwrap();
        assert_eq!((ds.n, ds.channels, ds.height, ds.width), (5, 1, 2, 3));
        assert_eq!(ds.labels, vec![0, 0, 1, 2, 2]);
        assert_eq!(ds.image(0), &[51.0 / 127.5 - 1.0; 6]); // a_cat/1.png sorts before 2.PNG
        assert_eq!(ds.image(1), &[-1.0; 6]);
        assert_eq!(ds.image(2), &[1.0; 6]);
        assert_eq!(ds.image(3), &[1.0; 6]);
        assert_eq!(ds.image(4), &[-1.0; 6]);
        assert_eq!(ds.num_classes(), 3);
        assert!(ds.source.starts_with("png:"));
    }

    #[test]
    fn loads_rgb_and_rgba_as_planar_three_channels() {
        let tmp = temp_dir("png-rgb");
        let d = tmp.path();
        // 2x1 pixels: (255,0,0) (0,255,0)
        write_png(
            &d.join("a/rgb.png"),
            2,
            1,
            ColorType::Rgb,
            BitDepth::Eight,
            &[255, 0, 0, 0, 255, 0],
        );
        write_png(
            &d.join("b/rgba.png"),
            2,
            1,
            ColorType::Rgba,
            BitDepth::Eight,
            &[255, 0, 0, 9, 0, 255, 0, 9],
        );
        // Palette images expand to RGB.
        write_png(
            &d.join("c/pal.png"),
            2,
            1,
            ColorType::Indexed,
            BitDepth::Eight,
            &[1, 0],
        );
        let ds = load(d).unwrap();
        assert_eq!((ds.n, ds.channels, ds.height, ds.width), (3, 3, 1, 2));
        let planes = [1.0, -1.0, -1.0, 1.0, -1.0, -1.0];
        assert_eq!(ds.image(0), &planes);
        assert_eq!(ds.image(1), &planes);
        assert_eq!(ds.image(2), &[1.0, -1.0, 1.0, -1.0, 1.0, -1.0]);
    }

    #[test]
    fn mismatched_size_or_channels_names_the_file() {
        let tmp = temp_dir("png-size");
        let d = tmp.path();
        gray(&d.join("a/1.png"), 4, 4, 0);
        gray(&d.join("b/odd.png"), 4, 5, 0);
        let e = load(d).unwrap_err();
        assert!(e.file.ends_with("odd.png"), "{e}");
        assert!(e.expected.as_deref().unwrap().starts_with("1x4x4"), "{e}");
        assert!(e.expected.as_deref().unwrap().contains("1.png"), "{e}");
        assert_eq!(e.found.as_deref(), Some("1x5x4"));

        let tmp = temp_dir("png-chan");
        let d = tmp.path();
        gray(&d.join("a/1.png"), 1, 1, 0);
        write_png(
            &d.join("a/2.png"),
            1,
            1,
            ColorType::Rgb,
            BitDepth::Eight,
            &[1, 2, 3],
        );
        let e = load(d).unwrap_err();
        assert!(e.file.ends_with("2.png"), "{e}");
        assert_eq!(e.found.as_deref(), Some("3x1x1"));
    }

    #[test]
    fn bad_folders_and_files_are_errors() {
        let tmp = temp_dir("png-bad");
        let d = tmp.path();
        let e = load(d).unwrap_err();
        assert!(e.message.contains("no class sub-folders"), "{e}");
        assert!(!has_class_folders(d));
        assert!(load(&d.join("missing"))
            .unwrap_err()
            .message
            .contains("cannot read"));

        gray(&d.join("a/1.png"), 2, 2, 0);
        std::fs::create_dir_all(d.join("b")).unwrap();
        std::fs::write(d.join("b/readme.txt"), b"x").unwrap();
        let e = load(d).unwrap_err();
        assert_eq!(e.location, Location::Item("class folder `b`".into()), "{e}");

        std::fs::write(d.join("b/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let e = load(d).unwrap_err();
        assert!(e.file.ends_with("broken.png"), "{e}");
        assert_eq!(e.location, Location::Item("PNG data".into()));

        // A truncated PNG: valid header, data cut short.
        let mut bytes = std::fs::read(d.join("a/1.png")).unwrap();
        bytes.truncate(bytes.len() - 20);
        std::fs::write(d.join("b/broken.png"), bytes).unwrap();
        let e = load(d).unwrap_err();
        assert!(e.file.ends_with("broken.png"), "{e}");
    }
}
