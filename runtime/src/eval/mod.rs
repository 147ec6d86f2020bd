//! Sample quality for digit models (`treadc eval`, `treadc train --eval-every`): the Fréchet
//! distance (FD) between Gaussian fits of the shipped classifier's features of generated samples
//! and of held-out real digits, and the share of conditional samples the classifier assigns to
//! the requested class.
//!
//! The split is fixed: of the bundled 10,000 digits (file order), the first 9,000 train the
//! classifier and the last 1,000 ([`HELD_OUT`]) are held out; they are also the real reference
//! of the FD. Everything here works on host buffers; the classifier's forward is in
//! [`crate::lower::classifier`].

pub mod frechet;
pub mod weights;

use std::ops::Range;
use std::path::Path;

use serde::Serialize;
use tread_compiler::diag::{Diagnostic, Location};

use crate::data::{fit_to_model, load, DataSpec, Dataset};
use crate::lower::classifier::{self, CLASSES, FEATURES, SIDE};
use frechet::{frechet_distance, Gaussian};

/// The bundled digits the classifier never trained on (the FD's real reference).
pub const HELD_OUT: Range<usize> = 9000..10000;

/// What an evaluation measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Fréchet distance to the held-out digits (classifier features; lower is better).
    pub fd: f64,
    /// Share of samples classified as their requested class.
    pub accuracy: f64,
    /// The same per requested class (NaN-free: a class with no samples gets 0).
    pub per_class: Vec<f64>,
    /// Number of samples.
    pub n: usize,
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
}

/// Checks that a model makes what the classifier reads: 1×32×32 images and 10 classes.
pub fn check_digit_model(shape: [usize; 3], classes: Option<usize>) -> Result<(), Diagnostic> {
    if shape == [1, SIDE, SIDE] && classes == Some(CLASSES) {
        return Ok(());
    }
    Err(Diagnostic::new(
        Location::Item("model".into()),
        "the digit metric needs a class-conditional model of 32×32 one-channel digits",
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

    /// An evaluator from classifier parameters and real reference images (`n × 32 × 32`).
    pub fn new(params: Vec<Vec<f32>>, reference_images: &[f32]) -> Result<Self, Diagnostic> {
        let internal = |m: String| {
            Diagnostic::new(Location::Item("classifier".into()), m)
                .with_kind(tread_compiler::ErrorKind::Internal)
        };
        let n = reference_images.len() / (SIDE * SIDE);
        let (f, _) = classifier::embed(&params, reference_images, n).map_err(internal)?;
        let reference = Gaussian::fit(&f, FEATURES).map_err(internal)?;
        Ok(Evaluator { params, reference })
    }

    /// Scores `images` (`n × 32 × 32`, as sampled: the training data's range) that were drawn
    /// for the classes `labels`.
    pub fn score(&self, images: &[f32], labels: &[i64]) -> Result<Scores, String> {
        let n = labels.len();
        let (f, logits) = classifier::embed(&self.params, images, n)?;
        let fd = frechet_distance(&Gaussian::fit(&f, FEATURES)?, &self.reference);
        let (hits, per_class) = accuracy(&logits, labels);
        Ok(Scores {
            fd,
            accuracy: hits as f64 / n.max(1) as f64,
            per_class,
            n,
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
