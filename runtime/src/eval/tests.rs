//! The metric on the shipped classifier and the bundled digits.

use std::path::PathBuf;
use std::sync::OnceLock;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::init::normal;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data")
}

struct Fixture {
    evaluator: Evaluator,
    digits: Dataset,
    params: Vec<Vec<f32>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = data_dir();
        let params = weights::load(&dir.join(weights::CLASSIFIER_FILE))
            .unwrap()
            .params;
        Fixture {
            evaluator: Evaluator::bundled(&dir).unwrap(),
            digits: bundled_digits(&dir.join("mnist")).unwrap(),
            params,
        }
    })
}

#[test]
fn the_shipped_classifier_recognises_98_percent_of_the_held_out_digits() {
    let f = fixture();
    let (images, labels) = slice(&f.digits, HELD_OUT);
    let (_, logits) = classifier::embed(&f.params, &images, labels.len()).unwrap();
    let (hits, per_class) = accuracy(&logits, &labels);
    assert!(hits >= 980, "{hits}/1000, per class {per_class:?}");
    // Its recorded provenance says the same.
    let meta = weights::load(&data_dir().join(weights::CLASSIFIER_FILE))
        .unwrap()
        .meta;
    let recorded: f64 = meta["held_out_accuracy"].parse().unwrap();
    assert!(
        (recorded - hits as f64 / 1000.0).abs() < 1e-3,
        "{recorded} vs {hits}"
    );
}

#[test]
fn real_digits_score_near_zero_and_noise_scores_far() {
    let f = fixture();
    let (held, held_labels) = slice(&f.digits, HELD_OUT);
    let itself = f.evaluator.score(&held, &held_labels).unwrap();
    assert!(itself.fd < 1e-6, "held-out vs itself: {}", itself.fd);
    assert!(itself.accuracy >= 0.98);
    // A disjoint real split (part of the classifier's training digits).
    let (other, other_labels) = slice(&f.digits, 8000..9000);
    let real = f.evaluator.score(&other, &other_labels).unwrap();
    // Gaussian noise images, clamped to the data range as samples are.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let noise: Vec<f32> = (0..held.len()).map(|_| normal(&mut rng)).collect();
    let bad = f.evaluator.score(&noise, &held_labels).unwrap();
    assert!(
        real.fd < 0.05 * bad.fd,
        "real {} vs noise {}",
        real.fd,
        bad.fd
    );
    assert!(bad.accuracy < 0.3, "noise accuracy {}", bad.accuracy);
    assert_eq!(real.per_class.len(), 10);
}

#[test]
fn moving_clips_of_real_digits_are_recognised_frame_by_frame() {
    let clip = ClipShape {
        frames: 4,
        height: 16,
        width: 16,
    };
    let ev = Evaluator::for_clips(&data_dir(), clip).unwrap();
    let raw = load(&DataSpec::Mnist, &data_dir().join("mnist")).unwrap();
    let part = |r: Range<usize>| Dataset {
        images: raw.images[r.start * raw.image_len()..r.end * raw.image_len()].to_vec(),
        labels: raw.labels[r.clone()].to_vec(),
        n: r.len(),
        ..raw.clone()
    };
    // Training digits the classifier saw, moved along other paths than the reference's.
    let real = moving_digits(&part(8000..9000), clip, 11).unwrap();
    let scored = ev.score(&real.images, &real.labels).unwrap();
    eprintln!("real clips, frame by frame: {scored:?}");
    assert_eq!(scored.n, 4000);
    // 91.5% (eights 69%): a 14-pixel digit loses detail that enlargement cannot restore.
    assert!(scored.accuracy >= 0.88, "real clips: {scored:?}");
    assert_eq!(scored.moving, Some(1.0), "every training clip moves");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let noise: Vec<f32> = (0..real.images.len()).map(|_| normal(&mut rng)).collect();
    let bad = ev.score(&noise, &real.labels).unwrap();
    assert!(
        scored.fd < 0.05 * bad.fd,
        "real {} vs noise {}",
        scored.fd,
        bad.fd
    );
    assert!(check_digit_model([1, 64, 16], Some(clip), Some(10)).is_ok());
    assert!(check_digit_model([3, 64, 16], Some(clip), Some(10)).is_err());
}

#[test]
fn a_model_that_is_not_a_digit_model_is_refused() {
    assert!(check_digit_model([1, 32, 32], None, Some(10)).is_ok());
    let e = check_digit_model([4, 32, 32], None, Some(1000))
        .unwrap_err()
        .to_string();
    assert!(e.contains("image 4×32×32, 1000 classes"), "{e}");
    assert!(check_digit_model([1, 32, 32], None, None).is_err());
}

/// A classifier trained on an IDX directory scores against that directory's test set: here the
/// shipped weights with 200 bundled digits written as a `t10k-` set, which then score FD 0
/// against themselves. Without the metadata naming the directory, the file is refused.
#[test]
fn a_classifier_file_names_its_own_reference_set() {
    use crate::data::idx::{read_images, read_labels, tests_support::write_idx};
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let mnist = data_dir().join("mnist");
    let raw = read_images(&mnist.join("images-idx3-ubyte.gz")).unwrap();
    let labels = read_labels(&mnist.join("labels-idx1-ubyte.gz")).unwrap();
    let n = 200;
    let len = raw.rows * raw.cols;
    write_idx(
        tmp.path(),
        "t10k-",
        n as u32,
        raw.rows as u32,
        raw.cols as u32,
        &raw.pixels[..n * len],
        &labels[..n],
        true,
    );
    let file = tmp.path().join("cnn.safetensors");
    let meta = std::collections::BTreeMap::from([(
        REFERENCE_KEY.to_string(),
        tmp.path().display().to_string(),
    )]);
    weights::save(&file, &f.params, meta).unwrap();
    let ev = Evaluator::from_file(&file, None).unwrap();
    let (images, digit_labels) = slice(&f.digits, 0..n);
    let s = ev.score(&images, &digit_labels).unwrap();
    assert!(s.fd < 1e-6, "the reference against itself: {}", s.fd);

    weights::save(&file, &f.params, Default::default()).unwrap();
    let e = Evaluator::from_file(&file, None).err().unwrap().to_string();
    assert!(
        e.contains(REFERENCE_KEY) && e.contains("cnn.safetensors"),
        "{e}"
    );
}
