//! A saved run restored on a backend, EMA and all, for sampling.

use std::path::Path;

use tread_compiler::compile::Compiled;
use tread_compiler::diag::{Diagnostic, Location};

use crate::lower::backends::{restore_session, BackendKind};
use crate::lower::Session;
use crate::model::recipe;
use crate::run_error::RunError;
use crate::run_folder::{RunSettings, SavedRun};

/// Restores a run (EMA and all) from a run folder or checkpoint file on backend `kind`, for
/// sampling.
pub fn load_run(
    kind: BackendKind,
    path: &Path,
) -> Result<(Box<dyn Session>, Compiled, RunSettings), RunError> {
    let saved = SavedRun::open(path)?;
    let compiled = saved.compile()?;
    let r = recipe(
        &compiled,
        saved.settings.batch,
        saved.settings.seed,
        saved.vocabulary.clone(),
    )?;
    let t = restore_session(kind, r, &saved.checkpoint, saved.step).map_err(|m| {
        Diagnostic::new(Location::Item("tensors".into()), m)
            .in_file(saved.path.display().to_string())
    })?;
    Ok((t, compiled, saved.settings))
}
