//! `order-executor`: one executor replica. Parses flags, sets up logging and runs until SIGTERM
//! or Ctrl-C (see `executor::run` for what shutdown does).

use clap::Parser;
use executor::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    bookstore_common::telemetry::init("order-executor");
    bookstore_common::metrics::install();
    executor::run(config, bookstore_common::shutdown::signal()).await?;
    Ok(())
}
