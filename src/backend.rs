//! The `--backend` flag resolved to a backend that can start here.

use tread_runtime::lower::backends::BackendKind;

use crate::args::BackendFlag;
use crate::failure::Failure;

/// The `--backend` flag: cuda in a build without it is bad input (exit 2); a backend that
/// cannot start here (cuda without a usable driver, NVRTC or GPU) fails before anything is
/// written (exit 1).
pub(crate) fn backend(b: BackendFlag) -> Result<BackendKind, Failure> {
    let kind = BackendKind::parse(b.name()).map_err(Failure::Diag)?;
    kind.check_ready().map_err(Failure::Other)?;
    Ok(kind)
}
