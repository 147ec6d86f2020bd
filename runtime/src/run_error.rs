//! How a run, a sampling loop or an exported model's run stops early: a diagnostic about the
//! input (exit 2) or a failure of the run itself (exit 1).

use tread_compiler::diag::Diagnostic;

/// Why a run stopped early.
#[derive(Debug)]
pub enum RunError {
    /// A diagnostic; its kind decides the exit code (bad input 2, I/O or internal 1).
    Diag(Diagnostic),
    /// The run itself failed (non-finite loss, a backend error): exit code 1.
    Failed(String),
}

impl From<Diagnostic> for RunError {
    fn from(d: Diagnostic) -> Self {
        RunError::Diag(d)
    }
}
