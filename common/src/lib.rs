//! What every bookstore service does the same way, kept in one place:
//!
//! - [`telemetry`]: the tracing subscriber (human-readable, or JSON with `LOG_FORMAT=json`).
//! - [`shutdown`]: the future that resolves on SIGTERM or Ctrl-C, handed down to servers.

pub mod shutdown;
pub mod telemetry;
