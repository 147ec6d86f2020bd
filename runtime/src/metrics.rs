//! A run's `metrics.jsonl` read back as curves: one training line per step
//! (`{"step", "loss", "steps_per_s", "elapsed_s"}`) and one evaluation line per evaluated step
//! (`{"step", "fd", "accuracy", "per_class", "n", "elapsed_s"}`). `elapsed_s` is training wall
//! time: grids, checkpoints and evaluations are not counted, and a resumed run continues from
//! the checkpoint's value. When a step appears twice (a crash after the last checkpoint, then
//! `--resume`), the later line wins.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::read::read_text;

/// One training step's line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossPoint {
    /// Step (1-based: the number of updates done).
    pub step: u64,
    /// Training wall time so far, seconds.
    pub elapsed_s: f64,
    /// Loss of that step.
    pub loss: f64,
}

/// One evaluation's line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalPoint {
    /// Step evaluated.
    pub step: u64,
    /// Training wall time so far (evaluation time excluded), seconds.
    pub elapsed_s: f64,
    /// Fréchet distance to the held-out digits.
    pub fd: f64,
    /// Class accuracy.
    pub accuracy: f64,
}

/// A run's curves, ordered by step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curves {
    /// Training lines.
    pub loss: Vec<LossPoint>,
    /// Evaluation lines.
    pub evals: Vec<EvalPoint>,
}

/// Reads `metrics.jsonl`; a line that is not JSON or lacks `step` is an error naming it.
pub fn read(path: &Path) -> Result<Curves, Diagnostic> {
    let file = path.display().to_string();
    let text = read_text(path, "metrics", "a run folder's metrics.jsonl")?;
    parse(&text).map_err(|(line, msg)| {
        Diagnostic::new(Location::Item(format!("line {line}")), msg)
            .expected("one JSON object per line with a `step`")
            .in_file(file)
    })
}

/// Parses the text of a `metrics.jsonl` (errors: 1-based line number and message).
pub fn parse(text: &str) -> Result<Curves, (usize, String)> {
    let mut loss = BTreeMap::new();
    let mut evals = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| (i + 1, e.to_string()))?;
        let num = |k: &str| v.get(k).and_then(Value::as_f64);
        let step = v
            .get("step")
            .and_then(Value::as_u64)
            .ok_or((i + 1, "no `step`".to_string()))?;
        let elapsed_s = num("elapsed_s").unwrap_or(0.0);
        if let (Some(fd), Some(accuracy)) = (num("fd"), num("accuracy")) {
            evals.insert(
                step,
                EvalPoint {
                    step,
                    elapsed_s,
                    fd,
                    accuracy,
                },
            );
        } else if let Some(l) = num("loss") {
            loss.insert(
                step,
                LossPoint {
                    step,
                    elapsed_s,
                    loss: l,
                },
            );
        }
    }
    Ok(Curves {
        loss: loss.into_values().collect(),
        evals: evals.into_values().collect(),
    })
}

/// On `--resume` from a checkpoint at `step`: drops the lines of later steps (written after
/// that checkpoint by the run that crashed, and about to be trained again) and a last line the
/// crash cut short, atomically.
/// A missing file is left missing.
pub fn truncate_after(path: &Path, step: u64) -> Result<(), Diagnostic> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            // A line cut short by the crash does not parse: dropped too.
            serde_json::from_str::<Value>(l).ok().is_some_and(|v| {
                v.get("step")
                    .and_then(Value::as_u64)
                    .is_none_or(|s| s <= step)
            })
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    crate::checkpoint::write_atomic(path, kept.as_bytes())
}

/// The `elapsed_s` recorded at `step` (the last training line of that step), for a resumed
/// run's clock; 0 when there is none.
pub fn elapsed_at(path: &Path, step: u64) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| parse(&t).ok())
        .and_then(|c| c.loss.into_iter().find(|p| p.step == step))
        .map_or(0.0, |p| p.elapsed_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_lines_win_and_evaluations_are_separate() {
        let text = r#"{"step":1,"loss":1.0,"elapsed_s":0.5}
{"step":2,"loss":0.9,"elapsed_s":1.0}
{"step":2,"fd":40.0,"accuracy":0.1,"elapsed_s":1.0}
{"step":2,"loss":0.8,"elapsed_s":1.1}

{"step":3,"loss":0.7,"elapsed_s":1.6}
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.loss.len(), 3);
        assert_eq!(c.loss[1].loss, 0.8);
        assert_eq!(c.evals.len(), 1);
        assert_eq!(c.evals[0].fd, 40.0);
    }

    #[test]
    fn resume_drops_the_steps_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let lines = (1..=5)
            .map(|s| format!("{{\"step\":{s},\"loss\":1.0,\"elapsed_s\":{s}.0}}\n"))
            .collect::<String>();
        // The crash cut the last write short.
        std::fs::write(&p, lines + "{\"step\":6,\"lo").unwrap();
        truncate_after(&p, 3).unwrap();
        let c = read(&p).unwrap();
        assert_eq!(c.loss.iter().map(|l| l.step).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(elapsed_at(&p, 3), 3.0);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_bad_line_is_named() {
        assert_eq!(parse("{\"step\":1}\nnot json").unwrap_err().0, 2);
        assert_eq!(parse("{\"loss\":1}").unwrap_err().0, 1);
    }
}
