//! The Kafka ingest path: business producers write submissions straight to the
//! ingest topic; the collector group consumes it, stores each good record and
//! commits its offset only once the store has it.
//!
//! A record that is not a valid submission, or that reuses the id of a
//! different stored message, is logged, counted and skipped: it can never
//! become valid, so holding the partition for it would only stop
//! every message behind it. A store outage is the opposite: the batch is
//! retried until it is stored, and nothing is committed meanwhile.

use crate::Collector;
use crate::writer::new_message;
use async_trait::async_trait;
use herald_common::envelope::Submission;
use herald_common::log::{BatchHandler, Log, Record, StartAt, Subscription};
use herald_common::metrics::Registry;
use herald_common::retry::until_answered;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 500;
const LINGER: Duration = Duration::from_millis(10);

pub async fn run(collector: Arc<Collector>, log: Arc<dyn Log>, metrics: Registry) {
    let names = collector.config.infra.names();
    let subscription = Subscription {
        group: names.collector_group(),
        topic: names.ingest_topic(),
        partitions: collector.config.infra.partitions,
        start: StartAt::Earliest,
        batch: BATCH,
        linger: LINGER,
        metrics,
    };
    let assigned = collector.ingest_ready.clone();
    subscription
        .run(log, assigned, &mut Ingest { collector })
        .await;
}

struct Ingest {
    collector: Arc<Collector>,
}

#[async_trait]
impl BatchHandler for Ingest {
    async fn handle(&mut self, records: &[Record]) {
        let collector = &self.collector;
        let mut messages = Vec::with_capacity(records.len());
        // The record each message came from, to name it in a log line.
        let mut sources = Vec::with_capacity(records.len());
        for r in records {
            match Submission::parse(&r.value, &collector.config.limits) {
                Ok(mut s) => {
                    // A record consumed twice (crash before commit) must not
                    // be stored twice: without a key of its own, its log
                    // position is its idempotency key.
                    s.key.get_or_insert_with(|| {
                        format!("log:{}/{}/{}", r.topic, r.partition, r.offset)
                    });
                    messages.push(new_message(s));
                    sources.push(r);
                }
                Err(e) => {
                    collector.metrics.ingest_rejected.inc();
                    tracing::warn!(
                        topic = %r.topic, partition = r.partition, offset = r.offset,
                        error = %e, "skipping invalid ingest record"
                    );
                }
            }
        }
        if messages.is_empty() {
            return;
        }
        let mut count = messages.len() as u64;
        let results = until_answered("storing an ingest batch", || {
            collector.writer.append(messages.clone())
        })
        .await;
        // A record reusing another message's id can never be stored: like an
        // invalid record it is skipped, and the rest of the batch was stored
        // without it.
        for (a, r) in results.iter().zip(&sources) {
            if a.is_conflict() {
                count -= 1;
                collector.metrics.ingest_rejected.inc();
                tracing::warn!(
                    topic = %r.topic, partition = r.partition, offset = r.offset,
                    id = %a.id, "skipping ingest record: its id is a different message's"
                );
            }
        }
        collector.metrics.ingest_accepted.inc_by(count);
    }
}
