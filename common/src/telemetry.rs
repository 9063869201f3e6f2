//! Tracing set-up shared by every binary.
//!
//! Logs go to stdout, one line per event. `LOG_FORMAT=json` switches to one JSON object per line
//! (what tests and log shippers parse); `RUST_LOG` filters as usual and defaults to `info`.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber for the service called `service`; every line carries that name
/// so that logs of several services can be merged and still be told apart.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    // Colours only for a person at a terminal; files and pipes get plain text.
    let ansi = std::io::stdout().is_terminal();
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A second call (several servers in one test process) keeps the first subscriber.
    if installed.is_ok() {
        tracing::info!(service, "logging started");
    }
}
