//! The `herald-authsvc` binary: configuration from its file, environment and
//! flags, then [`authsvc::run`].

use clap::Parser;

#[derive(Parser)]
#[command(name = "herald-authsvc", about = "Herald's token service")]
struct Main {
    #[command(flatten)]
    cli: herald_common::config::Cli<authsvc::Config>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    Main::parse().cli.run(authsvc::run).await
}
