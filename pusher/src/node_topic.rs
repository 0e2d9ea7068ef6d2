//! Consuming this node's own topic and handing each event to the hub.
//!
//! An event is framed only if a connection here follows its stream, and then
//! once, whatever the number of followers: 10,000 subscribers of a topic share
//! one frame.

use crate::frames::{self, client_stream};
use crate::hub::{Hub, LiveEvent};
use herald_common::envelope::Event;
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
            if !hub.has(&event.stream) {
                continue;
            }
            let frame = frames::msg(&event, client_stream(&event.stream));
            let live = Arc::new(LiveEvent {
                stream: event.stream,
                seq: event.seq,
                frame,
            });
            hub.deliver(&live);
        }
        // Handing to the connections' queues is all this node promises for a
        // live event; anything lost later is replayed from the store.
        if let Err(e) = consumer.commit(&records) {
            tracing::debug!(error = %e, "cannot commit node topic offsets");
        }
    }
}
