//! The `herald-collector` binary: configuration from flags and environment,
//! then [`collector::run`].

use clap::Parser;

#[derive(Parser)]
#[command(name = "herald-collector", about = "Herald's ingestion service")]
struct Cli {
    #[command(flatten)]
    config: collector::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    collector::run(Cli::parse().config).await
}
