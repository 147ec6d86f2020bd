//! `treadc`: the command-line front over the compiler (and, later, the runtime).
//! It parses flags, calls the library, prints, and maps failures to exit codes:
//! 0 success, 2 bad input (model file, flags, routes), 1 anything else (I/O on output).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tread_compiler::compile::{compile_file, CompileOptions};
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::emit;
use tread_compiler::report::Report;
use tread_compiler::route_spec::{parse_flag, ROUTE_SYNTAX};

const ROUTE_HELP: &str = "A route RATE:START-END: the fraction RATE of tokens (chosen at random \
per sample, per step) skips blocks START..=END (END inclusive) and re-enters unchanged after END. \
`paper` = 0.5:2-(depth-4), the TREAD paper's placement. Repeat for several ordered, \
non-overlapping routes. Replaces the routes declared in the model file.";

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
enum Failure {
    /// Bad user input: exit 2.
    Input(Diagnostic),
    /// Anything else: exit 1.
    Other(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(args) => run_compile(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(d)) => {
            eprint!("{d}");
            ExitCode::from(2)
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
        opts.routes.push(parse_flag(r, i).map_err(Failure::Input)?);
    }
    if args.rate.is_some() && args.dense {
        return Err(Failure::Input(
            Diagnostic::new(Location::File, "--rate has no effect with --dense")
                .expected("--rate with routes (from the file or --route)")
                .found("--dense")
                .in_file("<command line>"),
        ));
    }
    if let Some(r) = args.rate {
        if !(0.0..1.0).contains(&r) {
            return Err(Failure::Input(
                Diagnostic::new(Location::File, "--rate out of range")
                    .expected(format!("0 ≤ rate < 1; {ROUTE_SYNTAX}"))
                    .found(r.to_string())
                    .in_file("<command line>"),
            ));
        }
    }
    let compiled = compile_file(&args.model, &opts).map_err(Failure::Input)?;
    let report = Report::new(&compiled);
    let emit_kind = args.emit.or(args.output.as_ref().map(|_| EmitKind::Text));
    let dump = emit_kind.map(|k| match k {
        EmitKind::Text => emit::to_text(&compiled.routed),
        EmitKind::Dot => emit::to_dot(&compiled.routed),
        EmitKind::Json => {
            let mut s =
                serde_json::to_string_pretty(&emit::to_json(&compiled.routed)).unwrap_or_default();
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

/// Writes through a temporary file in the same directory and renames it over `path`, so a
/// failure never leaves a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let fail = |e: std::io::Error| Failure::Other(format!("cannot write {}: {e}", path.display()));
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}
