//! The command line: every subcommand's arguments, their help texts and value enums (clap
//! derive). `main.rs` dispatches on [`Command`]; nothing here does work.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub(crate) const ROUTE_HELP: &str = "A route RATE:START-END[@STREAM]: the fraction RATE of the stream's \
tokens (chosen at random per sample, per step) skips blocks START..=END (END inclusive) and \
re-enters unchanged after END; the image stream unless @STREAM names another (e.g. @text), other \
streams pass whole. `paper` = 0.5:2-(depth-4), the TREAD paper's placement. Repeat for several ordered, \
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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Read a model, insert routes, verify, report params and FLOPs, and dump the graph.
    #[command(
        after_help = "Route syntax: RATE:START-END[@STREAM], e.g. --route 0.5:2-8 (half of the \
image tokens skip blocks 2..=8), --route 0.5:2-8@text (the text tokens instead), or --route paper.\nExamples:\n  treadc compile models/dit-b2.json --route paper --report json\n  \
treadc compile models/dit-s2.json --route 0.5:2-5 --route 0.3:7-9 --emit text -o routed.txt"
    )]
    Compile(CompileArgs),
    /// Propose routes that bring a model's training FLOPs to a budget, ranked by the TREAD
    /// paper's placement findings (start at block 2, end at depth − 4, rate 0.5).
    #[command(
        after_help = "Examples:\n  treadc plan models/dit-xl2.json --budget 0.6\n  \
treadc plan models/mnist-mmdit-small.json --budget 0.9 --json"
    )]
    Plan(PlanArgs),
    /// Train a model with TREAD routing on real data (CPU by default).
    #[command(after_help = "Example (the README's main job, ~7 min on 2 cores):\n  \
treadc train models/mnist-dit-small.json --data mnist --steps 4000 --out runs/mnist \\\n    \
--eval-every 1000 --eval-n 250 --cfg 1.5\n\
Resume: treadc train --resume runs/mnist --steps 5000")]
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
    /// Read an ONNX file (torch.onnx.export's or treadc's) back into a model.json and its
    /// weights, checked against the file on tract; then route and train it like any model.
    #[command(
        after_help = "Examples:\n  treadc import dit.onnx -o imported --report\n  \
treadc train imported/model.json --init-from imported/weights.safetensors --route paper --data mnist"
    )]
    Import(ImportArgs),
    /// Score a digit model: Fréchet distance to held-out digits (classifier features) and the
    /// share of samples recognised as their class.
    #[command(after_help = "Example:\n  treadc eval runs/mnist --n 1000 --json")]
    Eval(EvalArgs),
    /// Train the digit classifier `treadc eval` uses (its weights ship in data/classifier/).
    TrainClassifier(TrainClassifierArgs),
    /// Plot runs' curves (loss, FD or accuracy against step or training wall time), PNG or SVG.
    #[command(
        after_help = "Example:\n  treadc plot runs/dense runs/routed --x wall --y fd -o fd.png"
    )]
    Plot(PlotArgs),
    /// What this binary can run on: backends, CPU cores and SIMD, CUDA driver, NVRTC and GPUs.
    #[command(after_help = "Example:\n  treadc devices --json")]
    Devices(DevicesArgs),
    /// Coordinate a data-parallel run over several machines (burn-collective's orchestrator):
    /// the nodes' `train --nodes K --coordinator HOST:PORT` join here. Runs until interrupted.
    #[command(
        after_help = "Example (two machines, one peer each):\n  a$ treadc coordinator --port 3000\n  \
a$ treadc train models/mnist-dit-small.json --out runs/dp --nodes 2 --node-rank 0 \\\n       \
--coordinator a:3000 --node-address a:3001\n  \
b$ treadc train models/mnist-dit-small.json --nodes 2 --node-rank 1 \\\n       \
--coordinator a:3000 --node-address b:3001"
    )]
    Coordinator(CoordinatorArgs),
    /// Print a shell completion script for treadc to stdout.
    #[command(
        after_help = "Examples:\n  treadc completions bash > ~/.local/share/bash-completion/completions/treadc\n  \
treadc completions zsh > ~/.zfunc/_treadc\n  treadc completions fish > ~/.config/fish/completions/treadc.fish"
    )]
    Completions(CompletionsArgs),
    /// Print treadc's man page (roff) to stdout, or write one page per subcommand to a folder.
    #[command(
        after_help = "Examples:\n  treadc man | man -l -\n  treadc man -o ~/.local/share/man/man1"
    )]
    Man(ManArgs),
}

/// `--route`, shared by compile, train and bench.
#[derive(clap::Args)]
pub(crate) struct RouteFlags {
    /// A route RATE:START-END[@STREAM] or `paper` (repeatable; default: the file's routes).
    #[arg(long = "route", value_name = "RATE:START-END[@STREAM]|paper", long_help = ROUTE_HELP)]
    pub(crate) routes: Vec<String>,
}

/// What `sample` (a run, on burn) and `run` (an exported file, on tract) share: guidance,
/// sampler steps, the noise, what to draw for and where the samples go.
#[derive(clap::Args)]
pub(crate) struct DrawFlags {
    /// Classifier-free guidance scale.
    #[arg(long)]
    pub(crate) cfg: Option<f64>,
    /// Sampler steps (EDM Heun; Euler for flow models).
    #[arg(long, default_value_t = 40, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) steps: usize,
    /// Seed of the initial noise (`sample` and `run` draw the same noise for a seed).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) seed: u64,
    /// What the images are drawn for.
    #[command(flatten)]
    pub(crate) what: DrawFor,
    /// Output PNG grid (a video model: frame strips, and an animated `NAME.anim.png` beside it).
    #[arg(short = 'o', long = "output", default_value = "samples.png")]
    pub(crate) output: PathBuf,
    /// Also write the samples as a float32 .npy [n, C, H, W] (clips: [n, C, F, H, W]).
    #[arg(long)]
    pub(crate) npy: Option<PathBuf>,
}

/// `treadc completions`: the shell to complete in.
#[derive(clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// `treadc man`: where the pages go.
#[derive(clap::Args)]
pub(crate) struct ManArgs {
    /// Write treadc.1 and treadc-SUBCOMMAND.1 into this folder (created if missing) instead of
    /// printing treadc.1.
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    pub(crate) out_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct PlanArgs {
    /// The model file.
    pub(crate) model: PathBuf,
    /// The most training cost allowed, as a fraction of the dense model's (e.g. 0.6): FLOPs, or
    /// step time with --measure.
    #[arg(long)]
    pub(crate) budget: f64,
    /// How many proposals to list.
    #[arg(long, default_value_t = 5, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) top: usize,
    /// Print the proposals as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Hold the budget to measured training step time instead of FLOPs: each candidate route is
    /// timed against dense on --backend (the `treadc bench` machinery, interleaved) and kept,
    /// in the same order, when its step fits.
    #[arg(long)]
    pub(crate) measure: bool,
    /// Batch size of the measured steps (default: the model file's `training.batch`).
    #[arg(long, requires = "measure", value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) batch: Option<usize>,
    /// Timed steps of each kind per candidate.
    #[arg(long, default_value_t = 3, requires = "measure", value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) steps: usize,
    #[command(flatten)]
    pub(crate) backend: BackendFlag,
}

/// What `treadc export` writes.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// The inference graph and its weights as ONNX.
    Onnx,
    /// The weights as .safetensors under the official DiT names.
    SafetensorsOfficial,
    /// The weights as a PyTorch .pt state dict under the official DiT names.
    PtOfficial,
}

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// A run folder, a checkpoint file, or a model.json (exported with fresh weights).
    pub(crate) source: PathBuf,
    /// The ONNX file (default: model.onnx in the run folder, or <model>.onnx here).
    #[arg(short = 'o', long = "output")]
    pub(crate) output: Option<PathBuf>,
    /// `onnx`, or `safetensors-official` / `pt-official`: the weights alone as a state dict
    /// under the official DiT names (.safetensors, or a .pt for `torch.load`), which PyTorch's
    /// DiT (learn_sigma=False) loads with `load_state_dict` (DiT and SiT presets).
    #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
    pub(crate) format: ExportFormat,
    /// ONNX opset, 17 to 23 (23 uses the fused Attention op).
    #[arg(long, default_value_t = tread_onnx::export::DEFAULT_OPSET)]
    pub(crate) opset: i64,
    /// Export the raw optimiser weights instead of the EMA (the default).
    #[arg(long)]
    pub(crate) raw: bool,
    /// Put EDM's preconditioning in the graph: the file computes D(x_noisy; sigma, label).
    #[arg(long)]
    pub(crate) precond: bool,
    /// Run the file on tract and compare it with the burn forward on random inputs.
    #[arg(long)]
    pub(crate) check: bool,
    /// Write the weights to <output>.data (ONNX external data); automatic above 2 GB.
    #[arg(long)]
    pub(crate) external_data: bool,
    /// Print the ONNX graph's node listing and op histogram.
    #[arg(long)]
    pub(crate) list: bool,
    /// Seed of the fresh weights when SOURCE is a model.json.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) seed: u64,
    /// With a model.json: export these weights instead of fresh ones (what `train --init-from`
    /// reads: a treadc checkpoint, a .safetensors file, or a PyTorch .pt/.pth state dict).
    #[arg(long, value_name = "FILE")]
    pub(crate) init_from: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// The ONNX file (its external data, if any, beside it).
    pub(crate) model: PathBuf,
    /// The folder to write model.json and weights.safetensors into (created if missing).
    #[arg(short = 'o', long = "output")]
    pub(crate) output: PathBuf,
    /// The model's name in model.json (default: the file's stem).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Print which ONNX nodes each treadc op was made from.
    #[arg(long)]
    pub(crate) report: bool,
    /// Skip running the imported model (burn) against the file (tract) on random inputs.
    #[arg(long)]
    pub(crate) no_check: bool,
}

/// The class or prompt a sampling command draws for (`treadc sample` and `treadc run`).
#[derive(clap::Args)]
pub(crate) struct DrawFor {
    /// One class for every image (default: cycle through the classes).
    #[arg(long, conflicts_with_all = ["prompt", "context"])]
    pub(crate) class: Option<i64>,
    /// One text prompt for every image, e.g. "a seven" or "the digit 7" (text-conditioned
    /// models; words from the bundled vocabulary). Default: each digit's prompt in turn.
    #[arg(long, conflicts_with = "context")]
    pub(crate) prompt: Option<String>,
    /// Precomputed text contexts to draw for, one image per stored text in turn: a
    /// .safetensors file with `context` [N, L, Dc] and optionally `context_mask`, `pooled` and
    /// `labels` (the layout `--data latents:FILE` trains on).
    #[arg(long, value_name = "FILE")]
    pub(crate) context: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// An ONNX file written by `treadc export`.
    pub(crate) model: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 16, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) n: usize,
    #[command(flatten)]
    pub(crate) draw: DrawFlags,
}

#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    /// The model file (with --resume: optional, and it must be the run's model).
    pub(crate) model: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) route: RouteFlags,
    /// Training data: `mnist` (bundled), `idx:DIR`, `png:DIR` (one folder per class),
    /// `captions:DIR` (PNGs listed with their captions in DIR/metadata.jsonl) or `latents:FILE`
    /// (.safetensors or .npy).
    #[arg(long, default_value = "mnist")]
    pub(crate) data: String,
    /// Total training steps (0 with --init-from: a run that holds those weights).
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
    pub(crate) steps: u64,
    /// Batch size (default: the model file's `training.batch`).
    #[arg(long, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) batch: Option<usize>,
    /// The run folder (checkpoint, metrics.jsonl, samples/).
    #[arg(long, value_name = "RUN_DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its checkpoint (up to --steps in total).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "routes", "batch"])]
    pub(crate) resume: Option<PathBuf>,
    /// Seed of everything random (init, data order, noise, routes).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) seed: u64,
    /// Start from these weights instead of the seed's init: a run folder or treadc checkpoint
    /// (its EMA weights), a .safetensors file (treadc or official DiT names) or a PyTorch
    /// state dict (.pt/.pth; official DiT names: x_embedder.proj.weight, blocks.N.attn.qkv...).
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub(crate) init_from: Option<PathBuf>,
    /// Write an EMA sample grid every K steps (0: at the end only).
    #[arg(long, default_value_t = 500)]
    pub(crate) sample_every: u64,
    /// Write a checkpoint every K steps (0: at the end only).
    #[arg(long, default_value_t = 500)]
    pub(crate) ckpt_every: u64,
    /// Sampler steps for the grids and evaluations.
    #[arg(long, default_value_t = 18, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) sample_steps: usize,
    /// Score EMA samples with the digit metric (FD, class accuracy; see `treadc eval`) every K
    /// steps and at the end, into metrics.jsonl (0: never). Digit models only.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub(crate) eval_every: u64,
    /// Samples per evaluation during training (at least 2: FD fits a Gaussian).
    #[arg(long, default_value_t = 500, value_parser = count(2), allow_negative_numbers = true)]
    pub(crate) eval_n: usize,
    /// Score the evaluations with this classifier (from `treadc train-classifier --data
    /// idx:DIR`) against DIR's test images, instead of the bundled digit classifier.
    #[arg(long, value_name = "FILE", requires = "eval_every")]
    pub(crate) eval_classifier: Option<PathBuf>,
    /// Classifier-free guidance scale for the sample grids and the evaluations during training
    /// (class-conditional models trained with class dropout). Default: plain conditional samples.
    #[arg(long, value_name = "S")]
    pub(crate) cfg: Option<f64>,
    /// Stop at the first step whose training wall time (evaluations, grids and checkpoints
    /// excluded) reaches SECONDS, evaluating and checkpointing there; --steps stays the most.
    /// Compares dense and routed runs at equal cost. With --resume: a new budget, counted from
    /// the run's start (its clock continues). One machine only (not with --nodes).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds, conflicts_with = "nodes")]
    pub(crate) time_budget: Option<f64>,
    #[command(flatten)]
    pub(crate) backend: BackendFlag,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) parallel: ParallelArgs,
}

/// Data-parallel training: peers in this process and, with --nodes, in other processes.
#[derive(clap::Args)]
#[command(next_help_heading = "Data parallel")]
pub(crate) struct ParallelArgs {
    /// Data-parallel peers in this process: CPU workers sharing the cores (flex, ndarray) or
    /// GPUs 0..N-1 (cuda). The batch is split evenly; gradients are averaged every step.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) devices: usize,
    /// Processes (machines) training together, each with --devices peers; needs
    /// --node-rank, --coordinator and --node-address. Node 0 takes MODEL or --resume and writes
    /// the run folder; the others take the same MODEL and flags and write nothing.
    #[arg(long, value_name = "K", requires_all = ["node_rank", "coordinator", "node_address"])]
    pub(crate) nodes: Option<u32>,
    /// This process's rank, 0..K.
    #[arg(long, value_name = "R", requires = "nodes")]
    pub(crate) node_rank: Option<u32>,
    /// The coordinator started with `treadc coordinator`, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", requires = "nodes")]
    pub(crate) coordinator: Option<String>,
    /// The address the other nodes reach this one at, HOST:PORT; the port is opened here for
    /// the gradient transfers.
    #[arg(long, value_name = "HOST:PORT", requires = "nodes")]
    pub(crate) node_address: Option<String>,
    /// Seconds to wait for another peer (joining, or one step) before stopping with an error:
    /// how a dead node is noticed. Node 0's sample grids and evaluations must fit in it.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub(crate) peer_timeout: u64,
    /// Split each peer's share of a step into N equal micro-batches whose forward and
    /// backward passes run concurrently, gradients summed (default: 2 on the CPU engine when
    /// they divide it, else 1). Two keep both cores busy on small models; 1 is the plain step.
    #[arg(long, value_name = "N")]
    pub(crate) micro_batches: Option<usize>,
}

/// `treadc coordinator`: the meeting point of a multi-machine run.
#[derive(clap::Args)]
pub(crate) struct CoordinatorArgs {
    /// The port to listen on (all interfaces).
    #[arg(long, default_value_t = 3000)]
    pub(crate) port: u16,
}

#[derive(clap::Args)]
pub(crate) struct SampleArgs {
    /// A run folder or a checkpoint file.
    pub(crate) run: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 64, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) n: usize,
    /// Sparse guidance STRONG,WEAK,SCALE: two conditional routed passes at routing rates STRONG
    /// (e.g. 0.3) and WEAK (e.g. 0.7), combined as weak + SCALE·(strong − weak).
    #[arg(long, value_name = "STRONG,WEAK,SCALE", conflicts_with = "cfg")]
    pub(crate) sparse_guidance: Option<String>,
    #[command(flatten)]
    pub(crate) draw: DrawFlags,
    /// Use the raw weights instead of the EMA.
    #[arg(long)]
    pub(crate) raw: bool,
    #[command(flatten)]
    pub(crate) backend: BackendFlag,
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// The model file, or an exported .onnx file (times tract forward passes instead).
    pub(crate) model: PathBuf,
    #[command(flatten)]
    pub(crate) route: RouteFlags,
    /// Batch size.
    #[arg(long, default_value_t = 8, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) batch: usize,
    /// Timed steps of each kind.
    #[arg(long, default_value_t = 5, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) steps: usize,
    /// Untimed warm-up steps of each kind.
    #[arg(long, default_value_t = 1)]
    pub(crate) warmup: usize,
    /// Time both (interleaved), or one kind only (for its peak memory).
    #[arg(long, value_enum, default_value = "both")]
    pub(crate) only: BenchOnly,
    /// Micro-batches per step, as `train --micro-batches` (default: the engine's; see there).
    #[arg(long, value_name = "N")]
    pub(crate) micro_batches: Option<usize>,
    #[command(flatten)]
    pub(crate) backend: BackendFlag,
    /// Also time the unfused engine (burn's decompositions, no fusion pass), interleaved with
    /// the fused one in this run, and report both.
    #[arg(long)]
    pub(crate) no_fuse: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
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
    /// burn-wgpu on a Vulkan GPU, Metal on macOS (a build with --features wgpu).
    Wgpu,
}

impl Backend {
    /// The flag's spelling.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Cuda => "cuda",
            Backend::Wgpu => "wgpu",
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub(crate) enum BenchOnly {
    Both,
    Dense,
    Routed,
}

#[derive(clap::Args)]
pub(crate) struct CompileArgs {
    /// The model file (see docs/model-format.md; presets in models/).
    pub(crate) model: PathBuf,
    #[command(flatten)]
    pub(crate) route: RouteFlags,
    /// Ignore all routes (the file's and --route): compile the dense graph.
    #[arg(long, conflicts_with = "routes")]
    pub(crate) dense: bool,
    /// Replace the rate of every route (fraction of tokens that skip).
    #[arg(long, value_name = "RATE")]
    pub(crate) rate: Option<f64>,
    /// Also write the transformed graph in this form (to stdout, or to -o).
    #[arg(long, value_enum)]
    pub(crate) emit: Option<EmitKind>,
    /// Where to write the emitted graph (implies --emit text if --emit is not given).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Emit the graph after the fusion pass (what `train` and `sample` lower: norm→modulate
    /// and gated residuals fused); the report is unchanged (same params and FLOPs).
    #[arg(long)]
    pub(crate) fused: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) report: ReportKind,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum EmitKind {
    Text,
    Dot,
    Json,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub(crate) enum ReportKind {
    Text,
    Json,
}

/// A count flag's parser: a value below `min` is bad input, reported by clap (exit 2, naming
/// the flag) before anything is read or written.
pub(crate) fn count(min: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(min..)
}

/// A finite number of seconds above zero (`--time-budget`).
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected seconds above 0 (e.g. 240), found `{s}`")),
    }
}

/// The `--backend` flag of every command that runs burn.
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct BackendFlag {
    /// burn backend (cuda and wgpu need builds with --features cuda or wgpu).
    #[arg(
        long = "backend",
        value_name = "BACKEND",
        value_enum,
        default_value = "flex"
    )]
    pub(crate) kind: Backend,
}

impl BackendFlag {
    /// The backend's name, as `--backend` spells it.
    pub(crate) fn name(self) -> &'static str {
        self.kind.name()
    }
}

/// `treadc eval`'s arguments.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// A run folder or a checkpoint file of a digit model (1×32×32 images, 10 classes).
    pub(crate) run: PathBuf,
    /// Number of samples (classes cycled 0, 1, …, 9, 0, …; at least 2: FD fits a Gaussian).
    #[arg(long, default_value_t = 1000, value_parser = count(2), allow_negative_numbers = true)]
    pub(crate) n: usize,
    /// Sampler steps (EDM Heun; Euler for flow models).
    #[arg(long, default_value_t = 18, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) sampler_steps: usize,
    /// Seed of the initial noise.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Classifier-free guidance scale (default: plain conditional samples).
    #[arg(long)]
    pub(crate) cfg: Option<f64>,
    /// Score the raw weights instead of the EMA.
    #[arg(long)]
    pub(crate) raw: bool,
    /// Score with this classifier (from `treadc train-classifier --data idx:DIR`) against
    /// DIR's test images, instead of the bundled digit classifier and held-out digits.
    #[arg(long, value_name = "FILE")]
    pub(crate) classifier: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) backend: BackendFlag,
    /// One JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `treadc train-classifier`'s arguments.
#[derive(clap::Args)]
pub struct TrainClassifierArgs {
    /// Where to write the weights (default, for the bundled digits only:
    /// data/classifier/digits-cnn.safetensors, the shipped classifier).
    #[arg(short = 'o', long = "output")]
    pub(crate) output: Option<PathBuf>,
    /// Training images: `mnist` (the bundled digits 0..9000; 9000..10000 held out) or
    /// `idx:DIR` (DIR's `train-` set; its `t10k-` set is held out and becomes the FD's real
    /// reference, recorded in the file).
    #[arg(long, default_value = "mnist")]
    pub(crate) data: String,
    /// Optimiser steps.
    #[arg(long, default_value_t = 1500, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128, value_parser = count(1), allow_negative_numbers = true)]
    pub(crate) batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub(crate) lr: f64,
    /// Seed of the initialisation, batch order and shifts.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

/// The x axis of `treadc plot`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum XArg {
    /// Training step.
    Step,
    /// Training wall time (evaluation, grids and checkpoints excluded).
    Wall,
}

/// The y axis of `treadc plot`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum YArg {
    /// Training loss (moving mean of 25 steps).
    Loss,
    /// Fréchet distance to held-out images: the digits, or the set of the classifier the run
    /// was scored with (`--eval-every` runs).
    Fd,
    /// Class accuracy (`--eval-every` runs).
    Accuracy,
}

/// `treadc plot`'s arguments.
#[derive(clap::Args)]
pub struct PlotArgs {
    /// Run folders (each with a metrics.jsonl).
    #[arg(required = true)]
    pub(crate) runs: Vec<PathBuf>,
    /// The x axis.
    #[arg(long, value_enum, default_value = "step")]
    pub(crate) x: XArg,
    /// The y axis.
    #[arg(long, value_enum, default_value = "loss")]
    pub(crate) y: YArg,
    /// Output file: .png or .svg.
    #[arg(short = 'o', long = "output", default_value = "curves.png")]
    pub(crate) output: PathBuf,
    /// Draw the runs of one arm (the same model file, data and routes; several seeds) as one
    /// curve: the mean over its runs, their range (lowest to highest) shaded, on the x points
    /// they share. Prints each arm's final values as mean ± standard deviation over its runs.
    #[arg(long)]
    pub(crate) arms: bool,
    /// With --y fd or accuracy: mark where each arm (or run) first reaches this FD (or this
    /// accuracy, %), and print every run's time to it. A number, or `dense`: the mean final
    /// value of the dense runs (--route none).
    #[arg(long, value_name = "VALUE|dense")]
    pub(crate) reach: Option<String>,
}

/// Arguments of `treadc devices`.
#[derive(clap::Args)]
pub struct DevicesArgs {
    /// One JSON object on stdout (keys: backends, cpu, cuda, wgpu).
    #[arg(long)]
    pub(crate) json: bool,
}
