//! The `herald-pusher` binary: configuration from flags and environment, then
//! [`pusher::run`].

use clap::Parser;

#[derive(Parser)]
#[command(name = "herald-pusher", about = "Herald's push node")]
struct Cli {
    #[command(flatten)]
    config: pusher::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    pusher::run(Cli::parse().config).await
}
