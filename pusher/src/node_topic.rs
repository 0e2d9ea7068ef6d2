//! Consuming this node's own topic and handing each event to the hub.
//!
//! An event is framed only if one of its recipient's connections is here, and
//! then once, whatever the number of that user's local connections.

use crate::frames::{self, USER_STREAM};
use crate::hub::{Hub, LiveEvent};
use herald_common::envelope::{Event, stream_user};
use herald_common::log::LogConsumer;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 1000;

pub async fn run(mut consumer: Box<dyn LogConsumer>, hub: Arc<Hub>) {
    loop {
        let records = match consumer.next_batch(BATCH, Duration::from_millis(1)).await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "node topic consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for r in &records {
            let event: Event = match serde_json::from_slice(&r.value) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(offset = r.offset, error = %e, "skipping invalid node event");
                    continue;
                }
            };
            let Some(user) = stream_user(&event.stream) else {
                continue;
            };
            if !hub.has(user) {
                continue;
            }
            let live = Arc::new(LiveEvent {
                seq: event.seq,
                frame: frames::msg(&event, USER_STREAM),
            });
            hub.deliver(user, &live);
        }
        // Handing to the connections' queues is all this node promises for a
        // live event; anything lost later is replayed from the store.
        if let Err(e) = consumer.commit(&records) {
            tracing::debug!(error = %e, "cannot commit node topic offsets");
        }
    }
}
