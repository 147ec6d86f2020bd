//! `treadc eval` and `treadc train-classifier`: the digit metric's commands (argument parsing
//! and printing; the work is in `tread_runtime::eval` and `tread_runtime::lower::classifier`).

use std::collections::BTreeMap;
use std::time::Instant;

use tread_runtime::eval::{bundled_digits, check_digit_model, slice, weights, Evaluator, HELD_OUT};
use tread_runtime::lower::classifier::{self, TrainPlan};
use tread_runtime::run_folder::{RunFolder, METRICS_FILE, RUN_JSON_FILE};
use tread_runtime::sampler::SampleRequest;

use crate::args::{EvalArgs, PlotArgs, TrainClassifierArgs, XArg, YArg};
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
    let evaluator = Evaluator::for_model(data.path(), s.clip).map_err(Failure::Diag)?;
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

/// Trains the digit classifier on the bundled digits 0..9000 and reports its accuracy on the
/// held-out 9000..10000.
pub fn run_train_classifier(args: TrainClassifierArgs) -> Result<(), Failure> {
    let data = BundledData::unpack()?;
    let digits = bundled_digits(&data.mnist()).map_err(Failure::Diag)?;
    let (images, labels) = slice(&digits, 0..HELD_OUT.start);
    let plan = TrainPlan {
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
        max_shift: 2,
    };
    let start = Instant::now();
    let params = classifier::train(&images, &labels, plan, |step, loss| {
        if (step + 1) % 100 == 0 {
            eprintln!("step {}: loss {loss:.4}", step + 1);
        }
    })
    .map_err(Failure::Other)?;
    let wall_s = start.elapsed().as_secs_f64();
    let (test_images, test_labels) = slice(&digits, HELD_OUT);
    let (_, logits) =
        classifier::embed(&params, &test_images, test_labels.len()).map_err(Failure::Other)?;
    let (hits, _) = tread_runtime::eval::accuracy(&logits, &test_labels);
    let acc = hits as f64 / test_labels.len() as f64;
    let command = format!(
        "treadc train-classifier --steps {} --batch {} --lr {} --seed {}",
        args.steps, args.batch, args.lr, args.seed
    );
    let meta = BTreeMap::from([
        ("command".to_string(), command),
        (
            "train_split".into(),
            format!("bundled digits 0..{}", HELD_OUT.start),
        ),
        (
            "held_out_split".into(),
            format!("bundled digits {}..{}", HELD_OUT.start, HELD_OUT.end),
        ),
        ("held_out_accuracy".into(), format!("{acc:.4}")),
        ("train_wall_s".into(), format!("{wall_s:.1}")),
    ]);
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Other(format!("cannot create {}: {e}", dir.display())))?;
    }
    weights::save(&args.output, &params, meta).map_err(|d| Failure::Other(d.to_string()))?;
    eprintln!(
        "held-out accuracy {:.2}% ({hits}/{}), {wall_s:.0} s; wrote {}",
        100.0 * acc,
        test_labels.len(),
        args.output.display()
    );
    Ok(())
}

/// Overlays the runs' curves in one figure, with a legend of run names and routes.
pub fn run_plot(args: PlotArgs) -> Result<(), Failure> {
    use tread_runtime::plot::{plot, Line, XAxis, YAxis};
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    if !["png", "svg"].contains(&ext.to_ascii_lowercase().as_str()) {
        return Err(cli_error(
            "-o",
            "an output file ending in .png or .svg",
            args.output.display().to_string(),
        ));
    }
    let mut curves = Vec::new();
    let mut labels = Vec::new();
    for run in &args.runs {
        let c = tread_runtime::metrics::read(&run.join(METRICS_FILE)).map_err(Failure::Diag)?;
        let name = run.file_name().map_or(run.display().to_string(), |n| {
            n.to_string_lossy().into_owned()
        });
        labels.push(format!("{name} (routes {})", route_of(run)));
        curves.push(c);
    }
    let lines: Vec<Line> = labels
        .into_iter()
        .zip(&curves)
        .map(|(label, curves)| Line { label, curves })
        .collect();
    let x = match args.x {
        XArg::Step => XAxis::Step,
        XArg::Wall => XAxis::Wall,
    };
    let y = match args.y {
        YArg::Loss => YAxis::Loss,
        YArg::Fd => YAxis::Fd,
        YArg::Accuracy => YAxis::Accuracy,
    };
    plot(&lines, x, y, &args.output).map_err(Failure::Diag)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// A run's routes in effect, from its run.json (`none`: dense).
fn route_of(run: &std::path::Path) -> String {
    std::fs::read_to_string(run.join(RUN_JSON_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("routes_in_effect")?.as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}
