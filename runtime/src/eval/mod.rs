//! Sample quality for digit models (`treadc eval`, `treadc train --eval-every`): the Fréchet
//! distance (FD) between Gaussian fits of the shipped classifier's features of generated samples
//! and of held-out real digits, and the share of conditional samples the classifier assigns to
//! the requested class.
//!
//! The split is fixed: of the bundled 10,000 digits (file order), the first 9,000 train the
//! classifier and the last 1,000 ([`HELD_OUT`]) are held out; they are also the real reference
//! of the FD. Everything here works on host buffers; the classifier's forward is in
//! [`crate::lower::classifier`].

pub mod frames;
pub mod frechet;
pub mod weights;

use std::ops::Range;
use std::path::Path;

use serde::Serialize;
use tread_compiler::diag::{Diagnostic, Location};

use crate::data::clips::{moving_digits, ClipShape};
use crate::data::{fit_to_model, load, DataSpec, Dataset};
use crate::lower::classifier::{self, CLASSES, FEATURES, SIDE};
use frechet::{frechet_distance, Gaussian};

/// The bundled digits the classifier never trained on (the FD's real reference).
pub const HELD_OUT: Range<usize> = 9000..10000;

/// The IDX set a classifier trained on `idx:DIR` is tested on, and whose first
/// [`REFERENCE_N`] images are its FD's real reference: DIR's test set.
pub const TEST_SET: &str = "t10k-";

/// Real reference images of a classifier trained on an IDX directory (as many as the bundled
/// digits hold out).
pub const REFERENCE_N: usize = 1000;

/// Classifier metadata naming the IDX directory whose test set is the FD's reference.
pub const REFERENCE_KEY: &str = "reference_idx";

/// The seed of the held-out digits' clips, the real reference of a video model's FD.
const REFERENCE_CLIPS_SEED: u64 = 0x5eed_c11b;

/// What an evaluation measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Fréchet distance to the held-out digits (classifier features; lower is better).
    pub fd: f64,
    /// Share of samples classified as their requested class.
    pub accuracy: f64,
    /// The same per requested class (NaN-free: a class with no samples gets 0).
    pub per_class: Vec<f64>,
    /// Number of samples scored (frames, for a video model).
    pub n: usize,
    /// A video model's share of clips whose digit moves (see [`frames::moving_share`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moving: Option<f64>,
}

/// The bundled digits padded to 32×32 in [−1, 1], in file order.
pub fn bundled_digits(mnist_dir: &Path) -> Result<Dataset, Diagnostic> {
    let raw = load(&DataSpec::Mnist, mnist_dir)?;
    let (ds, _) = fit_to_model(raw, 1, SIDE, SIDE, Some(CLASSES), 0)?;
    if ds.n < HELD_OUT.end {
        return Err(Diagnostic::new(Location::File, "too few bundled digits")
            .expected(format!("at least {} images", HELD_OUT.end))
            .found(format!("{} images", ds.n))
            .in_file(ds.source.clone()));
    }
    Ok(ds)
}

/// An IDX directory's set `prefix` (`train-`, [`TEST_SET`]) as the classifier reads it: padded
/// to 32×32 in [−1, 1], 10 classes.
pub fn idx_images(dir: &Path, prefix: &str) -> Result<Dataset, Diagnostic> {
    let raw = crate::data::idx::load_set(dir, Some(prefix))?;
    let (ds, _) = fit_to_model(raw, 1, SIDE, SIDE, Some(CLASSES), 0)?;
    Ok(ds)
}

/// Images and labels of a range of a dataset.
pub fn slice(ds: &Dataset, r: Range<usize>) -> (Vec<f32>, Vec<i64>) {
    let len = ds.image_len();
    (
        ds.images[r.start * len..r.end * len].to_vec(),
        ds.labels[r].to_vec(),
    )
}

/// The shipped classifier and the Gaussian of the held-out digits' features.
pub struct Evaluator {
    params: Vec<Vec<f32>>,
    reference: Gaussian,
    /// A video model's frame layout: its clips are scored frame by frame.
    clip: Option<ClipShape>,
}

/// Checks that a model makes what the classifier reads: 1×32×32 images, or clips of one-channel
/// frames (see [`Evaluator::for_clips`]), and 10 classes.
pub fn check_digit_model(
    shape: [usize; 3],
    clip: Option<ClipShape>,
    classes: Option<usize>,
) -> Result<(), Diagnostic> {
    let made_of_digits = match clip {
        Some(_) => shape[0] == 1,
        None => shape == [1, SIDE, SIDE],
    };
    if made_of_digits && classes == Some(CLASSES) {
        return Ok(());
    }
    Err(Diagnostic::new(
        Location::Item("model".into()),
        "the digit metric needs a class-conditional model of 32×32 one-channel digits (or \
         clips of one-channel frames)",
    )
    .expected(format!("image 1×{SIDE}×{SIDE}, {CLASSES} classes"))
    .found(format!(
        "image {}×{}×{}, {}",
        shape[0],
        shape[1],
        shape[2],
        classes.map_or("unconditional".into(), |k| format!("{k} classes"))
    )))
}

impl Evaluator {
    /// Loads the classifier from `data_dir/classifier/` and fits the held-out digits of
    /// `data_dir/mnist`.
    pub fn bundled(data_dir: &Path) -> Result<Self, Diagnostic> {
        let params = weights::load(&data_dir.join(weights::CLASSIFIER_FILE))?.params;
        let digits = bundled_digits(&data_dir.join("mnist"))?;
        let (images, _) = slice(&digits, HELD_OUT);
        Self::new(params, &images)
    }

    /// The evaluator of a video model with frames `clip`: the reference is the held-out digits
    /// made into moving clips (a fixed seed), and samples are scored frame by frame (see
    /// [`frames::frames_as_digits`]), every frame against its clip's class.
    pub fn for_clips(data_dir: &Path, clip: ClipShape) -> Result<Self, Diagnostic> {
        let params = weights::load(&data_dir.join(weights::CLASSIFIER_FILE))?.params;
        let raw = load(&DataSpec::Mnist, &data_dir.join("mnist"))?;
        let held = Dataset {
            images: raw.images[HELD_OUT.start * raw.image_len()..].to_vec(),
            labels: raw.labels[HELD_OUT.start..].to_vec(),
            n: raw.n.saturating_sub(HELD_OUT.start),
            ..raw
        };
        let clips = moving_digits(&held, clip, REFERENCE_CLIPS_SEED)?;
        let frames = frames::frames_as_digits(&clips.images, clips.n, clip);
        let mut e = Self::new(params, &frames)?;
        e.clip = Some(clip);
        Ok(e)
    }

    /// [`Evaluator::bundled`] for an image model, [`Evaluator::for_clips`] for a video model.
    pub fn for_model(data_dir: &Path, clip: Option<ClipShape>) -> Result<Self, Diagnostic> {
        match clip {
            Some(c) => Self::for_clips(data_dir, c),
            None => Self::bundled(data_dir),
        }
    }

    /// The evaluator of a classifier file from `treadc train-classifier --data idx:DIR`: its
    /// weights, and as the real reference the first [`REFERENCE_N`] images of DIR's test set
    /// (the directory its metadata names). Image models only.
    pub fn from_file(path: &Path, clip: Option<ClipShape>) -> Result<Self, Diagnostic> {
        let file = weights::load(path)?;
        let at = |what: &str| Location::Item(what.into());
        if clip.is_some() {
            return Err(Diagnostic::new(
                at("--eval-classifier"),
                "a classifier of one's own scores image models only",
            )
            .expected("an image model")
            .found("a video model (scored with the bundled digit classifier, frame by frame)")
            .in_file(path.display().to_string()));
        }
        let Some(dir) = file.meta.get(REFERENCE_KEY) else {
            return Err(Diagnostic::new(
                at(&format!("metadata `{REFERENCE_KEY}`")),
                "the classifier names no reference images for the FD",
            )
            .expected("a classifier written by `treadc train-classifier --data idx:DIR`")
            .found("no such metadata (the bundled digit classifier needs no --eval-classifier)")
            .in_file(path.display().to_string()));
        };
        let ds = idx_images(Path::new(dir), TEST_SET)?;
        let (images, _) = slice(&ds, 0..REFERENCE_N.min(ds.n));
        Self::new(file.params, &images)
    }

    /// An evaluator from classifier parameters and real reference images (`n × 32 × 32`).
    pub fn new(params: Vec<Vec<f32>>, reference_images: &[f32]) -> Result<Self, Diagnostic> {
        let internal = |m: String| {
            Diagnostic::new(Location::Item("classifier".into()), m)
                .with_kind(tread_compiler::ErrorKind::Internal)
        };
        let n = reference_images.len() / (SIDE * SIDE);
        let (f, _) = classifier::embed(&params, reference_images, n).map_err(internal)?;
        let reference = Gaussian::fit(&f, FEATURES).map_err(internal)?;
        Ok(Evaluator {
            params,
            reference,
            clip: None,
        })
    }

    /// Scores `images` (`n × 32 × 32`, as sampled: the training data's range; a video model's
    /// `n` clips, frame by frame) that were drawn for the classes `labels`.
    pub fn score(&self, images: &[f32], labels: &[i64]) -> Result<Scores, String> {
        if let Some(clip) = self.clip {
            let digits = frames::frames_as_digits(images, labels.len(), clip);
            let per_frame: Vec<i64> = labels
                .iter()
                .flat_map(|&l| std::iter::repeat_n(l, clip.frames))
                .collect();
            let mut scores = self.score_digits(&digits, &per_frame)?;
            scores.moving = Some(frames::moving_share(images, labels.len(), clip));
            return Ok(scores);
        }
        self.score_digits(images, labels)
    }

    fn score_digits(&self, images: &[f32], labels: &[i64]) -> Result<Scores, String> {
        let n = labels.len();
        let (f, logits) = classifier::embed(&self.params, images, n)?;
        let fd = frechet_distance(&Gaussian::fit(&f, FEATURES)?, &self.reference);
        let (hits, per_class) = accuracy(&logits, labels);
        Ok(Scores {
            fd,
            accuracy: hits as f64 / n.max(1) as f64,
            per_class,
            n,
            moving: None,
        })
    }
}

/// The number of rows of `logits` whose arg-max is the label, and the hit rate per label.
pub fn accuracy(logits: &[f32], labels: &[i64]) -> (usize, Vec<f64>) {
    let mut hits = [0usize; CLASSES];
    let mut seen = [0usize; CLASSES];
    for (row, &y) in logits.chunks(CLASSES).zip(labels) {
        let best = (0..CLASSES)
            .max_by(|a, b| row[*a].total_cmp(&row[*b]))
            .unwrap_or(0);
        let y = (y.max(0) as usize).min(CLASSES - 1);
        seen[y] += 1;
        hits[y] += usize::from(best == y);
    }
    let per_class = (0..CLASSES)
        .map(|k| hits[k] as f64 / seen[k].max(1) as f64)
        .collect();
    (hits.iter().sum(), per_class)
}

#[cfg(test)]
#[cfg(test)]
mod tests;
