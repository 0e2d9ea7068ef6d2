//! `herald`: one binary for every way of running Herald.
//!
//! `herald standalone` runs authsvc, collector, dispatcher and pusher in one
//! process on one port, on the embedded log, route table and SQLite store:
//! the same service code as the cluster, wired differently. The other
//! subcommands run one cluster service each, exactly as its own binary does.

mod standalone;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "herald", about = "Herald: a WebSocket push cluster", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process on one port, no Kafka, Redis or MongoDB.
    Standalone(standalone::Args),
    /// The token service.
    Authsvc(authsvc::Config),
    /// The ingestion service.
    Collector(collector::Config),
    /// The router.
    Dispatcher(dispatcher::Config),
    /// A push node.
    Pusher(pusher::Config),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    match Cli::parse().command {
        Command::Standalone(args) => standalone::run(args).await,
        Command::Authsvc(config) => authsvc::run(config).await,
        Command::Collector(config) => collector::run(config).await,
        Command::Dispatcher(config) => dispatcher::run(config).await,
        Command::Pusher(config) => pusher::run(config).await,
    }
}
