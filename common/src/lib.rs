//! Herald's shared vocabulary.
//!
//! Services meet only through Kafka, Redis, MongoDB and HTTP. What they must
//! agree on to do so lives here: the envelope that travels through the log,
//! the naming of topics, keys and collections, the identity a token carries,
//! the configuration (file, environment and flags), and three interfaces
//! through which every service reaches the outside world:
//!
//! * [`log::Log`]: an ordered, partitioned, durable log (Kafka);
//! * [`routes::RouteRegistry`]: which node holds which user (Redis);
//! * [`store::MessageStore`]: the durable record of every message (MongoDB).
//!
//! Each interface states its contract in its doc comment; the adapters in
//! [`kafka`], [`redis_routes`] and [`mongo_store`] implement it on the real
//! servers.

pub mod config;
pub mod envelope;
pub mod http;
pub mod identity;
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod mongo_store;
pub mod names;
pub mod redis_routes;
pub mod routes;
pub mod store;
pub mod telemetry;
pub mod time;
