//! The names through which services find each other's data.
//!
//! Every Kafka topic, Redis key and MongoDB database is derived from one
//! namespace (default `herald`), so a deployment reads `herald.events`,
//! `herald:routes:u1` and database `herald`, while tests give each case its own
//! namespace and run side by side on one set of servers without seeing each
//! other's traffic.

/// Derives topic, key and database names from a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    namespace: String,
}

impl Names {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The topic business producers write to; the collector consumes it.
    pub fn ingest_topic(&self) -> String {
        format!("{}.ingest", self.namespace)
    }

    /// The topic the collector publishes stored messages to; dispatchers
    /// consume it.
    pub fn events_topic(&self) -> String {
        format!("{}.events", self.namespace)
    }

    /// The topic of one push node: only that node consumes it.
    pub fn node_topic(&self, node_id: &str) -> String {
        format!("{}.node.{}", self.namespace, node_id)
    }

    /// Redis hash of one stream's routes: field = node id, value = expiry
    /// (unix ms). `stream` is a storage name: `user:u1`, `topic:match-42`.
    pub fn route_key(&self, stream: &str) -> String {
        format!("{}:routes:{}", self.namespace, stream)
    }

    /// Redis sorted set of nodes, scored by the expiry of their liveness lease.
    pub fn nodes_key(&self) -> String {
        format!("{}:nodes", self.namespace)
    }

    /// Redis key whose existence says a node is alive.
    pub fn node_alive_key(&self, node_id: &str) -> String {
        format!("{}:node:{}", self.namespace, node_id)
    }

    /// The MongoDB database holding streams, entries and messages.
    pub fn database(&self) -> String {
        // MongoDB database names may not contain '.', and tests use namespaces
        // like `t.case`; map it rather than refuse.
        self.namespace.replace(['.', ' ', '/', '\\', '$', '"'], "_")
    }
}

/// Consumer group names. A group per role: every dispatcher shares one group so
/// the events partitions are split among them; every collector shares one for
/// the ingest topic; each pusher node has its own, so a restarted node with the
/// same id continues its topic where it left off.
impl Names {
    pub fn dispatcher_group(&self) -> String {
        format!("{}-dispatcher", self.namespace)
    }

    pub fn collector_group(&self) -> String {
        format!("{}-collector", self.namespace)
    }

    pub fn pusher_group(&self, node_id: &str) -> String {
        format!("{}-pusher-{}", self.namespace, node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_namespace_gives_the_documented_names() {
        let names = Names::new("herald");
        assert_eq!(names.ingest_topic(), "herald.ingest");
        assert_eq!(names.events_topic(), "herald.events");
        assert_eq!(names.node_topic("a"), "herald.node.a");
        assert_eq!(names.route_key("user:u1"), "herald:routes:user:u1");
        assert_eq!(names.nodes_key(), "herald:nodes");
        assert_eq!(names.node_alive_key("a"), "herald:node:a");
        assert_eq!(names.database(), "herald");
    }

    #[test]
    fn database_name_never_holds_a_dot() {
        assert_eq!(Names::new("t.case-1").database(), "t_case-1");
    }
}
