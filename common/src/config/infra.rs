//! The `[infra]` section: where the shared servers are and how names are
//! derived. The collector, dispatcher and pusher read it; they must agree on
//! it to find each other's data.

use crate::names::Names;
use serde::{Deserialize, Serialize};

/// Where the shared infrastructure is and how names are derived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Infra {
    /// Prefix of every topic, Redis key and the MongoDB database name.
    pub namespace: String,
    /// Kafka bootstrap servers, comma separated.
    pub kafka_brokers: String,
    /// How long a publish may wait for the broker before it counts as failed.
    pub kafka_timeout_ms: u64,
    /// Replication factor of topics a service creates (1 for a single broker).
    pub kafka_replication: i32,
    /// Longest a consumer's fetch waits at the broker for records
    /// (librdkafka's `fetch.wait.max.ms`). Kafka answers a waiting fetch as
    /// soon as records arrive, so there this only bounds idle polling; a
    /// broker that sits out the whole window (tansu) adds up to this much
    /// latency per hop, and wants a small value.
    pub kafka_fetch_wait_ms: u64,
    /// How long a producer holds a record to batch it with the next ones
    /// (librdkafka's `linger.ms`): latency added to every publish.
    pub kafka_linger_ms: u64,
    /// Partitions of the ingest and events topics when a service creates them.
    pub partitions: i32,
    /// Redis URL (route registry); for a Redis Cluster, a comma-separated
    /// list of some of its masters.
    pub redis_url: String,
    /// The route registry's Redis is a Redis Cluster (implied by several URLs).
    pub redis_cluster: bool,
    /// MongoDB connection string (message store).
    pub mongo_uri: String,
}

impl Default for Infra {
    fn default() -> Self {
        Self {
            namespace: "herald".into(),
            kafka_brokers: "127.0.0.1:9092".into(),
            kafka_timeout_ms: 10_000,
            kafka_replication: 1,
            kafka_fetch_wait_ms: 100,
            kafka_linger_ms: 2,
            partitions: 8,
            redis_url: "redis://127.0.0.1:6379/".into(),
            redis_cluster: false,
            mongo_uri: "mongodb://127.0.0.1:27017/?directConnection=true".into(),
        }
    }
}

impl Infra {
    pub fn names(&self) -> Names {
        Names::new(self.namespace.clone())
    }
}

/// The `[infra]` flags, each with its environment variable. Unset ones leave
/// the file's (or the default) value.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct InfraFlags {
    /// Prefix of every topic, Redis key and the MongoDB database name.
    #[arg(long, env = "HERALD_NAMESPACE")]
    pub namespace: Option<String>,

    /// Kafka bootstrap servers, comma separated.
    #[arg(long, env = "HERALD_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Bound on one publish to Kafka, ms.
    #[arg(long, env = "HERALD_KAFKA_TIMEOUT_MS")]
    pub kafka_timeout_ms: Option<u64>,

    /// Replication factor of topics a service creates.
    #[arg(long, env = "HERALD_KAFKA_REPLICATION")]
    pub kafka_replication: Option<i32>,

    /// Longest a consumer's fetch waits at the broker for records, ms
    /// (fetch.wait.max.ms).
    #[arg(long, env = "HERALD_KAFKA_FETCH_WAIT_MS")]
    pub kafka_fetch_wait_ms: Option<u64>,

    /// How long a producer holds a record to batch more with it, ms
    /// (linger.ms).
    #[arg(long, env = "HERALD_KAFKA_LINGER_MS")]
    pub kafka_linger_ms: Option<u64>,

    /// Partitions of the ingest and events topics when created.
    #[arg(long, env = "HERALD_PARTITIONS")]
    pub partitions: Option<i32>,

    /// Redis URL of the route registry (comma-separated seeds of a Redis Cluster).
    #[arg(long, env = "HERALD_REDIS_URL")]
    pub redis_url: Option<String>,

    /// The route registry's Redis is a Redis Cluster.
    #[arg(long, env = "HERALD_REDIS_CLUSTER", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub redis_cluster: Option<bool>,

    /// MongoDB connection string of the message store.
    #[arg(long, env = "HERALD_MONGO_URI")]
    pub mongo_uri: Option<String>,
}
