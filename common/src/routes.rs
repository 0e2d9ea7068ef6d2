//! The route registry: which push nodes follow which stream (Redis in a
//! cluster): a node follows `user:<id>` while it holds a connection of that
//! user, and `topic:<name>` while one of its connections subscribes to it.
//!
//! Contract:
//!
//! * **Soft state with a lease.** A route lives for the `ttl` given when it was
//!   last registered; a node keeps its routes by re-registering them before
//!   they lapse (its heartbeat). A node that dies stops refreshing, and its
//!   routes vanish on their own: nothing needs to clean up after a crash.
//! * **Liveness.** A node is alive while its own lease (`node_heartbeat`)
//!   holds. [`RouteRegistry::lookup`] returns only routes whose lease holds on
//!   nodes that are alive, and removes the rest as it finds them.
//! * **No ordering between nodes.** Registrations from different nodes are
//!   independent. One node's calls take effect in the order it makes them.
//! * **Errors.** A failed call changed nothing or only part of what it was
//!   asked; callers retry (registration) or treat the lookup as not done
//!   (dispatch retries before committing). Routes are an optimisation of
//!   delivery, never its record: a route lost in any failure costs at most a
//!   live delivery, which replay from the store makes good.
//!
//! The contract suite (`contract/tests/routes.rs`) runs these points on both
//! adapters.

use crate::error::{Cause, described};
use async_trait::async_trait;
use std::collections::HashMap;
use std::error::Error;
use std::time::Duration;

/// Why a registry call failed: a message, and the client's own error as the
/// `source()` when one caused it (see [`crate::error`]).
#[derive(Debug, thiserror::Error)]
#[error("route registry unavailable: {message}")]
pub struct RouteError {
    pub message: String,
    #[source]
    pub cause: Option<Cause>,
}

impl RouteError {
    /// Failed for a reason of the adapter's own (a call that timed out).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            cause: None,
        }
    }

    /// Failed because the client failed with `cause` while doing `context`
    /// (empty: the cause says it all).
    pub fn from_cause(context: &str, cause: impl Error + Send + Sync + 'static) -> Self {
        let (message, cause) = described(context, cause);
        Self {
            message,
            cause: Some(cause),
        }
    }
}

#[async_trait]
pub trait RouteRegistry: Send + Sync + 'static {
    /// Records (or refreshes) that `node` holds connections of `users`, for `ttl`.
    async fn register(&self, node: &str, users: &[String], ttl: Duration)
    -> Result<(), RouteError>;

    /// Removes `node`'s routes of `users` (their last local connection closed).
    async fn unregister(&self, node: &str, users: &[String]) -> Result<(), RouteError>;

    /// Records (or refreshes) that `node` is alive, for `ttl`.
    async fn node_heartbeat(&self, node: &str, ttl: Duration) -> Result<(), RouteError>;

    /// Forgets `node` entirely: its liveness lease ends now (clean shutdown).
    async fn node_gone(&self, node: &str) -> Result<(), RouteError>;

    /// The live nodes following each of `streams`, in one round trip's worth
    /// of work however many are asked about. Streams without routes are absent.
    async fn lookup(&self, streams: &[String]) -> Result<HashMap<String, Vec<String>>, RouteError>;

    /// Every live node (for broadcasts), sorted.
    async fn live_nodes(&self) -> Result<Vec<String>, RouteError>;
}
