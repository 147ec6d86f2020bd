//! IDX reader: the file format of the original MNIST distribution.
//!
//! Why: MNIST and its drop-in relatives (Fashion-MNIST, KMNIST, EMNIST) ship as IDX, and the
//! bundled digits in `data/mnist/` use it too, so this is the one reader every run can rely on.
//!
//! Layout (all integers big-endian):
//! - images: magic `0x00000803` (uint8 data, 3 dimensions), then `N`, `rows`, `cols` as u32, then
//!   `N * rows * cols` bytes, image after image, row-major;
//! - labels: magic `0x00000801` (uint8 data, 1 dimension), then `N` as u32, then `N` bytes.
//!
//! Either file may be gzipped (detected by the gzip magic `1f 8b`, not by the name). The file
//! length must match its header exactly: a short file or trailing bytes are errors, and so is a
//! label count that differs from the image count.
//!
//! A directory is searched for `*images-idx3-ubyte[.gz]` and the label file with the same prefix
//! (`*labels-idx1-ubyte[.gz]`; the `images.idx3-ubyte` spelling of some mirrors is accepted too).
//! When it holds several sets, `train-` wins; when a file exists both plain and gzipped, the plain
//! one is read.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::read::read_bytes;

use super::dataset::Dataset;

/// Magic number of an IDX file of uint8 data with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of uint8 data with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Loads the image and label files of an IDX directory (see the module doc for how they are
/// found) into a [`Dataset`] with pixels scaled to [-1, 1].
pub fn load_dir(dir: &Path) -> Result<Dataset, Diagnostic> {
    load_set(dir, None)
}

/// [`load_dir`] for the set whose files start with `prefix` (`t10k-`: the test set of MNIST and
/// its relatives); `None` picks as [`load_dir`] does.
pub fn load_set(dir: &Path, prefix: Option<&str>) -> Result<Dataset, Diagnostic> {
    let (images_path, labels_path) = find_set(dir, prefix)?;
    let images = read_images(&images_path)?;
    let labels = read_labels(&labels_path)?;
    if labels.len() != images.n {
        return Err(Diagnostic::new(
            Location::Item("header".into()),
            "the label count does not match the image count",
        )
        .expected(format!(
            "{} labels (the image count of {})",
            images.n,
            images_path.display()
        ))
        .found(format!("{} labels", labels.len()))
        .in_file(labels_path.display().to_string()));
    }
    Ok(Dataset {
        images: images
            .pixels
            .iter()
            .map(|&b| b as f32 / 127.5 - 1.0)
            .collect(),
        labels: labels.iter().map(|&l| l as i64).collect(),
        n: images.n,
        channels: 1,
        height: images.rows,
        width: images.cols,
        source: format!("idx:{}", dir.display()),
        texts: None,
        captions: None,
    })
}

/// The uint8 images of one IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub n: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `n * rows * cols` pixels, 0 (background) .. 255 (ink).
    pub pixels: Vec<u8>,
}

/// Reads an IDX images file (magic `0x00000803`), plain or gzipped, checking the magic, that no
/// dimension but `N` is zero, and that the data is exactly `N * rows * cols` bytes.
pub fn read_images(path: &Path) -> Result<IdxImages, Diagnostic> {
    let ([n, rows, cols], pixels) = read_idx::<3>(path, "images")?;
    Ok(IdxImages {
        n,
        rows,
        cols,
        pixels,
    })
}

/// Reads an IDX labels file (magic `0x00000801`), plain or gzipped: one byte per label, exactly
/// `N` of them.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    read_idx::<1>(path, "labels").map(|(_, data)| data)
}

/// Finds the images file and its labels file in `dir` (see the module doc for the rules).
pub fn find_pair(dir: &Path) -> Result<(PathBuf, PathBuf), Diagnostic> {
    find_set(dir, None)
}

/// [`find_pair`] for the set whose files start with `prefix`, when given.
fn find_set(dir: &Path, prefix: Option<&str>) -> Result<(PathBuf, PathBuf), Diagnostic> {
    let file = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Diagnostic::new(Location::File, "cannot read the IDX directory")
            .expected("a readable directory of IDX files")
            .found(e.to_string())
            .in_file(file.clone())
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();

    let mut images: Vec<(&str, &str)> = names
        .iter()
        .filter_map(|name| {
            let base = name.strip_suffix(".gz").unwrap_or(name);
            ["images-idx3-ubyte", "images.idx3-ubyte"]
                .iter()
                .find_map(|s| base.strip_suffix(s))
                .map(|prefix| (prefix, name.as_str()))
        })
        .collect();
    if let Some(want) = prefix {
        if !images.iter().any(|(p, _)| *p == want) {
            return Err(Diagnostic::new(
                Location::File,
                format!("no `{want}` IDX image set in the directory"),
            )
            .expected(format!("a file named {want}images-idx3-ubyte[.gz]"))
            .found(list_names(&names))
            .in_file(file));
        }
        images.retain(|(p, _)| *p == want);
    } else if images.iter().any(|(p, _)| *p == "train-") {
        images.retain(|(p, _)| *p == "train-");
    }
    let Some(&(prefix, _)) = images.first() else {
        return Err(
            Diagnostic::new(Location::File, "no IDX image file in the directory")
                .expected("a file named *images-idx3-ubyte or *images-idx3-ubyte.gz")
                .found(list_names(&names))
                .in_file(file),
        );
    };
    if images.iter().any(|(p, _)| *p != prefix) {
        return Err(Diagnostic::new(
            Location::File,
            "several IDX image sets in the directory and none is `train-`",
        )
        .expected("one set of *images-idx3-ubyte / *labels-idx1-ubyte files")
        .found(list_names(
            &images
                .iter()
                .map(|(_, n)| n.to_string())
                .collect::<Vec<_>>(),
        ))
        .in_file(file));
    }
    let image_name = prefer_plain(images.iter().map(|(_, n)| *n));

    let label_names: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| {
            let base = name.strip_suffix(".gz").unwrap_or(name);
            ["labels-idx1-ubyte", "labels.idx1-ubyte"]
                .iter()
                .any(|s| base.strip_prefix(prefix) == Some(s))
        })
        .collect();
    if label_names.is_empty() {
        return Err(Diagnostic::new(
            Location::File,
            format!("no IDX label file to go with {image_name}"),
        )
        .expected(format!(
            "a file named {prefix}labels-idx1-ubyte or {prefix}labels-idx1-ubyte.gz"
        ))
        .found(list_names(&names))
        .in_file(file));
    }
    let label_name = prefer_plain(label_names.into_iter());
    Ok((dir.join(image_name), dir.join(label_name)))
}

/// The uncompressed file when both `X` and `X.gz` are there (reading it is faster), else the first.
fn prefer_plain<'a>(mut names: impl Iterator<Item = &'a str> + Clone) -> &'a str {
    names
        .clone()
        .find(|n| !n.ends_with(".gz"))
        .or_else(|| names.next())
        .unwrap_or_default()
}

/// Names for a "found" line: the first few, sorted, or "an empty directory".
fn list_names(names: &[String]) -> String {
    const SHOWN: usize = 8;
    if names.is_empty() {
        return "an empty directory".into();
    }
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(", ... ({} files)", names.len()));
    }
    s
}

/// What an IDX magic number means, for messages: `0x00000801 (IDX uint8, 1 dimension)`.
fn describe_magic(m: u32) -> String {
    if m >> 16 != 0 {
        return format!("0x{m:08x} (not an IDX file)");
    }
    let dtype = match (m >> 8) & 0xff {
        0x08 => "uint8",
        0x09 => "int8",
        0x0b => "int16",
        0x0c => "int32",
        0x0d => "float32",
        0x0e => "float64",
        _ => return format!("0x{m:08x} (not an IDX file: unknown data type)"),
    };
    let dims = m & 0xff;
    let plural = if dims == 1 { "" } else { "s" };
    format!("0x{m:08x} (IDX {dtype}, {dims} dimension{plural})")
}

/// Reads an IDX file of uint8 data with `N` dimensions (magic `0x0000080N`): returns its
/// dimensions and data. `what` names the items (`images`, `labels`) in messages.
fn read_idx<const N: usize>(path: &Path, what: &str) -> Result<([usize; N], Vec<u8>), Diagnostic> {
    let magic = 0x0000_0800 | N as u32;
    let file = path.display().to_string();
    let raw = read_bytes(path, &format!("IDX {what} file"), "a readable file")?;
    let gzipped = raw.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read> = if gzipped {
        Box::new(GzDecoder::new(&raw[..]))
    } else {
        Box::new(&raw[..])
    };
    let stream_error = |e: std::io::Error, at: usize| {
        Diagnostic::new(
            Location::Item("gzip stream".into()),
            "the gzip stream is corrupt or truncated",
        )
        .expected("a complete gzip stream")
        .found(format!("{e} (after {at} decompressed bytes)"))
        .in_file(&file)
    };
    let header_len = 4 + 4 * N;
    let mut header = Vec::with_capacity(header_len);
    (&mut reader)
        .take(header_len as u64)
        .read_to_end(&mut header)
        .map_err(|e| stream_error(e, header.len()))?;
    let word =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let expected_magic = || format!("{} for {what}", describe_magic(magic));
    if header.len() < 4 {
        return Err(truncated_header(&file, header_len, header.len()).expected(expected_magic()));
    }
    let found_magic = word(0);
    if found_magic != magic {
        return Err(
            Diagnostic::new(Location::Item("header".into()), "bad magic number")
                .expected(expected_magic())
                .found(describe_magic(found_magic))
                .in_file(&file),
        );
    }
    if header.len() < header_len {
        return Err(
            truncated_header(&file, header_len, header.len()).expected(format!(
                "a {header_len}-byte header: the magic and {N} big-endian u32 dimensions"
            )),
        );
    }
    let dims: [usize; N] = std::array::from_fn(|d| word(4 + 4 * d) as usize);
    let dims_text = dims
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" x ");
    if let Some(d) = dims.iter().skip(1).position(|&d| d == 0) {
        return Err(Diagnostic::new(
            Location::Item(format!("byte {}", 8 + 4 * d)),
            "an image dimension is zero",
        )
        .expected("rows and columns > 0")
        .found(format!("dimensions {dims_text}"))
        .in_file(&file));
    }
    let item_len: usize = dims[1..].iter().product();
    let Some(data_len) = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
        return Err(Diagnostic::new(
            Location::Item("header".into()),
            "the dimensions are too large",
        )
        .expected("dimensions whose product fits in memory")
        .found(format!("dimensions {dims_text}"))
        .in_file(&file));
    };
    let total = header_len + data_len;
    let mut data = Vec::new();
    reader
        .take(data_len as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| stream_error(e, header_len + data.len()))?;
    let expected_len = || {
        format!(
            "{total} bytes{}: a {header_len}-byte header and {dims_text} data bytes",
            if gzipped { " after decompression" } else { "" }
        )
    };
    if data.len() < data_len {
        let item = if what == "images" { "image" } else { "label" };
        return Err(Diagnostic::new(
            Location::Item(format!("{item} {}", data.len() / item_len)),
            "the file is shorter than its header says (truncated?)",
        )
        .expected(expected_len())
        .found(format!("{} bytes", header_len + data.len()))
        .in_file(&file));
    }
    if data.len() > data_len {
        return Err(Diagnostic::new(
            Location::Item(format!("byte {total}")),
            format!("data after the last of the {} {what}", dims[0]),
        )
        .expected(expected_len())
        .found("more bytes")
        .in_file(&file));
    }
    Ok((dims, data))
}

/// The error for a file that ends inside its header.
fn truncated_header(file: &str, header_len: usize, got: usize) -> Diagnostic {
    Diagnostic::new(
        Location::Item("header".into()),
        format!("the file ends inside its {header_len}-byte header"),
    )
    .found(format!("{got} bytes"))
    .in_file(file)
}

/// Fixture writers shared with the other data tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use std::io::Write;
    use std::path::Path;

    /// Gzips `bytes` (level 6).
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// The bytes of an IDX file: magic, big-endian dims, data.
    pub fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    /// Writes `{prefix}images-idx3-ubyte[.gz]` and `{prefix}labels-idx1-ubyte[.gz]` into `dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn write_idx(
        dir: &Path,
        prefix: &str,
        n: u32,
        rows: u32,
        cols: u32,
        pixels: &[u8],
        labels: &[u8],
        gz: bool,
    ) {
        let images = idx_bytes(super::IMAGES_MAGIC, &[n, rows, cols], pixels);
        let labels = idx_bytes(super::LABELS_MAGIC, &[labels.len() as u32], labels);
        let (images, labels, ext) = if gz {
            (gzip(&images), gzip(&labels), ".gz")
        } else {
            (images, labels, "")
        };
        std::fs::write(dir.join(format!("{prefix}images-idx3-ubyte{ext}")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}labels-idx1-ubyte{ext}")), labels).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_dir;
    use super::tests_support::*;
    use super::*;

    const PIXELS: [u8; 12] = [0, 255, 51, 102, 0, 0, 10, 20, 30, 40, 50, 60];

    fn images_name(dir: &Path) -> PathBuf {
        dir.join("images-idx3-ubyte")
    }

    #[test]
    fn reads_plain_and_gzipped_sets() {
        for gz in [false, true] {
            let tmp = temp_dir("idx-ok");
            write_idx(tmp.path(), "", 3, 2, 2, &PIXELS, &[7, 0, 3], gz);
            let ds = load_dir(tmp.path()).unwrap();
            assert_eq!((ds.n, ds.channels, ds.height, ds.width), (3, 1, 2, 2));
            assert_eq!(ds.labels, vec![7, 0, 3]);
            assert_eq!(
                ds.image(0),
                &[-1.0, 1.0, 51.0 / 127.5 - 1.0, 102.0 / 127.5 - 1.0]
            );
            assert_eq!(ds.num_classes(), 8);
            assert!(ds.source.starts_with("idx:"));
        }
    }

    #[test]
    fn prefers_train_set_and_plain_files() {
        let tmp = temp_dir("idx-train");
        write_idx(tmp.path(), "t10k-", 1, 1, 1, &[0], &[1], true);
        write_idx(tmp.path(), "train-", 2, 1, 1, &[0, 255], &[4, 5], true);
        write_idx(
            tmp.path(),
            "train-",
            3,
            1,
            1,
            &[0, 255, 0],
            &[6, 7, 8],
            false,
        );
        let (images, labels) = find_pair(tmp.path()).unwrap();
        assert!(images.ends_with("train-images-idx3-ubyte"));
        assert!(labels.ends_with("train-labels-idx1-ubyte"));
        assert_eq!(load_dir(tmp.path()).unwrap().labels, vec![6, 7, 8]);

        let tmp = temp_dir("idx-dot");
        let dir = tmp.path();
        std::fs::write(
            dir.join("t10k-images.idx3-ubyte"),
            idx_bytes(IMAGES_MAGIC, &[1, 1, 1], &[9]),
        )
        .unwrap();
        std::fs::write(
            dir.join("t10k-labels.idx1-ubyte"),
            idx_bytes(LABELS_MAGIC, &[1], &[2]),
        )
        .unwrap();
        assert_eq!(load_dir(dir).unwrap().labels, vec![2]);
    }

    #[test]
    fn a_named_set_is_loaded_or_its_absence_named() {
        let tmp = temp_dir("idx-named");
        write_idx(tmp.path(), "t10k-", 1, 1, 1, &[255], &[7], true);
        write_idx(tmp.path(), "train-", 2, 1, 1, &[0, 255], &[4, 5], true);
        let test = load_set(tmp.path(), Some("t10k-")).unwrap();
        assert_eq!((test.n, test.labels.as_slice()), (1, [7].as_slice()));
        assert_eq!(test.images, [1.0]);
        let e = load_set(tmp.path(), Some("val-")).unwrap_err().to_string();
        assert!(
            e.contains("no `val-` IDX image set") && e.contains("t10k-"),
            "{e}"
        );
    }

    #[test]
    fn ambiguous_or_missing_files_are_errors() {
        let tmp = temp_dir("idx-amb");
        write_idx(tmp.path(), "a-", 1, 1, 1, &[0], &[1], false);
        write_idx(tmp.path(), "b-", 1, 1, 1, &[0], &[1], false);
        let d = find_pair(tmp.path()).unwrap_err();
        assert!(d.message.contains("several"), "{d}");
        assert!(d.found.as_deref().unwrap().contains("a-images-idx3-ubyte"));

        let tmp = temp_dir("idx-nolabels");
        std::fs::write(
            images_name(tmp.path()),
            idx_bytes(IMAGES_MAGIC, &[1, 1, 1], &[0]),
        )
        .unwrap();
        let d = find_pair(tmp.path()).unwrap_err();
        assert!(
            d.expected.as_deref().unwrap().contains("labels-idx1-ubyte"),
            "{d}"
        );
        assert_eq!(d.file, tmp.path().display().to_string());

        let tmp = temp_dir("idx-none");
        let d = load_dir(tmp.path()).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("an empty directory"));
        let d = load_dir(&tmp.path().join("missing")).unwrap_err();
        assert!(d.message.contains("cannot read"), "{d}");
    }

    #[test]
    fn wrong_magic_is_named() {
        let tmp = temp_dir("idx-magic");
        let path = images_name(tmp.path());
        std::fs::write(&path, idx_bytes(LABELS_MAGIC, &[1], &[0])).unwrap();
        let d = read_images(&path).unwrap_err();
        assert_eq!(d.message, "bad magic number");
        assert_eq!(d.location, Location::Item("header".into()));
        assert_eq!(
            d.expected.as_deref(),
            Some("0x00000803 (IDX uint8, 3 dimensions) for images")
        );
        assert_eq!(
            d.found.as_deref(),
            Some("0x00000801 (IDX uint8, 1 dimension)")
        );
        assert_eq!(d.file, path.display().to_string());

        std::fs::write(&path, b"\x89PNG\r\n\x1a\n more").unwrap();
        let d = read_images(&path).unwrap_err();
        assert!(
            d.found.as_deref().unwrap().contains("not an IDX file"),
            "{d}"
        );
    }

    #[test]
    fn truncated_and_overlong_files_are_errors() {
        for gz in [false, true] {
            let tmp = temp_dir("idx-trunc");
            let path = images_name(tmp.path());
            let full = idx_bytes(IMAGES_MAGIC, &[3, 2, 2], &PIXELS);
            let enc = |b: &[u8]| if gz { gzip(b) } else { b.to_vec() };

            std::fs::write(&path, enc(&full[..16 + 6])).unwrap();
            let d = read_images(&path).unwrap_err();
            assert_eq!(d.location, Location::Item("image 1".into()), "{d}");
            assert!(
                d.expected.as_deref().unwrap().starts_with("28 bytes"),
                "{d}"
            );
            assert_eq!(d.found.as_deref(), Some("22 bytes"));

            std::fs::write(&path, enc(&full[..10])).unwrap();
            let d = read_images(&path).unwrap_err();
            assert_eq!(d.location, Location::Item("header".into()), "{d}");
            assert_eq!(d.found.as_deref(), Some("10 bytes"));

            std::fs::write(&path, enc(&full[..2])).unwrap();
            assert!(read_images(&path).unwrap_err().message.contains("header"));

            let mut long = full.clone();
            long.push(0);
            std::fs::write(&path, enc(&long)).unwrap();
            let d = read_images(&path).unwrap_err();
            assert_eq!(d.location, Location::Item("byte 28".into()), "{d}");
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let tmp = temp_dir("idx-gz");
        let path = images_name(tmp.path());
        let mut gz = gzip(&idx_bytes(IMAGES_MAGIC, &[3, 2, 2], &PIXELS));
        let cut = gz.len() / 2;
        gz.truncate(cut);
        std::fs::write(&path, &gz).unwrap();
        let d = read_images(&path).unwrap_err();
        assert_eq!(d.location, Location::Item("gzip stream".into()), "{d}");
        std::fs::write(&path, [0x1f, 0x8b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        assert!(read_images(&path).is_err());
    }

    #[test]
    fn mismatched_counts_are_errors() {
        let tmp = temp_dir("idx-count");
        write_idx(tmp.path(), "", 3, 2, 2, &PIXELS, &[1, 2], false);
        let d = load_dir(tmp.path()).unwrap_err();
        assert!(d.file.ends_with("labels-idx1-ubyte"), "{d}");
        assert!(
            d.expected.as_deref().unwrap().starts_with("3 labels"),
            "{d}"
        );
        assert_eq!(d.found.as_deref(), Some("2 labels"));
    }

    #[test]
    fn zero_or_huge_dimensions_are_errors() {
        let tmp = temp_dir("idx-dims");
        let path = images_name(tmp.path());
        std::fs::write(&path, idx_bytes(IMAGES_MAGIC, &[1, 0, 4], &[])).unwrap();
        let d = read_images(&path).unwrap_err();
        assert_eq!(d.location, Location::Item("byte 8".into()), "{d}");
        std::fs::write(&path, idx_bytes(IMAGES_MAGIC, &[u32::MAX; 3], &[])).unwrap();
        let d = read_images(&path).unwrap_err();
        assert!(d.message.contains("too large"), "{d}");
        // A huge but representable size fails as truncated, without allocating it.
        std::fs::write(
            &path,
            idx_bytes(IMAGES_MAGIC, &[1 << 20, 1 << 10, 1 << 10], &[1]),
        )
        .unwrap();
        let d = read_images(&path).unwrap_err();
        assert_eq!(d.location, Location::Item("image 0".into()), "{d}");
    }

    #[test]
    fn bundled_files_have_the_documented_headers() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
        let images = read_images(&dir.join("images-idx3-ubyte.gz")).unwrap();
        assert_eq!((images.n, images.rows, images.cols), (10000, 28, 28));
        let labels = read_labels(&dir.join("labels-idx1-ubyte.gz")).unwrap();
        assert_eq!(labels.len(), 10000);
        assert!(labels.iter().all(|&l| l < 10));
    }
}
