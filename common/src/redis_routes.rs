//! [`RouteRegistry`] on Redis.
//!
//! Keys (with the default namespace):
//!
//! * `herald:routes:<user>`: a hash, field = node id, value = the route's expiry
//!   in unix milliseconds. The key itself expires with the newest route, so an
//!   abandoned user costs nothing; the per-field expiry lets one node's route
//!   lapse while another's holds (Redis before 7.4 has no per-field TTL).
//! * `herald:node:<node>`: a plain key whose existence is the node's liveness
//!   lease.
//!
//! Every call is one pipelined round trip, whatever the number of users.

use crate::names::Names;
use crate::routes::{RouteError, RouteRegistry};
use crate::time::now_ms;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// HDEL a route field only if it still holds the expiry the caller read.
const DELETE_IF_UNCHANGED: &str = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
     return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

pub struct RedisRoutes {
    names: Names,
    conn: ConnectionManager,
}

fn failed(e: redis::RedisError) -> RouteError {
    RouteError(e.to_string())
}

impl RedisRoutes {
    /// Connects; the connection manager reconnects by itself after Redis
    /// restarts, so one `RedisRoutes` serves a process's whole life.
    pub async fn connect(url: &str, names: Names) -> Result<Self, RouteError> {
        let client = redis::Client::open(url).map_err(failed)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(failed)?;
        Ok(Self { names, conn })
    }
}

#[async_trait]
impl RouteRegistry for RedisRoutes {
    async fn register(
        &self,
        node: &str,
        users: &[String],
        ttl: Duration,
    ) -> Result<(), RouteError> {
        if users.is_empty() {
            return Ok(());
        }
        let expiry = now_ms() + ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        for user in users {
            let key = self.names.route_key(user);
            pipe.hset(&key, node, expiry).ignore();
            // Another node's later expiry must not be shortened by ours:
            // extend only (GT), and set it when the key has none (NX).
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl.as_millis() as u64)
                .arg("GT")
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl.as_millis() as u64)
                .arg("NX")
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(failed)
    }

    async fn unregister(&self, node: &str, users: &[String]) -> Result<(), RouteError> {
        if users.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hdel(self.names.route_key(user), node).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(failed)
    }

    async fn node_heartbeat(&self, node: &str, ttl: Duration) -> Result<(), RouteError> {
        redis::cmd("SET")
            .arg(self.names.node_alive_key(node))
            .arg(now_ms())
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(failed)
    }

    async fn node_gone(&self, node: &str) -> Result<(), RouteError> {
        redis::cmd("DEL")
            .arg(self.names.node_alive_key(node))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(failed)
    }

    async fn lookup(&self, users: &[String]) -> Result<HashMap<String, Vec<String>>, RouteError> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hgetall(self.names.route_key(user));
        }
        let routes: Vec<HashMap<String, i64>> =
            pipe.query_async(&mut conn).await.map_err(failed)?;

        let nodes: Vec<String> = routes
            .iter()
            .flat_map(|r| r.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let alive: HashMap<String, bool> = if nodes.is_empty() {
            HashMap::new()
        } else {
            let mut pipe = redis::pipe();
            for node in &nodes {
                pipe.exists(self.names.node_alive_key(node));
            }
            let flags: Vec<bool> = pipe.query_async(&mut conn).await.map_err(failed)?;
            nodes.into_iter().zip(flags).collect()
        };

        let now = now_ms();
        let mut found = HashMap::new();
        let mut stale = redis::pipe();
        let mut any_stale = false;
        for (user, user_routes) in users.iter().zip(routes) {
            let mut live = Vec::new();
            for (node, expiry) in user_routes {
                if expiry > now && alive.get(&node).copied().unwrap_or(false) {
                    live.push(node);
                } else {
                    // Delete only the value we judged stale: a node that
                    // re-registered meanwhile keeps its fresh route.
                    stale
                        .cmd("EVAL")
                        .arg(DELETE_IF_UNCHANGED)
                        .arg(1)
                        .arg(self.names.route_key(user))
                        .arg(&node)
                        .arg(expiry)
                        .ignore();
                    any_stale = true;
                }
            }
            if !live.is_empty() {
                live.sort();
                found.insert(user.clone(), live);
            }
        }
        if any_stale {
            // Cleaning up is a courtesy: a failure leaves routes that the next
            // lookup ignores again.
            if let Err(e) = stale.query_async::<()>(&mut conn).await {
                tracing::debug!(error = %e, "could not remove stale routes");
            }
        }
        Ok(found)
    }
}
