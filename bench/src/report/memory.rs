//! The MEMORY section: the server's RSS at each step and per connection.

use crate::args::Args;
use crate::measure::Sample;
use crate::scenarios::idle_memory::IdleMemory;
use std::fmt::Write as _;

pub(super) fn render(r: &mut String, args: &Args, memory: &IdleMemory, after: &Sample) {
    let n = args.connections;
    let base = &memory.baseline;
    let [w1, w2] = &memory.waves;
    let _ = writeln!(
        r,
        "MEMORY  server VmRSS (RssAnon), read {} s after each step",
        args.settle_secs
    );
    row(r, "baseline (after one warm-up connection)", base);
    row(
        r,
        &format!("{} connections open, not subscribed", w1.open),
        &w1.sample,
    );
    row(
        r,
        &format!("{} connections open, not subscribed", w2.open),
        &w2.sample,
    );
    row(
        r,
        &format!("{n} connections subscribed to `{}`", args.topic),
        &memory.subscribed,
    );
    row(r, "after the fan-outs", after);
    let _ = writeln!(
        r,
        "  {:<46} {:>9.2} KiB   (marginal, {}->{}: {:.2} KiB)",
        "per connection, open (welcome), idle",
        kib_per(w2.sample.rss_kib.saturating_sub(base.rss_kib), n),
        w1.open,
        w2.open,
        kib_per(
            w2.sample.rss_kib.saturating_sub(w1.sample.rss_kib),
            w2.open - w1.open
        ),
    );
    let _ = writeln!(
        r,
        "  {:<46} {:>9.2} KiB   (target 4 KiB; Nchan ~10-12 KiB)",
        "per connection, subscribed, idle",
        kib_per(memory.subscribed.rss_kib.saturating_sub(base.rss_kib), n),
    );
    let _ = writeln!(
        r,
        "  {:<46} {:>9.2} KiB",
        "per connection, subscribed, after the fan-outs",
        kib_per(after.rss_kib.saturating_sub(base.rss_kib), n),
    );
    let _ = writeln!(
        r,
        "  connect {}: {:.1} s, {}: {:.1} s; subscribe {n}: {:.1} s",
        w1.open,
        w1.took.as_secs_f64(),
        w2.open,
        w2.took.as_secs_f64(),
        memory.subscribe_took.as_secs_f64()
    );
}

/// One reading: RSS and RssAnon in MiB, threads.
fn row(r: &mut String, label: &str, s: &Sample) {
    let _ = writeln!(
        r,
        "  {label:<46} {:>9.1} MiB ({:.1} MiB), {} threads",
        mib(s.rss_kib),
        mib(s.rss_anon_kib),
        s.threads
    );
}

fn kib_per(delta_kib: u64, n: usize) -> f64 {
    delta_kib as f64 / n as f64
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
