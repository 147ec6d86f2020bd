//! Reading a file the user named: its bytes or text, or a diagnostic naming the file, what it
//! should have been and the OS's reason. Every reader of user files starts here.

use std::path::Path;

use crate::diag::{Diagnostic, Location};

/// The diagnostic for a file that cannot be read: "cannot read the `what`", `expected`.
fn unreadable(path: &Path, what: &str, expected: &str, e: std::io::Error) -> Diagnostic {
    Diagnostic::new(Location::File, format!("cannot read the {what}"))
        .expected(expected)
        .found(e.to_string())
        .in_file(path.display().to_string())
}

/// The bytes of `path`, or a diagnostic naming it ("cannot read the `what`", `expected`).
pub fn read_bytes(path: &Path, what: &str, expected: &str) -> Result<Vec<u8>, Diagnostic> {
    std::fs::read(path).map_err(|e| unreadable(path, what, expected, e))
}

/// The UTF-8 text of `path`, or a diagnostic naming it, as [`read_bytes`].
pub fn read_text(path: &Path, what: &str, expected: &str) -> Result<String, Diagnostic> {
    std::fs::read_to_string(path).map_err(|e| unreadable(path, what, expected, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_with_what_it_should_be() {
        let p = Path::new("/nonexistent/treadc/model.json");
        let d = read_text(p, "model file", "a readable model.json").unwrap_err();
        assert_eq!(d.message, "cannot read the model file");
        assert_eq!(d.file, "/nonexistent/treadc/model.json");
        assert_eq!(d.expected.as_deref(), Some("a readable model.json"));
        assert!(d.found.as_deref().is_some_and(|f| !f.is_empty()));
        assert!(read_bytes(p, "x", "y").is_err());
    }
}
