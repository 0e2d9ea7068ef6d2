//! Herald in one process: the three interfaces of `herald_common` without
//! Kafka, Redis or MongoDB.
//!
//! * [`MemoryLog`] is the log ([`herald_common::log::Log`]) as an in-process
//!   bus: partitioned topics, consumer groups with committed offsets, wakeups
//!   instead of polling. Records live as long as the process.
//! * [`MemoryRoutes`] is the route registry
//!   ([`herald_common::routes::RouteRegistry`]): leases kept in a map.
//! * [`SqliteStore`] is the message store
//!   ([`herald_common::store::MessageStore`]) on one SQLite file, with the
//!   same tables, transaction and answers as the MongoDB store.
//!
//! They stand beside `herald-cluster`'s adapters on the real servers, as the
//! other family of the same interfaces; `herald-contract` runs one suite of
//! cases per interface on both.
//!
//! Only the store is durable. That is enough for Herald's guarantee in one
//! process: a message is accepted once the store has it, and whatever the log
//! or the routes lose in a restart is replayed from the store (the outbox
//! republishes unpublished messages; clients resume from their seq).

mod memory_log;
mod memory_routes;
mod sqlite_store;

pub use memory_log::MemoryLog;
pub use memory_routes::MemoryRoutes;
pub use sqlite_store::SqliteStore;
