//! The `powercut-fs` binary's life: one mount, the power cut on `SIGUSR1`, the memory held
//! logged on `SIGUSR2`, unmounted when the shutdown future resolves (SIGTERM or Ctrl-C).

use std::future::Future;
use std::path::Path;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::Mount;

/// Mounts a fresh volume at `path` and serves it until `shutdown` resolves, then unmounts it.
/// The signal handlers are installed before the mount, so that a signal sent once the mount is
/// announced always finds them.
pub async fn serve(path: &Path, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut cut_signals = signal(SignalKind::user_defined1()).context("listen for SIGUSR1")?;
    let mut usage_signals = signal(SignalKind::user_defined2()).context("listen for SIGUSR2")?;
    let mount = Mount::new(path)?;
    tracing::info!(
        path = %path.display(),
        pid = std::process::id(),
        "mounted: SIGUSR1 cuts the power, SIGUSR2 logs the memory held, SIGTERM unmounts"
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = cut_signals.recv() => {
                let report = mount.cut();
                tracing::info!(
                    live_bytes_before = report.before.live_bytes,
                    live_bytes_after = report.after.live_bytes,
                    resident_bytes_after = report.after.resident_bytes,
                    "power cut: everything not synced is gone"
                );
            }
            _ = usage_signals.recv() => {
                let usage = mount.usage();
                tracing::info!(
                    live_bytes = usage.live_bytes,
                    durable_bytes = usage.durable_bytes,
                    resident_bytes = usage.resident_bytes,
                    "memory held"
                );
            }
        }
    }
    mount.unmount()?;
    tracing::info!(path = %path.display(), "unmounted");
    Ok(())
}
