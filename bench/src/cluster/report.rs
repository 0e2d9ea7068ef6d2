//! The text `herald-cluster-bench` prints; `bench/run-cluster` adds the
//! header (date, commit, machine) and writes it to bench/results/.

use super::ledger::HOPS;
use super::step::{CpuUse, Step, Watched};
use herald_bench::measure::percentile;
use std::fmt::Write;
use std::time::Duration;

pub struct Run<'a> {
    pub description: String,
    pub watched: &'a [Watched],
    pub idle: &'a CpuUse,
    pub steps: &'a [Step],
    /// Why the rates stopped rising, per way in.
    pub stops: &'a [String],
    /// Set when the run failed: then no figures are printed.
    pub failure: Option<String>,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

pub fn render(run: &Run<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", run.description);
    if let Some(failure) = &run.failure {
        let _ = writeln!(out, "\nRUN FAILED, no figures reported: {failure}");
        for s in run.steps {
            let t = &s.tally;
            let _ = writeln!(
                out,
                "  {} {}/s: sent {}, refused {}, unanswered {}, lost {}, repeated {}",
                s.via.name(),
                s.rate,
                t.sent,
                t.refused,
                t.unanswered,
                t.lost,
                t.repeated
            );
        }
        return out;
    }

    let _ = writeln!(
        out,
        "\nIdle ({:.0} s, users connected, no messages), CPU in % of one core:",
        run.idle.wall.as_secs_f64()
    );
    let mut idle = String::from(" ");
    for (w, secs) in run.watched.iter().zip(&run.idle.secs) {
        let _ = match secs {
            Some(s) => write!(
                idle,
                " {} {:.1}%",
                w.name,
                100.0 * s / run.idle.wall.as_secs_f64()
            ),
            None => write!(idle, " {} ?", w.name),
        };
    }
    let _ = writeln!(
        out,
        "{idle}\n  machine {:.2} cores busy, of which other processes {:.2}",
        run.idle.machine_cores(),
        run.idle.other_cores()
    );

    let _ = writeln!(
        out,
        "\nLatency, send (POST / produce call) -> msg frame received, ms; every accepted message arrived exactly once:"
    );
    let _ = writeln!(
        out,
        "{:<6} {:>8} {:>8} {:>10} {:>7} {:>7} {:>7} {:>7} {:>15} {:>13} {:>11}  load (1 5 15 min)",
        "via",
        "offered",
        "sent/s",
        "delivered",
        "msgs",
        "p50",
        "p99",
        "max",
        "accept p50/p99",
        "refused/lost",
        "machine",
    );
    for s in run.steps {
        let t = &s.tally;
        let accept = format!(
            "{} / {}",
            ms(percentile(&t.accept, 0.5)),
            ms(percentile(&t.accept, 0.99))
        );
        let refused_lost = format!("{} / {}", t.refused, t.lost);
        let machine = format!("{:.2} ({:.2})", s.cpu.machine_cores(), s.cpu.other_cores());
        let _ = writeln!(
            out,
            "{:<6} {:>6}/s {:>8.1} {:>8.1}/s {:>7} {:>7} {:>7} {:>7} {:>15} {:>13} {:>11}  {}",
            s.via.name(),
            s.rate,
            t.send_rate(),
            t.delivery_rate(),
            t.delivered(),
            ms(percentile(&t.latency, 0.5)),
            ms(percentile(&t.latency, 0.99)),
            ms(percentile(&t.latency, 1.0)),
            accept,
            refused_lost,
            machine,
            s.loadavg
        );
    }
    let _ = writeln!(
        out,
        "  offered: the rate asked for; sent/s: what the senders achieved; delivered/s: first send to last arrival;\n  \
         accept: send -> 202 (stored) or broker ack; machine: cores busy during the step (other processes' share)."
    );
    for stop in run.stops {
        let _ = writeln!(out, "  {stop}");
    }

    let _ = writeln!(
        out,
        "\nCPU per delivered message, µs (process CPU time over the step / messages delivered):"
    );
    let mut header = format!("{:<6} {:>8}", "via", "offered");
    for w in run.watched {
        let _ = write!(header, " {:>10}", w.name);
    }
    let _ = writeln!(out, "{header} {:>12}", "others (cores)");
    for s in run.steps {
        let n = s.tally.delivered().max(1) as f64;
        let mut line = format!("{:<6} {:>6}/s", s.via.name(), s.rate);
        for secs in &s.cpu.secs {
            let _ = match secs {
                Some(v) => write!(line, " {:>10.1}", v * 1e6 / n),
                None => write!(line, " {:>10}", "?"),
            };
        }
        let _ = writeln!(out, "{line} {:>12.2}", s.cpu.other_cores());
    }
    let _ = writeln!(
        out,
        "  tansu, mongo and redis are shared with other users of this machine: their figures include that work."
    );

    if run.steps.iter().any(|s| !s.tally.hops[0].is_empty()) {
        let _ = writeln!(
            out,
            "\nWhere the time goes, timed from outside (a consumer of the events and node topics), ms p50 / p99:"
        );
        let mut header = format!("{:<6} {:>8} {:>15}", "via", "offered", "accept");
        for hop in HOPS {
            let _ = write!(header, " {hop:>22}");
        }
        let _ = writeln!(out, "{header} {:>9}", "observed");
        for s in run.steps {
            let t = &s.tally;
            let pair = |v: &[Duration]| {
                format!("{} / {}", ms(percentile(v, 0.5)), ms(percentile(v, 0.99)))
            };
            let mut line = format!(
                "{:<6} {:>6}/s {:>15}",
                s.via.name(),
                s.rate,
                pair(&t.accept)
            );
            for hop in &t.hops {
                let _ = write!(line, " {:>22}", pair(hop));
            }
            let _ = writeln!(out, "{line} {:>9}", t.hops[0].len());
        }
        let _ = writeln!(
            out,
            "  send -> events topic: the collector (store, then publish); events -> node topic: the dispatcher's\n  \
             fetch, route lookup and publish; node topic -> socket: the pusher's fetch and the write. The observer's\n  \
             own 1 ms fetch window adds up to 1 ms to each sighting."
        );
    }

    let hop_lines: Vec<String> = run
        .steps
        .iter()
        .flat_map(|s| {
            s.hops.iter().flat_map(move |(service, histograms)| {
                histograms.iter().map(move |h| {
                    let q = |p: f64| {
                        h.quantile(p)
                            .map_or("?".into(), |v| format_value(&h.name, v))
                    };
                    format!(
                        "{:<6} {:>6}/s {:<10} {}: p50 {} p99 {} ({} observations)",
                        s.via.name(),
                        s.rate,
                        service,
                        h.series(),
                        q(0.5),
                        q(0.99),
                        h.count
                    )
                })
            })
        })
        .collect();
    if !hop_lines.is_empty() {
        let _ = writeln!(
            out,
            "\nHistograms the services recorded during each step (from /metrics):"
        );
        for line in hop_lines {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// A histogram value: milliseconds for a `_seconds` metric, as is otherwise.
fn format_value(name: &str, v: f64) -> String {
    if name.ends_with("_seconds") {
        format!("{} ms", ms(Duration::from_secs_f64(v.max(0.0))))
    } else {
        format!("{v:.3}")
    }
}
