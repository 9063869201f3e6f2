//! The transaction-verification backend: parses flags, sets up logging and serves
//! [`backends::verification_service`] until SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use backends::verification_service;
use bookstore_common::grpc;
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    bookstore_common::telemetry::init(verification_service::NAME);
    let listener = grpc::bind(args.listen).await?;
    verification_service::run(listener, bookstore_common::shutdown::signal()).await?;
    Ok(())
}
