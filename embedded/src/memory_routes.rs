//! [`RouteRegistry`] in process memory: the Redis registry's leases as a map.
//!
//! Layout, mirroring the Redis keys:
//!
//! * `routes`: user -> {node -> expiry}, like the `routes:<user>` hash whose
//!   field values are expiries;
//! * `nodes`: node -> expiry of its liveness lease, like the `node:<node>` key
//!   with its TTL.
//!
//! Expiries are [`tokio::time::Instant`]s, so tests can move time with
//! `tokio::time::pause`/`advance` instead of sleeping through leases.
//!
//! Lapsed routes are removed by the lookup that finds them (as in Redis), and
//! every so often by a sweep of the whole map, which stands in for Redis
//! expiring the keys of users nobody looks up any more.

use async_trait::async_trait;
use herald_common::routes::{RouteError, RouteRegistry};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// How often a write also sweeps lapsed routes and nodes out of the maps:
/// rarely enough to cost nothing, often enough that abandoned users and dead
/// nodes do not accumulate.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The registry. Every call is a few map operations under one lock, so it
/// is as atomic as the Redis pipeline it replaces, and then some.
pub struct MemoryRoutes {
    state: Mutex<State>,
}

/// The maps, and when they are next swept.
struct State {
    routes: HashMap<String, HashMap<String, Instant>>,
    nodes: HashMap<String, Instant>,
    next_sweep: Instant,
}

impl Default for MemoryRoutes {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRoutes {
    /// An empty registry: no routes, no live nodes.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                routes: HashMap::new(),
                nodes: HashMap::new(),
                next_sweep: Instant::now() + SWEEP_EVERY,
            }),
        }
    }

    /// Locks the maps. Poisoning is ignored: every update leaves them
    /// consistent, so a panic elsewhere is no reason to stop routing.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Whether `node`'s liveness lease holds at `now`.
    fn alive(&self, node: &str, now: Instant) -> bool {
        self.nodes.get(node).is_some_and(|expiry| *expiry > now)
    }

    /// Drops every lapsed lease once per [`SWEEP_EVERY`]: routes whose own
    /// lease lapsed or whose node is no longer alive, and dead nodes. It
    /// removes exactly what a lookup of every user would, so it changes no
    /// answer, only memory use.
    fn sweep_if_due(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        self.nodes.retain(|_, expiry| *expiry > now);
        let nodes = &self.nodes;
        self.routes.retain(|_, user_routes| {
            user_routes
                .retain(|node, expiry| *expiry > now && nodes.get(node).is_some_and(|e| *e > now));
            !user_routes.is_empty()
        });
    }
}

#[async_trait]
impl RouteRegistry for MemoryRoutes {
    async fn register(
        &self,
        node: &str,
        users: &[String],
        ttl: Duration,
    ) -> Result<(), RouteError> {
        let now = Instant::now();
        let expiry = now + ttl;
        let mut state = self.lock();
        for user in users {
            // Like HSET: the latest registration sets the expiry, even if
            // shorter than the one it replaces.
            state
                .routes
                .entry(user.clone())
                .or_default()
                .insert(node.to_string(), expiry);
        }
        state.sweep_if_due(now);
        Ok(())
    }

    async fn unregister(&self, node: &str, users: &[String]) -> Result<(), RouteError> {
        let mut state = self.lock();
        for user in users {
            if let Some(user_routes) = state.routes.get_mut(user) {
                user_routes.remove(node);
                if user_routes.is_empty() {
                    state.routes.remove(user);
                }
            }
        }
        Ok(())
    }

    async fn node_heartbeat(&self, node: &str, ttl: Duration) -> Result<(), RouteError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.nodes.insert(node.to_string(), now + ttl);
        state.sweep_if_due(now);
        Ok(())
    }

    async fn node_gone(&self, node: &str) -> Result<(), RouteError> {
        // Only the lease ends, as in Redis: the node's routes stop counting at
        // once and are removed by the lookups (or sweep) that find them.
        self.lock().nodes.remove(node);
        Ok(())
    }

    async fn live_nodes(&self) -> Result<Vec<String>, RouteError> {
        let now = Instant::now();
        let state = self.lock();
        let mut nodes: Vec<String> = state
            .nodes
            .iter()
            .filter(|(_, expiry)| **expiry > now)
            .map(|(node, _)| node.clone())
            .collect();
        nodes.sort();
        Ok(nodes)
    }

    async fn lookup(&self, users: &[String]) -> Result<HashMap<String, Vec<String>>, RouteError> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut found = HashMap::new();
        for user in users {
            let Some(mut user_routes) = state.routes.remove(user) else {
                continue;
            };
            user_routes.retain(|node, expiry| *expiry > now && state.alive(node, now));
            if user_routes.is_empty() {
                continue;
            }
            let mut live: Vec<String> = user_routes.keys().cloned().collect();
            live.sort();
            found.insert(user.clone(), live);
            state.routes.insert(user.clone(), user_routes);
        }
        Ok(found)
    }
}
