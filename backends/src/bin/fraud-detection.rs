//! The fraud-detection backend: parses flags, sets up logging and serves
//! [`backends::fraud_service`] until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use backends::fraud::FraudConfig;
use backends::fraud_service;
use bookstore_common::grpc;
use bookstore_common::metrics::{self, MetricsListen};
use clap::Parser;

/// Scores orders against the bookstore's fraud rules over gRPC.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to serve gRPC on; port 0 picks a free port (logged on the `listening` line).
    #[arg(long, env = "FRAUD_DETECTION_LISTEN", default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// Address to serve Prometheus metrics on (`GET /metrics`), or `off`. Default: the gRPC
    /// address with the port plus 100 (50151).
    #[arg(long, env = "FRAUD_DETECTION_METRICS_LISTEN")]
    metrics_listen: Option<MetricsListen>,
    /// A card used for more than this many orders within the window is suspicious.
    #[arg(long, env = "FRAUD_VELOCITY_MAX_ORDERS", default_value_t = FraudConfig::default().max_orders)]
    velocity_max_orders: usize,
    /// The velocity rule's window, in seconds.
    #[arg(long, env = "FRAUD_VELOCITY_WINDOW_SECS", default_value_t = FraudConfig::default().window.as_secs())]
    velocity_window_secs: u64,
    /// The most cards the velocity rule remembers; the least recently used is forgotten first.
    #[arg(long, env = "FRAUD_MAX_TRACKED_CARDS", default_value_t = FraudConfig::default().max_tracked_cards)]
    max_tracked_cards: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    bookstore_common::telemetry::init(fraud_service::NAME);
    let metrics_listen = MetricsListen::or_default_for(args.metrics_listen, args.listen);
    let config = FraudConfig {
        max_orders: args.velocity_max_orders,
        window: Duration::from_secs(args.velocity_window_secs),
        max_tracked_cards: args.max_tracked_cards,
    };
    let listener = grpc::bind(args.listen).await?;
    metrics::alongside(
        metrics_listen,
        fraud_service::run(listener, config, bookstore_common::shutdown::signal()),
    )
    .await
    .context("metrics server")??;
    Ok(())
}
