//! [`RouteRegistry`] on Redis: one server or a Redis Cluster.
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
//! **Time is Redis's.** Every expiry is computed and compared by a Lua script
//! from `TIME` of the server holding the key, and liveness keys expire by
//! their `PX`, so a node whose clock is ahead (or behind) can neither evict
//! the others' nodes and routes nor keep its own alive too long. Node clocks
//! appear nowhere in a decision.
//!
//! **Cluster.** Every command and script touches one key, so no key needs a
//! hash tag; a call's commands go out as one pipeline per slot, all at once
//! ([`RedisLink`]). A node's liveness key and the `herald:nodes` set may sit
//! on different masters: each is written and read on its own, and each
//! decision reads one of them (lookups the key, broadcasts the set).
//!
//! Every call is one round trip, whatever the number of streams (lookups
//! two, plus a clean-up when they find dead routes).

use crate::redis_link::{Batch, RedisConfig, RedisLink};
use async_trait::async_trait;
use herald_common::names::Names;
use herald_common::routes::{RouteError, RouteRegistry};
use herald_common::time::now_ms;
use redis::{Script, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

/// The server's time in ms, as Lua scripts compute it (its TIME is seconds
/// and microseconds).
macro_rules! lua_now {
    () => {
        "local t = redis.call('TIME') \
         local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    };
}

/// Records `node`'s route (ARGV[1]) on KEYS[1] for ARGV[2] ms. The key lives
/// as long as its newest route: extend only (GT), set when it has none (NX).
const REGISTER: &str = concat!(
    lua_now!(),
    "local ttl = tonumber(ARGV[2]) \
     redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now + ttl)) \
     redis.call('PEXPIRE', KEYS[1], ARGV[2], 'GT') \
     redis.call('PEXPIRE', KEYS[1], ARGV[2], 'NX') \
     return 1"
);

/// The routes of KEYS[1] whose lease holds, as [node, expiry, ...]; the
/// lapsed ones are deleted in the same step, so none can be refreshed between
/// being judged and being deleted.
const LOOKUP: &str = concat!(
    lua_now!(),
    "local fields = redis.call('HGETALL', KEYS[1]) \
     local live = {} \
     for i = 1, #fields, 2 do \
       local expiry = tonumber(fields[i + 1]) \
       if expiry and expiry > now then \
         live[#live + 1] = fields[i] \
         live[#live + 1] = fields[i + 1] \
       else \
         redis.call('HDEL', KEYS[1], fields[i]) \
       end \
     end \
     return live"
);

/// HDEL a route field (ARGV[1]) only if it still holds the expiry the caller
/// read (ARGV[2]): a node that re-registered meanwhile keeps its route.
const DELETE_IF_UNCHANGED: &str = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
     return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

/// Scores `node` (ARGV[1]) in the live-node set KEYS[1] with an expiry
/// ARGV[2] ms away, and drops the members whose expiry has passed.
const NODE_LEASE: &str = concat!(
    lua_now!(),
    "redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1]) \
     redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now)) \
     return 1"
);

/// The members of KEYS[1] whose lease has not passed.
const LIVE_NODES: &str = concat!(
    lua_now!(),
    "return redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%.0f', now), '+inf')"
);

struct Scripts {
    register: Script,
    lookup: Script,
    delete_if_unchanged: Script,
    node_lease: Script,
    live_nodes: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    register: Script::new(REGISTER),
    lookup: Script::new(LOOKUP),
    delete_if_unchanged: Script::new(DELETE_IF_UNCHANGED),
    node_lease: Script::new(NODE_LEASE),
    live_nodes: Script::new(LIVE_NODES),
});

pub struct RedisRoutes {
    names: Names,
    link: RedisLink,
}

fn malformed(e: redis::ParsingError) -> RouteError {
    RouteError::from_cause("unexpected reply", e)
}

impl RedisRoutes {
    /// Prepares the client; connecting waits for the first call, so a node
    /// starts (and keeps its sockets) while Redis is down.
    pub async fn connect(config: &RedisConfig, names: Names) -> Result<Self, RouteError> {
        let scripts = vec![
            REGISTER,
            LOOKUP,
            DELETE_IF_UNCHANGED,
            NODE_LEASE,
            LIVE_NODES,
        ];
        Ok(Self {
            names,
            link: RedisLink::open(config, scripts)?,
        })
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
        let ttl = ttl.as_millis() as u64;
        let mut batch = Batch::default();
        for stream in streams {
            let key = self.names.route_key(stream);
            batch.script(&SCRIPTS.register, &key).arg(node).arg(ttl);
        }
        self.link.run(batch).await.map(drop)
    }

    async fn unregister(&self, node: &str, streams: &[String]) -> Result<(), RouteError> {
        let mut batch = Batch::default();
        for stream in streams {
            let key = self.names.route_key(stream);
            let mut hdel = redis::cmd("HDEL");
            hdel.arg(&key).arg(node);
            batch.command(&key, hdel);
        }
        self.link.run(batch).await.map(drop)
    }

    async fn node_heartbeat(&self, node: &str, ttl: Duration) -> Result<(), RouteError> {
        let ttl = ttl.as_millis() as u64;
        let mut batch = Batch::default();
        let alive = self.names.node_alive_key(node);
        let mut set = redis::cmd("SET");
        // The value (the node's own clock) is for people reading Redis; no
        // decision reads it.
        set.arg(&alive).arg(now_ms()).arg("PX").arg(ttl);
        batch.command(&alive, set);
        batch
            .script(&SCRIPTS.node_lease, &self.names.nodes_key())
            .arg(node)
            .arg(ttl);
        self.link.run(batch).await.map(drop)
    }

    async fn node_gone(&self, node: &str) -> Result<(), RouteError> {
        let mut batch = Batch::default();
        let alive = self.names.node_alive_key(node);
        let mut del = redis::cmd("DEL");
        del.arg(&alive);
        batch.command(&alive, del);
        let nodes = self.names.nodes_key();
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(&nodes).arg(node);
        batch.command(&nodes, zrem);
        self.link.run(batch).await.map(drop)
    }

    async fn live_nodes(&self) -> Result<Vec<String>, RouteError> {
        let mut batch = Batch::default();
        batch.script(&SCRIPTS.live_nodes, &self.names.nodes_key());
        let reply = self.link.run(batch).await?.pop().unwrap_or(Value::Nil);
        let mut nodes: Vec<String> = redis::from_redis_value(reply).map_err(malformed)?;
        nodes.sort();
        Ok(nodes)
    }

    async fn lookup(&self, streams: &[String]) -> Result<HashMap<String, Vec<String>>, RouteError> {
        if streams.is_empty() {
            return Ok(HashMap::new());
        }
        let mut batch = Batch::default();
        for stream in streams {
            batch.script(&SCRIPTS.lookup, &self.names.route_key(stream));
        }
        // Per stream, its routes whose lease holds: (node, expiry as stored).
        let leased: Vec<Vec<(String, String)>> = self
            .link
            .run(batch)
            .await?
            .into_iter()
            .map(|reply| {
                let flat: Vec<String> = redis::from_redis_value(reply).map_err(malformed)?;
                Ok(flat
                    .chunks_exact(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect())
            })
            .collect::<Result<_, RouteError>>()?;

        let nodes: Vec<String> = leased
            .iter()
            .flatten()
            .map(|(node, _)| node.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let alive: HashMap<String, bool> = if nodes.is_empty() {
            HashMap::new()
        } else {
            let mut batch = Batch::default();
            for node in &nodes {
                let key = self.names.node_alive_key(node);
                let mut exists = redis::cmd("EXISTS");
                exists.arg(&key);
                batch.command(&key, exists);
            }
            let flags = self.link.run(batch).await?;
            let flags: Vec<bool> = flags
                .into_iter()
                .map(redis::from_redis_value)
                .collect::<Result<_, _>>()
                .map_err(malformed)?;
            nodes.into_iter().zip(flags).collect()
        };

        let mut found = HashMap::new();
        let mut stale = Batch::default();
        for (stream, routes) in streams.iter().zip(leased) {
            let mut live = Vec::new();
            for (node, expiry) in routes {
                if alive.get(&node).copied().unwrap_or(false) {
                    live.push(node);
                } else {
                    // The route of a dead node: delete only the value read,
                    // so a node that re-registered meanwhile keeps it.
                    stale
                        .script(&SCRIPTS.delete_if_unchanged, &self.names.route_key(stream))
                        .arg(&node)
                        .arg(&expiry);
                }
            }
            if !live.is_empty() {
                live.sort();
                found.insert(stream.clone(), live);
            }
        }
        if !stale.is_empty() {
            // Cleaning up is a courtesy: a failure leaves routes that the next
            // lookup ignores again.
            if let Err(e) = self.link.run(stale).await {
                tracing::debug!(error = %e, "could not remove dead nodes' routes");
            }
        }
        Ok(found)
    }
}
