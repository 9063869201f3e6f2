//! The shutdown signal every server waits on.
//!
//! Binaries pass [`signal`] down to `serve_with_shutdown` or `with_graceful_shutdown`; library
//! code takes any future, so tests can stop a server without sending a signal to the process.

use std::future::Future;

/// Resolves when the process receives SIGTERM or SIGINT (Ctrl-C).
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// server polls its shutdown future only when its accept loop gets to it, and on a busy machine
/// it may already have answered calls by then, so a SIGTERM sent after the service logged
/// `listening` would otherwise kill it on the spot instead of stopping it. Call it from within
/// the Tokio runtime, before the server starts.
pub fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate()).and_then(|terminate| {
            signal(SignalKind::interrupt()).map(|interrupt| (terminate, interrupt))
        })
    };
    async move {
        #[cfg(unix)]
        match handlers {
            Ok((mut terminate, mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this service");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    }
}
