//! `treadc train` as a library function: data, progress, logs, grids, evaluations and
//! checkpoints around a [`Session`] on the backend the CLI chose (no burn type here).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tread_compiler::compile::Compiled;
use tread_compiler::diag::{Diagnostic, Location};

use crate::checkpoint::Checkpoint;
use crate::condition::Condition;
use crate::data::clips::moving_digits;
use crate::data::dataset::{Captions, StoredTexts};
use crate::data::{fit_to_model, load, DataSpec, Dataset};
use crate::image_out::{write_grid, write_labelled_grid};
use crate::lower::backends::{guarded, new_group, new_session, restore_session, BackendKind};
use crate::lower::group::GroupStart;
use crate::lower::sample::{Guidance, SampleSpec};
use crate::lower::train::Recipe;
use crate::lower::Session;
use crate::model::{clip_shape, compile_model, model_io, recipe, route_text};
use crate::parallel::Parallel;
use crate::run_error::RunError;
use crate::run_folder::{RunFolder, RunSettings, SavedRun, VOCABULARY_KEY};
use crate::sampler::grid_labels;
use crate::text::{canonical_prompt, TextEncoder, Tokenizer};

/// What a run's grid or evaluation of `n` samples asks `t`'s model for, and the classes to
/// score them against: a run on stored contexts takes its stored texts in turn (scored against
/// their stored labels), any other the classes in turn (as prompts for a text model).
fn grid_conditions(
    t: &dyn Session,
    data: &Dataset,
    n: usize,
    classes: Option<usize>,
) -> Result<(Option<Vec<i64>>, Condition), RunError> {
    if let (Some(stored), Some(_)) = (&data.texts, &data.captions) {
        let rows: Vec<Option<usize>> = caption_rows(n, stored.batch.n)
            .into_iter()
            .map(Some)
            .collect();
        return Ok((None, Condition::Text(stored.batch.gather(&rows))));
    }
    if let Some(stored) = &data.texts {
        let (labels, texts) = stored.in_turn(n);
        return Ok((labels, Condition::Text(texts)));
    }
    let labels = grid_labels(n, classes);
    let cond = Condition::of_classes(labels.as_deref(), t.recipe().text.as_ref())
        .map_err(|e| RunError::Failed(format!("the grid's prompts: {e}")))?;
    Ok((labels, cond))
}

/// The captions a grid of `n` samples shows out of `count`: the first eight in turn, each for
/// a row of `n / 8` samples, so that each caption's row can be labelled.
fn caption_rows(n: usize, count: usize) -> Vec<usize> {
    let per = (n / 8).max(1);
    (0..n).map(|i| (i / per) % count.max(1)).collect()
}

fn io_err(what: &str, e: impl std::fmt::Display) -> RunError {
    RunError::Failed(format!("{what}: {e}"))
}

/// Where and how a run trains: the backend, its data-parallel peers, the bundled MNIST folder
/// and whether to draw a progress bar.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    /// The burn backend.
    pub kind: BackendKind,
    /// The data-parallel peers (one by default).
    pub plan: Parallel,
    /// The bundled MNIST folder (for `--data mnist` and the digit metric).
    pub bundled_mnist: &'a Path,
    /// Draw a progress bar.
    pub progress: bool,
}

impl<'a> Placement<'a> {
    /// One peer on backend `kind`, no progress bar (tests, scripts).
    pub fn single(kind: BackendKind, bundled_mnist: &'a Path) -> Self {
        Placement {
            kind,
            plan: Parallel::default(),
            bundled_mnist,
            progress: false,
        }
    }
}

/// Trains (fresh, or resumed from `resume`, the run's saved checkpoint) as placed by `at`
/// and returns the final state. On a cluster this is node 0's part; the other nodes run
/// [`follow`].
pub fn train(
    at: &Placement<'_>,
    settings: RunSettings,
    model_text: String,
    out_dir: &Path,
    resume: Option<&SavedRun>,
) -> Result<Box<dyn Session>, RunError> {
    guarded(
        at.kind,
        || train_in(at, settings, model_text, out_dir, resume),
        RunError::Failed,
    )
}

/// The model, data and recipe of a run, checked and loaded.
struct Prepared {
    compiled: Compiled,
    shape: [usize; 3],
    classes: Option<usize>,
    data: Arc<Dataset>,
    notes: Vec<String>,
    recipe: Recipe,
}

/// `fresh`: the run starts at step 0 (so `--init-from` weights are read; a resumed run takes its
/// checkpoint's).
fn prepare(
    settings: &RunSettings,
    model_text: &str,
    at: &Placement<'_>,
    fresh: bool,
) -> Result<Prepared, RunError> {
    let compiled = compile_model(model_text, &settings.model_file, &settings.routes)?;
    let (shape, classes) = model_io(&compiled)?;
    at.plan.check(settings.batch)?;
    let spec = DataSpec::parse(&settings.data)?;
    let mut raw = load(&spec, at.bundled_mnist)?;
    let mut clip_note = None;
    if let Some(clip) = clip_shape(&compiled) {
        raw = moving_digits(&raw, clip, settings.seed)?;
        clip_note = Some(format!(
            "made one {}-frame clip of {}x{} per image: the digit shrunk to 7/8 of a frame and \
             moving at a constant speed (seed {})",
            clip.frames, clip.height, clip.width, settings.seed
        ));
    }
    let (mut data, notes): (Dataset, Vec<String>) =
        fit_to_model(raw, shape[0], shape[1], shape[2], classes, settings.seed)?;
    let vocabulary = data
        .captions
        .as_ref()
        .map(|c| Tokenizer::of_texts(&c.texts));
    let mut recipe = recipe(&compiled, settings.batch, settings.seed, vocabulary)?;
    let mut notes: Vec<String> = clip_note.into_iter().chain(notes).collect();
    if let Some(stored) = data.texts.take() {
        let (fitted, note) =
            stored.fit(recipe.text.as_ref().map(|e| e.dims), &settings.model_file)?;
        notes.push(format!(
            "conditioning on the {} stored text contexts of {} (no captions drawn)",
            fitted.batch.n, fitted.file
        ));
        notes.extend(note);
        data.texts = Some(fitted);
    }
    if let Some(captions) = &data.captions {
        let stored = encode_captions(captions, recipe.text.as_ref(), &settings.model_file)?;
        notes.push(format!(
            "conditioning on the {} captions of {} (a vocabulary of {} words built from them)",
            captions.texts.len(),
            captions.file,
            recipe.text.as_ref().map_or(0, |e| e.tokenizer.len() - 1)
        ));
        data.texts = Some(stored);
    }
    if let Some(file) = settings.init_from.as_ref().filter(|_| fresh) {
        let w = crate::weights::load(Path::new(file), &recipe.routed)?;
        notes.push(format!("starting from the weights of {file}"));
        notes.extend(w.notes);
        recipe.init = Some(Arc::new(w.values));
    }
    recipe.micro_batches = at.plan.micro_batches;
    Ok(Prepared {
        compiled,
        shape,
        classes,
        data: Arc::new(data),
        notes,
        recipe,
    })
}

/// A resumed run must read its texts with the vocabulary it was trained with: captions that
/// changed since (another vocabulary) are bad input naming the checkpoint.
fn check_vocabulary(saved: &SavedRun, enc: Option<&TextEncoder>) -> Result<(), Diagnostic> {
    let now = enc.map(|e| &e.tokenizer).filter(|t| !t.is_bundled());
    if now == saved.vocabulary.as_ref() {
        return Ok(());
    }
    let describe = |t: Option<&Tokenizer>| match t {
        Some(t) => format!("a vocabulary of {} words built from captions", t.len() - 1),
        None => "the bundled vocabulary".to_string(),
    };
    Err(Diagnostic::new(
        Location::Item(format!("metadata `{VOCABULARY_KEY}`")),
        "the data's vocabulary is not the one the run was trained with",
    )
    .expected(describe(saved.vocabulary.as_ref()))
    .found(format!("{} (the captions changed?)", describe(now)))
    .in_file(saved.path.display().to_string()))
}

/// Captions encoded with the run's encoder (one built from their vocabulary), as stored texts;
/// a model without text, a vocabulary without words or a caption longer than the model's
/// context is bad input naming the captions file.
fn encode_captions(
    captions: &Captions,
    enc: Option<&TextEncoder>,
    model_file: &str,
) -> Result<StoredTexts, Diagnostic> {
    let Some(enc) = enc else {
        return Err(Diagnostic::new(
            Location::File,
            "captioned images need a text-conditioned model",
        )
        .expected("a model with a `context` input")
        .found("a model without one (use png:DIR for class folders)")
        .in_file(model_file));
    };
    if enc.tokenizer.len() < 2 {
        return Err(
            Diagnostic::new(Location::File, "the captions have no words")
                .expected("at least one caption with a word")
                .found(format!("{} empty captions", captions.texts.len()))
                .in_file(captions.file.clone()),
        );
    }
    let ids = captions
        .texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            enc.tokenize(text).map_err(|e| {
                Diagnostic::new(captions.location(i), "the caption does not fit the model")
                    .expected(format!(
                        "at most {} words (the context length of {model_file})",
                        enc.dims.len
                    ))
                    .found(format!("{e}: {text:?}"))
                    .in_file(captions.file.clone())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StoredTexts {
        batch: enc.encode_ids(&ids),
        labels: None,
        file: captions.file.clone(),
    })
}

/// The session of `at`'s peers: one trainer, or a peer group (which, on a cluster, agrees
/// with node 0 before it returns). Returns it with the run's step target.
fn open_session(
    at: &Placement<'_>,
    recipe: Recipe,
    resume: Option<&SavedRun>,
    steps: u64,
    data: &str,
) -> Result<(Box<dyn Session>, u64), RunError> {
    let tensors_err = |saved: &SavedRun, m: String| {
        RunError::Diag(
            Diagnostic::new(Location::Item("tensors".into()), m)
                .in_file(saved.path.display().to_string()),
        )
    };
    if at.plan.is_single() {
        let t = match resume {
            Some(saved) => restore_session(at.kind, recipe, &saved.checkpoint, saved.step)
                .map_err(|m| tensors_err(saved, m))?,
            None => new_session(at.kind, recipe).map_err(RunError::Failed)?,
        };
        return Ok((t, steps));
    }
    if let Some(saved) = resume {
        // Check the checkpoint here, where the error can name its file, before the peers
        // start (each restores it again, and on a cluster node 0 sends it to the others).
        crate::lower::train::check_checkpoint(&recipe, &saved.checkpoint)
            .map_err(|m| tensors_err(saved, m))?;
    }
    let start = GroupStart {
        saved: resume.map(|s| (Arc::new(s.checkpoint.clone()), s.step)),
        steps,
        agree_on: data.to_string(),
    };
    let (g, agreed) = new_group(at.kind, recipe, &at.plan, start).map_err(RunError::Failed)?;
    Ok((g, agreed.steps))
}

/// A cluster node other than node 0: trains its peers' shards in step with node 0 (which it
/// learns the start step and step target from) and writes nothing.
pub fn follow(
    at: &Placement<'_>,
    settings: RunSettings,
    model_text: String,
) -> Result<(), RunError> {
    guarded(
        at.kind,
        || {
            let p = prepare(&settings, &model_text, at, true)?;
            let (mut t, steps) = open_session(at, p.recipe, None, settings.steps, &settings.data)?;
            eprintln!(
                "following node 0: {} on {}, steps {} → {steps}, {} peer(s) here of {}",
                p.compiled.model.graph.name,
                p.data.source,
                t.step(),
                at.plan.devices,
                at.plan.peers()
            );
            let bar = progress_bar(at.progress, steps, t.step());
            while t.step() < steps {
                let s = t.step();
                let loss = t.train_step(&p.data).map_err(RunError::Failed)?;
                if !loss.is_finite() {
                    bar.abandon();
                    return Err(RunError::Failed(format!(
                        "the loss is {loss} at step {}; stopping (node 0 stops too)",
                        s + 1
                    )));
                }
                bar.set_position(t.step());
                bar.set_message(format!("loss {loss:.4}"));
            }
            bar.finish();
            if let Some(r) = t.parallel_report() {
                eprintln!("{r}");
            }
            eprintln!("done: step {steps} (node 0 wrote the run folder)");
            Ok(())
        },
        RunError::Failed,
    )
}

fn progress_bar(show: bool, len: u64, at: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_position(at);
    b
}

fn train_in(
    at: &Placement<'_>,
    mut settings: RunSettings,
    model_text: String,
    out_dir: &Path,
    resume: Option<&SavedRun>,
) -> Result<Box<dyn Session>, RunError> {
    let paths = RunFolder::new(out_dir);
    let Prepared {
        compiled,
        shape,
        classes,
        data,
        notes,
        recipe: r,
    } = prepare(&settings, &model_text, at, resume.is_none())?;
    if let Some(saved) = resume {
        check_vocabulary(saved, r.text.as_ref())?;
    }
    let bundled_mnist = at.bundled_mnist;
    let guidance = match settings.cfg {
        None => Guidance::None,
        Some(scale) if classes.is_some() && r.training.class_dropout > 0.0 => {
            Guidance::Cfg { scale }
        }
        Some(_) => {
            return Err(RunError::Diag(
                Diagnostic::new(
                    Location::Item("--cfg".into()),
                    format!(
                        "classifier-free guidance needs a class-conditional model trained with \
                         `training.class_dropout` > 0; this one has {} classes and class_dropout {}",
                        classes.map_or("no".to_string(), |k| k.to_string()),
                        r.training.class_dropout
                    ),
                )
                .in_file(settings.model_file.clone()),
            ))
        }
    };
    let evaluator = if settings.eval_every > 0 {
        if let Some(captions) = &data.captions {
            return Err(RunError::Diag(
                Diagnostic::new(
                    Location::Item("--eval-every".into()),
                    "captioned images have no labels to score samples against",
                )
                .expected("a dataset with class labels (the digit metric scores digits)")
                .found(format!("the captions of {}", captions.file))
                .in_file("<command line>"),
            ));
        }
        if let Some(stored) = data.texts.as_ref().filter(|s| s.labels.is_none()) {
            return Err(RunError::Diag(
                Diagnostic::new(
                    Location::Item("--eval-every".into()),
                    "the stored text contexts have no labels to score samples against",
                )
                .expected(format!(
                    "a `labels` tensor beside `context` in {}",
                    stored.file
                ))
                .found("no labels")
                .in_file("<command line>"),
            ));
        }
        let clip = clip_shape(&compiled);
        crate::eval::check_digit_model(shape, clip, classes)
            .map_err(|d| d.in_file(settings.model_file.clone()))?;
        let data_dir = bundled_mnist.parent().unwrap_or(Path::new("."));
        Some(match &settings.eval_classifier {
            Some(file) => crate::eval::Evaluator::from_file(Path::new(file), clip)?,
            None => crate::eval::Evaluator::for_model(data_dir, clip)?,
        })
    } else {
        None
    };
    let (mut trainer, steps) = open_session(at, r, resume, settings.steps, &settings.data)?;
    settings.steps = steps;
    std::fs::create_dir_all(paths.samples()).map_err(|e| {
        Diagnostic::io(
            paths.samples().display().to_string(),
            "cannot create the run folder",
            e,
        )
    })?;
    if resume.is_some() {
        for f in paths.remove_stale_temps()? {
            eprintln!("removed {}, left by an interrupted write", f.display());
        }
    }
    let settings_json =
        serde_json::to_string_pretty(&settings).map_err(|e| io_err("settings", e))?;
    // run.json: the settings plus the routes in effect (for plots and people).
    let mut run_json = serde_json::to_value(&settings).map_err(|e| io_err("settings", e))?;
    run_json["routes_in_effect"] = route_text(&compiled).into();
    let run_json = serde_json::to_string_pretty(&run_json).map_err(|e| io_err("settings", e))?;
    crate::checkpoint::write_atomic(&paths.run_json(), run_json.as_bytes())?;
    for n in &notes {
        eprintln!("data: {n}");
    }
    eprintln!(
        "training {} on {} ({} images {}x{}x{}), {} → {} steps, batch {}{}, routes: {}",
        compiled.model.graph.name,
        data.source,
        data.n,
        data.channels,
        data.height,
        data.width,
        trainer.step(),
        settings.steps,
        settings.batch,
        if at.plan.is_single() {
            match trainer.micro_batches() {
                Some(n) if n > 1 => format!(" ({n} concurrent micro-batches)"),
                _ => String::new(),
            }
        } else {
            format!(
                " ({} peers × {}; {} in this process)",
                at.plan.peers(),
                settings.batch / at.plan.peers(),
                at.plan.devices
            )
        },
        route_text(&compiled)
    );
    if resume.is_some() {
        crate::metrics::truncate_after(&paths.metrics(), trainer.step())?;
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.metrics())
        .map_err(|e| io_err("cannot open metrics.jsonl", e))?;
    let bar = progress_bar(at.progress, settings.steps, trainer.step());
    let start = Instant::now();
    // Training wall time: grids, checkpoints and evaluations are paused out, and a resumed run
    // continues the clock of its checkpoint's step.
    let mut paused = std::time::Duration::ZERO;
    let clock0 = if resume.is_some() {
        crate::metrics::elapsed_at(&paths.metrics(), trainer.step())
    } else {
        0.0
    };
    let first = trainer.step();
    let mut last_eval = String::new();
    let save = |t: &dyn Session| -> Result<(), RunError> {
        let mut ck = t.to_checkpoint().map_err(RunError::Failed)?;
        ck.meta.insert("model_json".into(), model_text.clone());
        ck.meta
            .insert("model_file".into(), settings.model_file.clone());
        ck.meta.insert(
            "routes".into(),
            serde_json::to_string(&settings.routes).unwrap_or_default(),
        );
        ck.meta.insert(
            "graph".into(),
            tread_compiler::emit::to_text(&t.recipe().routed),
        );
        ck.meta.insert("train".into(), settings_json.clone());
        if let Some(words) = t.recipe().text.as_ref().map(|e| &e.tokenizer) {
            if !words.is_bundled() {
                ck.meta.insert(VOCABULARY_KEY.into(), words.in_id_order());
            }
        }
        ck.save(&paths.checkpoint())?;
        Ok(())
    };
    let grid = |t: &dyn Session, path: &Path| -> Result<(), RunError> {
        let n = 64;
        let (labels, cond) = grid_conditions(t, &data, n, classes)?;
        let spec = SampleSpec {
            shape,
            cond,
            n,
            steps: settings.sample_steps,
            seed: settings.seed,
            null_label: classes.unwrap_or(0) as i64,
        };
        let imgs = t.sample(&spec, &guidance, true).map_err(RunError::Failed)?;
        let prompts: Option<Vec<String>> = match &data.captions {
            Some(c) => Some(
                caption_rows(n, c.texts.len())
                    .into_iter()
                    .map(|r| c.texts[r].clone())
                    .collect(),
            ),
            None => labels
                .filter(|_| t.recipe().text.is_some() && data.texts.is_none())
                .map(|l| l.iter().map(|&d| canonical_prompt(d as usize)).collect()),
        };
        match (clip_shape(&compiled), prompts) {
            (Some(c), _) => {
                crate::image_out::write_clips(path, &imgs, n, shape[0], c, 4)?;
            }
            (None, Some(p)) => write_labelled_grid(path, &imgs, n, shape, 8, &p)?,
            (None, None) => write_grid(path, &imgs, n, shape, 8)?,
        }
        Ok(())
    };
    let evaluate =
        |t: &dyn Session, ev: &crate::eval::Evaluator| -> Result<crate::eval::Scores, RunError> {
            let n = settings.eval_n;
            let (labels, cond) = grid_conditions(t, &data, n, classes)?;
            let spec = SampleSpec {
                shape,
                cond,
                n,
                steps: settings.sample_steps,
                seed: settings.seed ^ EVAL_SEED,
                null_label: classes.unwrap_or(0) as i64,
            };
            let imgs = t.sample(&spec, &guidance, true).map_err(RunError::Failed)?;
            ev.score(&imgs, labels.as_deref().unwrap_or(&[]))
                .map_err(RunError::Failed)
        };
    while trainer.step() < settings.steps {
        let s = trainer.step();
        let loss = trainer.train_step(&data).map_err(RunError::Failed)?;
        if !loss.is_finite() {
            bar.abandon();
            let kept = Checkpoint::load(&paths.checkpoint())
                .ok()
                .and_then(|c| c.meta.get("step").cloned())
                .map_or("no checkpoint was written yet".to_string(), |k| {
                    format!(
                        "the last good checkpoint (step {k}) is kept in {}",
                        paths.checkpoint().display()
                    )
                });
            return Err(RunError::Failed(format!(
                "the loss is {loss} at step {}; stopping ({kept})",
                s + 1
            )));
        }
        let trained = (start.elapsed() - paused).as_secs_f64();
        let elapsed = clock0 + trained;
        let rate = (trainer.step() - first) as f64 / trained.max(1e-9);
        writeln!(log, "{}", serde_json::json!({"step": trainer.step(), "loss": loss, "steps_per_s": rate, "elapsed_s": elapsed}))
            .map_err(|e| io_err("cannot write metrics.jsonl", e))?;
        bar.set_position(trainer.step());
        let at = |every: u64| every > 0 && trainer.step() % every == 0;
        let out_of_time = settings.time_budget_s.is_some_and(|b| elapsed >= b);
        let last = trainer.step() == settings.steps || out_of_time;
        let pause = Instant::now();
        if let Some(ev) = evaluator
            .as_ref()
            .filter(|_| at(settings.eval_every) || last)
        {
            let sc = evaluate(trainer.as_ref(), ev)?;
            let mut line = serde_json::json!({"step": trainer.step(), "fd": sc.fd, "accuracy": sc.accuracy, "per_class": sc.per_class, "n": sc.n, "cfg": settings.cfg, "elapsed_s": elapsed});
            if let Some(m) = sc.moving {
                line["moving"] = m.into();
            }
            writeln!(log, "{line}").map_err(|e| io_err("cannot write metrics.jsonl", e))?;
            last_eval = format!(" · FD {:.2}, acc {:.1}%", sc.fd, 100.0 * sc.accuracy);
            if let Some(m) = sc.moving {
                last_eval += &format!(", {:.0}% of clips move", 100.0 * m);
            }
        }
        bar.set_message(format!("loss {loss:.4}{last_eval}"));
        if at(settings.sample_every) && !last {
            bar.suspend(|| grid(trainer.as_ref(), &paths.grid(trainer.step())))?;
        }
        if at(settings.ckpt_every) && !last {
            save(trainer.as_ref())?;
        }
        paused += pause.elapsed();
        if out_of_time && trainer.step() < settings.steps {
            bar.abandon();
            eprintln!(
                "time budget of {:.0} s reached at step {} ({elapsed:.1} s of training)",
                settings.time_budget_s.unwrap_or_default(),
                trainer.step()
            );
            break;
        }
    }
    bar.finish();
    save(trainer.as_ref())?;
    grid(trainer.as_ref(), &paths.grid(trainer.step()))?;
    drop(log);
    write_curves(&paths, evaluator.is_some(), &route_text(&compiled))?;
    if !last_eval.is_empty() {
        eprintln!("evaluation{last_eval} ({} EMA samples)", settings.eval_n);
    }
    if let Some(r) = trainer.parallel_report() {
        eprintln!("{r}");
    }
    eprintln!(
        "done: step {}, checkpoint {}, samples {}",
        trainer.step(),
        paths.checkpoint().display(),
        paths.grid(trainer.step()).display()
    );
    Ok(trainer)
}

/// Mixed into the run's seed for the evaluation samples' noise (the same at every evaluation,
/// so that a curve compares like with like; different from the grids').
const EVAL_SEED: u64 = 0xe7a1;

/// `curves.png` in the run folder: the loss against the step, and with evaluations a second
/// file `curves-fd.png` with the FD (nothing before the first step).
fn write_curves(paths: &RunFolder, with_eval: bool, routes: &str) -> Result<(), RunError> {
    use crate::plot::{plot, Line, XAxis, YAxis};
    let curves = crate::metrics::read(&paths.metrics())?;
    if curves.loss.is_empty() {
        // A run of 0 steps (a checkpoint of its starting weights) has nothing to plot.
        return Ok(());
    }
    let name = paths
        .dir
        .file_name()
        .map_or("run".into(), |n| n.to_string_lossy().into_owned());
    let line = [Line {
        label: format!("{name} (routes {routes})"),
        curves: &curves,
    }];
    let fail = |d: Diagnostic| RunError::Failed(d.to_string());
    plot(&line, XAxis::Step, YAxis::Loss, &paths.curves()).map_err(fail)?;
    if with_eval {
        plot(&line, XAxis::Step, YAxis::Fd, &paths.curves_fd()).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::sample;
    use crate::restore::load_run;
    use crate::sampler::SampleRequest;
    use std::path::PathBuf;

    const FLEX: BackendKind = BackendKind::Flex;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn settings(steps: u64, ckpt_every: u64) -> (RunSettings, String) {
        settings_of("tests/models/tiny-mnist.json", steps, ckpt_every)
    }

    fn settings_of(model: &str, steps: u64, ckpt_every: u64) -> (RunSettings, String) {
        let file = root().join(model);
        let text = std::fs::read_to_string(&file).unwrap();
        let s = RunSettings {
            model_file: file.display().to_string(),
            routes: vec![],
            data: "mnist".into(),
            steps,
            batch: 32,
            seed: 3,
            sample_every: 0,
            ckpt_every,
            sample_steps: 2,
            eval_every: 0,
            eval_n: 500,
            cfg: None,
            init_from: None,
            time_budget_s: None,
            eval_classifier: None,
        };
        (s, text)
    }

    /// A run folder path that does not exist yet, inside a temp dir removed when the guard
    /// drops.
    fn dir(name: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join(name);
        (tmp, d)
    }

    fn run(s: RunSettings, text: &str, d: &Path, resume: bool) -> Box<dyn Session> {
        let saved = resume.then(|| SavedRun::open(d).unwrap());
        let mnist = root().join("data/mnist");
        train(
            &Placement::single(FLEX, &mnist),
            s,
            text.to_string(),
            d,
            saved.as_ref(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn save_then_resume_equals_an_uninterrupted_run_bit_for_bit() {
        assert_resume_is_exact("tests/models/tiny-mnist.json");
    }

    /// The captions are drawn from the run's generator, so they too must resume exactly.
    #[test]
    fn a_resumed_text_conditioned_run_equals_an_uninterrupted_one_bit_for_bit() {
        assert_resume_is_exact("models/mnist-mmdit-small.json");
    }

    fn assert_resume_is_exact(model: &str) {
        let (mut s4, text) = settings_of(model, 4, 0);
        s4.batch = 16;
        let (_tmp_straight, straight) = dir("straight");
        let straight = run(s4.clone(), &text, &straight, false);
        let (_tmp, d) = dir("resumed");
        let mut s2 = s4.clone();
        s2.steps = 2;
        run(s2, &text, &d, false);
        let resumed = run(s4, &text, &d, true);
        assert_eq!(resumed.step(), 4);
        let (a, b) = (
            straight.host_params().unwrap(),
            resumed.host_params().unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(
                x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "parameters differ after resume"
            );
        }
    }

    #[test]
    fn mnist_loss_falls_on_a_short_run() {
        let (s, text) = settings(120, 0);
        let (_tmp, d) = dir("falls");
        run(s, &text, &d, false);
        let log = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        let losses: Vec<f64> = log
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        assert_eq!(losses.len(), 120);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (first, last) = (mean(&losses[..20]), mean(&losses[100..]));
        assert!(
            last < 0.8 * first,
            "loss did not fall: first 20 steps {first:.4}, last 20 {last:.4}"
        );
        assert!(d.join("samples/step-000120.png").exists());
    }

    #[test]
    fn a_checkpoint_for_another_model_or_a_corrupt_one_is_refused() {
        let (s, text) = settings(1, 0);
        let (_tmp, d) = dir("mismatch");
        run(s, &text, &d, false);
        // Same run folder, different model: the tensors do not fit.
        let other = std::fs::read_to_string(root().join("models/mnist-dit.json")).unwrap();
        let mut s2 = settings(2, 0).0;
        s2.model_file = "models/mnist-dit.json".into();
        let saved = SavedRun::open(&d).unwrap();
        let mnist = root().join("data/mnist");
        let e = train(
            &Placement::single(FLEX, &mnist),
            s2,
            other,
            &d,
            Some(&saved),
        )
        .err()
        .unwrap();
        let RunError::Diag(diag) = e else {
            panic!("expected an input error")
        };
        assert!(
            diag.message.contains("another model") || diag.message.contains("shape"),
            "{diag}"
        );
        assert!(diag.file.ends_with("checkpoint.safetensors"));
        // Truncated file.
        let ck = d.join("checkpoint.safetensors");
        let bytes = std::fs::read(&ck).unwrap();
        std::fs::write(&ck, &bytes[..bytes.len() / 2]).unwrap();
        let e = load_run(FLEX, &ck).err().unwrap();
        assert!(matches!(e, RunError::Diag(_)), "{e:?}");
    }

    #[test]
    fn a_time_budget_stops_at_the_first_step_past_it_and_checkpoints_there() {
        let (mut s, text) = settings(40, 0);
        s.time_budget_s = Some(1e-9);
        let (_tmp, d) = dir("budget");
        assert_eq!(run(s.clone(), &text, &d, false).step(), 1);
        let ck = Checkpoint::load(&d.join("checkpoint.safetensors")).unwrap();
        assert_eq!(ck.meta["step"], "1");
        let curves = crate::metrics::read(&d.join("metrics.jsonl")).unwrap();
        assert_eq!(curves.loss.len(), 1);
        s.steps = 2;
        s.time_budget_s = Some(1e9);
        let (_tmp, d) = dir("ample");
        assert_eq!(
            run(s, &text, &d, false).step(),
            2,
            "an ample budget runs --steps"
        );
    }

    #[test]
    fn a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint() {
        let (mut s, text) = settings(5, 1);
        let text = text.replace("\"lr\": 0.001", "\"lr\": 1e30");
        assert!(text.contains("1e30"));
        s.steps = 5;
        let (_tmp, d) = dir("nan");
        let mnist = root().join("data/mnist");
        let e = train(&Placement::single(FLEX, &mnist), s, text, &d, None)
            .err()
            .unwrap();
        let RunError::Failed(msg) = e else {
            panic!("expected a run failure")
        };
        assert!(msg.contains("at step"), "{msg}");
        assert!(msg.contains("last good checkpoint"), "{msg}");
        let ck = Checkpoint::load(&d.join("checkpoint.safetensors")).unwrap();
        let saved: u64 = ck.meta["step"].parse().unwrap();
        assert!(
            msg.contains(&format!("step {}", saved + 1)),
            "{msg} (checkpoint at {saved})"
        );
    }

    #[test]
    fn sampling_with_cfg_and_sparse_guidance_from_a_checkpoint() {
        let (s, text) = settings(2, 0);
        let (_tmp, d) = dir("sample");
        run(s, &text, &d, false);
        let ck = d.join("checkpoint.safetensors");
        for (cfg, sparse) in [
            (None, None),
            (Some(2.0), None),
            (None, Some((0.3, 0.7, 1.5))),
        ] {
            let req = SampleRequest {
                n: 3,
                steps: 2,
                seed: 1,
                cfg,
                sparse,
                raw: false,
                class: Some(7),
                prompt: None,
                stored: None,
            };
            let s = sample(FLEX, &ck, &req).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!((s.n, s.shape, s.step), (3, [1, 32, 32], 2));
            assert_eq!(s.labels, Some(vec![7; 3]));
            assert_eq!(s.images.len(), 3 * 32 * 32);
            assert!(s.images.iter().all(|v| v.is_finite()));
        }
        let bad = SampleRequest {
            n: 1,
            steps: 1,
            seed: 1,
            cfg: None,
            sparse: None,
            raw: false,
            class: Some(10),
            prompt: None,
            stored: None,
        };
        assert!(matches!(sample(FLEX, &ck, &bad), Err(RunError::Diag(_))));
    }
}
