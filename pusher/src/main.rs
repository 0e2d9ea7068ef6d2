//! The `herald-pusher` binary: configuration from its file, environment and
//! flags, then [`pusher::run`].

use clap::Parser;

#[derive(Parser)]
#[command(name = "herald-pusher", about = "Herald's push node")]
struct Main {
    #[command(flatten)]
    cli: herald_common::config::Cli<pusher::Config>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    Main::parse().cli.run(pusher::run).await
}
