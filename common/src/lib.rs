//! Herald's shared vocabulary.
//!
//! Services meet only through the log, the route registry, the message store
//! and HTTP. What they must agree on to do so lives here: the envelope that
//! travels through the log, the naming of topics, keys and collections, the
//! identity a token carries, the configuration (file, environment and
//! flags), the HTTP conventions, and the three interfaces (ports) through
//! which every service reaches the outside world:
//!
//! * [`log::Log`]: an ordered, partitioned, durable log (Kafka);
//! * [`routes::RouteRegistry`]: which node follows which stream (Redis);
//! * [`store::MessageStore`]: the durable record of every message (MongoDB).
//!
//! Each interface states its contract in its doc comment. The adapters live
//! beside this crate, two families side by side: `herald-cluster` on the real
//! servers (Kafka, Redis, MongoDB) and `herald-embedded` in one process (an
//! in-process bus, a map, SQLite); `herald-contract` holds both to the same
//! test cases. This crate does no I/O of its own beyond HTTP serving, so a
//! service compiles none of the servers' clients unless it wires them.

pub mod config;
pub mod envelope;
pub mod error;
pub mod http;
pub mod identity;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod names;
pub mod retry;
pub mod routes;
pub mod store;
pub mod telemetry;
pub mod time;
