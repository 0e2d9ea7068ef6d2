//! [`RouteRegistry`] on Redis.
//!
//! Keys (with the default namespace):
//!
//! * `herald:routes:<stream>` (`herald:routes:user:u1`,
//!   `herald:routes:topic:match-42`): a hash, field = node id, value = the
//!   route's expiry in unix milliseconds. The key itself expires with the
//!   newest route, so an abandoned stream costs nothing; the per-field expiry
//!   lets one node's route lapse while another's holds (Redis before 7.4 has
//!   no per-field TTL).
//! * `herald:node:<node>`: a plain key whose existence is the node's liveness
//!   lease.
//! * `herald:nodes`: a sorted set of node ids scored by their lease's expiry,
//!   so a broadcast finds every live node in one read.
//!
//! Every call is one pipelined round trip, whatever the number of users.

use async_trait::async_trait;
use herald_common::names::Names;
use herald_common::routes::{RouteError, RouteRegistry};
use herald_common::time::now_ms;
use redis::aio::ConnectionManager;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio::sync::Mutex;

/// HDEL a route field only if it still holds the expiry the caller read.
const DELETE_IF_UNCHANGED: &str = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
     return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

pub struct RedisRoutes {
    names: Names,
    client: redis::Client,
    /// The live connection, dropped after any failure and made anew by the
    /// next call: a connection that once failed is never trusted to recover.
    conn: Mutex<Option<ConnectionManager>>,
}

/// Bound on any one registry call, connecting included: a registry that does
/// not answer is treated like one that refused.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

fn failed(e: redis::RedisError) -> RouteError {
    RouteError::from_cause("", e)
}

impl RedisRoutes {
    /// Prepares the client; connecting waits for the first call, so a node
    /// starts (and keeps its sockets) while Redis is down.
    pub async fn connect(url: &str, names: Names) -> Result<Self, RouteError> {
        let client = redis::Client::open(url).map_err(failed)?;
        Ok(Self {
            names,
            client,
            conn: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, RouteError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(0);
        let conn = tokio::time::timeout(
            CALL_TIMEOUT,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| RouteError::new("connecting timed out"))?
        .map_err(failed)?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs a pipeline as one round trip.
    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, RouteError> {
        let mut conn = self.connection().await?;
        let outcome =
            match tokio::time::timeout(CALL_TIMEOUT, pipe.query_async::<T>(&mut conn)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => failed(e),
                Err(_) => RouteError::new("call timed out"),
            };
        *self.conn.lock().await = None;
        Err(outcome)
    }
}

#[async_trait]
impl RouteRegistry for RedisRoutes {
    async fn register(
        &self,
        node: &str,
        streams: &[String],
        ttl: Duration,
    ) -> Result<(), RouteError> {
        if streams.is_empty() {
            return Ok(());
        }
        let expiry = now_ms() + ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        for stream in streams {
            let key = self.names.route_key(stream);
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
        self.query::<()>(&pipe).await
    }

    async fn unregister(&self, node: &str, streams: &[String]) -> Result<(), RouteError> {
        if streams.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for stream in streams {
            pipe.hdel(self.names.route_key(stream), node).ignore();
        }
        self.query::<()>(&pipe).await
    }

    async fn node_heartbeat(&self, node: &str, ttl: Duration) -> Result<(), RouteError> {
        let now = now_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.names.node_alive_key(node))
            .arg(now)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .ignore();
        let nodes = self.names.nodes_key();
        pipe.zadd(&nodes, node, now + ttl.as_millis() as i64)
            .ignore();
        pipe.zrembyscore(&nodes, "-inf", now).ignore();
        self.query::<()>(&pipe).await
    }

    async fn node_gone(&self, node: &str) -> Result<(), RouteError> {
        let mut pipe = redis::pipe();
        pipe.del(self.names.node_alive_key(node)).ignore();
        pipe.zrem(self.names.nodes_key(), node).ignore();
        self.query::<()>(&pipe).await
    }

    async fn live_nodes(&self) -> Result<Vec<String>, RouteError> {
        let mut pipe = redis::pipe();
        pipe.zrangebyscore(self.names.nodes_key(), now_ms(), "+inf");
        let (mut nodes,): (Vec<String>,) = self.query(&pipe).await?;
        nodes.sort();
        Ok(nodes)
    }

    async fn lookup(&self, streams: &[String]) -> Result<HashMap<String, Vec<String>>, RouteError> {
        if streams.is_empty() {
            return Ok(HashMap::new());
        }
        let mut pipe = redis::pipe();
        for stream in streams {
            pipe.hgetall(self.names.route_key(stream));
        }
        let routes: Vec<HashMap<String, i64>> = self.query(&pipe).await?;

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
            let flags: Vec<bool> = self.query(&pipe).await?;
            nodes.into_iter().zip(flags).collect()
        };

        let now = now_ms();
        let mut found = HashMap::new();
        let mut stale = redis::pipe();
        let mut any_stale = false;
        for (stream, stream_routes) in streams.iter().zip(routes) {
            let mut live = Vec::new();
            for (node, expiry) in stream_routes {
                if expiry > now && alive.get(&node).copied().unwrap_or(false) {
                    live.push(node);
                } else {
                    // Delete only the value we judged stale: a node that
                    // re-registered meanwhile keeps its fresh route.
                    stale
                        .cmd("EVAL")
                        .arg(DELETE_IF_UNCHANGED)
                        .arg(1)
                        .arg(self.names.route_key(stream))
                        .arg(&node)
                        .arg(expiry)
                        .ignore();
                    any_stale = true;
                }
            }
            if !live.is_empty() {
                live.sort();
                found.insert(stream.clone(), live);
            }
        }
        if any_stale {
            // Cleaning up is a courtesy: a failure leaves routes that the next
            // lookup ignores again.
            if let Err(e) = self.query::<()>(&stale).await {
                tracing::debug!(error = %e, "could not remove stale routes");
            }
        }
        Ok(found)
    }
}
