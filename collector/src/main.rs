//! The `herald-collector` binary: configuration from its file, environment and
//! flags, then [`collector::run`].

use clap::Parser;

#[derive(Parser)]
#[command(name = "herald-collector", about = "Herald's ingestion service")]
struct Main {
    #[command(flatten)]
    cli: herald_common::config::Cli<collector::Config>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    Main::parse().cli.run(collector::run).await
}
