//! The registry's way to Redis, one server or a Redis Cluster alike: a batch
//! of single-key commands goes out as one pipeline on a server, and as one
//! pipeline per hash slot on a cluster (a cluster refuses a pipeline whose
//! keys span slots), all sent at once, so a call still costs one round trip.
//! Lua scripts go by their SHA (`EVALSHA`), loaded on every master the first
//! time one answers `NOSCRIPT`.

use herald_common::config::Infra;
use herald_common::routes::RouteError;
use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, Pipeline, RedisError, Script, ServerErrorKind, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Mutex;

/// Bound on any one registry call, connecting included: a registry that does
/// not answer is treated like one that refused.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the registry's Redis is: one server, or the seed nodes of a Redis
/// Cluster (any of its masters; the client learns the rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    pub urls: Vec<String>,
    pub cluster: bool,
}

impl RedisConfig {
    /// One Redis server.
    pub fn server(url: &str) -> Self {
        Self {
            urls: vec![url.to_string()],
            cluster: false,
        }
    }

    /// A Redis Cluster, reached first through `seeds`.
    pub fn cluster<S: AsRef<str>>(seeds: &[S]) -> Self {
        Self {
            urls: seeds.iter().map(|s| s.as_ref().to_string()).collect(),
            cluster: true,
        }
    }
}

impl From<&Infra> for RedisConfig {
    /// `redis_url` is a comma-separated list; several URLs can only be the
    /// seeds of a cluster, so they mean one even without `redis_cluster`.
    fn from(infra: &Infra) -> Self {
        let urls: Vec<String> = infra
            .redis_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        let cluster = infra.redis_cluster || urls.len() > 1;
        Self { urls, cluster }
    }
}

enum Target {
    Server(redis::Client),
    Cluster(ClusterClient),
}

/// A live connection; both kinds are cheap handles on one multiplexed link.
#[derive(Clone)]
enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn send(&mut self, pipe: &Pipeline) -> Result<Vec<Value>, RedisError> {
        match self {
            Conn::Server(c) => pipe.query_async(c).await,
            Conn::Cluster(c) => pipe.query_async(c).await,
        }
    }
}

/// Commands of one call, each on one key, in the order given.
#[derive(Default)]
pub(crate) struct Batch {
    commands: Vec<(Slot, Cmd)>,
}

impl Batch {
    /// Adds `cmd`, whose (only) key is `key`.
    pub fn command(&mut self, key: &str, cmd: Cmd) {
        self.commands.push((Slot::for_key(key), cmd));
    }

    /// Adds a run of `script` on `key`; the caller adds its arguments to the
    /// command returned.
    pub fn script(&mut self, script: &Script, key: &str) -> &mut Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(1).arg(key);
        self.command(key, cmd);
        &mut self.commands.last_mut().expect("just pushed").1
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

pub(crate) struct RedisLink {
    target: Target,
    /// Every script a batch may name, loaded together on `NOSCRIPT`.
    scripts: Vec<&'static str>,
    /// The live connection, dropped after any failure and made anew by the
    /// next call: a connection that once failed is never trusted to recover.
    conn: Mutex<Option<Conn>>,
}

fn failed(e: RedisError) -> RouteError {
    RouteError::from_cause("", e)
}

impl RedisLink {
    /// Checks the URLs; connecting waits for the first call, so a node starts
    /// (and keeps its sockets) while Redis is down.
    pub fn open(config: &RedisConfig, scripts: Vec<&'static str>) -> Result<Self, RouteError> {
        let target = match (config.cluster, config.urls.as_slice()) {
            (_, []) => return Err(RouteError::new("no Redis URL given")),
            (false, [url]) => Target::Server(redis::Client::open(url.as_str()).map_err(failed)?),
            (false, _) => {
                return Err(RouteError::new(
                    "several Redis URLs are only for a Redis Cluster",
                ));
            }
            (true, seeds) => Target::Cluster(
                ClusterClient::builder(seeds.iter().map(String::as_str))
                    .connection_timeout(CALL_TIMEOUT)
                    .response_timeout(CALL_TIMEOUT)
                    // Redirections (MOVED/ASK while slots move) are retries;
                    // a few suffice, the call's bound stops the rest.
                    .retries(3)
                    .build()
                    .map_err(failed)?,
            ),
        };
        Ok(Self {
            target,
            scripts,
            conn: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<Conn, RouteError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let connecting = async {
            match &self.target {
                Target::Server(client) => {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(CALL_TIMEOUT))
                        .set_response_timeout(Some(CALL_TIMEOUT))
                        .set_number_of_retries(0);
                    ConnectionManager::new_with_config(client.clone(), config)
                        .await
                        .map(Conn::Server)
                }
                Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
            }
        };
        let conn = tokio::time::timeout(CALL_TIMEOUT, connecting)
            .await
            .map_err(|_| RouteError::new("connecting timed out"))?
            .map_err(failed)?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `batch` and returns each command's reply, in the batch's order.
    /// The whole call, connecting and any script loading included, is
    /// bounded by [`CALL_TIMEOUT`]; after a failure the connection is dropped.
    pub async fn run(&self, batch: Batch) -> Result<Vec<Value>, RouteError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let outcome = match tokio::time::timeout(CALL_TIMEOUT, self.run_loading(batch)).await {
            Ok(Ok(replies)) => return Ok(replies),
            Ok(Err(e)) => e,
            Err(_) => RouteError::new("call timed out"),
        };
        *self.conn.lock().await = None;
        Err(outcome)
    }

    /// Runs `batch`; the commands refused with `NOSCRIPT` (a new or restarted
    /// master) run again once the scripts are loaded. Every script here is
    /// safe to run again.
    async fn run_loading(&self, batch: Batch) -> Result<Vec<Value>, RouteError> {
        let mut conn = self.connection().await?;
        let mut replies = self.send(&conn, &batch.commands).await?;
        let unknown: Vec<usize> = (0..replies.len())
            .filter(|&i| is_noscript(&replies[i]))
            .collect();
        if !unknown.is_empty() {
            self.load_scripts(&mut conn).await?;
            let again: Vec<(Slot, Cmd)> =
                unknown.iter().map(|&i| batch.commands[i].clone()).collect();
            for (i, reply) in unknown.into_iter().zip(self.send(&conn, &again).await?) {
                replies[i] = reply;
            }
        }
        replies
            .into_iter()
            .map(|reply| reply.extract_error().map_err(failed))
            .collect()
    }

    /// Sends `commands`: one pipeline, or on a cluster one per slot, all at
    /// once. Replies come back in the order of `commands`, errors as values.
    async fn send(&self, conn: &Conn, commands: &[(Slot, Cmd)]) -> Result<Vec<Value>, RouteError> {
        let mut groups: HashMap<Option<Slot>, (Pipeline, Vec<usize>)> = HashMap::new();
        for (i, (slot, cmd)) in commands.iter().enumerate() {
            let group = match conn {
                Conn::Server(_) => None,
                Conn::Cluster(_) => Some(*slot),
            };
            let (pipe, indexes) = groups.entry(group).or_insert_with(|| {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                (pipe, Vec::new())
            });
            pipe.add_command(cmd.clone());
            indexes.push(i);
        }
        let sent = groups.into_values().map(|(pipe, indexes)| {
            let mut conn = conn.clone();
            async move { Ok::<_, RedisError>((indexes, conn.send(&pipe).await?)) }
        });
        let mut replies = vec![Value::Nil; commands.len()];
        for (indexes, values) in futures::future::try_join_all(sent).await.map_err(failed)? {
            if values.len() != indexes.len() {
                return Err(RouteError::new(
                    "Redis answered a pipeline with a wrong count of replies",
                ));
            }
            for (i, value) in indexes.into_iter().zip(values) {
                replies[i] = value;
            }
        }
        Ok(replies)
    }

    /// `SCRIPT LOAD`s every script, one by one (this is rare); on a cluster
    /// the client sends each to every node.
    async fn load_scripts(&self, conn: &mut Conn) -> Result<(), RouteError> {
        for code in &self.scripts {
            let mut load = redis::cmd("SCRIPT");
            load.arg("LOAD").arg(*code);
            let loaded = match conn {
                Conn::Server(c) => load.query_async::<Value>(c).await,
                Conn::Cluster(c) => load.query_async::<Value>(c).await,
            };
            loaded.map_err(failed)?;
        }
        Ok(())
    }
}

fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(redis_url: &str, redis_cluster: bool) -> RedisConfig {
        RedisConfig::from(&Infra {
            redis_url: redis_url.into(),
            redis_cluster,
            ..Infra::default()
        })
    }

    #[test]
    fn one_url_is_a_server_unless_told_it_is_a_cluster() {
        assert_eq!(
            from("redis://a:6379/", false),
            RedisConfig::server("redis://a:6379/")
        );
        assert_eq!(
            from("redis://a:7301/", true),
            RedisConfig::cluster(&["redis://a:7301/"])
        );
    }

    #[test]
    fn several_urls_are_the_seeds_of_a_cluster() {
        assert_eq!(
            from("redis://a:7301/, redis://b:7302/,", false),
            RedisConfig::cluster(&["redis://a:7301/", "redis://b:7302/"])
        );
    }

    #[test]
    fn a_server_takes_one_url_and_some_url_is_needed() {
        let several = RedisConfig {
            urls: vec!["redis://a/".into(), "redis://b/".into()],
            cluster: false,
        };
        assert!(RedisLink::open(&several, vec![]).is_err());
        assert!(RedisLink::open(&from(" , ", true), vec![]).is_err());
        assert!(RedisLink::open(&from("redis://a/", false), vec![]).is_ok());
    }

    #[test]
    fn a_batch_keeps_each_commands_slot() {
        let mut batch = Batch::default();
        batch.command("{user1000}.following", redis::cmd("GET"));
        batch.script(&Script::new("return 1"), "{user1000}.followers");
        batch.command("foo", redis::cmd("GET"));
        let slots: Vec<Slot> = batch.commands.iter().map(|(s, _)| *s).collect();
        assert_eq!(slots[0], slots[1], "one hash tag, one slot");
        assert_eq!(slots[2], Slot::new(12182).unwrap(), "CLUSTER KEYSLOT foo");
    }
}
