//! The `herald-dispatcher` binary: configuration from flags and environment,
//! then [`dispatcher::run`].

use clap::Parser;

#[derive(Parser)]
#[command(name = "herald-dispatcher", about = "Herald's router")]
struct Cli {
    #[command(flatten)]
    config: dispatcher::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    dispatcher::run(Cli::parse().config).await
}
