//! The transaction-verification backend: parses flags, sets up logging and serves
//! [`backends::verification_service`] until SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use anyhow::Context;
use backends::verification_service;
use bookstore_common::grpc;
use bookstore_common::metrics::{self, MetricsListen};
use clap::Parser;

/// Checks that orders are complete and their cards valid, over gRPC.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to serve gRPC on; port 0 picks a free port (logged on the `listening` line).
    #[arg(
        long,
        env = "TRANSACTION_VERIFICATION_LISTEN",
        default_value = "0.0.0.0:50052"
    )]
    listen: SocketAddr,
    /// Address to serve Prometheus metrics on (`GET /metrics`), or `off`. Default: the gRPC
    /// address with the port plus 100 (50152).
    #[arg(long, env = "TRANSACTION_VERIFICATION_METRICS_LISTEN")]
    metrics_listen: Option<MetricsListen>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    bookstore_common::telemetry::init(verification_service::NAME);
    let metrics_listen = MetricsListen::or_default_for(args.metrics_listen, args.listen);
    let listener = grpc::bind(args.listen).await?;
    metrics::alongside(
        metrics_listen,
        verification_service::run(listener, bookstore_common::shutdown::signal()),
    )
    .await
    .context("metrics server")??;
    Ok(())
}
