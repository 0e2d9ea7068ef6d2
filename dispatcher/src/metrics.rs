//! What the dispatcher counts and times, registered in the process's
//! registry and read at `GET /metrics`.

use herald_common::metrics::{Counter, Latency, Registry};

pub struct Metrics {
    pub forwarded: Counter,
    pub offline: Counter,
    pub invalid: Counter,
    pub given_up: Counter,
    /// From a message's acceptance (its `ts`) to its event's consumption here.
    pub consume_delay: Latency,
    /// One batch's route lookup in the registry.
    pub route_lookup: Latency,
    /// One round of publishes to node topics, until acknowledged.
    pub node_publish: Latency,
}

impl Metrics {
    pub fn register(registry: &Registry) -> Self {
        Self {
            forwarded: registry.counter(
                "herald_dispatcher_forwarded",
                "Node-topic records acknowledged.",
            ),
            offline: registry.counter(
                "herald_dispatcher_offline",
                "User and topic events whose stream had no live route.",
            ),
            invalid: registry.counter(
                "herald_dispatcher_invalid",
                "Events skipped: not JSON, or an unknown kind of stream.",
            ),
            given_up: registry.counter(
                "herald_dispatcher_given_up",
                "Node-topic records abandoned after their attempts (replay delivers them).",
            ),
            consume_delay: registry.latency(
                "herald_dispatcher_consume_delay_seconds",
                "From a message's acceptance by the collector to its event's consumption by a dispatcher.",
            ),
            route_lookup: registry.latency(
                "herald_dispatcher_route_lookup_seconds",
                "Duration of one batch's route lookup in the registry, retries included.",
            ),
            node_publish: registry.latency(
                "herald_dispatcher_node_publish_seconds",
                "Duration of one publish round to node topics, until acknowledged.",
            ),
        }
    }
}
