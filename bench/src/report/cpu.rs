//! The CPU section: per kind of fan-out, the median round's figures in a
//! column, then every round's server CPU per delivery.

use crate::args::Args;
use crate::measure::percentile;
use crate::scenarios::fan_out::{FanOut, FanOuts, Pace};
use std::fmt::Write as _;
use std::time::Duration;

pub(super) fn render(r: &mut String, args: &Args, fan_outs: &FanOuts) {
    let idle_rate = fan_outs.idle_rate;
    let runs = &fan_outs.runs;
    let _ = writeln!(
        r,
        "CPU  server utime+stime (whole process), {} ticks/s; idle background {:.1} ms/s \
         (measured over {} s with N idle subscribers)",
        args.clk_tck,
        idle_rate * 1e3,
        args.idle_secs
    );
    let _ = writeln!(
        r,
        "  deliveries counted by the generator: {} (expected {}), out of order {}",
        fan_outs.delivered, fan_outs.expected, fan_outs.out_of_order
    );
    let paces = args.mode.paces();
    // Per kind of fan-out, the round with the median server CPU per delivery.
    let shown: Vec<&FanOut> = paces
        .iter()
        .map(|&pace| {
            let mut of = rounds_of(runs, pace);
            of.sort_by(|a, b| a.per_delivery(a.cpu).total_cmp(&b.per_delivery(b.cpu)));
            of[(of.len() - 1) / 2]
        })
        .collect();
    let _ = writeln!(
        r,
        "  median of {} round(s) of each kind, M = {} messages per round:",
        args.rounds(),
        args.messages
    );
    let _ = write!(r, "  {:<46}", "");
    for run in &shown {
        let _ = write!(r, " {:>15}", run.pace.column());
    }
    let _ = writeln!(r);
    let line = |r: &mut String, label: &str, unit: &str, f: &dyn Fn(&FanOut) -> String| {
        let _ = write!(r, "  {label:<46}");
        for run in &shown {
            let value = f(run);
            let cell = if value == "-" {
                value
            } else {
                format!("{value} {unit}")
            };
            let _ = write!(r, " {cell:>15}");
        }
        let _ = writeln!(r);
    };
    line(r, "server CPU per delivered message", "us", &|f| {
        format!("{:.2}", f.per_delivery(f.cpu))
    });
    line(r, "  idle background subtracted", "us", &|f| {
        format!(
            "{:.2}",
            f.per_delivery((f.cpu - idle_rate * f.wall.as_secs_f64()).max(0.0))
        )
    });
    line(r, "  of which user", "us", &|f| {
        format!("{:.2}", f.per_delivery(f.cpu - f.sys))
    });
    line(r, "  of which system", "us", &|f| {
        format!("{:.2}", f.per_delivery(f.sys))
    });
    line(r, "server CPU during the fan-out", "s", &|f| {
        format!("{:.2}", f.cpu)
    });
    line(r, "wall time (first POST -> last delivery)", "s", &|f| {
        format!("{:.2}", f.wall.as_secs_f64())
    });
    line(r, "deliveries per second", "/s", &|f| {
        format!("{:.0}", f.deliveries as f64 / f.wall.as_secs_f64())
    });
    line(r, "POST -> all N received, median", "ms", &|f| {
        percentile_ms(&f.fanout_times, 0.5)
    });
    line(r, "POST -> all N received, p90", "ms", &|f| {
        percentile_ms(&f.fanout_times, 0.9)
    });
    line(r, "POST /v1/messages answered, median", "ms", &|f| {
        format!("{:.1}", ms(percentile(&f.post_times, 0.5)))
    });
    line(r, "generator CPU per delivery (same cores)", "us", &|f| {
        format!("{:.2}", f.per_delivery(f.own_cpu))
    });
    line(
        r,
        "other processes' CPU meanwhile (machine)",
        "cores",
        &|f| format!("{:.2}", f.others_cores),
    );
    let _ = writeln!(
        r,
        "  every round, server CPU us per delivery (other processes' load, cores):"
    );
    for &pace in &paces {
        let mut all = rounds_of(runs, pace);
        all.sort_by_key(|f| f.round);
        let list: Vec<String> = all
            .iter()
            .map(|f| format!("{:.2} ({:.2})", f.per_delivery(f.cpu), f.others_cores))
            .collect();
        let _ = writeln!(r, "    {:<16} {}", pace.column(), list.join(", "));
    }
    let _ = writeln!(
        r,
        "  targets: server CPU per delivery <= 4.2 us (half of Nchan's ~8.4 us at 10,000 subscribers)"
    );
}

fn rounds_of(runs: &[FanOut], pace: Pace) -> Vec<&FanOut> {
    runs.iter().filter(|f| f.pace == pace).collect()
}

/// A percentile in ms with one decimal, `-` where there are no times
/// (back to back has no per-message fan-out time).
fn percentile_ms(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        "-".into()
    } else {
        format!("{:.1}", ms(percentile(sorted, p)))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
