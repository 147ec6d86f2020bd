//! The loaded data's types: images and labels, and the texts that may come with them (stored
//! contexts or captions). The loaders in the sibling modules build them.

use tread_compiler::diag::Location;

use crate::text::TextBatch;

/// Images as f32 in row-major [n, channels, height, width]; pixel data scaled to [-1, 1]
/// (x/127.5 - 1); latents unscaled.
///
/// One flat array rather than one `Vec` per image so that a batch is a contiguous copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// All images, `n * channels * height * width` values, image after image.
    pub images: Vec<f32>,
    /// One class label per image (non-negative).
    pub labels: Vec<i64>,
    /// Number of images.
    pub n: usize,
    /// Channels per image (1 for grayscale, 3 for RGB, the latent channels for latents).
    pub channels: usize,
    /// Rows per image.
    pub height: usize,
    /// Columns per image.
    pub width: usize,
    /// Where the data came from, in [`super::DataSpec`] syntax (`idx:DIR`, `png:DIR`, `latents:FILE`);
    /// a `latents:` prefix marks the values as latents (see [`Dataset::is_latents`]).
    pub source: String,
    /// One stored text per image, when the file keeps precomputed contexts
    /// ([`super::contexts`]); text models without them caption the labels.
    pub texts: Option<StoredTexts>,
    /// One caption per image, from a captioned folder ([`super::captioned`]), encoded with a
    /// vocabulary of their words once the model is known.
    pub captions: Option<Captions>,
}

impl Dataset {
    /// Image `i` as `channels * height * width` values. Panics if `i >= n` (a caller bug, not a
    /// data error).
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.image_len();
        &self.images[i * len..(i + 1) * len]
    }

    /// The number of classes the labels use: the largest label + 1 (0 for an empty dataset).
    pub fn num_classes(&self) -> usize {
        self.labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| usize::try_from(m).map_or(0, |m| m + 1))
    }

    /// Values per image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the values are latents (from [`super::DataSpec::Latents`]) rather than pixels: latents
    /// are never padded, and a doubled channel count means VAE moments.
    pub fn is_latents(&self) -> bool {
        self.source.starts_with("latents:")
    }

    /// "C×H×W" for messages.
    pub(super) fn shape_text(&self) -> String {
        format!("{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// The captions of a dataset, one per image, and where each came from (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Captions {
    /// One caption per image, in the dataset's order.
    pub texts: Vec<String>,
    /// The 1-based line of `file` each caption was read from.
    pub lines: Vec<usize>,
    /// The metadata file.
    pub file: String,
}

impl Captions {
    /// Where caption `i` came from: "line N" for diagnostics.
    pub fn location(&self, i: usize) -> Location {
        Location::Item(format!("line {}", self.lines.get(i).copied().unwrap_or(0)))
    }
}

/// Texts read from a file: their encodings, their labels when the file stores them, and the
/// file (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTexts {
    /// The encoded texts, one per stored row.
    pub batch: TextBatch,
    /// One class per row, when the file has `labels`.
    pub labels: Option<Vec<i64>>,
    /// The file they came from.
    pub file: String,
}
