//! The model file as JSON: parsed, with duplicate keys refused; a syntax error names its line
//! and column.

use serde_json::Value;

use crate::diag::{Diagnostic, Location, Result};

/// The JSON value of `text`, or a diagnostic at the offending line and column.
pub(super) fn read_json(text: &str) -> Result<Value> {
    serde_json::from_str::<super::dupkeys::NoDuplicateKeys>(text)
        .and_then(|_| serde_json::from_str(text))
        .map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Eof => "the file ends early (truncated or empty JSON)",
                serde_json::error::Category::Syntax => "invalid JSON syntax",
                serde_json::error::Category::Data => "invalid JSON: duplicate key",
                _ => "unreadable JSON",
            };
            Diagnostic::new(
                Location::LineCol {
                    line: e.line(),
                    column: e.column(),
                },
                what,
            )
            .expected("a JSON object (see docs/model-format.md)")
            .found(e.to_string())
        })
}
