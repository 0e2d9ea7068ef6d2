//! Counters in the Prometheus text format, shared by every service's
//! `/metrics` so they all read alike.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `by` to a counter. Relaxed: counters order nothing.
pub fn inc(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// `name value` lines, one per counter.
pub fn render(counters: &[(&str, &AtomicU64)]) -> String {
    let mut out = String::new();
    for (name, value) in counters {
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
    out
}
