//! The suggestions backend: parses flags, sets up logging and serves
//! [`backends::suggestions_service`] until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use backends::suggestions_service::{self, SuggestionsConfig};
use bookstore_common::grpc;
use bookstore_common::metrics::{self, MetricsListen};
use clap::Parser;

/// Suggests books related to an order's items, over gRPC.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to serve gRPC on; port 0 picks a free port (logged on the `listening` line).
    #[arg(long, env = "SUGGESTIONS_LISTEN", default_value = "0.0.0.0:50053")]
    listen: SocketAddr,
    /// Address to serve Prometheus metrics on (`GET /metrics`), or `off`. Default: the gRPC
    /// address with the port plus 100 (50153).
    #[arg(long, env = "SUGGESTIONS_METRICS_LISTEN")]
    metrics_listen: Option<MetricsListen>,
    /// A JSON catalogue to use instead of the built-in one (same shape as `data/books.json`).
    #[arg(long, env = "SUGGESTIONS_CATALOGUE")]
    catalogue: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    bookstore_common::telemetry::init(suggestions_service::NAME);
    let metrics_listen = MetricsListen::or_default_for(args.metrics_listen, args.listen);
    let config = SuggestionsConfig {
        catalogue: args.catalogue,
    };
    let listener = grpc::bind(args.listen).await?;
    metrics::alongside(
        metrics_listen,
        suggestions_service::run(listener, config, bookstore_common::shutdown::signal()),
    )
    .await
    .context("metrics server")??;
    Ok(())
}
