//! Command-line / environment configuration shared by the services.
//!
//! Every flag has an environment variable (`HERALD_...`), so the same binary is
//! configured by flags in a terminal and by environment in a container.

use crate::names::Names;
use clap::Args;

/// Where the shared infrastructure is and how names are derived.
#[derive(Args, Clone, Debug)]
pub struct InfraArgs {
    /// Prefix of every topic, Redis key and the MongoDB database name.
    #[arg(long, env = "HERALD_NAMESPACE", default_value = "herald")]
    pub namespace: String,

    /// Kafka bootstrap servers, comma separated.
    #[arg(long, env = "HERALD_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// How long a publish may wait for the broker before it counts as failed.
    #[arg(long, env = "HERALD_KAFKA_TIMEOUT_MS", default_value_t = 10_000)]
    pub kafka_timeout_ms: u64,

    /// Replication factor of topics a service creates (1 for a single broker).
    #[arg(long, env = "HERALD_KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i32,

    /// Partitions of the ingest and events topics when a service creates them.
    #[arg(long, env = "HERALD_PARTITIONS", default_value_t = 8)]
    pub partitions: i32,

    /// Redis URL (route registry).
    #[arg(
        long,
        env = "HERALD_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,

    /// MongoDB connection string (message store).
    #[arg(
        long,
        env = "HERALD_MONGO_URI",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    pub mongo_uri: String,
}

impl InfraArgs {
    pub fn names(&self) -> Names {
        Names::new(self.namespace.clone())
    }
}

/// The shared secret that business systems present to the collector and
/// authsvc as `Authorization: Bearer <api key>`.
#[derive(Args, Clone, Debug)]
pub struct ApiKeyArgs {
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: String,
}
