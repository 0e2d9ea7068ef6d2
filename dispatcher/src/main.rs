//! The `herald-dispatcher` binary: configuration from its file, environment and
//! flags, then [`dispatcher::run`].

use clap::Parser;

#[derive(Parser)]
#[command(name = "herald-dispatcher", about = "Herald's router")]
struct Main {
    #[command(flatten)]
    cli: herald_common::config::Cli<dispatcher::Config>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    Main::parse().cli.run(dispatcher::run).await
}
