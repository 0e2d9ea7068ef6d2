//! What a push node counts and times, registered in the process's registry
//! and read at `GET /metrics`.

use crate::hub::Hub;
use herald_common::metrics::{Latency, Registry};
use std::sync::Arc;

pub struct Metrics {
    /// From a message's acceptance (its `ts`) to its consumption from this
    /// node's topic.
    pub consume_delay: Latency,
    /// From a message's acceptance to its hand-off to the queues of the
    /// connections here that follow its stream. The socket write comes
    /// after, in each connection's own task.
    pub accept_to_handoff: Latency,
}

impl Metrics {
    /// Registers the node's metrics; the gauges read `hub` at each scrape.
    pub fn register(registry: &Registry, hub: &Arc<Hub>) -> Self {
        let connections = hub.clone();
        registry.sampled_gauge(
            "herald_pusher_connections",
            "Open WebSocket connections.",
            move || connections.connection_count() as i64,
        );
        let streams = hub.clone();
        registry.sampled_gauge(
            "herald_pusher_streams",
            "Distinct streams followed on the node.",
            move || streams.streams().len() as i64,
        );
        Self {
            consume_delay: registry.latency(
                "herald_pusher_consume_delay_seconds",
                "From a message's acceptance by the collector to its consumption from the node topic.",
            ),
            accept_to_handoff: registry.latency(
                "herald_pusher_accept_to_handoff_seconds",
                "From a message's acceptance by the collector to its hand-off to the following connections' queues.",
            ),
        }
    }
}
