//! Training data: where images come from, loading them, and fitting them to a model's input.
//!
//! Why: `treadc train` must accept the bundled MNIST digits, the standard IDX files, a folder of
//! PNGs sorted into class folders, or precomputed VAE latents, and turn any of them into one dense
//! `[n, channels, height, width]` f32 array plus class labels. Every bad input (wrong magic,
//! truncated file, mismatched counts, odd image sizes, labels out of range) becomes a
//! [`Diagnostic`] naming the file, the place in it, what was expected and what was found.
//!
//! The pipeline is [`DataSpec::parse`] (command-line text to a source) → [`load`] (read and
//! validate the files; pixels scaled to [-1, 1], latents as stored) → [`fit_to_model`] (pad,
//! sample VAE moments, check labels against the model).
//!
//! Formats:
//! - IDX ([`idx`]): the original MNIST layout, optionally gzipped.
//! - PNG folder ([`png_folder`]): `DIR/<class>/*.png`, classes in sorted folder-name order.
//! - Captioned PNGs ([`captioned`]): `DIR/metadata.jsonl` naming each image and its caption.
//! - Latents ([`latents`]): a `.safetensors` file with `latents` and `labels`, or a `.npy` file of
//!   latents with a sibling `labels.npy`; the safetensors file may keep precomputed text
//!   contexts beside them ([`contexts`]).

pub mod captioned;
pub mod clips;
pub mod contexts;
pub mod dataset;
pub mod idx;
pub mod latents;
pub mod png_folder;
pub mod resize;
pub(crate) mod safetensors_fields;

pub use dataset::Dataset;

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tread_compiler::diag::{Diagnostic, Location};

/// The `file` named by diagnostics about the data spec itself (it comes from a flag).
const COMMAND_LINE: &str = "<command line>";

/// Where training images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSpec {
    /// The bundled 10,000 MNIST digits (`data/mnist/`), loaded as IDX.
    Mnist,
    /// A directory holding an IDX image file and its label file.
    Idx(PathBuf),
    /// A directory with one sub-folder of PNG images per class.
    PngFolder(PathBuf),
    /// Precomputed latents: a `.safetensors` file, or a `.npy` file with a sibling `labels.npy`.
    Latents(PathBuf),
    /// PNG images with one caption each, listed by `DIR/metadata.jsonl`.
    Captioned(PathBuf),
}

impl DataSpec {
    /// "mnist" (the bundled digits), "idx:DIR", "png:DIR", "latents:FILE" (.safetensors or .npy),
    /// "captions:DIR". A bare path is also accepted: a directory containing IDX files -> Idx,
    /// one with a `metadata.jsonl` -> Captioned, a directory of class folders -> PngFolder, a
    /// .safetensors/.npy file -> Latents.
    ///
    /// Prefixed forms are only checked for syntax here (the files are read by [`load`]); a bare
    /// path is inspected on disk to decide its kind.
    pub fn parse(s: &str) -> Result<Self, Diagnostic> {
        let spec_error = |message: &str, found: String| {
            Diagnostic::new(Location::Item(format!("data source `{s}`")), message)
                .expected(
                    "`mnist`, `idx:DIR`, `png:DIR`, `latents:FILE` (.safetensors or .npy), \
                     `captions:DIR`, or a path to one of these",
                )
                .found(found)
                .in_file(COMMAND_LINE)
        };
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(spec_error("empty data source", "an empty string".into()));
        }
        if trimmed == "mnist" {
            return Ok(DataSpec::Mnist);
        }
        let prefixed = [
            ("idx:", DataSpec::Idx as fn(PathBuf) -> DataSpec),
            ("png:", DataSpec::PngFolder),
            ("latents:", DataSpec::Latents),
            ("captions:", DataSpec::Captioned),
        ];
        for (prefix, make) in prefixed {
            if let Some(rest) = trimmed.strip_prefix(prefix) {
                if rest.is_empty() {
                    return Err(spec_error(
                        "data source has no path after its prefix",
                        format!("`{prefix}` followed by nothing"),
                    ));
                }
                return Ok(make(PathBuf::from(rest)));
            }
        }
        let path = PathBuf::from(trimmed);
        if path.is_dir() {
            if idx::find_pair(&path).is_ok() {
                return Ok(DataSpec::Idx(path));
            }
            if captioned::is_captioned(&path) {
                return Ok(DataSpec::Captioned(path));
            }
            if png_folder::has_class_folders(&path) {
                return Ok(DataSpec::PngFolder(path));
            }
            return Err(spec_error(
                "directory holds neither IDX files nor class folders",
                format!("directory {}", path.display()),
            )
            .help(
                "an IDX directory holds *images-idx3-ubyte[.gz] and *labels-idx1-ubyte[.gz]; \
                 a PNG directory holds one sub-folder of .png files per class; a captioned \
                 directory holds metadata.jsonl",
            ));
        }
        if path.is_file() {
            if latents::is_latents_file(&path) {
                return Ok(DataSpec::Latents(path));
            }
            return Err(spec_error(
                "file is not a latents file",
                format!("file {}", path.display()),
            )
            .help("latents files end in .safetensors or .npy"));
        }
        Err(spec_error(
            "unknown data source (not a known name, prefix, or existing path)",
            format!("`{trimmed}`"),
        ))
    }
}

impl std::fmt::Display for DataSpec {
    /// The spec in the syntax [`DataSpec::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSpec::Mnist => write!(f, "mnist"),
            DataSpec::Idx(p) => write!(f, "idx:{}", p.display()),
            DataSpec::PngFolder(p) => write!(f, "png:{}", p.display()),
            DataSpec::Latents(p) => write!(f, "latents:{}", p.display()),
            DataSpec::Captioned(p) => write!(f, "captions:{}", p.display()),
        }
    }
}

/// Loads a dataset. `bundled_mnist_dir` is the folder used for DataSpec::Mnist.
///
/// Every file is fully validated (see the format modules); an empty dataset is an error since
/// nothing could be trained on it.
pub fn load(spec: &DataSpec, bundled_mnist_dir: &Path) -> Result<Dataset, Diagnostic> {
    let ds = match spec {
        DataSpec::Mnist => {
            let mut ds = idx::load_dir(bundled_mnist_dir)?;
            ds.source = format!("mnist ({})", bundled_mnist_dir.display());
            ds
        }
        DataSpec::Idx(dir) => idx::load_dir(dir)?,
        DataSpec::PngFolder(dir) => png_folder::load(dir)?,
        DataSpec::Latents(file) => latents::load(file)?,
        DataSpec::Captioned(dir) => captioned::load(dir)?,
    };
    if ds.n == 0 {
        return Err(Diagnostic::new(Location::File, "the dataset has no images")
            .expected("at least one image")
            .found("0 images")
            .in_file(ds.source.clone()));
    }
    Ok(ds)
}

/// Makes the dataset fit a model's image input [channels, height, width] and class count:
/// - images smaller than the model by an even margin are centre-padded with the background value
///   -1.0 (MNIST 28 -> 32); bigger or odd-margin -> error naming both shapes (latents are never
///   padded: any spatial mismatch is an error);
/// - latents whose channel count is exactly 2x the model's are mean||logvar moments (the first
///   half of the channels is the mean, the second the log-variance, as a VAE encoder emits them):
///   sample z = mean + exp(0.5*logvar) * eps once with the given seed (deterministic: ChaCha8Rng
///   seeded with `seed`, Box-Muller normals; logvar clamped to [-30, 20] as in LDM) and say so in
///   the returned note; any other channel mismatch -> error;
/// - labels must be < classes (classes from the model), else error naming the first bad label and
///   its index; an unconditional model (classes None) ignores labels.
///
/// Returns the fitted dataset and human notes about what was done (padded 28->32, sampled
/// moments).
pub fn fit_to_model(
    ds: Dataset,
    channels: usize,
    height: usize,
    width: usize,
    classes: Option<usize>,
    seed: u64,
) -> Result<(Dataset, Vec<String>), Diagnostic> {
    let mut notes = Vec::new();
    let model_shape = format!("{channels}x{height}x{width}");
    let mut ds = ds;

    if ds.channels != channels {
        if ds.is_latents() && ds.channels == 2 * channels {
            ds = sample_moments(ds, seed);
            notes.push(format!(
                "latents have {} channels, twice the model's {channels}: treated them as VAE \
                 mean||logvar moments and sampled z = mean + exp(logvar/2) * eps once (seed {seed})",
                2 * channels
            ));
        } else {
            let mut d = Diagnostic::new(
                Location::Item("image shape".into()),
                "the data's channel count does not match the model",
            )
            .expected(format!("{channels} channels (model input {model_shape})"))
            .found(format!("{} channels ({})", ds.channels, ds.shape_text()))
            .in_file(ds.source.clone());
            if ds.is_latents() {
                d = d.help(format!(
                    "latents need the model's channel count, or twice it for mean||logvar \
                     moments ({})",
                    2 * channels
                ));
            }
            return Err(d);
        }
    }

    if (ds.height, ds.width) != (height, width) {
        let fits = !ds.is_latents()
            && ds.height <= height
            && ds.width <= width
            && (height - ds.height).is_multiple_of(2)
            && (width - ds.width).is_multiple_of(2);
        if !fits {
            let expected = if ds.is_latents() {
                format!("latents of the model's input shape {model_shape}")
            } else {
                format!(
                    "images of the model's input shape {model_shape}, or smaller by an even \
                     margin (centre-padded)"
                )
            };
            return Err(Diagnostic::new(
                Location::Item("image shape".into()),
                "the data's image size does not fit the model",
            )
            .expected(expected)
            .found(ds.shape_text())
            .in_file(ds.source.clone()));
        }
        let (from_h, from_w) = (ds.height, ds.width);
        ds = pad_centre(ds, height, width, -1.0);
        notes.push(format!(
            "padded images {from_h}x{from_w} -> {height}x{width} with the background value -1.0 \
             ({} rows and {} columns on each side)",
            (height - from_h) / 2,
            (width - from_w) / 2
        ));
    }

    match classes {
        Some(k) => {
            if let Some((i, &label)) = ds
                .labels
                .iter()
                .enumerate()
                .find(|(_, &l)| l < 0 || l as u64 >= k as u64)
            {
                return Err(Diagnostic::new(
                    Location::Item(format!("label of image {i}")),
                    "label is not a class of the model",
                )
                .expected(format!("a class in 0..{k} (the model has {k} classes)"))
                .found(label.to_string())
                .in_file(ds.source.clone()));
            }
        }
        None => notes.push("the model is unconditional: labels are ignored".into()),
    }
    Ok((ds, notes))
}

/// Centre-pads every image to `height` × `width` with `fill` (margins already checked even).
fn pad_centre(ds: Dataset, height: usize, width: usize, fill: f32) -> Dataset {
    let (top, left) = ((height - ds.height) / 2, (width - ds.width) / 2);
    let mut images = vec![fill; ds.n * ds.channels * height * width];
    for (src_plane, dst_plane) in ds
        .images
        .chunks_exact(ds.height * ds.width)
        .zip(images.chunks_exact_mut(height * width))
    {
        for (r, src_row) in src_plane.chunks_exact(ds.width).enumerate() {
            let start = (top + r) * width + left;
            dst_plane[start..start + ds.width].copy_from_slice(src_row);
        }
    }
    Dataset {
        images,
        height,
        width,
        ..ds
    }
}

/// Samples z = mean + exp(0.5 * logvar) * eps from moments laid out as `[mean (C), logvar (C)]`
/// per image; the result has half the channels.
fn sample_moments(ds: Dataset, seed: u64) -> Dataset {
    let c = ds.channels / 2;
    let half = c * ds.height * ds.width;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(ds.n * half);
    for moments in ds.images.chunks_exact(2 * half) {
        let (mean, logvar) = moments.split_at(half);
        for (&m, &lv) in mean.iter().zip(logvar) {
            let std = (0.5 * lv.clamp(-30.0, 20.0)).exp();
            images.push(m + std * crate::init::normal(&mut rng));
        }
    }
    Dataset {
        images,
        channels: c,
        ..ds
    }
}

/// Test helpers shared by the format modules' tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// A fresh directory `tread-data-<name>-…` under the system temp dir, removed when the
    /// guard drops.
    pub fn temp_dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("tread-data-{name}-"))
            .tempdir()
            .expect("create temp dir")
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::temp_dir;
    use super::*;

    fn bundled() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
    }

    fn small(channels: usize, h: usize, w: usize, labels: Vec<i64>, source: &str) -> Dataset {
        let n = labels.len();
        Dataset {
            images: (0..n * channels * h * w).map(|v| v as f32).collect(),
            labels,
            n,
            channels,
            height: h,
            width: w,
            source: source.into(),
            texts: None,
            captions: None,
        }
    }

    #[test]
    fn parses_names_and_prefixes() {
        assert_eq!(DataSpec::parse("mnist").unwrap(), DataSpec::Mnist);
        assert_eq!(
            DataSpec::parse("idx:some/dir").unwrap(),
            DataSpec::Idx("some/dir".into())
        );
        assert_eq!(
            DataSpec::parse("png:imgs").unwrap(),
            DataSpec::PngFolder("imgs".into())
        );
        assert_eq!(
            DataSpec::parse("latents:z.safetensors").unwrap(),
            DataSpec::Latents("z.safetensors".into())
        );
        for spec in [
            DataSpec::Mnist,
            DataSpec::Idx("a".into()),
            DataSpec::PngFolder("b".into()),
            DataSpec::Latents("c.npy".into()),
            DataSpec::Captioned("d".into()),
        ] {
            assert_eq!(DataSpec::parse(&spec.to_string()).unwrap(), spec);
        }
    }

    #[test]
    fn parse_rejects_bad_specs() {
        for bad in [
            "",
            "idx:",
            "png:",
            "captions:",
            "no/such/path/anywhere",
            "cifar",
        ] {
            let d = DataSpec::parse(bad).unwrap_err();
            assert_eq!(d.file, COMMAND_LINE, "{bad}");
            assert!(d.expected.as_deref().unwrap().contains("idx:DIR"), "{bad}");
            assert!(d.found.is_some(), "{bad}");
        }
    }

    #[test]
    fn parse_classifies_bare_paths() {
        assert_eq!(
            DataSpec::parse(bundled().to_str().unwrap()).unwrap(),
            DataSpec::Idx(bundled())
        );
        let tmp = temp_dir("parse");
        let classes = tmp.path().join("classes");
        std::fs::create_dir_all(classes.join("cat")).unwrap();
        assert_eq!(
            DataSpec::parse(classes.to_str().unwrap()).unwrap(),
            DataSpec::PngFolder(classes.clone())
        );
        // A metadata.jsonl makes a folder captioned, even beside class folders.
        std::fs::write(classes.join(captioned::METADATA), b"").unwrap();
        assert_eq!(
            DataSpec::parse(classes.to_str().unwrap()).unwrap(),
            DataSpec::Captioned(classes.clone())
        );
        let st = tmp.path().join("z.safetensors");
        std::fs::write(&st, b"").unwrap();
        assert_eq!(
            DataSpec::parse(st.to_str().unwrap()).unwrap(),
            DataSpec::Latents(st)
        );
        let other = tmp.path().join("notes.txt");
        std::fs::write(&other, b"hi").unwrap();
        assert!(DataSpec::parse(other.to_str().unwrap()).is_err());
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let d = DataSpec::parse(empty.to_str().unwrap()).unwrap_err();
        assert!(d.message.contains("neither"), "{d}");
    }

    #[test]
    fn bundled_mnist_loads_and_pads_to_32() {
        let ds = load(&DataSpec::Mnist, &bundled()).unwrap();
        assert_eq!((ds.n, ds.channels, ds.height, ds.width), (10000, 1, 28, 28));
        assert_eq!(ds.images.len(), 10000 * 28 * 28);
        assert_eq!(ds.labels.len(), 10000);
        assert_eq!(&ds.labels[..12], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
        assert_eq!(ds.num_classes(), 10);
        let mut counts = [0usize; 10];
        for &l in &ds.labels {
            counts[l as usize] += 1;
        }
        assert_eq!(
            counts,
            [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
        );
        assert!(ds.images.iter().all(|&v| (-1.0..=1.0).contains(&v)));
        assert!(ds.images.contains(&1.0) && ds.images.contains(&-1.0));

        let first = ds.image(0).to_vec();
        let (fit, notes) = fit_to_model(ds, 1, 32, 32, Some(10), 0).unwrap();
        assert_eq!(
            (fit.n, fit.channels, fit.height, fit.width),
            (10000, 1, 32, 32)
        );
        assert_eq!(fit.images.len(), 10000 * 32 * 32);
        assert!(
            notes.iter().any(|n| n.contains("28x28 -> 32x32")),
            "{notes:?}"
        );
        for i in [0, 4321, 9999] {
            let img = fit.image(i);
            for r in 0..32 {
                for c in 0..32 {
                    if !(2..30).contains(&r) || !(2..30).contains(&c) {
                        assert_eq!(img[r * 32 + c], -1.0, "image {i} ({r},{c})");
                    }
                }
            }
        }
        let img0 = fit.image(0);
        for r in 0..28 {
            assert_eq!(
                &img0[(r + 2) * 32 + 2..(r + 2) * 32 + 30],
                &first[r * 28..(r + 1) * 28]
            );
        }
    }

    #[test]
    fn fit_rejects_shapes_that_do_not_fit() {
        let big = small(1, 34, 34, vec![0], "idx:x");
        let d = fit_to_model(big, 1, 32, 32, None, 0).unwrap_err();
        assert!(d.expected.as_deref().unwrap().contains("1x32x32"), "{d}");
        assert_eq!(d.found.as_deref(), Some("1x34x34"));
        assert_eq!(d.file, "idx:x");

        let odd = small(1, 29, 29, vec![0], "png:y");
        let d = fit_to_model(odd, 1, 32, 32, None, 0).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("1x29x29"));

        let rgb = small(3, 32, 32, vec![0], "png:y");
        let d = fit_to_model(rgb, 1, 32, 32, None, 0).unwrap_err();
        assert!(d.found.as_deref().unwrap().contains("3 channels"), "{d}");

        let lat = small(4, 30, 30, vec![0], "latents:z.npy");
        let d = fit_to_model(lat, 4, 32, 32, None, 0).unwrap_err();
        assert!(d.expected.as_deref().unwrap().contains("latents"), "{d}");

        let lat = small(6, 32, 32, vec![0], "latents:z.npy");
        let d = fit_to_model(lat, 4, 32, 32, None, 0).unwrap_err();
        assert!(d.help.as_deref().unwrap().contains("8"), "{d}");
    }

    #[test]
    fn fit_checks_labels_only_for_conditional_models() {
        let ds = small(1, 2, 2, vec![0, 3, 12, 1, 20], "idx:x");
        let d = fit_to_model(ds.clone(), 1, 2, 2, Some(10), 0).unwrap_err();
        assert_eq!(d.location, Location::Item("label of image 2".into()));
        assert_eq!(d.found.as_deref(), Some("12"));
        assert!(d.expected.as_deref().unwrap().contains("0..10"));
        let (fit, notes) = fit_to_model(ds.clone(), 1, 2, 2, None, 0).unwrap();
        assert_eq!(fit, ds);
        assert!(notes.iter().any(|n| n.contains("unconditional")));
        let (fit, notes) = fit_to_model(ds.clone(), 1, 2, 2, Some(21), 0).unwrap();
        assert_eq!(fit, ds);
        assert!(notes.is_empty());
    }

    #[test]
    fn moments_are_sampled_deterministically() {
        // 2 images of 2x1x2 moments: mean channel then logvar channel.
        let ds = Dataset {
            images: vec![
                1.0, 2.0, -40.0, -40.0, // image 0: tiny variance
                0.0, 0.0, 0.0, 0.0, // image 1: unit variance
            ],
            labels: vec![0, 1],
            n: 2,
            channels: 2,
            height: 1,
            width: 2,
            source: "latents:m.safetensors".into(),
            texts: None,
            captions: None,
        };
        let (a, notes) = fit_to_model(ds.clone(), 1, 1, 2, Some(2), 7).unwrap();
        let (b, _) = fit_to_model(ds.clone(), 1, 1, 2, Some(2), 7).unwrap();
        let (c, _) = fit_to_model(ds, 1, 1, 2, Some(2), 8).unwrap();
        assert_eq!(a.channels, 1);
        assert_eq!(a.images.len(), 4);
        assert_eq!(a.images, b.images);
        assert_ne!(a.images, c.images);
        assert!((a.images[0] - 1.0).abs() < 1e-3 && (a.images[1] - 2.0).abs() < 1e-3);
        assert!(notes
            .iter()
            .any(|n| n.contains("moments") && n.contains("seed 7")));
        // Pixel data with twice the channels is not moments.
        let px = small(2, 1, 2, vec![0], "png:x");
        assert!(fit_to_model(px, 1, 1, 2, None, 0).is_err());
    }

    #[test]
    fn empty_dataset_is_an_error() {
        let tmp = temp_dir("empty");
        idx::tests_support::write_idx(tmp.path(), "", 0, 2, 2, &[], &[], false);
        let d = load(&DataSpec::Idx(tmp.path().into()), Path::new("/")).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("0 images"));
    }
}
