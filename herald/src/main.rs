//! `herald`: one binary for every way of running Herald.
//!
//! `herald standalone` runs authsvc, collector, dispatcher and pusher in one
//! process on one port, on the embedded log, route table and SQLite store:
//! the same service code as the cluster, wired differently. The other
//! subcommands run one cluster service each, exactly as its own binary does.

mod demo;
mod standalone;

use clap::{Parser, Subcommand};
use herald_common::config::Cli as Program;

#[derive(Parser)]
#[command(name = "herald", about = "Herald: a WebSocket push cluster", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process on one port, no Kafka, Redis or MongoDB.
    Standalone(Program<standalone::Config>),
    /// The token service.
    Authsvc(Program<authsvc::Config>),
    /// The ingestion service.
    Collector(Program<collector::Config>),
    /// The router.
    Dispatcher(Program<dispatcher::Config>),
    /// A push node.
    Pusher(Program<pusher::Config>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    herald_common::telemetry::init();
    match Cli::parse().command {
        Command::Standalone(cli) => standalone::run(cli).await,
        Command::Authsvc(cli) => cli.run(authsvc::run).await,
        Command::Collector(cli) => cli.run(collector::run).await,
        Command::Dispatcher(cli) => cli.run(dispatcher::run).await,
        Command::Pusher(cli) => cli.run(pusher::run).await,
    }
}
