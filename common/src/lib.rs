//! What every bookstore service does the same way, kept in one place:
//!
//! - [`telemetry`]: the tracing subscriber (human-readable, or JSON with `LOG_FORMAT=json`).
//! - [`shutdown`]: the future that resolves on SIGTERM or Ctrl-C, handed down to servers.
//! - [`grpc`]: binding, serving with health and reflection, and stopping a gRPC server, under
//!   limits no client can get past.
//! - [`http`]: serving and stopping an HTTP server (axum router) under the same kind of limits.
//! - [`connection`]: the accepted connections of both: capped in number, ended when stalled.
//! - [`metrics`]: the Prometheus recorder, `GET /metrics`, HTTP and gRPC request metrics, and
//!   the metrics port of gRPC services (`--metrics-listen`).
//! - [`probe`]: one HTTP or gRPC health probe, for container healthchecks (`queuectl probe`).
//! - `testing` (feature `testing`): the harness that starts service binaries in tests.

pub mod connection;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
