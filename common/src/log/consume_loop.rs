//! The one way Herald's services consume the log: create the topic, join the
//! group, then hand batch after batch to the service and commit each once the
//! service is done with it. The collector's ingest, the dispatcher and every
//! pusher's node topic run this loop; only what they do with a batch differs.
//!
//! An unreachable log is waited out (with [`retry`](crate::retry)'s backoff)
//! at every step, never given up on: the service keeps serving whatever does
//! not need the log, and resumes consuming from its committed position.

use super::{Log, LogConsumer, Record, StartAt};
use crate::metrics::{ConsumerLag, Registry};
use crate::retry::{Policy, until_answered};
use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a service does with each batch it consumes.
#[async_trait]
pub trait BatchHandler: Send {
    /// Processes `records` (in log order within each partition). The batch is
    /// committed once this returns, so return only when it is done with: a
    /// batch that cannot be finished now is retried here, not skipped.
    async fn handle(&mut self, records: &[Record]);
}

/// Which records a service consumes, and in what batches.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub group: String,
    pub topic: String,
    /// Partitions to create the topic with if it does not exist.
    pub partitions: i32,
    pub start: StartAt,
    /// Most records in one batch.
    pub batch: usize,
    /// How long a batch keeps gathering once its first record is there.
    pub linger: Duration,
    /// Where the member's lag is reported (`herald_log_consumer_lag`).
    pub metrics: Registry,
}

/// How often the lag is reported while a batch is being handled: a service
/// stuck on a batch (its store or registry down) shows its lag growing.
const LAG_REFRESH: Duration = Duration::from_secs(5);

impl Subscription {
    /// Consumes the subscription forever: creates the topic, joins the group,
    /// sets `assigned` once the member first reads its partitions (for
    /// readiness), then hands every batch to `handler`
    /// and commits it. Meant to run as a task of its own.
    pub async fn run(
        self,
        log: Arc<dyn Log>,
        assigned: watch::Sender<bool>,
        handler: &mut dyn BatchHandler,
    ) {
        let topic = &self.topic;
        until_answered(&format!("creating topic {topic}"), || {
            log.ensure_topic(topic, self.partitions)
        })
        .await;
        let topics = std::slice::from_ref(topic);
        let mut consumer = until_answered(&format!("joining group {}", self.group), || {
            log.consume(&self.group, topics, self.start)
        })
        .await;
        mirror(consumer.assigned(), assigned);
        self.consume(consumer.as_mut(), handler).await;
    }

    async fn consume(&self, consumer: &mut dyn LogConsumer, handler: &mut dyn BatchHandler) {
        let what = format!("consuming {}", self.topic);
        let mut lag = Lag {
            gauges: self.metrics.consumer_lag(),
            group: &self.group,
            reported: HashSet::new(),
        };
        // A new backoff after each good batch: an outage that ended long ago
        // must not make the next one start at the cap.
        let mut delays = Policy::UNTIL_ANSWERED.delays();
        loop {
            let records = match consumer.next_batch(self.batch, self.linger).await {
                Ok(records) => records,
                Err(e) => {
                    let wait = delays.next().unwrap_or(Policy::UNTIL_ANSWERED.max_delay);
                    tracing::warn!(error = %e, retry_in = ?wait, "{what} failed; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            delays = Policy::UNTIL_ANSWERED.delays();
            lag.report(&*consumer);
            if records.is_empty() {
                continue;
            }
            let mut handling = handler.handle(&records);
            loop {
                tokio::select! {
                    () = &mut handling => break,
                    () = tokio::time::sleep(LAG_REFRESH) => lag.report(&*consumer),
                }
            }
            if let Err(e) = consumer.commit(&records) {
                // Not committed: the batch comes again after a restart or a
                // rebalance, and every consumer here tolerates a repeat.
                tracing::warn!(error = %e, topic = %self.topic, "cannot commit offsets");
            }
        }
    }
}

/// The lag gauges of one member, and which partitions it reported last, so
/// that a partition moved to another member stops being reported here.
struct Lag<'a> {
    gauges: ConsumerLag,
    group: &'a str,
    reported: HashSet<(String, i32)>,
}

impl Lag<'_> {
    fn report(&mut self, consumer: &dyn LogConsumer) {
        let mut now = HashSet::new();
        for p in consumer.lag() {
            self.gauges
                .set(self.group, &p.topic, p.partition, p.records);
            now.insert((p.topic, p.partition));
        }
        for (topic, partition) in self.reported.difference(&now) {
            self.gauges.remove(self.group, topic, *partition);
        }
        self.reported = now;
    }
}

/// Sets `to` once the consumer first has its partitions. It stays set through
/// later rebalances: the service is up, and the log redelivers anything a
/// rebalance interrupts.
fn mirror(mut from: watch::Receiver<bool>, to: watch::Sender<bool>) {
    tokio::spawn(async move {
        if from.wait_for(|assigned| *assigned).await.is_ok() {
            to.send_replace(true);
        }
    });
}
