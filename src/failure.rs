//! How a command fails, and its exit code: a diagnostic (2 for bad input, 1 otherwise) or any
//! other failure (1).

use tread_compiler::diag::{Diagnostic, Location};
use tread_runtime::run_error::RunError;

/// A failure with its exit code.
pub(crate) enum Failure {
    /// A diagnostic: exit 2 for bad input, 1 for I/O and internal failures (its kind decides).
    Diag(Diagnostic),
    /// Anything else: exit 1.
    Other(String),
}

/// A run's early stop as a failure: its diagnostic, or its message (exit 1).
pub(crate) fn from_run(e: RunError) -> Failure {
    match e {
        RunError::Diag(d) => Failure::Diag(d),
        RunError::Failed(m) => Failure::Other(m),
    }
}

/// A bad command-line value (exit 2): the flag, what it should be and what was given.
pub(crate) fn cli_error(what: &str, expected: &str, found: String) -> Failure {
    Failure::Diag(
        Diagnostic::new(Location::Item(what.to_string()), "bad argument")
            .expected(expected)
            .found(found)
            .in_file("<command line>"),
    )
}
