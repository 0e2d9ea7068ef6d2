//! `herald-cluster-bench`: the cluster pipeline under load (see
//! `bench/run-cluster` and docs/benchmarks.md, "Cluster pipeline").
//!
//! It starts authsvc, a collector, a dispatcher and two pushers on the
//! shared servers in a fresh namespace, connects `--users` users spread over
//! the two pushers, and offers unicast messages to random connected users at
//! rising rates, over HTTP and through the ingest topic. For each rate it
//! reports the latency from the send (POST, or produce call) to the frame
//! received, the rate sustained, and the CPU time per message of every
//! process, with the machine's load beside it.
//!
//! Every message carries its index and its user in the payload; the ledger
//! checks that each accepted message arrived exactly once, at its user. A
//! run that lost, repeated or misrouted anything reports no figures and
//! fails.
//!
//! The parts: `args`, `services` (the cluster's processes), `users` (the
//! connections), `senders` (HTTP and Kafka, open-loop), `ledger`, `step`
//! (one rate: CPU, histograms, deliveries), `observer` (when each message
//! shows on the events and node topics), `listeners` (finding the shared
//! servers' pids), `report`.

mod args;
mod ledger;
mod listeners;
mod observer;
mod report;
mod senders;
mod services;
mod step;
mod users;

use anyhow::{Result, bail};
use args::{Args, Via, WARM_UP_MESSAGES};
use clap::Parser;
use herald_bench::measure::{Clock, percentile};
use ledger::Ledger;
use senders::Sender;
use services::{Cluster, Setup};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use step::{CpuReading, Step, StepPlan, Watched};

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    args.check()?;
    let namespace = args.namespace.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("bench{secs}x{:04x}", rand::random::<u16>())
    });
    let logs = args
        .logs
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("herald-cluster-bench-{namespace}")));
    std::fs::create_dir_all(&logs)?;
    let api_key = format!("bench-{:032x}", rand::random::<u128>());
    let jwt_secret = format!("bench-{:032x}", rand::random::<u128>());
    eprintln!(
        "herald-cluster-bench: namespace {namespace}, service logs in {}",
        logs.display()
    );

    let mut cluster = Cluster::start(&Setup {
        bin_dir: &args.bin_dir,
        logs: &logs,
        namespace: &namespace,
        api_key: &api_key,
        jwt_secret: &jwt_secret,
        kafka: &args.kafka,
        redis: &args.redis,
        mongo: &args.mongo,
    })
    .await?;

    let ledger = Arc::new(Ledger::new(args.capacity()));
    let _observer = if args.no_observe {
        None
    } else {
        let nodes = ["node-a", "node-b"].map(|n| format!("{namespace}.node.{n}"));
        Some(observer::Observer::start(
            &args.kafka,
            &format!("{namespace}-bench-observer"),
            &format!("{namespace}.events"),
            &nodes,
            ledger.clone(),
        )?)
    };
    let pusher_urls: Vec<String> = cluster.pushers.iter().map(|p| p.url()).collect();
    let users = users::connect(
        &cluster.authsvc.url(),
        &api_key,
        &pusher_urls,
        args.users,
        ledger.clone(),
    )
    .await?;
    eprintln!("herald-cluster-bench: {} users connected", users.count);

    let watched = watched(&cluster, &args);
    let clock = Clock {
        ticks_per_sec: args.clk_tck,
    };
    let idle_before = CpuReading::take(&watched);
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle = idle_before.until(&CpuReading::take(&watched), clock);

    let mut steps: Vec<Step> = Vec::new();
    let mut stops = Vec::new();
    let mut next_slot = 0usize;
    let mut failure = None;
    'vias: for &via in &args.via {
        let sender = match via {
            Via::Http => Sender::http(&cluster.collector.url(), &api_key, args.senders)?,
            Via::Kafka => Sender::kafka(
                &args.kafka,
                &format!("{namespace}.ingest"),
                args.produce_linger_ms,
            )?,
        };
        let plan = |slots: std::ops::Range<usize>, rate: u32| StepPlan {
            sender: &sender,
            ledger: &ledger,
            slots,
            rate,
            users: args.users,
            in_flight: args.senders,
            payload_bytes: args.payload_bytes,
            drain: Duration::from_secs(args.drain_secs),
            watched: &watched,
            clock,
        };
        // Warm-up: not reported, but checked like every step.
        let warm_up = next_slot..next_slot + WARM_UP_MESSAGES;
        next_slot = warm_up.end;
        let warm = step::run(plan(warm_up, 10)).await;
        if let Some(why) = broken(&warm, &ledger) {
            failure = Some(format!("{} warm-up: {why}", via.name()));
            steps.push(warm);
            break;
        }
        for &rate in &args.rates {
            let count = (u64::from(rate) * args.step_secs).max(1) as usize;
            let slots = next_slot..next_slot + count;
            next_slot = slots.end;
            eprintln!("herald-cluster-bench: {} at {rate}/s", via.name());
            let s = step::run(plan(slots, rate)).await;
            cluster.check_alive()?;
            let why = broken(&s, &ledger);
            let p99 = percentile(&s.tally.latency, 0.99);
            let send_rate = s.tally.send_rate();
            steps.push(s);
            if let Some(why) = why {
                failure = Some(format!("{} at {rate}/s: {why}", via.name()));
                break 'vias;
            }
            if p99 > Duration::from_millis(args.stop_p99_ms) {
                stops.push(format!(
                    "{}: stopped rising after {rate}/s: p99 {} ms over --stop-p99-ms {}",
                    via.name(),
                    p99.as_millis(),
                    args.stop_p99_ms
                ));
                break;
            }
            if send_rate < 0.9 * f64::from(rate) {
                stops.push(format!(
                    "{}: stopped rising after {rate}/s: only {send_rate:.0}/s could be sent \
                     with {} sends in flight (the cluster answered too slowly)",
                    via.name(),
                    args.senders
                ));
                break;
            }
        }
    }

    if failure.is_none() {
        // Late repeats: a message delivered twice shows up after its first.
        tokio::time::sleep(Duration::from_secs(args.grace_secs)).await;
        let all = ledger.tally(0..next_slot);
        if let Some(why) = tally_problem(&all, &ledger) {
            failure = Some(format!("after the last step: {why}"));
        }
    }

    let description = format!(
        "herald cluster ({} build): authsvc, collector, dispatcher, 2 pushers; namespace {namespace}\n\
         {} users ({} per pusher), one connection each; unicast to a random user; payload ~{} bytes; \
         {} s per rate; {} sends in flight; Kafka producer linger.ms {}\n\
         settings the services inherited: {}",
        args.profile,
        args.users,
        args.users / 2,
        args.payload_bytes,
        args.step_secs,
        args.senders,
        args.produce_linger_ms,
        inherited_settings()
    );
    print!(
        "{}",
        report::render(&report::Run {
            description,
            watched: &watched,
            idle: &idle,
            steps: &steps,
            stops: &stops,
            failure: failure.clone(),
        })
    );
    drop(users);
    match failure {
        Some(why) => bail!("the run failed: {why}; service logs in {}", logs.display()),
        None => {
            drop(cluster);
            let _ = std::fs::remove_dir_all(&logs);
            Ok(())
        }
    }
}

/// Why a step's figures cannot be reported, if they cannot.
fn broken(step: &Step, ledger: &Ledger) -> Option<String> {
    if !step.drained {
        let t = &step.tally;
        return Some(format!(
            "{} of {} accepted messages had not arrived after --drain-secs",
            t.lost + t.unanswered,
            t.sent - t.refused
        ));
    }
    tally_problem(&step.tally, ledger)
}

fn tally_problem(t: &ledger::Tally, ledger: &Ledger) -> Option<String> {
    let misrouted = ledger.misrouted.load(Ordering::Relaxed);
    let lost_connections = ledger.connections_lost.load(Ordering::Relaxed);
    if t.exact() && misrouted == 0 && lost_connections == 0 {
        return None;
    }
    Some(format!(
        "{} lost, {} repeated, {} unanswered, {misrouted} frames not for their connection, \
         {lost_connections} connections ended",
        t.lost, t.repeated, t.unanswered
    ))
}

/// The processes the report follows: the services, the shared servers
/// (found by their listening port) and the benchmark itself.
fn watched(cluster: &Cluster, args: &Args) -> Vec<Watched> {
    let mut watched: Vec<Watched> = cluster
        .services()
        .map(|s| Watched {
            name: s.name.clone(),
            pid: Some(s.pid),
            metrics: Some(format!("{}/metrics", s.url())),
        })
        .collect();
    for (name, address) in [
        ("tansu", &args.kafka),
        ("mongo", &args.mongo),
        ("redis", &args.redis),
    ] {
        watched.push(Watched {
            name: name.into(),
            pid: listeners::port_of(address).and_then(listeners::pid_listening_on),
            metrics: None,
        });
    }
    watched.push(Watched {
        name: "bench".into(),
        pid: Some(std::process::id()),
        metrics: None,
    });
    watched
}

/// The HERALD_* variables the services inherit from this process (the
/// run's own namespace, servers and secrets are set on top and not shown).
fn inherited_settings() -> String {
    let own = [
        "HERALD_NAMESPACE",
        "HERALD_API_KEY",
        "HERALD_JWT_SECRET",
        "HERALD_KAFKA_BROKERS",
        "HERALD_REDIS_URL",
        "HERALD_MONGO_URI",
    ];
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("HERALD_") && !own.contains(&k.as_str()))
        .filter(|(k, _)| !k.contains("SECRET") && !k.contains("KEY"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    vars.sort();
    if vars.is_empty() {
        "none (every default)".into()
    } else {
        vars.join(" ")
    }
}
