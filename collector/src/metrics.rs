//! Counters an operator (and the tests) read at `GET /metrics`, in the
//! Prometheus text format.

use std::sync::atomic::AtomicU64;

#[derive(Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected_http: AtomicU64,
    pub ingest_rejected: AtomicU64,
    pub ingest_accepted: AtomicU64,
    pub published: AtomicU64,
    pub publish_failed: AtomicU64,
    pub outbox_published: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, by: u64) {
        herald_common::metrics::inc(counter, by);
    }

    pub fn render(&self) -> String {
        herald_common::metrics::render(&[
            ("herald_collector_accepted_total", &self.accepted),
            ("herald_collector_duplicates_total", &self.duplicates),
            ("herald_collector_http_rejected_total", &self.rejected_http),
            (
                "herald_collector_ingest_accepted_total",
                &self.ingest_accepted,
            ),
            (
                "herald_collector_ingest_rejected_total",
                &self.ingest_rejected,
            ),
            ("herald_collector_events_published_total", &self.published),
            (
                "herald_collector_publish_failed_total",
                &self.publish_failed,
            ),
            (
                "herald_collector_outbox_published_total",
                &self.outbox_published,
            ),
        ])
    }
}
