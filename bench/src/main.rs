//! `herald-bench`: a load generator for `herald standalone`, run as a separate
//! process from the server (see `bench/run` and `bench/README.md`).
//!
//! It measures, from outside, what the server process costs:
//!
//! - memory: the server's resident set (`/proc/<pid>/status` VmRSS) before and
//!   after opening N WebSocket connections, then after subscribing each of
//!   them to one topic: KiB per idle connection (`scenarios::idle_memory`);
//! - CPU: the server's user + system time (`/proc/<pid>/stat`) while M topic
//!   messages fan out to the N subscribers: CPU microseconds per delivered
//!   message, raw and with the idle background rate subtracted
//!   (`scenarios::fan_out`).
//!
//! Deliveries are counted in the generator (every connection checks that the
//! topic's seqs arrive in order, once each), so a run that loses or repeats a
//! message fails instead of reporting a number.
//!
//! The parts: `target` (the server under test and its protocol), `generator`
//! (the connections), `measure` (/proc readings, percentiles), `scenarios`,
//! `report`.

mod args;
mod generator;
mod payload;
mod report;
mod scenarios;
mod target;
mod ws;

use anyhow::Result;
use args::Args;
// Shared with the cluster benchmark (src/lib.rs); `crate::measure` keeps
// naming it inside this binary.
use clap::Parser;
use herald_bench::measure;
use scenarios::{fan_out, idle_memory};
use std::time::Duration;
use target::Target;
use target::herald::{HeraldApi, HeraldStandalone};

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    args.check()?;
    let api = HeraldApi::new(&args.addr, &args.api_key);
    api.wait_ready(Duration::from_secs(60)).await?;
    let load_start = measure::loadavg();
    let target = HeraldStandalone::sign_in(api, &args).await?;

    let (memory, connections) = idle_memory::open_subscribers(&args, &target).await?;
    let fan_outs = fan_out::run(&args, &target, &connections).await?;
    let after = idle_memory::after(&args, &target).await?;
    let load_end = measure::loadavg();

    print!(
        "{}",
        report::render(&report::Run {
            args: &args,
            target: target.describe(),
            load_start,
            load_end,
            memory: &memory,
            after: &after,
            fan_outs: &fan_outs,
        })
    );
    // Numbers from a run that lost or repeated messages are printed, for
    // the diagnosis, but the run fails, so bench/run does not keep them.
    fan_outs.verify()?;
    drop(connections);
    Ok(())
}
