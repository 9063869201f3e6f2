use clap::Parser;
use orchestrator::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    bookstore_common::telemetry::init("orchestrator");
    orchestrator::run(config, bookstore_common::shutdown::signal()).await
}
