//! Memory per idle connection: the server's resident set before and after
//! opening N WebSocket connections (in two waves, for the marginal cost),
//! then after subscribing each of them to the topic.

use super::settle;
use crate::args::Args;
use crate::generator::{self, Connections};
use crate::measure::Sample;
use crate::payload::payload;
use crate::target::{Protocol, Target};
use crate::ws;
use anyhow::{Context, Result, bail};
use std::ops::Range;
use std::time::{Duration, Instant};

/// The server's memory at each step, each read `--settle-secs` after it.
pub struct IdleMemory {
    /// After one warm-up connection came and went.
    pub baseline: Sample,
    /// N/2 connections open, then N; not subscribed.
    pub waves: [Wave; 2],
    /// N connections subscribed to the topic.
    pub subscribed: Sample,
    pub subscribe_took: Duration,
}

pub struct Wave {
    /// Connections open after this wave.
    pub open: usize,
    pub sample: Sample,
    /// From the first handshake of the wave to its last `welcome`.
    pub took: Duration,
}

/// Warms the server up, then opens `--connections` and subscribes them.
/// The connections stay open, subscribed, for the scenarios after this one.
pub async fn open_subscribers<T: Target>(
    args: &Args,
    target: &T,
) -> Result<(IdleMemory, Connections<T::Protocol>)> {
    let n = args.connections;
    let pid = target.server_pid();
    warm_up(target, args.payload_bytes).await?;
    settle(args).await;
    let baseline = Sample::read(pid)?;
    eprintln!("baseline: RSS {} KiB", baseline.rss_kib);

    let mut connections = Connections::new(target.protocol(), args.concurrency);
    let limit = Duration::from_secs(120 + n as u64 / 50);
    // Two waves, to see the marginal cost as well as the mean.
    let half = n / 2;
    let waves = [
        open_wave(args, pid, &mut connections, 0..half, limit).await?,
        open_wave(args, pid, &mut connections, half..n, limit).await?,
    ];

    let started = Instant::now();
    connections.subscribe();
    connections.wait_subscribed(n, limit).await?;
    let subscribe_took = started.elapsed();
    eprintln!(
        "{n} connections subscribed ({:.1} s)",
        subscribe_took.as_secs_f64()
    );
    settle(args).await;
    connections.check()?;
    let subscribed = Sample::read(pid)?;
    Ok((
        IdleMemory {
            baseline,
            waves,
            subscribed,
            subscribe_took,
        },
        connections,
    ))
}

/// Opens connections `range`, waits for all of them, settles and reads.
async fn open_wave<P: Protocol>(
    args: &Args,
    pid: u32,
    connections: &mut Connections<P>,
    range: Range<usize>,
    limit: Duration,
) -> Result<Wave> {
    let to = range.end;
    let started = Instant::now();
    connections.open(range);
    connections.wait_open(to, limit).await?;
    let took = started.elapsed();
    eprintln!("{to} connections open ({:.1} s)", took.as_secs_f64());
    settle(args).await;
    connections.check()?;
    Ok(Wave {
        open: to,
        sample: Sample::read(pid)?,
        took,
    })
}

/// The memory reading after the other scenarios: the same connections,
/// after messages have flowed, so buffers first used on delivery count.
pub async fn after<T: Target>(args: &Args, target: &T) -> Result<Sample> {
    settle(args).await;
    Sample::read(target.server_pid())
}

/// One connection through the whole path (handshake, subscribe, one message
/// published and delivered), then closed: what is first built on first
/// use is in the baseline, not in the per-connection figures.
async fn warm_up<T: Target>(target: &T, payload_bytes: usize) -> Result<()> {
    let protocol = target.protocol();
    let mut ws = generator::open(&*protocol, 0)
        .await
        .context("warm-up connection")?;
    let head = protocol.subscribe(&mut ws).await?;
    target.publish(&payload(0, payload_bytes)).await?;
    let text = tokio::time::timeout(Duration::from_secs(10), ws::next_text(&mut ws))
        .await
        .context("warm-up message not delivered")??;
    let position = protocol.position(&text).context("warm-up")?;
    if position != head + 1 {
        bail!("warm-up: unexpected frame {text}");
    }
    ws::close(ws).await
}
