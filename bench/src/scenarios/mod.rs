//! What the benchmark does to a target, one scenario per module. Today they
//! run in turn on the same connections: `idle_memory` opens N subscribers
//! and reads the server's memory, `fan_out` sends the topic messages to
//! them and reads the server's CPU, and `idle_memory` reads the memory once
//! more after the messages have flowed.

pub mod fan_out;
pub mod idle_memory;

use crate::args::Args;
use std::time::Duration;

/// Waits `--settle-secs` before a memory reading.
async fn settle(args: &Args) {
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
}
