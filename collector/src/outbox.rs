//! The outbox relay: publishes stored messages that were never marked
//! published (the log was down, the queue was full, or a collector died
//! between storing and publishing). Every collector runs one; two relays
//! publishing the same message make a duplicate that readers drop by seq.

use crate::publisher::PublisherHandle;
use herald_common::retry::Policy;
use herald_common::store::MessageStore;
use std::sync::Arc;
use std::time::Duration;

const PAGE: usize = 500;

pub async fn run(store: Arc<dyn MessageStore>, publisher: PublisherHandle, grace: Duration) {
    let publisher = publisher.publisher();
    let pause = (grace / 2).max(Duration::from_millis(200));
    // A store that does not answer is asked less and less often, up to the
    // usual cap; the first answer brings back the regular pace.
    let unreachable = Policy::UNTIL_ANSWERED.starting_at(pause);
    let mut delays = unreachable.delays();
    loop {
        let result = store.unpublished(grace.as_millis() as i64, PAGE).await;
        if result.is_ok() {
            delays = unreachable.delays();
        }
        match result {
            Ok(pending) if !pending.is_empty() => {
                let count = pending.len();
                let published = publisher.publish(pending).await;
                tracing::info!(count, published, "outbox published stored messages");
                publisher
                    .metrics()
                    .outbox_published
                    .inc_by(published as u64);
                // A full page that went through: more may be waiting.
                if count == PAGE && published == count {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let wait = delays.next().unwrap_or(unreachable.max_delay);
                tracing::warn!(error = %e, retry_in = ?wait, "outbox cannot read the store");
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        tokio::time::sleep(pause).await;
    }
}
