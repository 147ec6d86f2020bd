//! Diagnostics: the one error type every user-facing failure becomes.
//!
//! Why: a user who feeds a bad model file or route spec must learn *which file*, *where in it*
//! (line/column for syntax, JSON path or node name for semantics), *what was expected* and *what
//! was found*. Rendering is plain text with a stable layout so that snapshot tests pin it.

use std::fmt;

/// Where in the input a diagnostic points.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// No finer place than the file itself.
    File,
    /// A syntax position (1-based line and column), from the JSON parser.
    LineCol { line: usize, column: usize },
    /// A JSON path such as `$.blocks.dit.nodes[3].heads`.
    Path(String),
    /// A graph node, with the JSON path it came from when known.
    Node { name: String, path: Option<String> },
    /// A route, named by where it was given (`--route 0.5:2-9` or `$.routes[0]`).
    Route { index: usize, given: String },
    /// A place in a data or checkpoint file (`header`, `image 17`,
    /// `tensor model/blocks.0.ada.weight`).
    Item(String),
}

/// What kind of failure a diagnostic reports; the exit code follows it, never the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorKind {
    /// The user's input is wrong (model file, flags, data, checkpoint): exit 2.
    #[default]
    BadInput,
    /// The input was fine but reading or writing files failed (disk full, permissions): exit 1.
    Io,
    /// treadc itself failed (a bug, a non-finite loss, a backend error): exit 1.
    Internal,
}

impl ErrorKind {
    /// The process exit code of this kind: 2 for bad input, 1 for everything else.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::BadInput => 2,
            ErrorKind::Io | ErrorKind::Internal => 1,
        }
    }
}

/// A user-facing error: where, what went wrong, what was expected and what was found.
/// Boxed so that `Result<T, Diagnostic>` stays one pointer wide on the happy path.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic(Box<DiagnosticData>);

/// The contents of a [`Diagnostic`] (reach them through `Deref`).
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticData {
    /// Bad input, I/O or internal: decides the exit code.
    pub kind: ErrorKind,
    /// The file the input came from (`<command line>` for flags).
    pub file: String,
    /// Where in that file.
    pub location: Location,
    /// One line saying what is wrong.
    pub message: String,
    /// What a valid input would have had here.
    pub expected: Option<String>,
    /// What the input had instead.
    pub found: Option<String>,
    /// A hint on how to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with only a message; add the rest with the builder methods.
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        Diagnostic(Box::new(DiagnosticData {
            kind: ErrorKind::BadInput,
            file: String::new(),
            location,
            message: message.into(),
            expected: None,
            found: None,
            help: None,
        }))
    }

    /// An I/O failure (exit 1) on `file`: `what` failed with the OS's `reason`.
    pub fn io(file: impl Into<String>, what: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self::new(Location::File, what)
            .found(reason.to_string())
            .in_file(file)
            .with_kind(ErrorKind::Io)
    }

    /// An internal failure (exit 1): not the user's input, not the file system.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Location::File, message).with_kind(ErrorKind::Internal)
    }

    /// Sets the kind (bad input unless said otherwise).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// Replaces the location (used when a caller knows better where the input came from).
    pub fn with_location(mut self, location: Location) -> Self {
        self.0.location = location;
        self
    }

    /// A diagnostic at a JSON path.
    pub fn at_path(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Location::Path(path.into()), message)
    }

    /// A diagnostic at a graph node.
    pub fn at_node(name: &str, path: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(
            Location::Node {
                name: name.to_string(),
                path: path.map(str::to_string),
            },
            message,
        )
    }

    /// Sets what was expected.
    pub fn expected(mut self, e: impl Into<String>) -> Self {
        self.expected = Some(e.into());
        self
    }

    /// Sets what was found.
    pub fn found(mut self, f: impl Into<String>) -> Self {
        self.found = Some(f.into());
        self
    }

    /// Sets a hint.
    pub fn help(mut self, h: impl Into<String>) -> Self {
        self.help = Some(h.into());
        self
    }

    /// Sets the file (only when none is set yet, so inner layers keep theirs).
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        if self.file.is_empty() {
            self.file = file.into();
        }
        self
    }
}

impl std::ops::Deref for Diagnostic {
    type Target = DiagnosticData;
    fn deref(&self) -> &DiagnosticData {
        &self.0
    }
}

impl std::ops::DerefMut for Diagnostic {
    fn deref_mut(&mut self) -> &mut DiagnosticData {
        &mut self.0
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        let file = if self.file.is_empty() {
            "<input>"
        } else {
            &self.file
        };
        match &self.location {
            // Nothing to point at (an internal failure).
            Location::File if self.file.is_empty() => {}
            Location::File => writeln!(f, "  --> {file}")?,
            Location::LineCol { line, column } => writeln!(f, "  --> {file}:{line}:{column}")?,
            Location::Path(p) => writeln!(f, "  --> {file} at {p}")?,
            Location::Node {
                name,
                path: Some(p),
            } => writeln!(f, "  --> {file} at {p} (node `{name}`)")?,
            Location::Node { name, path: None } => writeln!(f, "  --> {file}, node `{name}`")?,
            Location::Route { index, given } => {
                writeln!(f, "  --> {file}, route {index} (given as {given})")?
            }
            Location::Item(what) => writeln!(f, "  --> {file}, {what}")?,
        }
        if let Some(e) = &self.expected {
            writeln!(f, "   expected: {e}")?;
        }
        if let Some(x) = &self.found {
            writeln!(f, "   found:    {x}")?;
        }
        if let Some(h) = &self.help {
            writeln!(f, "   help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Result alias used across the compiler.
pub type Result<T> = std::result::Result<T, Diagnostic>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_part() {
        let d = Diagnostic::at_path("$.dims.D", "dimension is not a positive integer")
            .expected("an integer > 0")
            .found("-3")
            .help("check the dims table")
            .in_file("m.json");
        let s = d.to_string();
        assert!(s.starts_with("error: dimension is not a positive integer\n"));
        assert!(s.contains("  --> m.json at $.dims.D\n"));
        assert!(s.contains("   expected: an integer > 0\n"));
        assert!(s.contains("   found:    -3\n"));
        assert!(s.contains("   help: check the dims table\n"));
    }

    #[test]
    fn the_kind_decides_the_exit_code() {
        let input = Diagnostic::new(Location::File, "x");
        assert_eq!(input.kind.exit_code(), 2);
        let io = Diagnostic::io(
            "run/checkpoint.safetensors",
            "cannot write",
            "No space left",
        );
        assert_eq!((io.kind, io.kind.exit_code()), (ErrorKind::Io, 1));
        assert!(io.to_string().contains("run/checkpoint.safetensors"));
        assert_eq!(Diagnostic::internal("bug").kind.exit_code(), 1);
    }

    #[test]
    fn in_file_keeps_the_inner_file() {
        let d = Diagnostic::new(Location::File, "x")
            .in_file("a")
            .in_file("b");
        assert_eq!(d.file, "a");
    }
}
