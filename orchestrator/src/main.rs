use clap::Parser;
use orchestrator::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    bookstore_common::telemetry::init("orchestrator");
    bookstore_common::metrics::install();
    orchestrator::run(config, bookstore_common::shutdown::signal()).await
}
