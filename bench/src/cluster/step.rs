//! One measured step: a rate offered through one way in for `--step-secs`,
//! then the wait for its last delivery; CPU of every watched process and of
//! the whole machine read around it, and the services' histograms scraped
//! before and after.

use super::args::Via;
use super::ledger::{Ledger, Tally};
use super::senders::{self, Sender};
use herald_bench::measure::{self, Clock, Sample};
use herald_bench::prometheus::{self, Histogram};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A process whose CPU the report shows.
pub struct Watched {
    pub name: String,
    pub pid: Option<u32>,
    /// Its `/metrics` URL, for a service of the run.
    pub metrics: Option<String>,
}

/// CPU time of each watched process (None: unreadable), and of the machine.
#[derive(Clone, Debug)]
pub struct CpuReading {
    pub ticks: Vec<Option<u64>>,
    pub machine_ticks: u64,
    pub at: Instant,
}

impl CpuReading {
    pub fn take(watched: &[Watched]) -> CpuReading {
        CpuReading {
            ticks: watched
                .iter()
                .map(|w| {
                    w.pid
                        .and_then(|p| Sample::read(p).ok())
                        .map(|s| s.cpu_ticks)
                })
                .collect(),
            machine_ticks: measure::busy_ticks().unwrap_or(0),
            at: Instant::now(),
        }
    }

    /// CPU seconds of each process and of the machine between `self` and
    /// `later`, and the wall time.
    pub fn until(&self, later: &CpuReading, clock: Clock) -> CpuUse {
        CpuUse {
            secs: self
                .ticks
                .iter()
                .zip(&later.ticks)
                .map(|(a, b)| Some(clock.secs(b.as_ref()?.saturating_sub(*a.as_ref()?))))
                .collect(),
            machine_secs: clock.secs(later.machine_ticks.saturating_sub(self.machine_ticks)),
            wall: later.at - self.at,
        }
    }
}

#[derive(Clone, Debug)]
pub struct CpuUse {
    /// Per watched process, CPU seconds.
    pub secs: Vec<Option<f64>>,
    /// All processes of the machine, CPU seconds.
    pub machine_secs: f64,
    pub wall: Duration,
}

impl CpuUse {
    /// Cores the machine was busy on average.
    pub fn machine_cores(&self) -> f64 {
        self.machine_secs / self.wall.as_secs_f64()
    }

    /// Cores the processes not watched used (the other users of the machine).
    pub fn other_cores(&self) -> f64 {
        let ours: f64 = self.secs.iter().flatten().sum();
        ((self.machine_secs - ours) / self.wall.as_secs_f64()).max(0.0)
    }
}

/// The outcome of a step.
pub struct Step {
    pub via: Via,
    pub rate: u32,
    pub tally: Tally,
    pub cpu: CpuUse,
    /// Whether every message arrived before `--drain-secs` ran out.
    pub drained: bool,
    pub loadavg: String,
    /// Per watched service with histograms: what they observed in the step.
    pub hops: Vec<(String, Vec<Histogram>)>,
}

pub struct StepPlan<'a> {
    pub sender: &'a Sender,
    pub ledger: &'a Arc<Ledger>,
    pub slots: Range<usize>,
    pub rate: u32,
    pub users: usize,
    pub in_flight: usize,
    pub payload_bytes: usize,
    pub drain: Duration,
    pub watched: &'a [Watched],
    pub clock: Clock,
}

pub async fn run(plan: StepPlan<'_>) -> Step {
    let http = reqwest::Client::new();
    let before_hops = scrape_all(&http, plan.watched).await;
    let before = CpuReading::take(plan.watched);
    senders::offer(
        plan.sender,
        plan.ledger,
        plan.slots.clone(),
        plan.rate,
        plan.users,
        plan.in_flight,
        plan.payload_bytes,
    )
    .await;
    let drained = wait_complete(plan.ledger, plan.slots.clone(), plan.drain).await;
    let after = CpuReading::take(plan.watched);
    let after_hops = scrape_all(&http, plan.watched).await;
    let hops = before_hops
        .into_iter()
        .zip(after_hops)
        .filter_map(|((name, b), (_, a))| {
            let window = prometheus::between(&b, &a);
            (!window.is_empty()).then_some((name, window))
        })
        .collect();
    Step {
        via: plan.sender.via(),
        rate: plan.rate,
        tally: plan.ledger.tally(plan.slots),
        cpu: before.until(&after, plan.clock),
        drained,
        loadavg: measure::loadavg(),
        hops,
    }
}

/// Waits until every message of `slots` that was accepted has arrived, at
/// most `limit`. Polls the ledger: arrival times are recorded by the
/// readers themselves, so the poll's period does not enter any figure.
pub async fn wait_complete(ledger: &Ledger, slots: Range<usize>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ledger.complete(slots.clone()) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Each watched service's histograms; a service whose `/metrics` cannot be
/// read (or has none) contributes an empty list.
async fn scrape_all(http: &reqwest::Client, watched: &[Watched]) -> Vec<(String, Vec<Histogram>)> {
    let mut all = Vec::new();
    for w in watched {
        if let Some(url) = &w.metrics {
            let histograms = prometheus::scrape(http, url).await.unwrap_or_default();
            all.push((w.name.clone(), histograms));
        }
    }
    all
}
