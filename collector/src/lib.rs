//! collector: where business messages enter Herald.
//!
//! A message arrives over HTTP or on the ingest topic, is validated, and is
//! appended to the message store (MongoDB) before anyone is told it was
//! accepted. Only then is it published, one event per recipient stream, to the
//! events topic. A message that could not be published stays marked
//! unpublished in the store, and the outbox publishes it later: acceptance is
//! the store's word, never the log's.

mod config;
mod http;
mod ingest;
mod metrics;
mod outbox;
mod publisher;
mod timed_store;
mod writer;

use herald_cluster::{KafkaConfig, KafkaLog, MongoStore};
use herald_common::http::Service;
use herald_common::log::Log;
use herald_common::metrics::Registry;
use herald_common::retry::until_answered;
use herald_common::store::MessageStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use config::{Config, Flags};
use metrics::Metrics;

/// Everything the collector's tasks share.
pub(crate) struct Collector {
    config: Config,
    store: Arc<dyn MessageStore>,
    writer: writer::WriterHandle,
    metrics: Arc<Metrics>,
    /// True once the collector reads its ingest partitions (or has none to read).
    ingest_ready: watch::Sender<bool>,
}

/// Creates the topics the collector reads and writes, retrying while the log
/// is unreachable: HTTP ingestion works meanwhile (the outbox holds messages).
async fn ensure_topics(log: &dyn Log, topics: Vec<String>, partitions: i32) {
    for topic in topics {
        until_answered(&format!("creating topic {topic}"), || {
            log.ensure_topic(&topic, partitions)
        })
        .await;
    }
}

/// Runs the collector on MongoDB and Kafka until the process ends.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store: Arc<dyn MessageStore> = Arc::new(
        MongoStore::connect(&config.infra.mongo_uri, &config.infra.names().database()).await?,
    );
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaConfig::from(&config.infra))?);
    let (addr, tls) = (config.addr, config.tls.clone());
    start(config, store, log, &Registry::default())
        .serve(addr, &tls, "collector")
        .await
}

/// Starts the collector on the given store and log (the cluster passes
/// MongoDB and Kafka, the single-process mode its embedded ones) and returns
/// it as a service; its background tasks run from now on. Its metrics go
/// to `registry`, the process's.
pub fn start(
    config: Config,
    store: Arc<dyn MessageStore>,
    log: Arc<dyn Log>,
    registry: &Registry,
) -> Service {
    let names = config.infra.names();
    let metrics = Arc::new(Metrics::register(registry));
    let store: Arc<dyn MessageStore> = Arc::new(timed_store::TimedStore {
        inner: store,
        append: metrics.store_append.clone(),
    });
    let publisher = publisher::spawn(
        log.clone(),
        store.clone(),
        names.events_topic(),
        metrics.clone(),
    );
    let writer = writer::spawn(
        store.clone(),
        publisher.clone(),
        config.fault_crash_after_store,
    );
    let collector = Arc::new(Collector {
        config: config.clone(),
        store: store.clone(),
        writer,
        metrics,
        ingest_ready: watch::channel(config.no_ingest).0,
    });

    tokio::spawn(outbox::run(
        store.clone(),
        publisher,
        Duration::from_millis(config.outbox_grace_ms),
    ));
    let topics = vec![names.events_topic(), names.ingest_topic()];
    let startup_log = log.clone();
    let ingest_collector = collector.clone();
    let partitions = config.infra.partitions;
    let no_ingest = config.no_ingest;
    let ingest_metrics = registry.clone();
    tokio::spawn(async move {
        ensure_topics(startup_log.as_ref(), topics, partitions).await;
        if !no_ingest {
            ingest::run(ingest_collector, startup_log, ingest_metrics).await;
        }
    });

    Service {
        ready: collector.ingest_ready.subscribe(),
        metrics: registry.clone(),
        api: http::router(collector),
    }
}
