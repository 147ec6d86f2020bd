//! `treadc`: the command-line front over the compiler, the ONNX crate and the runtime. It parses
//! flags (`args.rs`), calls the libraries, prints, and maps a failure's kind to the exit code:
//! 0 success, 2 bad input (model file, flags, routes, data), 1 anything else (I/O, internal).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

mod args;
mod backend;
mod bundled;
mod cluster;
mod devices;
mod failure;
mod plan;
mod plot_runs;
mod quality;
mod shell;
use args::*;
use backend::backend;
use failure::{cli_error, from_run, Failure};
use tread_compiler::compile::{compile_file, CompileOptions};
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::emit;
use tread_compiler::report::Report;
use tread_compiler::route_spec::{parse_flag, ROUTE_SYNTAX};
use tread_runtime::bench::BenchMode;
use tread_runtime::run_folder::RunSettings;
use tread_runtime::sampler::SampleRequest;

fn main() -> ExitCode {
    if std::env::var_os("TREADC_DEFAULT_MALLOC").is_none() {
        tread_runtime::alloc::tune_for_training();
    }
    let cli = Cli::parse();
    // Not for the commands that talk to peers: a dead peer's socket must be an error, not a
    // silent SIGPIPE.
    if !matches!(cli.command, Command::Train(_) | Command::Coordinator(_)) {
        quiet_on_closed_pipe();
    }
    let result = match cli.command {
        Command::Compile(args) => run_compile(args),
        Command::Plan(args) => plan::run_plan(args),
        Command::Train(args) => run_train(args),
        Command::Sample(args) => run_sample(args),
        Command::Bench(args) => run_bench(args),
        Command::Export(args) => run_export(args),
        Command::Run(args) => run_onnx(args),
        Command::Import(args) => run_import(args),
        Command::Eval(args) => quality::run_eval(args),
        Command::TrainClassifier(args) => quality::run_train_classifier(args),
        Command::Plot(args) => plot_runs::run_plot(args),
        Command::Devices(args) => devices::run_devices(args),
        Command::Coordinator(args) => cluster::run_coordinator(args),
        Command::Completions(args) => shell::run_completions(args),
        Command::Man(args) => shell::run_man(args),
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

/// Restores the default SIGPIPE action (Rust ignores it, so a write to a closed pipe fails and
/// `println!` panics): `treadc … | head` then ends treadc quietly, as it does other Unix tools.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called in main before any thread is started; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run_compile(args: CompileArgs) -> Result<(), Failure> {
    let mut opts = CompileOptions {
        dense: args.dense,
        rate_override: args.rate,
        ..Default::default()
    };
    for (i, r) in args.route.routes.iter().enumerate() {
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

fn run_train(args: TrainArgs) -> Result<(), Failure> {
    use tread_runtime::start::{start, NewRun, TrainStart};
    let kind = backend(args.backend)?;
    let plan = cluster::plan(&args.parallel)?;
    let data = bundled::BundledData::unpack()?;
    let mnist = data.mnist();
    let at = tread_runtime::run::Placement {
        kind,
        plan,
        bundled_mnist: &mnist,
        progress: !args.quiet,
    };
    let settings = RunSettings {
        model_file: String::new(),
        routes: args.route.routes,
        data: args.data,
        steps: args.steps,
        batch: 0,
        seed: args.seed,
        sample_every: args.sample_every,
        ckpt_every: args.ckpt_every,
        sample_steps: args.sample_steps,
        eval_every: args.eval_every,
        eval_n: args.eval_n,
        cfg: args.cfg,
        init_from: args.init_from.map(|p| p.display().to_string()),
        time_budget_s: args.time_budget,
        eval_classifier: args.eval_classifier.map(|p| p.display().to_string()),
    };
    if !at.plan.is_leader() {
        return cluster::follow(&at, args.model, args.out, args.resume, args.batch, settings);
    }
    let req = match (args.resume, args.model) {
        (Some(run), model) => TrainStart::Resume {
            run,
            model,
            steps: args.steps,
            time_budget_s: args.time_budget,
        },
        (None, None) => {
            return Err(cli_error(
                "MODEL",
                "a model file (or --resume RUN_DIR)",
                "nothing".into(),
            ))
        }
        (None, Some(model)) => TrainStart::New(Box::new(NewRun {
            model,
            out: args
                .out
                .ok_or_else(|| cli_error("--out", "--out RUN_DIR", "nothing".into()))?,
            batch: args.batch,
            settings,
        })),
    };
    let run = start(req).map_err(Failure::Diag)?;
    tread_runtime::run::train(
        &at,
        run.settings,
        run.model_text,
        &run.dir,
        run.saved.as_ref(),
    )
    .map(|_| ())
    .map_err(from_run)
}

/// The stored texts `--context FILE` names, loaded.
fn stored_texts(
    file: Option<&Path>,
) -> Result<Option<tread_runtime::data::dataset::StoredTexts>, Failure> {
    file.map(tread_runtime::data::contexts::load)
        .transpose()
        .map_err(Failure::Diag)
}

fn run_sample(args: SampleArgs) -> Result<(), Failure> {
    let kind = backend(args.backend)?;
    let sparse = args
        .sparse_guidance
        .as_deref()
        .map(tread_runtime::sampler::parse_sparse_guidance)
        .transpose()
        .map_err(Failure::Diag)?;
    let req = SampleRequest {
        n: args.n,
        steps: args.draw.steps,
        seed: args.draw.seed,
        cfg: args.draw.cfg,
        sparse,
        raw: args.raw,
        class: args.draw.what.class,
        prompt: args.draw.what.prompt,
        stored: stored_texts(args.draw.what.context.as_deref())?,
    };
    let s = tread_runtime::draw::sample(kind, &args.run, &req).map_err(from_run)?;
    let n = s.n;
    let animated = tread_runtime::image_out::write_samples(
        &s.images,
        n,
        s.shape,
        s.clip,
        &args.draw.output,
        args.draw.npy.as_deref(),
        s.prompts.as_deref(),
    )
    .map_err(Failure::Diag)?;
    eprintln!("wrote {n} samples to {}", args.draw.output.display());
    if let Some(a) = animated {
        eprintln!("wrote them as an animation to {}", a.display());
    }
    Ok(())
}

fn run_bench(args: BenchArgs) -> Result<(), Failure> {
    if args.model.extension().is_some_and(|e| e == "onnx") {
        return bench_onnx(&args);
    }
    let kind = backend(args.backend)?;
    let text = tread_runtime::start::read_model(&args.model).map_err(Failure::Diag)?;
    let compiled = tread_runtime::model::compile_model(
        &text,
        &args.model.display().to_string(),
        &args.route.routes,
    )
    .map_err(Failure::Diag)?;
    if let Some(n) = args.micro_batches {
        if n == 0 || !args.batch.is_multiple_of(n) {
            return Err(cli_error(
                "--micro-batches",
                &format!("a number of micro-batches dividing --batch {}", args.batch),
                n.to_string(),
            ));
        }
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
        args.micro_batches,
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
        println!(
            "fused engine: {} cores busy, {} micro-batch{} per step",
            busy(r.cores_busy),
            r.micro_batches,
            if r.micro_batches == 1 { "" } else { "es" }
        );
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

/// `treadc export --format safetensors-official|pt-official`: the weights under the official
/// DiT names.
fn export_official(
    args: &ExportArgs,
    kind: tread_runtime::weights::StateDictFile,
    src: &tread_runtime::export::ExportSource,
) -> Result<(), Failure> {
    let flag = format!("--format {}", kind.format_flag());
    let Some(output) = &args.output else {
        return Err(cli_error(
            "-o",
            "the state-dict file to write",
            "nothing".into(),
        ));
    };
    if args.precond || args.check || args.external_data || args.list {
        return Err(cli_error(
            &flag,
            "no ONNX flags (--precond, --check, --external-data, --list)",
            "an ONNX flag".into(),
        ));
    }
    let n = tread_runtime::weights::write_official(
        output,
        kind,
        &args.source.display().to_string(),
        &src.dense,
        &src.weights.tensors,
    )
    .map_err(Failure::Diag)?;
    eprintln!(
        "wrote {} ({} tensors of {} under the official DiT names, from {})",
        output.display(),
        n,
        src.dense.name,
        src.weights.source
    );
    Ok(())
}

fn run_export(args: ExportArgs) -> Result<(), Failure> {
    use tread_onnx::export::file::ExternalData;
    use tread_onnx::export::listing::{listing, node_count, op_histogram};
    use tread_runtime::export::{check_against_burn, export_source, load_source, ExportRequest};
    tread_onnx::export::check_opset(args.opset).map_err(Failure::Diag)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| tread_runtime::export::default_output(&args.source));
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
        init_from: args.init_from.clone(),
    };
    let src = load_source(&req).map_err(Failure::Diag)?;
    match args.format {
        ExportFormat::Onnx => {}
        ExportFormat::SafetensorsOfficial => {
            return export_official(
                &args,
                tread_runtime::weights::StateDictFile::Safetensors,
                &src,
            )
        }
        ExportFormat::PtOfficial => {
            return export_official(&args, tread_runtime::weights::StateDictFile::Pt, &src)
        }
    }
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

fn run_import(args: ImportArgs) -> Result<(), Failure> {
    use tread_runtime::export::{check_against_burn, load_source, ExportRequest, WhichWeights};
    let started = std::time::Instant::now();
    let name = args.name.clone().unwrap_or_else(|| {
        args.model
            .file_stem()
            .map_or("imported".into(), |s| s.to_string_lossy().into_owned())
    });
    let m = tread_onnx::import::import(&args.model, &name).map_err(Failure::Diag)?;
    if args.report {
        for (op, kind, from) in &m.report {
            println!("{op} ({kind}) <- {}", from.join(", "));
        }
    }
    std::fs::create_dir_all(&args.output).map_err(|e| {
        Failure::Diag(tread_compiler::diag::Diagnostic::io(
            args.output.display().to_string(),
            "cannot create the output folder",
            e,
        ))
    })?;
    let model_path = args.output.join("model.json");
    let weights_path = args.output.join("weights.safetensors");
    let text =
        serde_json::to_string_pretty(&m.model).map_err(|e| Failure::Other(e.to_string()))? + "\n";
    tread_runtime::weights::write_safetensors(&weights_path, &m.weights, "pt")
        .map_err(Failure::Diag)?;
    tread_compiler::atomic::write_atomic(&model_path, text.as_bytes()).map_err(Failure::Diag)?;
    let params: usize = m
        .weights
        .iter()
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum();
    eprintln!(
        "imported {} ({} ONNX nodes) as {} ops: {} blocks ({} template{}), {} tensors, {:.2}M parameters; wrote {} and {} in {:.2} s",
        args.model.display(),
        m.onnx_nodes,
        m.report.len(),
        m.depth,
        m.templates,
        if m.templates == 1 { "" } else { "s" },
        m.weights.len(),
        params as f64 / 1e6,
        model_path.display(),
        weights_path.display(),
        started.elapsed().as_secs_f64()
    );
    if args.no_check {
        return Ok(());
    }
    let req = ExportRequest {
        source: model_path.clone(),
        output: args.output.join("unused.onnx"),
        opset: tread_onnx::export::DEFAULT_OPSET,
        precond: false,
        weights: WhichWeights::Ema,
        external: tread_onnx::export::file::ExternalData::Auto,
        seed: 0,
        init_from: Some(weights_path),
    };
    let src = load_source(&req).map_err(Failure::Diag)?;
    let r = check_against_burn(&args.model, &src, false, 2).map_err(from_run)?;
    eprintln!(
        "check (the imported model on burn vs the file on tract, batch {}): max abs diff {:.2e}, max rel diff {:.2e} (|values| up to {:.2})",
        r.batch, r.max_abs, r.max_rel, r.max_value
    );
    if r.max_value == 0.0 {
        eprintln!(
            "note: the file's outputs are all zero on these inputs (adaLN-Zero weights?), so the check compared nothing"
        );
    }
    if !r.passes() {
        return Err(Failure::Other(format!(
            "the imported model computes something else than the file: max abs {:.3e} > 1e-4 \
             (a pattern matched what it should not: please report the file)",
            r.max_abs
        )));
    }
    Ok(())
}

fn run_onnx(args: RunArgs) -> Result<(), Failure> {
    use tread_runtime::deploy::Deployment;
    let d = Deployment::open(&args.model).map_err(Failure::Diag)?;
    let req = SampleRequest {
        n: args.n,
        steps: args.draw.steps,
        seed: args.draw.seed,
        cfg: args.draw.cfg,
        class: args.draw.what.class,
        prompt: args.draw.what.prompt,
        stored: stored_texts(args.draw.what.context.as_deref())?,
        ..Default::default()
    };
    let imgs = d.sample(&req).map_err(from_run)?;
    let labels = tread_runtime::sampler::sample_labels(d.classes, req.class, req.n)
        .map_err(Failure::Diag)?;
    let prompts = tread_runtime::sampler::prompts_of(d.text.is_some(), &req, labels.as_deref());
    let animated = tread_runtime::image_out::write_samples(
        &imgs,
        args.n,
        d.shape,
        d.clip(),
        &args.draw.output,
        args.draw.npy.as_deref(),
        prompts.as_deref(),
    )
    .map_err(Failure::Diag)?;
    if let Some(a) = animated {
        eprintln!("wrote the clips as an animation to {}", a.display());
    }
    eprintln!(
        "wrote {} samples to {} (tract, {} steps)",
        args.n,
        args.draw.output.display(),
        args.draw.steps
    );
    Ok(())
}

/// `treadc bench model.onnx`: tract forward passes at `--batch`.
fn bench_onnx(args: &BenchArgs) -> Result<(), Failure> {
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
