//! dispatcher: routes each event to the push nodes that hold its recipient.
//!
//! Dispatchers form one consumer group on the events topic, so running more
//! of them splits the partitions (and takes over a dead one's). For every
//! batch of events a dispatcher asks the route registry, in one pipelined
//! round trip, which live nodes hold each recipient, publishes one copy per
//! node to that node's topic, and commits its position only once every copy is
//! acknowledged. A recipient without a route is offline: nothing is sent, and
//! the message waits in the store for replay.

mod config;
mod metrics;

use axum::Router;
use herald_cluster::{KafkaConfig, KafkaLog, RedisConfig, RedisRoutes};
use herald_common::envelope::{ALL_STREAM, Event, stream_user};
use herald_common::http::Service;
use herald_common::log::{BatchHandler, Log, OutgoingRecord, Record, StartAt, Subscription};
use herald_common::metrics::Registry;
use herald_common::names::Names;
use herald_common::retry::{Policy, until_answered};
use herald_common::routes::RouteRegistry;
use metrics::Metrics;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use config::{Config, Flags};

/// Publishes attempted for one record before it is given up (it stays in the
/// store; its recipient gets it by replay).
const MAX_PUBLISH_ATTEMPTS: usize = 10;

/// Runs a dispatcher on Kafka and Redis until the process is asked to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaConfig::from(&config.infra))?);
    let routes: Arc<dyn RouteRegistry> = Arc::new(
        RedisRoutes::connect(&RedisConfig::from(&config.infra), config.infra.names()).await?,
    );
    let (addr, tls) = (config.addr, config.tls.clone());
    start(config, log, routes, &Registry::default())
        .serve(addr, &tls, "dispatcher")
        .await
}

/// Starts a dispatcher on the given log and route registry; it routes from
/// now on, in a background task, and has no public API of its own. Its
/// metrics go to `registry`, the process's.
pub fn start(
    config: Config,
    log: Arc<dyn Log>,
    routes: Arc<dyn RouteRegistry>,
    registry: &Registry,
) -> Service {
    let metrics = Arc::new(Metrics::register(registry));
    let (ready_tx, ready) = watch::channel(false);
    let dispatcher = Dispatcher {
        names: config.infra.names(),
        log,
        routes,
        metrics: metrics.clone(),
    };
    let subscription = Subscription {
        group: dispatcher.names.dispatcher_group(),
        topic: dispatcher.names.events_topic(),
        partitions: config.infra.partitions,
        start: StartAt::Earliest,
        batch: config.batch,
        linger: Duration::from_millis(5),
        metrics: registry.clone(),
    };
    let log = dispatcher.log.clone();
    tokio::spawn(async move {
        let mut dispatcher = dispatcher;
        subscription.run(log, ready_tx, &mut dispatcher).await;
    });
    Service {
        api: Router::new(),
        ready,
        metrics: registry.clone(),
    }
}

struct Dispatcher {
    names: Names,
    log: Arc<dyn Log>,
    routes: Arc<dyn RouteRegistry>,
    metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl BatchHandler for Dispatcher {
    /// Routes the batch; uncommitted events are routed again after a
    /// rebalance, and the pusher drops what it already delivered by seq.
    async fn handle(&mut self, records: &[Record]) {
        self.route(records).await;
    }
}

impl Dispatcher {
    /// Forwards every event in `records` to the nodes that follow its stream
    /// (every live node for `all`), and returns once every copy is
    /// acknowledged (or given up).
    async fn route(&self, records: &[Record]) {
        let mut events: Vec<(&Record, String)> = Vec::with_capacity(records.len());
        for r in records {
            match serde_json::from_slice::<Event>(&r.value) {
                Ok(e)
                    if e.stream == ALL_STREAM
                        || e.stream.starts_with("topic:")
                        || stream_user(&e.stream).is_some() =>
                {
                    self.metrics.consume_delay.since_accepted(e.ts);
                    events.push((r, e.stream))
                }
                Ok(e) => self.skip(r, &format!("unknown stream {}", e.stream)),
                Err(e) => self.skip(r, &e.to_string()),
            }
        }
        if events.is_empty() {
            return;
        }
        let streams: Vec<String> = events
            .iter()
            .map(|(_, s)| s.clone())
            .filter(|s| s != ALL_STREAM)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Without routes nothing can be routed, and committing past the batch
        // would drop live deliveries: ask until the registry answers.
        let routes = self
            .metrics
            .route_lookup
            .time(until_answered("route lookup", || {
                self.routes.lookup(&streams)
            }))
            .await;
        let everyone = if events.iter().any(|(_, s)| s == ALL_STREAM) {
            until_answered("live nodes lookup", || self.routes.live_nodes()).await
        } else {
            Vec::new()
        };

        let mut outgoing = Vec::new();
        for (r, stream) in &events {
            let nodes = if stream == ALL_STREAM {
                &everyone
            } else {
                match routes.get(stream) {
                    Some(nodes) => nodes,
                    None => {
                        self.metrics.offline.inc();
                        continue;
                    }
                }
            };
            for node in nodes {
                outgoing.push(OutgoingRecord {
                    topic: self.names.node_topic(node),
                    key: stream.clone(),
                    value: r.value.clone(),
                });
            }
        }
        self.publish_all(outgoing).await;
    }

    fn skip(&self, r: &Record, why: &str) {
        self.metrics.invalid.inc();
        tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, why, "skipping invalid event");
    }

    /// Publishes every copy, retrying only the ones that failed, until all
    /// are acknowledged or the attempts run out (replay delivers the rest).
    async fn publish_all(&self, mut outgoing: Vec<OutgoingRecord>) {
        let mut delays = Policy::bounded(MAX_PUBLISH_ATTEMPTS).delays();
        while !outgoing.is_empty() {
            let results = self
                .metrics
                .node_publish
                .time(self.log.publish(outgoing.clone()))
                .await;
            let total = outgoing.len();
            let mut failed = Vec::new();
            let mut first_error = None;
            for (record, result) in outgoing.into_iter().zip(results) {
                if let Err(e) = result {
                    first_error.get_or_insert(e);
                    failed.push(record);
                }
            }
            self.metrics.forwarded.inc_by((total - failed.len()) as u64);
            let Some(error) = first_error else {
                return;
            };
            let Some(wait) = delays.next() else {
                self.metrics.given_up.inc_by(failed.len() as u64);
                tracing::error!(
                    count = failed.len(), %error,
                    "giving up live delivery; replay will deliver"
                );
                return;
            };
            tracing::warn!(count = failed.len(), %error, retry_in = ?wait, "node publish failed; retrying");
            tokio::time::sleep(wait).await;
            outgoing = failed;
        }
    }
}
