//! `treadc`: the command-line front over the compiler (and, later, the runtime).
//! It parses flags, calls the library, prints, and maps failures to exit codes:
//! 0 success, 2 bad input (model file, flags, routes), 1 anything else (I/O on output).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod devices;
mod quality;
use tread_compiler::compile::{compile_file, CompileOptions};
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::emit;
use tread_compiler::report::Report;
use tread_compiler::route_spec::{parse_flag, ROUTE_SYNTAX};
use tread_runtime::bench::BenchMode;
use tread_runtime::lower::backends::BackendKind;
use tread_runtime::run::RunError;
use tread_runtime::run_folder::{RunFolder, RunSettings, SavedRun, ONNX_FILE};
use tread_runtime::sampler::SampleRequest;

const ROUTE_HELP: &str = "A route RATE:START-END: the fraction RATE of tokens (chosen at random \
per sample, per step) skips blocks START..=END (END inclusive) and re-enters unchanged after END. \
`paper` = 0.5:2-(depth-4), the TREAD paper's placement. Repeat for several ordered, \
non-overlapping routes. Replaces the routes declared in the model file; `treadc train --route none` \
trains dense.";

#[derive(Parser)]
#[command(
    name = "treadc",
    version,
    about = "TREAD token routing for diffusion transformers, applied as a compiler pass",
    long_about = "treadc reads a backbone described as a graph (model.json), inserts TREAD token \
routes (a random fraction of tokens bypasses a span of blocks during training), verifies the \
result and reports parameters and FLOPs dense vs routed.",
    after_help = "Examples:\n  treadc compile models/dit-b2.json --route paper\n  \
treadc compile models/dit-xl2.json --route 0.5:2-24 --report json\n  \
treadc compile models/uvit-s2.json --route 0.5:2-5 --route 0.25:7-10 --emit dot -o uvit.dot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read a model, insert routes, verify, report params and FLOPs, and dump the graph.
    #[command(
        after_help = "Route syntax: RATE:START-END, e.g. --route 0.5:2-8 (half of the tokens \
skip blocks 2..=8), or --route paper.\nExamples:\n  treadc compile models/dit-b2.json --route paper --report json\n  \
treadc compile models/dit-s2.json --route 0.5:2-5 --route 0.3:7-9 --emit text -o routed.txt"
    )]
    Compile(CompileArgs),
    /// Train a model with TREAD routing on real data (CPU by default).
    #[command(
        after_help = "Example (the README's main job, ~10 min on 2 cores):\n  \
treadc train models/mnist-dit-small.json --data mnist --steps 4000 --out runs/mnist \\\n    \
--eval-every 1000 --eval-n 250 --cfg 1.5\n\
Resume: treadc train --resume runs/mnist --steps 5000"
    )]
    Train(TrainArgs),
    /// Draw images from a checkpoint (dense; CFG or sparse guidance optional).
    Sample(SampleArgs),
    /// Time dense vs routed training steps, interleaved, and compare with the FLOPs prediction.
    Bench(BenchArgs),
    /// Write the dense inference graph with its weights as ONNX (optionally checked on tract).
    #[command(
        after_help = "Examples:\n  treadc export runs/mnist -o mnist.onnx --precond --check\n  \
treadc export models/dit-s2.json -o dit-s2.onnx --opset 23 --list"
    )]
    Export(ExportArgs),
    /// Sample from an exported ONNX file on tract (no burn): EDM Heun or flow Euler, CFG.
    #[command(after_help = "Example:\n  treadc run mnist.onnx --n 16 --seed 0 -o grid.png")]
    Run(RunArgs),
    /// Score a digit model: Fréchet distance to held-out digits (classifier features) and the
    /// share of samples recognised as their class.
    #[command(after_help = "Example:\n  treadc eval runs/mnist --n 1000 --json")]
    Eval(quality::EvalArgs),
    /// Train the digit classifier `treadc eval` uses (its weights ship in data/classifier/).
    TrainClassifier(quality::TrainClassifierArgs),
    /// Plot runs' curves (loss, FD or accuracy against step or training wall time), PNG or SVG.
    #[command(
        after_help = "Example:\n  treadc plot runs/dense runs/routed --x wall --y fd -o fd.png"
    )]
    Plot(quality::PlotArgs),
    /// What this binary can run on: backends, CPU cores and SIMD, CUDA driver, NVRTC and GPUs.
    #[command(after_help = "Example:\n  treadc devices --json")]
    Devices(devices::DevicesArgs),
}

#[derive(clap::Args)]
struct ExportArgs {
    /// A run folder, a checkpoint file, or a model.json (exported with fresh weights).
    source: PathBuf,
    /// The ONNX file (default: model.onnx in the run folder, or <model>.onnx here).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// ONNX opset, 17 to 23 (23 uses the fused Attention op).
    #[arg(long, default_value_t = tread_onnx::export::DEFAULT_OPSET)]
    opset: i64,
    /// Export the raw optimiser weights instead of the EMA (the default).
    #[arg(long)]
    raw: bool,
    /// Put EDM's preconditioning in the graph: the file computes D(x_noisy; sigma, label).
    #[arg(long)]
    precond: bool,
    /// Run the file on tract and compare it with the burn forward on random inputs.
    #[arg(long)]
    check: bool,
    /// Write the weights to <output>.data (ONNX external data); automatic above 2 GB.
    #[arg(long)]
    external_data: bool,
    /// Print the ONNX graph's node listing and op histogram.
    #[arg(long)]
    list: bool,
    /// Seed of the fresh weights when SOURCE is a model.json.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
struct RunArgs {
    /// An ONNX file written by `treadc export`.
    model: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// Classifier-free guidance scale.
    #[arg(long)]
    cfg: Option<f64>,
    /// Sampler steps (EDM Heun; Euler for flow models).
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// Seed of the initial noise (the same draw as `treadc sample --seed`).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One class for every image (default: cycle through the classes).
    #[arg(long)]
    class: Option<i64>,
    /// Output PNG grid.
    #[arg(short = 'o', long = "output", default_value = "samples.png")]
    output: PathBuf,
    /// Also write the samples as a float32 .npy [n, C, H, W].
    #[arg(long)]
    npy: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// The model file (with --resume: optional, and it must be the run's model).
    model: Option<PathBuf>,
    /// A route RATE:START-END or `paper` (repeatable; default: the file's routes).
    #[arg(long = "route", value_name = "RATE:START-END|paper", long_help = ROUTE_HELP)]
    routes: Vec<String>,
    /// Training data: `mnist` (bundled), `idx:DIR`, `png:DIR` (one folder per class) or
    /// `latents:FILE` (.safetensors or .npy).
    #[arg(long, default_value = "mnist")]
    data: String,
    /// Total training steps.
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Batch size (default: the model file's `training.batch`).
    #[arg(long)]
    batch: Option<usize>,
    /// The run folder (checkpoint, metrics.jsonl, samples/).
    #[arg(long, value_name = "RUN_DIR")]
    out: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its checkpoint (up to --steps in total).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "routes", "batch"])]
    resume: Option<PathBuf>,
    /// Seed of everything random (init, data order, noise, routes).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write an EMA sample grid every K steps (0: at the end only).
    #[arg(long, default_value_t = 500)]
    sample_every: u64,
    /// Write a checkpoint every K steps (0: at the end only).
    #[arg(long, default_value_t = 500)]
    ckpt_every: u64,
    /// Sampler steps for the grids and evaluations.
    #[arg(long, default_value_t = 18)]
    sample_steps: usize,
    /// Score EMA samples with the digit metric (FD, class accuracy; see `treadc eval`) every K
    /// steps and at the end, into metrics.jsonl (0: never). Digit models only.
    #[arg(long, default_value_t = 0, value_name = "K")]
    eval_every: u64,
    /// Samples per evaluation during training.
    #[arg(long, default_value_t = 500)]
    eval_n: usize,
    /// Classifier-free guidance scale for the sample grids and the evaluations during training
    /// (class-conditional models trained with class dropout). Default: plain conditional samples.
    #[arg(long, value_name = "S")]
    cfg: Option<f64>,
    /// burn backend (cuda needs a build with --features cuda).
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct SampleArgs {
    /// A run folder or a checkpoint file.
    run: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Classifier-free guidance scale.
    #[arg(long, conflicts_with = "sparse_guidance")]
    cfg: Option<f64>,
    /// Sparse guidance STRONG,WEAK,SCALE: two conditional routed passes at routing rates STRONG
    /// (e.g. 0.3) and WEAK (e.g. 0.7), combined as weak + SCALE·(strong − weak).
    #[arg(long, value_name = "STRONG,WEAK,SCALE")]
    sparse_guidance: Option<String>,
    /// Sampler steps (EDM Heun default 40; Euler for flow models).
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// Seed of the initial noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One class for every image (default: cycle through the classes).
    #[arg(long)]
    class: Option<i64>,
    /// Use the raw weights instead of the EMA.
    #[arg(long)]
    raw: bool,
    /// Output PNG grid.
    #[arg(short = 'o', long = "output", default_value = "samples.png")]
    output: PathBuf,
    /// Also write the samples as a float32 .npy [n, C, H, W].
    #[arg(long)]
    npy: Option<PathBuf>,
    /// burn backend (cuda needs a build with --features cuda).
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The model file, or an exported .onnx file (times tract forward passes instead).
    model: PathBuf,
    /// A route RATE:START-END or `paper` (repeatable; default: the file's routes).
    #[arg(long = "route", value_name = "RATE:START-END|paper")]
    routes: Vec<String>,
    /// Batch size.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed steps of each kind.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed warm-up steps of each kind.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Time both (interleaved), or one kind only (for its peak memory).
    #[arg(long, value_enum, default_value = "both")]
    only: BenchOnly,
    /// burn backend (cuda needs a build with --features cuda).
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    /// Also time the unfused engine (burn's decompositions, no fusion pass), interleaved with
    /// the fused one in this run, and report both.
    #[arg(long)]
    no_fuse: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// `--backend`: the burn backend to train or sample on.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub(crate) enum Backend {
    /// burn-flex on the CPU (the default; treadc's fused engine).
    Flex,
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-cuda on an NVIDIA GPU (a build with --features cuda).
    Cuda,
}

impl Backend {
    /// The flag's spelling.
    fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Cuda => "cuda",
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum BenchOnly {
    Both,
    Dense,
    Routed,
}

#[derive(clap::Args)]
struct CompileArgs {
    /// The model file (see docs/model-format.md; presets in models/).
    model: PathBuf,
    /// A route RATE:START-END or `paper` (repeatable).
    #[arg(long = "route", value_name = "RATE:START-END|paper", long_help = ROUTE_HELP)]
    routes: Vec<String>,
    /// Ignore all routes (the file's and --route): compile the dense graph.
    #[arg(long, conflicts_with = "routes")]
    dense: bool,
    /// Replace the rate of every route (fraction of tokens that skip).
    #[arg(long, value_name = "RATE")]
    rate: Option<f64>,
    /// Also write the transformed graph in this form (to stdout, or to -o).
    #[arg(long, value_enum)]
    emit: Option<EmitKind>,
    /// Where to write the emitted graph (implies --emit text if --emit is not given).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Emit the graph after the fusion pass (what `train` and `sample` lower: norm→modulate
    /// and gated residuals fused); the report is unchanged (same params and FLOPs).
    #[arg(long)]
    fused: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    report: ReportKind,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmitKind {
    Text,
    Dot,
    Json,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum ReportKind {
    Text,
    Json,
}

/// A failure with its exit code.
pub(crate) enum Failure {
    /// A diagnostic: exit 2 for bad input, 1 for I/O and internal failures (its kind decides).
    Diag(Diagnostic),
    /// Anything else: exit 1.
    Other(String),
}

fn main() -> ExitCode {
    if std::env::var_os("TREADC_DEFAULT_MALLOC").is_none() {
        tread_runtime::alloc::tune_for_training();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(args) => run_compile(args),
        Command::Train(args) => run_train(args),
        Command::Sample(args) => run_sample(args),
        Command::Bench(args) => run_bench(args),
        Command::Export(args) => run_export(args),
        Command::Run(args) => run_onnx(args),
        Command::Eval(args) => quality::run_eval(args),
        Command::TrainClassifier(args) => quality::run_train_classifier(args),
        Command::Plot(args) => quality::run_plot(args),
        Command::Devices(args) => devices::run_devices(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Diag(d)) => {
            eprint!("{d}");
            ExitCode::from(d.kind.exit_code())
        }
        Err(Failure::Other(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(1)
        }
    }
}

fn run_compile(args: CompileArgs) -> Result<(), Failure> {
    let mut opts = CompileOptions {
        dense: args.dense,
        rate_override: args.rate,
        ..Default::default()
    };
    for (i, r) in args.routes.iter().enumerate() {
        opts.routes.push(parse_flag(r, i).map_err(Failure::Diag)?);
    }
    if args.rate.is_some() && args.dense {
        return Err(Failure::Diag(
            Diagnostic::new(Location::File, "--rate has no effect with --dense")
                .expected("--rate with routes (from the file or --route)")
                .found("--dense")
                .in_file("<command line>"),
        ));
    }
    if let Some(r) = args.rate {
        if !(0.0..1.0).contains(&r) {
            return Err(Failure::Diag(
                Diagnostic::new(Location::File, "--rate out of range")
                    .expected(format!("0 ≤ rate < 1; {ROUTE_SYNTAX}"))
                    .found(r.to_string())
                    .in_file("<command line>"),
            ));
        }
    }
    let compiled = compile_file(&args.model, &opts).map_err(Failure::Diag)?;
    let report = Report::new(&compiled);
    let emit_kind = args.emit.or(args.output.as_ref().map(|_| EmitKind::Text));
    let graph = if args.fused {
        tread_compiler::passes::fuse(&compiled.routed)
            .map_err(|d| Failure::Other(format!("fusion pass: {d}")))?
            .0
    } else {
        compiled.routed.clone()
    };
    let dump = emit_kind.map(|k| match k {
        EmitKind::Text => emit::to_text(&graph),
        EmitKind::Dot => emit::to_dot(&graph),
        EmitKind::Json => {
            let mut s = serde_json::to_string_pretty(&emit::to_json(&graph)).unwrap_or_default();
            s.push('\n');
            s
        }
    });
    let mut stdout = std::io::stdout().lock();
    let out = |e: std::io::Error| Failure::Other(format!("cannot write to stdout: {e}"));
    match args.report {
        ReportKind::Json => {
            let s = serde_json::to_string(&report).map_err(|e| Failure::Other(e.to_string()))?;
            writeln!(stdout, "{s}").map_err(out)?;
        }
        ReportKind::Text => write!(stdout, "{}", report.to_text()).map_err(out)?,
    }
    if let Some(dump) = dump {
        match &args.output {
            Some(path) => write_atomic(path, dump.as_bytes())?,
            None if args.report == ReportKind::Json => {
                return Err(Failure::Other(
                    "--report json with --emit needs -o FILE (stdout carries the JSON report)"
                        .into(),
                ))
            }
            None => write!(stdout, "{dump}").map_err(out)?,
        }
    }
    Ok(())
}

/// Writes the dump atomically (temp file and rename); a failure is an I/O error (exit 1).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    tread_compiler::atomic::write_atomic(path, bytes).map_err(Failure::Diag)
}

/// The `--backend` flag: cuda in a build without it is bad input (exit 2); a backend that
/// cannot start here (cuda without a usable driver, NVRTC or GPU) fails before anything is
/// written (exit 1).
pub(crate) fn backend(b: Backend) -> Result<BackendKind, Failure> {
    let kind = BackendKind::parse(b.name()).map_err(Failure::Diag)?;
    kind.check_ready().map_err(Failure::Other)?;
    Ok(kind)
}

pub(crate) fn from_run(e: RunError) -> Failure {
    match e {
        RunError::Diag(d) => Failure::Diag(d),
        RunError::Failed(m) => Failure::Other(m),
    }
}

pub(crate) fn cli_error(what: &str, expected: &str, found: String) -> Failure {
    Failure::Diag(
        Diagnostic::new(Location::Item(what.to_string()), "bad argument")
            .expected(expected)
            .found(found)
            .in_file("<command line>"),
    )
}

/// The bundled data folder (`mnist/`, `classifier/`): `data` under the working directory if it
/// holds the digits, else the source tree's.
pub(crate) fn bundled_data() -> PathBuf {
    let local = PathBuf::from("data");
    if local.join("mnist").is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
    }
}

/// The bundled MNIST folder.
fn bundled_mnist() -> PathBuf {
    bundled_data().join("mnist")
}

fn read_model(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure::Diag(
            Diagnostic::new(Location::File, "cannot read the model file")
                .expected("a readable model.json")
                .found(e.to_string())
                .in_file(path.display().to_string()),
        )
    })
}

fn run_train(args: TrainArgs) -> Result<(), Failure> {
    let kind = backend(args.backend)?;
    let (settings, text, out, saved) = if let Some(dir) = &args.resume {
        let saved = SavedRun::open(dir).map_err(Failure::Diag)?;
        if let Some(model) = &args.model {
            same_model(model, &saved)?;
        }
        let mut s = saved.settings.clone();
        s.steps = args.steps;
        (s, saved.model_json.clone(), dir.clone(), Some(saved))
    } else {
        let model = args.model.clone().ok_or_else(|| {
            cli_error(
                "MODEL",
                "a model file (or --resume RUN_DIR)",
                "nothing".into(),
            )
        })?;
        let out = args
            .out
            .clone()
            .ok_or_else(|| cli_error("--out", "--out RUN_DIR", "nothing".into()))?;
        if RunFolder::new(&out).checkpoint().exists() {
            return Err(cli_error(
                "--out",
                "a new run folder (use --resume to continue this run)",
                format!("{} already holds a checkpoint", out.display()),
            ));
        }
        let text = read_model(&model)?;
        let compiled =
            tread_runtime::run::compile_model(&text, &model.display().to_string(), &args.routes)
                .map_err(Failure::Diag)?;
        let batch = args.batch.unwrap_or(compiled.model.training.batch as usize);
        if batch == 0 {
            return Err(cli_error("--batch", "a batch size ≥ 1", "0".into()));
        }
        let s = RunSettings {
            model_file: model.display().to_string(),
            routes: args.routes.clone(),
            data: args.data.clone(),
            steps: args.steps,
            batch,
            seed: args.seed,
            sample_every: args.sample_every,
            ckpt_every: args.ckpt_every,
            sample_steps: args.sample_steps,
            eval_every: args.eval_every,
            eval_n: args.eval_n,
            cfg: args.cfg,
        };
        if let Some(c) = s.cfg.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(cli_error("--cfg", "a guidance scale > 0", c.to_string()));
        }
        (s, text, out, None)
    };
    tread_runtime::run::train(
        kind,
        settings,
        text,
        &out,
        saved.as_ref(),
        &bundled_mnist(),
        !args.quiet,
    )
    .map(|_| ())
    .map_err(from_run)
}

/// `train MODEL --resume RUN`: MODEL must be the model the run was trained with (its text as
/// stored in the checkpoint), else the command is refused naming both.
fn same_model(model: &Path, saved: &SavedRun) -> Result<(), Failure> {
    let text = read_model(model)?;
    if text == saved.model_json {
        return Ok(());
    }
    Err(Failure::Diag(
        Diagnostic::new(
            Location::File,
            "this is not the model the run was trained with",
        )
        .expected(format!(
            "the run's model ({}, as stored in {})",
            saved.settings.model_file,
            saved.path.display()
        ))
        .found("a model file with other contents")
        .in_file(model.display().to_string())
        .help("omit MODEL to resume with the run's own model, or train a new run with --out"),
    ))
}

fn run_sample(args: SampleArgs) -> Result<(), Failure> {
    let kind = backend(args.backend)?;
    let sparse = match &args.sparse_guidance {
        None => None,
        Some(s) => {
            let v: Vec<f64> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            let ok = v.len() == 3 && (0.0..1.0).contains(&v[0]) && (0.0..1.0).contains(&v[1]);
            if !ok {
                return Err(cli_error(
                    "--sparse-guidance",
                    "STRONG,WEAK,SCALE with rates in [0, 1), e.g. 0.3,0.7,1.5",
                    s.clone(),
                ));
            }
            Some((v[0], v[1], v[2]))
        }
    };
    if args.n == 0 || args.steps == 0 {
        return Err(cli_error(
            "--n/--steps",
            "at least 1",
            format!("n {} steps {}", args.n, args.steps),
        ));
    }
    let req = SampleRequest {
        n: args.n,
        steps: args.steps,
        seed: args.seed,
        cfg: args.cfg,
        sparse,
        raw: args.raw,
        class: args.class,
    };
    let s = tread_runtime::draw::sample(kind, &args.run, &req).map_err(from_run)?;
    let n = s.n;
    tread_runtime::run::write_samples(&s.images, n, s.shape, &args.output, args.npy.as_deref())
        .map_err(Failure::Diag)?;
    eprintln!("wrote {n} samples to {}", args.output.display());
    Ok(())
}

fn run_bench(args: BenchArgs) -> Result<(), Failure> {
    if args.model.extension().is_some_and(|e| e == "onnx") {
        return bench_onnx(&args);
    }
    let kind = backend(args.backend)?;
    let text = read_model(&args.model)?;
    let compiled =
        tread_runtime::run::compile_model(&text, &args.model.display().to_string(), &args.routes)
            .map_err(Failure::Diag)?;
    if args.batch == 0 || args.steps == 0 {
        return Err(cli_error(
            "--batch/--steps",
            "at least 1",
            format!("batch {} steps {}", args.batch, args.steps),
        ));
    }
    let mode = match args.only {
        BenchOnly::Both => BenchMode::Both,
        BenchOnly::Dense => BenchMode::Dense,
        BenchOnly::Routed => BenchMode::Routed,
    };
    let r = tread_runtime::bench::bench(
        kind,
        &compiled,
        args.batch,
        args.steps,
        args.warmup,
        (mode, args.no_fuse),
    )
    .map_err(from_run)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&r).map_err(|e| Failure::Other(e.to_string()))?
        );
    } else {
        println!(
            "{} batch {} ({} timed steps each, {}): dense {:.1} ms/step, routed {:.1} ms/step, ratio {:.3} (FLOPs predict {:.3}); peak RSS {}",
            compiled.model.graph.name,
            r.batch,
            r.steps,
            args.backend.name(),
            r.dense_ms,
            r.routed_ms,
            r.ratio,
            r.predicted_ratio,
            r.peak_rss_mib.map_or("n/a".into(), |m| format!("{m:.0} MiB"))
        );
        let busy = |c: Option<f64>| c.map_or("n/a".into(), |c| format!("{c:.2}"));
        println!("fused engine: {} cores busy", busy(r.cores_busy));
        if let Some(u) = &r.unfused {
            println!(
                "unfused engine: dense {:.1} ms/step, routed {:.1} ms/step, {} cores busy; fused is {:.2}x (dense) and {:.2}x (routed) faster",
                u.dense_ms,
                u.routed_ms,
                busy(u.cores_busy),
                u.dense_ms / r.dense_ms,
                u.routed_ms / r.routed_ms
            );
        }
    }
    Ok(())
}

fn run_export(args: ExportArgs) -> Result<(), Failure> {
    use tread_onnx::export::file::ExternalData;
    use tread_onnx::export::listing::{listing, node_count, op_histogram};
    use tread_runtime::export::{check_against_burn, export_source, load_source, ExportRequest};
    tread_onnx::export::check_opset(args.opset).map_err(Failure::Diag)?;
    let output = args.output.clone().unwrap_or_else(|| {
        if args.source.is_dir() {
            args.source.join(ONNX_FILE)
        } else if args.source.extension().is_some_and(|e| e == "json") {
            let stem = args.source.file_stem().unwrap_or_default();
            PathBuf::from(format!("{}.onnx", stem.to_string_lossy()))
        } else {
            args.source.with_file_name(ONNX_FILE)
        }
    });
    let req = ExportRequest {
        source: args.source.clone(),
        output: output.clone(),
        opset: args.opset,
        precond: args.precond,
        weights: if args.raw {
            tread_runtime::export::WhichWeights::Raw
        } else {
            tread_runtime::export::WhichWeights::Ema
        },
        external: if args.external_data {
            ExternalData::Always
        } else {
            ExternalData::Auto
        },
        seed: args.seed,
    };
    let src = load_source(&req).map_err(Failure::Diag)?;
    let out = export_source(&src, &req).map_err(Failure::Diag)?;
    if args.list {
        print!("{}", listing(&out.model));
    }
    let hist = op_histogram(&out.model);
    let mut top: Vec<_> = hist.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = top
        .iter()
        .take(6)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let size = match out.written.data_bytes {
        Some(d) => format!(
            "{:.1} MB + {:.1} MB external data",
            out.written.model_bytes as f64 / 1e6,
            d as f64 / 1e6
        ),
        None => format!("{:.1} MB", out.written.model_bytes as f64 / 1e6),
    };
    eprintln!(
        "wrote {} ({} {}, opset {}{}): {} nodes ({}), {}, {:.2} s",
        output.display(),
        src.dense.name,
        src.metadata
            .first()
            .map(|(_, v)| v.as_str())
            .unwrap_or_default(),
        args.opset,
        if args.precond {
            ", EDM preconditioning"
        } else {
            ""
        },
        node_count(&out.model),
        top.join(", "),
        size,
        out.export_seconds
    );
    if args.check {
        let r = check_against_burn(&output, &src, args.precond, 2).map_err(from_run)?;
        eprintln!(
            "check (tract vs burn, batch {}): max abs diff {:.2e}, max rel diff {:.2e} (|values| up to {:.2})",
            r.batch, r.max_abs, r.max_rel, r.max_value
        );
        if !r.passes() {
            return Err(Failure::Other(format!(
                "the exported file differs from the burn model: max abs {:.3e} > 1e-4",
                r.max_abs
            )));
        }
    }
    Ok(())
}

fn run_onnx(args: RunArgs) -> Result<(), Failure> {
    use tread_runtime::deploy::Deployment;
    if args.n == 0 || args.steps == 0 {
        return Err(cli_error(
            "--n/--steps",
            "at least 1",
            format!("n {} steps {}", args.n, args.steps),
        ));
    }
    let d = Deployment::open(&args.model).map_err(Failure::Diag)?;
    let req = SampleRequest {
        n: args.n,
        steps: args.steps,
        seed: args.seed,
        cfg: args.cfg,
        class: args.class,
        ..Default::default()
    };
    let imgs = d.sample(&req).map_err(from_run)?;
    tread_runtime::run::write_samples(&imgs, args.n, d.shape, &args.output, args.npy.as_deref())
        .map_err(Failure::Diag)?;
    eprintln!(
        "wrote {} samples to {} (tract, {} steps)",
        args.n,
        args.output.display(),
        args.steps
    );
    Ok(())
}

/// `treadc bench model.onnx`: tract forward passes at `--batch`.
fn bench_onnx(args: &BenchArgs) -> Result<(), Failure> {
    if args.batch == 0 || args.steps == 0 {
        return Err(cli_error(
            "--batch/--steps",
            "at least 1",
            format!("batch {} steps {}", args.batch, args.steps),
        ));
    }
    let d = tread_runtime::deploy::Deployment::open(&args.model).map_err(Failure::Diag)?;
    let t = d
        .time_forward(args.batch, args.warmup, args.steps)
        .map_err(from_run)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&t).map_err(|e| Failure::Other(e.to_string()))?
        );
    } else {
        println!(
            "{} on tract, batch {}: median {:.1} ms per forward ({} timed, min {:.1} ms); load + optimise {:.2} s",
            args.model.display(),
            t.batch,
            t.median_ms,
            args.steps,
            t.min_ms,
            t.load_seconds
        );
    }
    Ok(())
}
