//! The command line of `herald-cluster-bench` (`bench/run-cluster` passes
//! its flags through).

use anyhow::{Result, bail};
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "herald-cluster-bench",
    about = "Starts a Herald cluster (authsvc, collector, dispatcher, two pushers) on the \
             shared servers in a fresh namespace and measures unicast latency, sustained \
             rate and CPU per message at rising rates, over HTTP and the ingest topic"
)]
pub struct Args {
    /// Directory holding the service binaries (herald-authsvc, ...).
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,

    /// How the services were built, for the report.
    #[arg(long, default_value = "release")]
    pub profile: String,

    /// Connected users (one connection each), spread evenly over the two
    /// pushers.
    #[arg(long, short = 'u', default_value_t = 500)]
    pub users: usize,

    /// Offered rates, messages per second, in the order they are tried. Each
    /// message goes to one random connected user.
    #[arg(long, value_delimiter = ',', default_value = "10,100,300,1000,3000")]
    pub rates: Vec<u32>,

    /// Seconds each rate is offered for.
    #[arg(long, default_value_t = 15)]
    pub step_secs: u64,

    /// Ways messages enter the cluster, in turn: `http` (POST /v1/messages
    /// to the collector) and/or `kafka` (records on the ingest topic).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "http,kafka")]
    pub via: Vec<Via>,

    /// Sends in flight at once (HTTP requests, or produce calls awaiting
    /// their acknowledgement): enough that the sender is never the limit.
    #[arg(long, default_value_t = 128)]
    pub senders: usize,

    /// A rate is not followed by higher ones once its p99 exceeds this,
    /// or the senders could not offer 90 % of it.
    #[arg(long, default_value_t = 1000)]
    pub stop_p99_ms: u64,

    /// Longest wait, after a step's last send, for its last delivery; a
    /// message still missing then counts as lost.
    #[arg(long, default_value_t = 120)]
    pub drain_secs: u64,

    /// Seconds over which every process's idle CPU (users connected, no
    /// messages) is measured before the steps: the cost of polling.
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,

    /// Seconds to keep listening after the last step, for late repeats.
    #[arg(long, default_value_t = 3)]
    pub grace_secs: u64,

    /// Approximate size of each message's JSON payload, bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,

    /// `linger.ms` of the benchmark's own Kafka producer (the business
    /// system's); 0 so that it adds no wait of its own.
    #[arg(long, default_value_t = 0)]
    pub produce_linger_ms: u64,

    /// Do not read the events and node topics to time the hops (the
    /// observer is one more consumer on the broker).
    #[arg(long)]
    pub no_observe: bool,

    /// Namespace of topics, keys and database; default a fresh one per run.
    #[arg(long)]
    pub namespace: Option<String>,

    /// Kafka bootstrap servers.
    #[arg(long, env = "HERALD_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka: String,

    /// Redis URL.
    #[arg(
        long,
        env = "HERALD_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis: String,

    /// MongoDB connection string.
    #[arg(
        long,
        env = "HERALD_MONGO_URI",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    pub mongo: String,

    /// Where the services' logs go (default: a new temporary directory,
    /// kept if the run fails).
    #[arg(long)]
    pub logs: Option<PathBuf>,

    /// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    pub clk_tck: u64,
}

/// How a message enters the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// `POST /v1/messages` to the collector; sent at the request, accepted
    /// at its 202 (stored in MongoDB).
    Http,
    /// A record on the ingest topic; sent at the produce call, accepted at
    /// the broker's acknowledgement.
    Kafka,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::Kafka => "kafka",
        }
    }
}

impl Args {
    pub fn check(&self) -> Result<()> {
        if self.users < 2 {
            bail!("need at least 2 users (one per pusher)");
        }
        if self.rates.is_empty() || self.rates.contains(&0) {
            bail!("rates must be positive");
        }
        if self.via.is_empty() || self.senders == 0 || self.step_secs == 0 {
            bail!("need a way in, at least one sender and a step of at least 1 s");
        }
        Ok(())
    }

    /// Messages the whole run may send (warm-ups included): the ledger's size.
    pub fn capacity(&self) -> usize {
        let per_via: u64 = self
            .rates
            .iter()
            .map(|&r| u64::from(r) * self.step_secs + 1)
            .sum::<u64>()
            + WARM_UP_MESSAGES as u64;
        (per_via * self.via.len() as u64) as usize
    }
}

/// Messages sent through each way in before the measured steps, so that
/// connections, consumers and caches are warm; checked like the rest.
pub const WARM_UP_MESSAGES: usize = 20;
