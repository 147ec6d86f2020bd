//! The peers' panics kept quiet: the first message recorded for an error, not a backtrace per
//! thread, when a node of a data-parallel group dies.

use std::sync::Mutex;

/// The first panic message of a thread other than the main one while a group runs (the peers',
/// and burn-collective's network tasks, which panic when a node disappears).
static FIRST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// The first panic recorded by [`quiet_panics`], for error messages.
pub(crate) fn first_peer_panic() -> Option<String> {
    FIRST_PANIC.lock().ok().and_then(|m| m.clone())
}

/// Replaces the panic output of the peers' threads and burn-collective's tokio workers by a
/// record of the first message: when a node dies, burn-collective's tasks panic on their closed
/// connections, and the run reports one error (naming that message) instead of backtraces.
/// Every other thread keeps the usual output.
fn quiet_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let peer = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("treadc-peer") || n.starts_with("tokio"));
        if !peer {
            previous(info);
        } else if let Ok(mut m) = FIRST_PANIC.lock() {
            m.get_or_insert_with(|| info.to_string());
        }
    }));
}

/// Installs [`quiet_panics`] once per process (every group start calls it).
pub(crate) fn quiet_peer_panics() {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(quiet_panics);
}
