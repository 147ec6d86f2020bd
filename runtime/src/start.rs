//! How a `treadc train` command becomes a run: a new run folder from a model file, or a saved
//! run resumed (optionally with its model file named again, which must then be the same model).
//! Everything here is checked before a file is written.

use std::path::{Path, PathBuf};

use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::read::read_text;

use crate::model::compile_model;
use crate::run_folder::{RunFolder, RunSettings, SavedRun};

/// Reads a model file; the error names it.
pub fn read_model(path: &Path) -> Result<String, Diagnostic> {
    read_text(path, "model file", "a readable model.json")
}

/// A new run: the model file, the run folder and the settings given on the command line.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The model file.
    pub model: PathBuf,
    /// The run folder (must not hold a checkpoint yet).
    pub out: PathBuf,
    /// The batch size (`None`: the model file's `training.batch`).
    pub batch: Option<usize>,
    /// Everything else, as it will be stored (`model_file` and `batch` are filled in here).
    pub settings: RunSettings,
}

/// What `treadc train` was asked to do.
#[derive(Debug, Clone)]
pub enum TrainStart {
    /// Start a run (boxed: by far the larger variant).
    New(Box<NewRun>),
    /// Continue the run in `run` up to `steps` in total; `model`, when given, must be the
    /// model the run was trained with.
    Resume {
        /// The run folder.
        run: PathBuf,
        /// The model file named on the command line, if any.
        model: Option<PathBuf>,
        /// Total steps.
        steps: u64,
        /// A new training time budget in seconds, counted from the run's start (`None`: the
        /// run's own).
        time_budget_s: Option<f64>,
    },
}

/// A run ready to train: its settings, model text and folder, and the saved state to resume.
pub struct StartedRun {
    /// The settings (stored in every checkpoint).
    pub settings: RunSettings,
    /// The model file's text.
    pub model_text: String,
    /// The run folder.
    pub dir: PathBuf,
    /// The checkpoint to continue from (`None`: a fresh run).
    pub saved: Option<SavedRun>,
}

/// Checks a train request and gathers what the run needs. Bad input is a diagnostic naming the
/// flag or file; nothing is written.
pub fn start(req: TrainStart) -> Result<StartedRun, Diagnostic> {
    match req {
        TrainStart::Resume {
            run,
            model,
            steps,
            time_budget_s,
        } => {
            let saved = SavedRun::open(&run)?;
            if let Some(model) = &model {
                same_model(model, &saved)?;
            }
            let mut settings = saved.settings.clone();
            settings.steps = steps;
            if time_budget_s.is_some() {
                settings.time_budget_s = time_budget_s;
            }
            Ok(StartedRun {
                settings,
                model_text: saved.model_json.clone(),
                dir: run,
                saved: Some(saved),
            })
        }
        TrainStart::New(new) => {
            let flag = |what: &str, expected: &str, found: String| {
                Diagnostic::new(Location::Item(what.into()), "bad argument")
                    .expected(expected)
                    .found(found)
                    .in_file("<command line>")
            };
            if RunFolder::new(&new.out).checkpoint().exists() {
                return Err(flag(
                    "--out",
                    "a new run folder (use --resume to continue this run)",
                    format!("{} already holds a checkpoint", new.out.display()),
                ));
            }
            let text = read_model(&new.model)?;
            let file = new.model.display().to_string();
            let compiled = compile_model(&text, &file, &new.settings.routes)?;
            let batch = new.batch.unwrap_or(compiled.model.training.batch as usize);
            if batch == 0 {
                return Err(flag("--batch", "a batch size ≥ 1", "0".into()));
            }
            if let Some(c) = new.settings.cfg.filter(|c| !(c.is_finite() && *c > 0.0)) {
                return Err(flag("--cfg", "a guidance scale > 0", c.to_string()));
            }
            Ok(StartedRun {
                settings: RunSettings {
                    model_file: file,
                    batch,
                    ..new.settings
                },
                model_text: text,
                dir: new.out,
                saved: None,
            })
        }
    }
}

/// `train MODEL --resume RUN`: MODEL must be the model the run was trained with (its text as
/// stored in the checkpoint), else the command is refused naming both.
fn same_model(model: &Path, saved: &SavedRun) -> Result<(), Diagnostic> {
    if read_model(model)? == saved.model_json {
        return Ok(());
    }
    Err(Diagnostic::new(
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
    .help("omit MODEL to resume with the run's own model, or train a new run with --out"))
}
