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
use herald_common::log::{Log, LogConsumer, OutgoingRecord, Record, StartAt};
use herald_common::names::Names;
use herald_common::routes::RouteRegistry;
use metrics::Metrics;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use config::{Config, Flags};

/// Publishes attempted for one record before it is given up (it stays in the
/// store; its recipient gets it by replay).
const MAX_PUBLISH_ATTEMPTS: u32 = 10;

/// Runs a dispatcher on Kafka and Redis until the process is asked to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaConfig::from(&config.infra))?);
    let routes: Arc<dyn RouteRegistry> = Arc::new(
        RedisRoutes::connect(&RedisConfig::from(&config.infra), config.infra.names()).await?,
    );
    let (addr, tls) = (config.addr, config.tls.clone());
    start(config, log, routes).serve(addr, &tls, "dispatcher").await
}

/// Starts a dispatcher on the given log and route registry; it routes from
/// now on, in a background task, and has no public API of its own.
pub fn start(config: Config, log: Arc<dyn Log>, routes: Arc<dyn RouteRegistry>) -> Service {
    let metrics = Arc::new(Metrics::default());
    let (ready_tx, ready) = watch::channel(false);
    let dispatcher = Dispatcher {
        names: config.infra.names(),
        log,
        routes,
        metrics: metrics.clone(),
    };
    tokio::spawn(async move {
        let topic = dispatcher.names.events_topic();
        while let Err(e) = dispatcher
            .log
            .ensure_topic(&topic, config.infra.partitions)
            .await
        {
            tracing::warn!(%topic, error = %e, "cannot create topic; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let group = dispatcher.names.dispatcher_group();
        let consumer = loop {
            match dispatcher
                .log
                .consume(&group, std::slice::from_ref(&topic), StartAt::Earliest)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot join the events group; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut assigned = consumer.assigned();
        tokio::spawn(async move {
            if assigned.wait_for(|a| *a).await.is_ok() {
                ready_tx.send_replace(true);
            }
        });
        dispatcher.run(consumer, config.batch).await;
    });
    Service {
        api: Router::new(),
        ready,
        metrics: Arc::new(move || metrics.render()),
    }
}

struct Dispatcher {
    names: Names,
    log: Arc<dyn Log>,
    routes: Arc<dyn RouteRegistry>,
    metrics: Arc<Metrics>,
}

impl Dispatcher {
    async fn run(&self, mut consumer: Box<dyn LogConsumer>, batch: usize) {
        loop {
            let records = match consumer.next_batch(batch, Duration::from_millis(5)).await {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(error = %e, "events consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            self.route(&records).await;
            if let Err(e) = consumer.commit(&records) {
                // Uncommitted events are routed again after a rebalance; the
                // pusher drops what it already delivered by seq.
                tracing::warn!(error = %e, "cannot commit events offsets");
            }
        }
    }

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
        let routes = self
            .until_answered("route lookup", || self.routes.lookup(&streams))
            .await;
        let everyone = if events.iter().any(|(_, s)| s == ALL_STREAM) {
            self.until_answered("live nodes", || self.routes.live_nodes())
                .await
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
                        Metrics::inc(&self.metrics.offline, 1);
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
        Metrics::inc(&self.metrics.invalid, 1);
        tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, why, "skipping invalid event");
    }

    /// Asks the registry until it answers: without routes nothing can be
    /// routed, and committing past the batch would drop live deliveries.
    async fn until_answered<T, F, Fut>(&self, what: &str, ask: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, herald_common::routes::RouteError>>,
    {
        let mut attempt = 0u32;
        loop {
            match ask().await {
                Ok(answer) => return answer,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "{what} failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(20))))
                        .await;
                }
            }
        }
    }

    async fn publish_all(&self, mut outgoing: Vec<OutgoingRecord>) {
        let mut attempt = 0;
        while !outgoing.is_empty() {
            attempt += 1;
            let results = self.log.publish(outgoing.clone()).await;
            let total = outgoing.len();
            let mut failed = Vec::new();
            for (record, result) in outgoing.into_iter().zip(results) {
                if let Err(e) = result {
                    tracing::warn!(topic = %record.topic, error = %e, attempt, "node publish failed");
                    failed.push(record);
                }
            }
            Metrics::inc(&self.metrics.forwarded, (total - failed.len()) as u64);
            if !failed.is_empty() && attempt >= MAX_PUBLISH_ATTEMPTS {
                Metrics::inc(&self.metrics.given_up, failed.len() as u64);
                tracing::error!(
                    count = failed.len(),
                    "giving up live delivery; replay will deliver"
                );
                return;
            }
            outgoing = failed;
            if !outgoing.is_empty() {
                let jitter = rand::random::<u64>() % 100;
                tokio::time::sleep(Duration::from_millis(100 * attempt as u64 + jitter)).await;
            }
        }
    }
}
