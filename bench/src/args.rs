//! The command line of `herald-bench` (`bench/run` passes its flags through).

use crate::scenarios::fan_out::Pace;
use anyhow::{Result, bail};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "herald-bench",
    about = "Memory per idle connection and CPU per delivered message of a running `herald standalone`"
)]
pub struct Args {
    /// Process id of the running `herald standalone` (its /proc is read).
    #[arg(long)]
    pub pid: u32,

    /// host:port the server listens on.
    #[arg(long)]
    pub addr: String,

    /// The server's API key.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: String,

    /// WebSocket connections to open (N).
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub connections: usize,

    /// Topic messages to fan out to every connection (M).
    #[arg(long, short = 'm', default_value_t = 50)]
    pub messages: usize,

    /// Handshakes (and subscribes) in flight at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,

    /// Distinct user ids the connections are spread over (one token each).
    #[arg(long, default_value_t = 1)]
    pub users: usize,

    /// Topic every connection subscribes to.
    #[arg(long, default_value = "bench")]
    pub topic: String,

    /// Approximate size of each message's JSON payload, bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,

    /// How the M messages are sent: `lockstep` sends message i+1 once every
    /// connection has message i; `pipelined` sends all M back to back and
    /// waits for the N x M deliveries; `both` runs the two fan-outs in turn
    /// on the same subscribers (M messages each).
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,

    /// Times the fan-out(s) are repeated; the report shows the median round
    /// of each kind, and every round's figure (the machine is shared).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// Seconds of quiet before each memory reading: longer than the 10 s
    /// after which tokio ends idle blocking-pool threads, so that threads
    /// spawned by the burst of handshakes are gone and the reading is steady.
    #[arg(long, default_value_t = 12)]
    pub settle_secs: u64,

    /// Seconds over which the server's idle CPU (N connections, no messages)
    /// is measured, to separate the fan-out from background work.
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,

    /// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    pub clk_tck: u64,

    /// How the server was built, for the report (e.g. `release`).
    #[arg(long, default_value = "unknown")]
    pub profile: String,

    /// Longest wait for one message to reach every connection, seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
}

impl Args {
    /// Refuses counts the scenarios cannot run with (two waves of
    /// connections need two connections; medians need a message).
    pub fn check(&self) -> Result<()> {
        if self.connections < 2 || self.messages == 0 || self.users == 0 {
            bail!("need at least 2 connections, 1 message and 1 user");
        }
        Ok(())
    }

    /// Rounds of fan-outs to run: at least one.
    pub fn rounds(&self) -> usize {
        self.rounds.max(1)
    }
}

/// Which fan-outs to run.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Mode {
    /// One at a time, then back to back.
    Both,
    /// Each message sent once every connection has the previous one.
    Lockstep,
    /// All messages sent back to back.
    Pipelined,
}

impl Mode {
    /// The fan-outs of one round, in the order they run.
    pub fn paces(self) -> Vec<Pace> {
        match self {
            Mode::Both => vec![Pace::Lockstep, Pace::Pipelined],
            Mode::Lockstep => vec![Pace::Lockstep],
            Mode::Pipelined => vec![Pace::Pipelined],
        }
    }
}
