//! What the collector counts and times, registered in the process's
//! registry and read at `GET /metrics`.

use herald_common::metrics::{Counter, Latency, Registry};

pub struct Metrics {
    pub accepted: Counter,
    pub duplicates: Counter,
    pub rejected_http: Counter,
    pub ingest_rejected: Counter,
    pub ingest_accepted: Counter,
    pub published: Counter,
    pub publish_failed: Counter,
    pub outbox_published: Counter,
    /// One store transaction (a group commit of one or more requests).
    pub store_append: Latency,
    /// One round of publishes to the events topic, until every record is
    /// acknowledged or failed.
    pub events_publish: Latency,
}

impl Metrics {
    pub fn register(registry: &Registry) -> Self {
        Self {
            accepted: registry.counter(
                "herald_collector_accepted",
                "HTTP messages stored (duplicates excluded).",
            ),
            duplicates: registry.counter(
                "herald_collector_duplicates",
                "HTTP messages answered as duplicates.",
            ),
            rejected_http: registry.counter(
                "herald_collector_http_rejected",
                "Refused submissions and reads: 400, 401, 409, 413 (not 404 or 503).",
            ),
            ingest_accepted: registry.counter(
                "herald_collector_ingest_accepted",
                "Valid ingest records stored (duplicates included).",
            ),
            ingest_rejected: registry.counter(
                "herald_collector_ingest_rejected",
                "Invalid ingest records skipped.",
            ),
            published: registry.counter(
                "herald_collector_events_published",
                "Messages whose events all reached the events topic (live path and outbox).",
            ),
            publish_failed: registry.counter(
                "herald_collector_publish_failed",
                "Messages with a failed event publish (left to the outbox).",
            ),
            outbox_published: registry.counter(
                "herald_collector_outbox_published",
                "Messages published by the outbox.",
            ),
            store_append: registry.latency(
                "herald_collector_store_append_seconds",
                "Duration of one append transaction to the message store.",
            ),
            events_publish: registry.latency(
                "herald_collector_events_publish_seconds",
                "Duration of one publish round to the events topic, until acknowledged.",
            ),
        }
    }
}
