//! The Kafka ingest path: business producers write submissions straight to the
//! ingest topic; the collector group consumes it, stores each good record and
//! commits its offset only once the store has it.
//!
//! A record that is not a valid submission is logged, counted and skipped: it
//! can never become valid, so holding the partition for it would only stop
//! every message behind it. So is a record whose `id` is already a different
//! message's: the store answers it as a conflict (it stores the rest of the
//! batch), and it is logged, counted and skipped the same way. A store
//! outage is the opposite: the batch is retried until it is stored, and
//! nothing is committed meanwhile.

use crate::Collector;
use crate::metrics::Metrics;
use crate::writer::new_message;
use herald_common::envelope::Submission;
use herald_common::log::{Log, StartAt};
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 500;
const LINGER: Duration = Duration::from_millis(10);

pub async fn run(collector: Arc<Collector>, log: Arc<dyn Log>) {
    let names = collector.config.infra.names();
    let topic = names.ingest_topic();
    let mut consumer = loop {
        match log
            .consume(
                &names.collector_group(),
                std::slice::from_ref(&topic),
                StartAt::Earliest,
            )
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot join the ingest group; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    collector.watch_ingest_assignment(consumer.assigned());

    loop {
        let records = match consumer.next_batch(BATCH, LINGER).await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "ingest consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut messages = Vec::with_capacity(records.len());
        // The record each message came from, to name it in a log line.
        let mut sources = Vec::with_capacity(records.len());
        for r in &records {
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
                    Metrics::inc(&collector.metrics.ingest_rejected, 1);
                    tracing::warn!(
                        topic = %r.topic, partition = r.partition, offset = r.offset,
                        error = %e, "skipping invalid ingest record"
                    );
                }
            }
        }
        let mut count = messages.len() as u64;
        let mut attempt = 0u32;
        while !messages.is_empty() {
            match collector.writer.append(messages.clone()).await {
                Ok(results) => {
                    // A record reusing another message's id can never be
                    // stored: like an invalid record it is skipped, and the
                    // rest of the batch was stored without it.
                    for (a, r) in results.iter().zip(&sources) {
                        if a.is_conflict() {
                            count -= 1;
                            Metrics::inc(&collector.metrics.ingest_rejected, 1);
                            tracing::warn!(
                                topic = %r.topic, partition = r.partition, offset = r.offset,
                                id = %a.id, "skipping ingest record: its id is a different message's"
                            );
                        }
                    }
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "cannot store ingest batch; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10))))
                        .await;
                }
            }
        }
        Metrics::inc(&collector.metrics.ingest_accepted, count);
        if let Err(e) = consumer.commit(&records) {
            // Not committed: the batch is consumed again after a restart and
            // its keys (if any) or seq-dedup downstream absorb the repeat.
            tracing::warn!(error = %e, "cannot commit ingest offsets");
        }
    }
}
