//! Consuming this node's own topic and handing each event to the hub.
//!
//! An event is framed only if a connection here follows its stream, and then
//! once, whatever the number of followers: 10,000 subscribers of a topic share
//! one frame.

use crate::frames::{self, client_stream};
use crate::hub::{Hub, LiveEvent};
use crate::metrics::Metrics;
use async_trait::async_trait;
use herald_common::envelope::Event;
use herald_common::log::{BatchHandler, Record, StartAt, Subscription};
use herald_common::metrics::Registry;
use herald_common::names::Names;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 1000;

/// The node topic of `node_id`, read by this node alone: one partition, so
/// the whole topic is one ordered sequence.
pub fn subscription(names: &Names, node_id: &str, metrics: &Registry) -> Subscription {
    Subscription {
        group: names.pusher_group(node_id),
        topic: names.node_topic(node_id),
        partitions: 1,
        start: StartAt::Earliest,
        batch: BATCH,
        linger: Duration::from_millis(1),
        metrics: metrics.clone(),
    }
}

pub struct NodeTopic {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl BatchHandler for NodeTopic {
    /// Handing to the connections' queues is all this node promises for a
    /// live event; anything lost later is replayed from the store.
    async fn handle(&mut self, records: &[Record]) {
        for r in records {
            let event: Event = match serde_json::from_slice(&r.value) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(offset = r.offset, error = %e, "skipping invalid node event");
                    continue;
                }
            };
            self.metrics.consume_delay.since_accepted(event.ts);
            if !self.hub.has(&event.stream) {
                continue;
            }
            let frame = frames::msg(&event, client_stream(&event.stream));
            let live = Arc::new(LiveEvent {
                stream: event.stream,
                seq: event.seq,
                frame,
            });
            self.hub.deliver(&live);
            self.metrics.accept_to_handoff.since_accepted(event.ts);
        }
    }
}
