//! `treadc eval` and `treadc train-classifier`: the digit metric's commands (argument parsing
//! and printing; the work is in `tread_runtime::eval` and `tread_runtime::lower::classifier`).

use std::collections::BTreeMap;
use std::time::Instant;

use tread_runtime::data::DataSpec;
use tread_runtime::eval::{
    bundled_digits, check_digit_model, idx_images, slice, weights, Evaluator, HELD_OUT,
    REFERENCE_KEY, TEST_SET,
};
use tread_runtime::lower::classifier::{self, TrainPlan};
use tread_runtime::run_folder::RunFolder;
use tread_runtime::sampler::SampleRequest;

use crate::args::{EvalArgs, TrainClassifierArgs};
use crate::backend::backend;
use crate::bundled::BundledData;
use crate::failure::{cli_error, from_run, Failure};

/// Samples `n` digits from a checkpoint and scores them.
pub fn run_eval(args: EvalArgs) -> Result<(), Failure> {
    let kind = backend(args.backend)?;
    let ckpt = RunFolder::checkpoint_of(&args.run);
    let start = Instant::now();
    let req = SampleRequest {
        n: args.n,
        steps: args.sampler_steps,
        seed: args.seed,
        cfg: args.cfg,
        sparse: None,
        raw: args.raw,
        class: None,
        prompt: None,
        stored: None,
    };
    let s = tread_runtime::draw::sample(kind, &ckpt, &req).map_err(from_run)?;
    check_digit_model(s.shape, s.clip, s.classes)
        .map_err(|d| Failure::Diag(d.in_file(ckpt.display().to_string())))?;
    let sampled_s = start.elapsed().as_secs_f64();
    let data = BundledData::unpack()?;
    let evaluator = match &args.classifier {
        Some(file) => Evaluator::from_file(file, s.clip),
        None => Evaluator::for_model(data.path(), s.clip),
    }
    .map_err(Failure::Diag)?;
    let start = Instant::now();
    let labels = s.labels.unwrap_or_default();
    let scores = evaluator
        .score(&s.images, &labels)
        .map_err(Failure::Other)?;
    // Sampling and scoring; building the classifier's reference is not counted.
    let wall_s = sampled_s + start.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "fd": scores.fd, "accuracy": scores.accuracy, "per_class": scores.per_class,
                "n": scores.n, "moving": scores.moving, "step": s.step, "wall_s": wall_s,
                "sampler_steps": args.sampler_steps, "seed": args.seed, "cfg": args.cfg,
            })
        );
    } else {
        let per: Vec<String> = scores
            .per_class
            .iter()
            .enumerate()
            .map(|(k, a)| format!("{k}: {:.0}%", 100.0 * a))
            .collect();
        println!(
            "step {}: FD {:.3}, accuracy {:.1}% ({} samples, {} sampler steps, {}seed {}, {:.1} s)\nper class: {}",
            s.step,
            scores.fd,
            100.0 * scores.accuracy,
            scores.n,
            args.sampler_steps,
            args.cfg.map_or(String::new(), |c| format!("cfg {c}, ")),
            args.seed,
            wall_s,
            per.join(", ")
        );
        if let Some(m) = scores.moving {
            println!(
                "video: {} frames of {} clips scored; the digit moves in {:.0}% of the clips",
                scores.n,
                s.n,
                100.0 * m
            );
        }
    }
    Ok(())
}

/// The images a classifier trains on and is tested on, described for its metadata, and the IDX
/// directory whose test set becomes its FD reference (`None`: the bundled digits).
struct Split {
    train: (Vec<f32>, Vec<i64>),
    held_out: (Vec<f32>, Vec<i64>),
    train_text: String,
    held_out_text: String,
    reference: Option<String>,
}

/// `--data mnist`: the bundled digits 0..9000 and 9000..10000; `--data idx:DIR`: DIR's `train-`
/// and `t10k-` sets.
fn classifier_split(data: &str) -> Result<Split, Failure> {
    match DataSpec::parse(data).map_err(Failure::Diag)? {
        DataSpec::Mnist => {
            let bundled = BundledData::unpack()?;
            let digits = bundled_digits(&bundled.mnist()).map_err(Failure::Diag)?;
            Ok(Split {
                train: slice(&digits, 0..HELD_OUT.start),
                held_out: slice(&digits, HELD_OUT),
                train_text: format!("bundled digits 0..{}", HELD_OUT.start),
                held_out_text: format!("bundled digits {}..{}", HELD_OUT.start, HELD_OUT.end),
                reference: None,
            })
        }
        DataSpec::Idx(dir) => {
            let train = idx_images(&dir, "train-").map_err(Failure::Diag)?;
            let test = idx_images(&dir, TEST_SET).map_err(Failure::Diag)?;
            let abs = std::fs::canonicalize(&dir).unwrap_or(dir);
            Ok(Split {
                train: slice(&train, 0..train.n),
                held_out: slice(&test, 0..test.n),
                train_text: format!("idx:{} train- ({} images)", abs.display(), train.n),
                held_out_text: format!("idx:{} {TEST_SET} ({} images)", abs.display(), test.n),
                reference: Some(abs.display().to_string()),
            })
        }
        _ => Err(cli_error(
            "--data",
            "`mnist` or `idx:DIR` (labelled one-channel images of 10 classes)",
            format!("`{data}`"),
        )),
    }
}

/// Trains the image classifier of the quality metric: on the bundled digits 0..9000 (held out
/// 9000..10000), or on an IDX directory's training set (held out: its test set).
pub fn run_train_classifier(args: TrainClassifierArgs) -> Result<(), Failure> {
    let output =
        match (&args.output, args.data.as_str()) {
            (Some(o), _) => o.clone(),
            (None, "mnist") => std::path::PathBuf::from("data/classifier/digits-cnn.safetensors"),
            (None, _) => return Err(cli_error(
                "-o",
                "-o FILE for a classifier of other data (the default path is the shipped digit \
                 classifier's)",
                "nothing".into(),
            )),
        };
    let split = classifier_split(&args.data)?;
    let (images, labels) = &split.train;
    let plan = TrainPlan {
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
        max_shift: 2,
    };
    let start = Instant::now();
    let params = classifier::train(images, labels, plan, |step, loss| {
        if (step + 1) % 100 == 0 {
            eprintln!("step {}: loss {loss:.4}", step + 1);
        }
    })
    .map_err(Failure::Other)?;
    let wall_s = start.elapsed().as_secs_f64();
    let (test_images, test_labels) = &split.held_out;
    let (_, logits) =
        classifier::embed(&params, test_images, test_labels.len()).map_err(Failure::Other)?;
    let (hits, _) = tread_runtime::eval::accuracy(&logits, test_labels);
    let acc = hits as f64 / test_labels.len() as f64;
    let data_flag = match args.data.as_str() {
        "mnist" => String::new(),
        d => format!(" --data {d}"),
    };
    let command = format!(
        "treadc train-classifier{data_flag} --steps {} --batch {} --lr {} --seed {}",
        args.steps, args.batch, args.lr, args.seed
    );
    let mut meta = BTreeMap::from([
        ("command".to_string(), command),
        ("train_split".into(), split.train_text.clone()),
        ("held_out_split".into(), split.held_out_text.clone()),
        ("held_out_accuracy".into(), format!("{acc:.4}")),
        ("train_wall_s".into(), format!("{wall_s:.1}")),
    ]);
    if let Some(dir) = split.reference.clone() {
        meta.insert(REFERENCE_KEY.into(), dir);
    }
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Other(format!("cannot create {}: {e}", dir.display())))?;
    }
    weights::save(&output, &params, meta).map_err(|d| Failure::Other(d.to_string()))?;
    eprintln!(
        "held-out accuracy {:.2}% ({hits}/{}), {wall_s:.0} s; wrote {}",
        100.0 * acc,
        test_labels.len(),
        output.display()
    );
    Ok(())
}
