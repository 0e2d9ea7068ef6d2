//! Counters read at `GET /metrics` (Prometheus text format).

use std::sync::atomic::AtomicU64;

#[derive(Default)]
pub struct Metrics {
    pub forwarded: AtomicU64,
    pub offline: AtomicU64,
    pub invalid: AtomicU64,
    pub given_up: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, by: u64) {
        herald_common::metrics::inc(counter, by);
    }

    pub fn render(&self) -> String {
        herald_common::metrics::render(&[
            ("herald_dispatcher_forwarded_total", &self.forwarded),
            ("herald_dispatcher_offline_total", &self.offline),
            ("herald_dispatcher_invalid_total", &self.invalid),
            ("herald_dispatcher_given_up_total", &self.given_up),
        ])
    }
}
