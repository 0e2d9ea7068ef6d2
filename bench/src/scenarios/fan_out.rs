//! Server CPU per delivered message: M topic messages fan out to the N
//! subscribers, in rounds, one at a time and back to back; the server's CPU
//! time is read around each fan-out, and its idle background rate before.

use crate::args::Args;
use crate::generator::Connections;
use crate::measure::{self, Clock, Sample};
use crate::payload::payload;
use crate::target::Target;
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

/// How the M messages of one fan-out are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Message i+1 is sent once every connection has message i.
    Lockstep,
    /// All M are sent back to back (each POST awaited), then all N x M awaited.
    Pipelined,
}

impl Pace {
    fn describe(self) -> &'static str {
        match self {
            Pace::Lockstep => "each sent once every connection has the previous one",
            Pace::Pipelined => "sent back to back",
        }
    }

    /// Its column heading in the report.
    pub fn column(self) -> &'static str {
        match self {
            Pace::Lockstep => "one at a time",
            Pace::Pipelined => "back to back",
        }
    }
}

/// What one fan-out cost.
pub struct FanOut {
    pub pace: Pace,
    /// Which repetition (1-based).
    pub round: usize,
    /// CPU used by everything else on the machine during the fan-out,
    /// in cores (busy time / wall time).
    pub others_cores: f64,
    pub deliveries: u64,
    pub wall: Duration,
    /// Server CPU (user + system) and system alone, seconds.
    pub cpu: f64,
    pub sys: f64,
    /// The generator's own CPU, seconds.
    pub own_cpu: f64,
    /// Per message, POST sent -> every connection has it (lockstep only);
    /// sorted.
    pub fanout_times: Vec<Duration>,
    /// Per message, POST sent -> accepted; sorted.
    pub post_times: Vec<Duration>,
}

impl FanOut {
    /// Microseconds of `cpu_secs` per delivered message.
    pub fn per_delivery(&self, cpu_secs: f64) -> f64 {
        cpu_secs * 1e6 / self.deliveries as f64
    }
}

/// Every fan-out of the run, and what the connections counted.
pub struct FanOuts {
    /// The server's CPU with N idle subscribers: CPU seconds per second.
    pub idle_rate: f64,
    pub runs: Vec<FanOut>,
    pub delivered: u64,
    pub expected: u64,
    pub out_of_order: u64,
}

impl FanOuts {
    /// Fails unless every message reached every connection once, in order.
    pub fn verify(&self) -> Result<()> {
        let (delivered, expected, out_of_order) =
            (self.delivered, self.expected, self.out_of_order);
        if delivered != expected || out_of_order != 0 {
            bail!("deliveries wrong: {delivered} of {expected}, {out_of_order} out of order");
        }
        Ok(())
    }
}

/// Measures the idle background, then runs `--rounds` rounds of the
/// `--mode` fan-outs on `connections`, which are subscribed and have
/// received nothing yet.
pub async fn run<T: Target>(
    args: &Args,
    target: &T,
    connections: &Connections<T::Protocol>,
) -> Result<FanOuts> {
    let n = args.connections;
    let m = args.messages;
    let clock = Clock {
        ticks_per_sec: args.clk_tck,
    };
    let pid = target.server_pid();

    // The server's background CPU with N idle subscribers (pings, heartbeats,
    // progress flushes), over the same kind of window as the fan-out.
    let idle_start = Sample::read(pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle_end = Sample::read(pid)?;
    connections.check()?;
    let idle_rate = clock.secs(idle_end.cpu_ticks - idle_start.cpu_ticks)
        / (idle_end.at - idle_start.at).as_secs_f64();

    // Fan-out, in each requested way, on the same subscribers: the topic's
    // positions continue from one to the next. Payload 0 was the warm-up's.
    let limit = Duration::from_secs(args.timeout_secs);
    let mut runs = Vec::new();
    let mut next_payload = 1;
    for round in 1..=args.rounds() {
        for pace in args.mode.paces() {
            eprintln!(
                "fan-out {round}/{}: {m} messages to {n} subscribers, {}",
                args.rounds(),
                pace.describe()
            );
            let payloads: Vec<_> = (next_payload..next_payload + m)
                .map(|i| payload(i, args.payload_bytes))
                .collect();
            next_payload += m;
            let mut run = fan_out(target, connections, n, pace, &payloads, clock, limit).await?;
            run.round = round;
            runs.push(run);
        }
    }
    // Anything more than the expected deliveries would be a repeat.
    tokio::time::sleep(Duration::from_secs(1)).await;
    connections.check()?;
    Ok(FanOuts {
        idle_rate,
        delivered: connections.delivered(),
        out_of_order: connections.out_of_order(),
        expected: (n * m * runs.len()) as u64,
        runs,
    })
}

/// One fan-out of `payloads` to the `n` connections.
async fn fan_out<T: Target>(
    target: &T,
    connections: &Connections<T::Protocol>,
    n: usize,
    pace: Pace,
    payloads: &[serde_json::Value],
    clock: Clock,
    limit: Duration,
) -> Result<FanOut> {
    let n = n as u64;
    let m = payloads.len() as u64;
    let start = connections.delivered();
    let mut fanout_times = Vec::new();
    let mut post_times = Vec::new();
    let own_before = measure::own_cpu_ticks()?;
    let machine_before = measure::busy_ticks()?;
    let before = Sample::read(target.server_pid())?;
    match pace {
        Pace::Pipelined => {
            let want = start + n * m;
            connections.expect(want);
            for p in payloads {
                let t = Instant::now();
                target.publish(p).await?;
                post_times.push(t.elapsed());
            }
            connections.wait_delivered(want, limit * m as u32).await?;
        }
        Pace::Lockstep => {
            for (i, p) in payloads.iter().enumerate() {
                let want = start + n * (i as u64 + 1);
                connections.expect(want);
                let t = Instant::now();
                target.publish(p).await?;
                post_times.push(t.elapsed());
                connections
                    .wait_delivered(want, limit)
                    .await
                    .with_context(|| format!("message {} of {m}", i + 1))?;
                fanout_times.push(t.elapsed());
            }
        }
    }
    let after = Sample::read(target.server_pid())?;
    let own_after = measure::own_cpu_ticks()?;
    let machine_after = measure::busy_ticks()?;
    let wall = after.at - before.at;
    let others = (machine_after - machine_before)
        .saturating_sub(after.cpu_ticks - before.cpu_ticks)
        .saturating_sub(own_after - own_before);
    fanout_times.sort();
    post_times.sort();
    Ok(FanOut {
        pace,
        round: 0,
        others_cores: clock.secs(others) / wall.as_secs_f64(),
        deliveries: n * m,
        wall,
        cpu: clock.secs(after.cpu_ticks - before.cpu_ticks),
        sys: clock.secs(after.sys_ticks - before.sys_ticks),
        own_cpu: clock.secs(own_after - own_before),
        fanout_times,
        post_times,
    })
}
