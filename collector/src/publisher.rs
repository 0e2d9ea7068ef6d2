//! Publishing stored messages to the events topic, and marking them published
//! once the log has them. A message whose publish fails is left unmarked for
//! the outbox; nothing here holds the only copy of anything.

use crate::metrics::Metrics;
use herald_common::envelope::Event;
use herald_common::log::{Log, OutgoingRecord};
use herald_common::store::MessageStore;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A message id with its events, one per stream it was appended to.
pub type Stored = (String, Vec<Event>);

pub struct Publisher {
    log: Arc<dyn Log>,
    store: Arc<dyn MessageStore>,
    topic: String,
    metrics: Arc<Metrics>,
}

impl Publisher {
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Publishes every event of `messages`, in order, and marks published the
    /// messages whose events all made it. Returns how many were marked.
    pub async fn publish(&self, messages: Vec<Stored>) -> usize {
        let records: Vec<OutgoingRecord> = messages
            .iter()
            .flat_map(|(_, events)| events.iter())
            .map(|e| OutgoingRecord {
                topic: self.topic.clone(),
                key: e.partition_key().to_string(),
                value: serde_json::to_vec(e).expect("events serialise").into(),
            })
            .collect();
        let mut results = self
            .metrics
            .events_publish
            .time(self.log.publish(records))
            .await
            .into_iter();
        let mut done = Vec::new();
        let mut failed = 0;
        for (id, events) in messages {
            let outcomes: Vec<bool> = results
                .by_ref()
                .take(events.len())
                .map(|r| r.is_ok())
                .collect();
            if outcomes.iter().all(|ok| *ok) {
                done.push(id);
            } else {
                failed += 1;
            }
        }
        self.metrics.published.inc_by(done.len() as u64);
        if failed > 0 {
            self.metrics.publish_failed.inc_by(failed);
            tracing::warn!(failed, "publish failed; the outbox will retry");
        }
        if let Err(e) = self.store.mark_published(&done).await {
            // Unmarked messages are published again by the outbox: readers
            // drop the duplicate by seq.
            tracing::warn!(error = %e, "could not mark messages published");
        }
        done.len()
    }
}

/// Hands freshly stored messages to the publishing task without waiting.
#[derive(Clone)]
pub struct PublisherHandle {
    publisher: Arc<Publisher>,
    queue: mpsc::Sender<Vec<Stored>>,
}

impl PublisherHandle {
    /// Queues messages for publishing. When the queue is full (the log is slow
    /// or down) they are left to the outbox, which finds them in the store.
    pub fn offer(&self, messages: Vec<Stored>) {
        if messages.is_empty() {
            return;
        }
        if self.queue.try_send(messages).is_err() {
            tracing::debug!("publish queue full; leaving messages to the outbox");
        }
    }

    pub fn publisher(&self) -> Arc<Publisher> {
        self.publisher.clone()
    }
}

pub fn spawn(
    log: Arc<dyn Log>,
    store: Arc<dyn MessageStore>,
    topic: String,
    metrics: Arc<Metrics>,
) -> PublisherHandle {
    let publisher = Arc::new(Publisher {
        log,
        store,
        topic,
        metrics,
    });
    let (queue, mut incoming) = mpsc::channel::<Vec<Stored>>(256);
    let worker = publisher.clone();
    tokio::spawn(async move {
        while let Some(mut batch) = incoming.recv().await {
            // Whatever queued meanwhile goes in the same round of sends.
            while let Ok(more) = incoming.try_recv() {
                batch.extend(more);
            }
            worker.publish(batch).await;
        }
    });
    PublisherHandle { publisher, queue }
}
