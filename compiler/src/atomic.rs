//! Atomic file writes: a temporary file in the destination's folder, fsync, rename. A crash or a
//! full disk mid-write leaves the previous file intact; used for checkpoints, exports, dumps and
//! sample files alike.

use std::io::Write;
use std::path::Path;

use crate::diag::Diagnostic;

/// Writes `bytes` to `path` atomically; the error names the file and the OS's reason.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Diagnostic> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)
    })
}

/// Like [`write_atomic`] for writers that stream the file themselves (a 2.7 GB state dict is
/// never one buffer): `write` creates the temporary path given; it is then synced and renamed.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), Diagnostic> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let fail = |e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        Diagnostic::io(path.display().to_string(), "cannot write", e)
            .expected("a writable location with free space")
    };
    write(&tmp)
        .and_then(|_| std::fs::File::options().write(true).open(&tmp)?.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
