//! The `herald-authsvc` binary: configuration from flags and environment, then
//! [`authsvc::run`].

use clap::Parser;

#[derive(Parser)]
#[command(name = "herald-authsvc", about = "Herald's token service")]
struct Cli {
    #[command(flatten)]
    config: authsvc::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    authsvc::run(Cli::parse().config).await
}
