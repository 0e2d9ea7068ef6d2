//! Herald on its servers: the three interfaces of `herald_common` on Kafka,
//! Redis and MongoDB, for the cluster services' `run`.
//!
//! * [`KafkaLog`] is the log ([`herald_common::log::Log`]) on Kafka, through
//!   librdkafka: idempotent `acks=all` producer, explicitly committed
//!   consumer groups.
//! * [`RedisRoutes`] is the route registry
//!   ([`herald_common::routes::RouteRegistry`]) on one Redis server or a
//!   Redis Cluster ([`RedisConfig`]): leases as Redis hashes and keys with
//!   expiries, judged by Redis's clock, one pipelined round trip per call.
//! * [`MongoStore`] is the message store
//!   ([`herald_common::store::MessageStore`]) on a MongoDB replica set: one
//!   transaction per append.
//!
//! They stand beside `herald-embedded`'s in-process adapters, which implement
//! the same interfaces for `herald standalone`; `herald-contract` runs one
//! suite of cases per interface on both. A service's `start` takes the
//! interfaces, so it never knows which family it runs on; only its `run`
//! picks this one.

mod kafka_log;
mod mongo_store;
mod redis_link;
mod redis_routes;

pub use kafka_log::{KafkaConfig, KafkaLog};
pub use mongo_store::MongoStore;
pub use redis_link::RedisConfig;
pub use redis_routes::RedisRoutes;
