//! `treadc plot`: run folders' curves in one figure, one line per run or, with `--arms`, one
//! mean curve and range per arm (same model, data and routes), with the time each arm takes to
//! reach a target FD or accuracy. The statistics are `tread_runtime::arms`; the drawing is
//! `tread_runtime::plot`.

use std::path::{Path, PathBuf};

use tread_runtime::arms::{band, first_reach, mean_sd};
use tread_runtime::metrics::{Curves, EvalPoint};
use tread_runtime::plot::{plot_series, points, Line, Series, XAxis, YAxis};
use tread_runtime::run_folder::{METRICS_FILE, RUN_JSON_FILE};

use crate::args::{PlotArgs, XArg, YArg};
use crate::failure::{cli_error, Failure};

/// One run folder read back.
struct Run {
    dir: PathBuf,
    /// The arm it belongs to: model file, data and routes in effect, from its run.json.
    model: String,
    data: String,
    routes: String,
    curves: Curves,
}

/// Overlays the runs' curves (or arms' means and ranges) in one figure and prints the arms'
/// final values and times to the target.
pub fn run_plot(args: PlotArgs) -> Result<(), Failure> {
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
    let x = match args.x {
        XArg::Step => XAxis::Step,
        XArg::Wall => XAxis::Wall,
    };
    let y = match args.y {
        YArg::Loss => YAxis::Loss,
        YArg::Fd => YAxis::Fd,
        YArg::Accuracy => YAxis::Accuracy,
    };
    let metric = match y {
        YAxis::Fd => Some(Metric::Fd),
        YAxis::Accuracy => Some(Metric::Accuracy),
        YAxis::Loss => None,
    };
    let reach_metric = match (&args.reach, metric) {
        (None, _) => None,
        (Some(_), Some(m)) => Some(m),
        (Some(_), None) => {
            return Err(cli_error(
                "--reach",
                "--y fd or --y accuracy (the target is an evaluation's value)",
                format!("--y {}", y_name(y)),
            ))
        }
    };
    let runs = args
        .runs
        .iter()
        .map(|dir| read_run(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let groups = if args.arms {
        arms_of(&runs)
    } else {
        (0..runs.len()).map(|i| vec![i]).collect()
    };
    let target = match (args.reach.as_deref(), reach_metric) {
        (Some(r), Some(m)) => Some(target_of(r, m, &runs)?),
        _ => None,
    };
    let mut series = Vec::new();
    for g in &groups {
        let first = &runs[g[0]];
        let curves: Vec<Vec<(f64, f64)>> =
            g.iter().map(|&i| points(&runs[i].curves, x, y)).collect();
        let label = if args.arms {
            arm_label(first, g.len(), &runs)
        } else {
            format!("{} (routes {})", file_name(&first.dir), first.routes)
        };
        let mut s = if g.len() > 1 {
            let b = band(&curves).ok_or_else(|| {
                Failure::Other(format!(
                    "the runs of arm `{label}` share no stretch of the x axis to average over"
                ))
            })?;
            Series {
                label,
                points: b.x.iter().copied().zip(b.mean.iter().copied()).collect(),
                range: (0..b.x.len()).map(|i| (b.x[i], b.lo[i], b.hi[i])).collect(),
                reach: None,
            }
        } else {
            Series::of_run(
                &Line {
                    label,
                    curves: &first.curves,
                },
                x,
                y,
            )
        };
        // Dense's own final value is no target for dense: only the other arms are marked.
        let own_target = args.reach.as_deref() == Some("dense") && first.routes == "none";
        if let (Some((v, _)), Some(m)) = (target.as_ref().filter(|_| !own_target), reach_metric) {
            s.reach = m.reach(&s.points, *v);
        }
        series.push(s);
    }
    let target_label = target
        .as_ref()
        .zip(reach_metric)
        .map(|((v, what), m)| format!("{} ({what})", m.show(*v)));
    let shown = target
        .as_ref()
        .zip(target_label.as_deref())
        .map(|((v, _), l)| (*v, l));
    plot_series(&series, x, y, shown, &args.output).map_err(Failure::Diag)?;
    if args.arms || target.is_some() {
        let goal = target.map(|t| t.0).zip(reach_metric);
        print_summary(&runs, &groups, &series, goal, x);
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

fn y_name(y: YAxis) -> &'static str {
    match y {
        YAxis::Loss => "loss",
        YAxis::Fd => "fd",
        YAxis::Accuracy => "accuracy",
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or(p.display().to_string(), |n| {
        n.to_string_lossy().into_owned()
    })
}

/// Reads a run folder's metrics and the arm fields of its run.json (`unknown` when absent).
fn read_run(dir: &Path) -> Result<Run, Failure> {
    let curves = tread_runtime::metrics::read(&dir.join(METRICS_FILE)).map_err(Failure::Diag)?;
    let json = std::fs::read_to_string(dir.join(RUN_JSON_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let field = |k: &str| {
        json.as_ref()
            .and_then(|v| v.get(k)?.as_str().map(String::from))
            .unwrap_or_else(|| "unknown".into())
    };
    Ok(Run {
        dir: dir.to_path_buf(),
        model: field("model_file"),
        data: field("data"),
        routes: field("routes_in_effect"),
        curves,
    })
}

/// The runs grouped by (model, data, routes), in the order each arm first appears.
fn arms_of(runs: &[Run]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let key = |r: &Run| (r.model.clone(), r.data.clone(), r.routes.clone());
        match groups.iter_mut().find(|g| key(&runs[g[0]]) == key(r)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// "routes 0.5:2-8 (3 runs)", with the model file's name and the data where arms differ in them.
fn arm_label(r: &Run, n: usize, all: &[Run]) -> String {
    let mut label = format!("routes {}", r.routes);
    if all.iter().any(|o| o.model != r.model) {
        label += &format!(" · {}", file_name(Path::new(&r.model)));
    }
    if all.iter().any(|o| o.data != r.data) {
        label += &format!(" · {}", r.data);
    }
    label + &format!(" ({n} run{})", if n == 1 { "" } else { "s" })
}

/// The evaluation value a target is set in.
#[derive(Clone, Copy)]
enum Metric {
    /// Fréchet distance: lower is better.
    Fd,
    /// Class accuracy in %: higher is better.
    Accuracy,
}

impl Metric {
    fn of(self, e: &EvalPoint) -> f64 {
        match self {
            Metric::Fd => e.fd,
            Metric::Accuracy => 100.0 * e.accuracy,
        }
    }

    fn show(self, v: f64) -> String {
        match self {
            Metric::Fd => format!("FD {v:.1}"),
            Metric::Accuracy => format!("accuracy {v:.1} %"),
        }
    }

    /// The first x at which `curve` is at `target` or better.
    fn reach(self, curve: &[(f64, f64)], target: f64) -> Option<f64> {
        match self {
            Metric::Fd => first_reach(curve, target),
            Metric::Accuracy => {
                let flipped: Vec<(f64, f64)> = curve.iter().map(|p| (p.0, -p.1)).collect();
                first_reach(&flipped, -target)
            }
        }
    }
}

/// The value to reach: a number, or `dense` (the mean final value of the runs with no routes)
/// with what it is, for the legend.
fn target_of(spec: &str, m: Metric, runs: &[Run]) -> Result<(f64, String), Failure> {
    if spec == "dense" {
        let finals: Vec<f64> = runs
            .iter()
            .filter(|r| r.routes == "none")
            .filter_map(|r| r.curves.evals.last().map(|e| m.of(e)))
            .collect();
        let (mean, _) = mean_sd(&finals).ok_or_else(|| {
            cli_error(
                "--reach",
                "dense runs (trained with --route none) with evaluations among the run folders",
                "none".into(),
            )
        })?;
        return Ok((mean, format!("dense's final, mean of {}", finals.len())));
    }
    match spec.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok((v, "target".into())),
        _ => Err(cli_error(
            "--reach",
            "a value above 0 (an FD, or an accuracy in %) or `dense`",
            format!("`{spec}`"),
        )),
    }
}

/// Prints per arm: runs, final step, final x, final FD and accuracy as mean ± sd over the runs,
/// and where each run first reaches `goal` (its own curve, interpolated).
fn print_summary(
    runs: &[Run],
    groups: &[Vec<usize>],
    series: &[Series],
    goal: Option<(f64, Metric)>,
    x: XAxis,
) {
    let unit = match x {
        XAxis::Step => "steps",
        XAxis::Wall => "s",
    };
    let dense_end: Vec<f64> = runs
        .iter()
        .filter(|r| r.routes == "none")
        .filter_map(|r| r.curves.evals.last().map(|e| xv(e.step, e.elapsed_s, x)))
        .collect();
    for (g, s) in groups.iter().zip(series) {
        let last: Vec<_> = g
            .iter()
            .filter_map(|&i| runs[i].curves.evals.last())
            .collect();
        let ms = |v: Vec<f64>, digits: usize| {
            mean_sd(&v).map_or("–".into(), |(m, sd)| {
                format!("{m:.digits$} ± {sd:.digits$}")
            })
        };
        println!("{}", s.label);
        if last.is_empty() {
            let finals: Vec<f64> = g
                .iter()
                .filter_map(|&i| runs[i].curves.loss.last().map(|p| p.step as f64))
                .collect();
            println!("  final step {} (no evaluations)", ms(finals, 0));
            continue;
        }
        println!(
            "  final step {}, wall {} s, FD {}, accuracy {} %",
            ms(last.iter().map(|e| e.step as f64).collect(), 0),
            ms(last.iter().map(|e| e.elapsed_s).collect(), 1),
            ms(last.iter().map(|e| e.fd).collect(), 1),
            ms(last.iter().map(|e| 100.0 * e.accuracy).collect(), 1),
        );
        let Some((target, m)) = goal else { continue };
        let reached: Vec<(String, Option<f64>)> = g
            .iter()
            .map(|&i| {
                let pts: Vec<(f64, f64)> = runs[i]
                    .curves
                    .evals
                    .iter()
                    .map(|e| (xv(e.step, e.elapsed_s, x), m.of(e)))
                    .collect();
                (file_name(&runs[i].dir), m.reach(&pts, target))
            })
            .collect();
        let times: Vec<f64> = reached.iter().filter_map(|r| r.1).collect();
        println!(
            "  reaches {} in {} of {} runs{}",
            m.show(target),
            times.len(),
            g.len(),
            mean_sd(&times).map_or(String::new(), |(m, sd)| format!(
                ", at {m:.1} ± {sd:.1} {unit}"
            ))
        );
        if let (Some((d, _)), Some((m, _))) = (mean_sd(&dense_end), mean_sd(&times)) {
            if runs[g[0]].routes != "none" {
                println!(
                    "  dense's final point / this arm's mean time to it: {:.2}×",
                    d / m
                );
            }
        }
        for (name, t) in reached {
            println!(
                "    {name}: {}",
                t.map_or("not reached".into(), |t| format!("{t:.1} {unit}"))
            );
        }
    }
}

fn xv(step: u64, elapsed_s: f64, x: XAxis) -> f64 {
    match x {
        XAxis::Step => step as f64,
        XAxis::Wall => elapsed_s,
    }
}
