//! A run folder: its file names (spelled once, here), its settings, and "open a run, read its
//! settings, recompile its model", used by `train --resume`, `sample`, `eval`, `export` and
//! `plot` alike.
//!
//! Layout of `RUN_DIR/`: `checkpoint.safetensors` (the latest, replaced atomically; it carries
//! the settings and the model text, so nothing else is needed to resume or sample),
//! `metrics.jsonl`, `run.json`, `samples/step-NNNNNN.png`, `curves.png`, `curves-fd.png`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tread_compiler::compile::Compiled;
use tread_compiler::diag::{Diagnostic, Location};

use crate::checkpoint::Checkpoint;
use crate::text::Tokenizer;

/// The checkpoint's file name in a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The metrics log (one JSON object a line: losses, evaluations).
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The settings and the routes in effect, for people and plots.
pub const RUN_JSON_FILE: &str = "run.json";
/// The folder of sample grids.
pub const SAMPLES_DIR: &str = "samples";
/// The loss curve written at the end of a run.
pub const CURVES_FILE: &str = "curves.png";
/// The FD curve written at the end of a run with evaluations.
pub const CURVES_FD_FILE: &str = "curves-fd.png";
/// `treadc export RUN_DIR`'s default output.
pub const ONNX_FILE: &str = "model.onnx";

/// The settings of a run, stored in its checkpoints so that `--resume` and `sample` need
/// nothing else.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSettings {
    /// Model file path as given.
    pub model_file: String,
    /// `--route` flags (empty: the file's routes).
    pub routes: Vec<String>,
    /// Data spec (`mnist`, `idx:DIR`, ...).
    pub data: String,
    /// Total steps.
    pub steps: u64,
    /// Batch size.
    pub batch: usize,
    /// Seed.
    pub seed: u64,
    /// Write an EMA sample grid every this many steps (0: only at the end).
    pub sample_every: u64,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub ckpt_every: u64,
    /// Sampler steps for the grids (and the evaluations).
    pub sample_steps: usize,
    /// Score EMA samples with the digit metric every this many steps and at the end (0: never).
    #[serde(default)]
    pub eval_every: u64,
    /// Samples per evaluation.
    #[serde(default = "default_eval_n")]
    pub eval_n: usize,
    /// Classifier-free guidance scale of the grids and evaluations (`None`: plain conditional
    /// samples).
    #[serde(default)]
    pub cfg: Option<f64>,
    /// The weights file a fresh run started from (`--init-from`; `None`: the seed's init).
    #[serde(default)]
    pub init_from: Option<String>,
    /// Stop at the first step whose training wall time reaches this many seconds, before
    /// `steps` (`None`: run all steps): equal time budgets for runs whose steps cost differently.
    #[serde(default)]
    pub time_budget_s: Option<f64>,
    /// The classifier file scoring the evaluations (`None`: the bundled digit classifier and
    /// held-out digits; see [`crate::eval::Evaluator::from_file`]).
    #[serde(default)]
    pub eval_classifier: Option<String>,
}

fn default_eval_n() -> usize {
    500
}

/// Where a run's files go.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// The run folder.
    pub dir: PathBuf,
}

impl RunFolder {
    /// The run folder `dir` (nothing is created or read).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunFolder { dir: dir.into() }
    }

    /// The checkpoint a user means by `path`: a run folder's, or `path` itself when it is a
    /// file.
    pub fn checkpoint_of(path: &Path) -> PathBuf {
        if path.is_dir() {
            path.join(CHECKPOINT_FILE)
        } else {
            path.to_path_buf()
        }
    }

    /// The checkpoint (latest, replaced atomically).
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    /// The metrics log.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join(METRICS_FILE)
    }

    /// `run.json`.
    pub fn run_json(&self) -> PathBuf {
        self.dir.join(RUN_JSON_FILE)
    }

    /// The folder of sample grids.
    pub fn samples(&self) -> PathBuf {
        self.dir.join(SAMPLES_DIR)
    }

    /// The sample grid of `step`.
    pub fn grid(&self, step: u64) -> PathBuf {
        self.samples().join(format!("step-{step:06}.png"))
    }

    /// The loss curve.
    pub fn curves(&self) -> PathBuf {
        self.dir.join(CURVES_FILE)
    }

    /// The FD curve.
    pub fn curves_fd(&self) -> PathBuf {
        self.dir.join(CURVES_FD_FILE)
    }

    /// Removes the temporary files a crashed writer of this run left behind (an atomic write
    /// is a `.NAME.tmp-PID` sibling renamed over `NAME`; a plot is a `.tmp-PID-NAME`), in the
    /// folder and in `samples/`. Called on `--resume`, when no other process writes the run.
    /// Returns what it removed.
    pub fn remove_stale_temps(&self) -> Result<Vec<PathBuf>, Diagnostic> {
        let mut removed = vec![];
        for dir in [self.dir.clone(), self.samples()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if is_temp_name(&name) && e.path().is_file() {
                    std::fs::remove_file(e.path()).map_err(|err| {
                        Diagnostic::io(
                            e.path().display().to_string(),
                            "cannot remove a stale temporary file",
                            err,
                        )
                    })?;
                    removed.push(e.path());
                }
            }
        }
        Ok(removed)
    }
}

/// True for the names of treadc's temporary files: `.NAME.tmp-PID` and `.tmp-PID-NAME`.
fn is_temp_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = name.strip_prefix(".tmp-") {
        return rest.split_once('-').is_some_and(|(pid, _)| digits(pid));
    }
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(stem, pid)| stem.len() > 1 && digits(pid))
}

/// A run as saved in a checkpoint: the checkpoint itself, its settings, its model text and its
/// step, read and checked once.
pub struct SavedRun {
    /// The checkpoint file.
    pub path: PathBuf,
    /// Its tensors and metadata.
    pub checkpoint: Checkpoint,
    /// The run's settings (`steps` is the total asked for when it was written).
    pub settings: RunSettings,
    /// The model file's text as trained.
    pub model_json: String,
    /// Completed steps.
    pub step: u64,
    /// The vocabulary built from the run's captions (`None`: the bundled one, or no text).
    pub vocabulary: Option<Tokenizer>,
}

/// The checkpoint metadata holding a caption-built vocabulary, in id order.
pub const VOCABULARY_KEY: &str = "vocabulary";

impl SavedRun {
    /// Reads the checkpoint of `path` (a run folder or a checkpoint file).
    pub fn open(path: &Path) -> Result<Self, Diagnostic> {
        let path = RunFolder::checkpoint_of(path);
        let checkpoint = Checkpoint::load(&path)?;
        let bad = |at: &str, m: String| {
            Diagnostic::new(Location::Item(at.into()), m).in_file(path.display().to_string())
        };
        let settings: RunSettings = serde_json::from_str(checkpoint.meta("train", &path)?)
            .map_err(|e| bad("metadata `train`", format!("unreadable run settings: {e}")))?;
        let model_json = checkpoint.meta("model_json", &path)?.to_string();
        let step = checkpoint
            .meta("step", &path)?
            .parse()
            .map_err(|_| bad("metadata `step`", "not a step number".into()))?;
        let vocabulary = match checkpoint.meta.get(VOCABULARY_KEY) {
            Some(words) => Some(Tokenizer::from_id_order(words).map_err(|m| {
                bad(
                    &format!("metadata `{VOCABULARY_KEY}`"),
                    format!("unreadable vocabulary: {m}"),
                )
            })?),
            None => None,
        };
        Ok(SavedRun {
            path,
            checkpoint,
            settings,
            model_json,
            step,
            vocabulary,
        })
    }

    /// The run's model compiled with its routes, as it was trained.
    pub fn compile(&self) -> Result<Compiled, Diagnostic> {
        crate::model::compile_model(
            &self.model_json,
            &self.settings.model_file,
            &self.settings.routes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_nothing_else() {
        for t in [
            ".checkpoint.safetensors.tmp-4242",
            ".metrics.jsonl.tmp-7",
            ".step-000500.png.tmp-12",
            ".tmp-99-curves.png",
        ] {
            assert!(is_temp_name(t), "{t}");
        }
        for keep in [
            "checkpoint.safetensors",
            "metrics.jsonl",
            ".tmp-x-curves.png",
            ".notes.tmp-abc",
            "a.tmp-12",
            "..tmp-12",
        ] {
            assert!(!is_temp_name(keep), "{keep}");
        }
    }

    #[test]
    fn stale_temps_are_removed_from_the_folder_and_samples() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("run");
        let run = RunFolder::new(&d);
        std::fs::create_dir_all(run.samples()).unwrap();
        for f in [
            run.checkpoint(),
            run.metrics(),
            d.join(".checkpoint.safetensors.tmp-31337"),
            run.samples().join(".step-000002.png.tmp-31337"),
        ] {
            std::fs::write(f, b"x").unwrap();
        }
        let mut removed = run.remove_stale_temps().unwrap();
        removed.sort();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(run.checkpoint().exists() && run.metrics().exists());
        assert!(run.remove_stale_temps().unwrap().is_empty());
    }
}
