//! [`Log`] on Apache Kafka, through librdkafka (bundled with the rdkafka crate).
//!
//! Producers are idempotent with `acks=all`, so a publish that reports `Ok` is
//! on every in-sync replica and a retried send is not written twice by the
//! broker. Consumers never auto-commit: services commit explicitly once a
//! record's effects are durable elsewhere.

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::join_all;
use herald_common::config::Infra;
use herald_common::log::{
    Log, LogConsumer, LogError, OutgoingRecord, PartitionLag, Record, StartAt, commit_positions,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How to reach the cluster.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub brokers: String,
    /// Bound on one publish, queueing and retries included.
    pub timeout: Duration,
    /// Replication factor of topics this client creates.
    pub replication: i32,
    /// Consumers' `fetch.wait.max.ms`: on a broker that does not answer a
    /// waiting fetch early (tansu), the latency each consuming hop adds
    /// when records trickle in.
    pub fetch_wait: Duration,
    /// The producer's `linger.ms`: how long a record waits for others to
    /// share its batch.
    pub linger: Duration,
}

impl Default for KafkaConfig {
    /// The `[infra]` defaults.
    fn default() -> Self {
        Self::from(&Infra::default())
    }
}

impl From<&Infra> for KafkaConfig {
    /// The broker flags every cluster service takes.
    fn from(infra: &Infra) -> Self {
        Self {
            brokers: infra.kafka_brokers.clone(),
            timeout: Duration::from_millis(infra.kafka_timeout_ms),
            replication: infra.kafka_replication,
            fetch_wait: Duration::from_millis(infra.kafka_fetch_wait_ms),
            linger: Duration::from_millis(infra.kafka_linger_ms),
        }
    }
}

/// A Kafka client: one idempotent producer shared by all publishes, plus an
/// admin client for topic creation; consumers are created per group.
pub struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
}

fn unavailable(e: KafkaError) -> LogError {
    LogError::from_cause("", e)
}

impl KafkaLog {
    pub fn connect(config: KafkaConfig) -> Result<Self, LogError> {
        let timeout_ms = config.timeout.as_millis().to_string();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", &timeout_ms)
            .set("linger.ms", config.linger.as_millis().to_string())
            // The Java client's partitioner, so that business producers using
            // it place one key in the same partition as Herald does.
            .set("partitioner", "murmur2_random")
            .create()
            .map_err(unavailable)?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .create()
            .map_err(unavailable)?;
        Ok(Self {
            config,
            producer,
            admin,
        })
    }
}

#[async_trait]
impl Log for KafkaLog {
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), LogError> {
        let new = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.config.replication),
        );
        let options = AdminOptions::new().operation_timeout(Some(self.config.timeout));
        let results = self
            .admin
            .create_topics([&new], &options)
            .await
            .map_err(unavailable)?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(LogError::other_from_cause(
                        &format!("creating topic {name}"),
                        code,
                    ));
                }
            }
        }
        Ok(())
    }

    async fn publish(&self, records: Vec<OutgoingRecord>) -> Vec<Result<(), LogError>> {
        let sends = records.iter().map(|r| {
            let record = FutureRecord::to(&r.topic).key(&r.key).payload(&r.value[..]);
            self.producer
                .send(record, Timeout::After(self.config.timeout))
        });
        join_all(sends)
            .await
            .into_iter()
            .map(|result| result.map(|_| ()).map_err(|(e, _)| unavailable(e)))
            .collect()
    }

    async fn consume(
        &self,
        group: &str,
        topics: &[String],
        start: StartAt,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set(
                "auto.offset.reset",
                match start {
                    StartAt::Earliest => "earliest",
                    StartAt::Latest => "latest",
                },
            )
            // Short enough that a killed member's partitions move to a live one
            // within seconds, long enough to ride out a busy machine.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // librdkafka wants at least 1 ms here.
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait.as_millis().max(1).to_string(),
            )
            .set("enable.partition.eof", "false")
            // Incremental rebalancing: survivors keep their partitions while a
            // dead member's move, and the move does not depend on every
            // member's join arriving in one round (which tansu's coordinator
            // does not wait for: with eager assignment a survivor could be
            // left with only its old share).
            .set("partition.assignment.strategy", "cooperative-sticky")
            // For the consumer lag (`LogConsumer::lag`).
            .set(
                "statistics.interval.ms",
                STATISTICS_INTERVAL.as_millis().to_string(),
            );
        let (assigned_tx, assigned) = watch::channel(false);
        let shared = Arc::new(GroupState {
            assigned: assigned_tx,
            revoked_at: Mutex::new(None),
            lag: Mutex::new(Vec::new()),
        });
        let topics = topics.to_vec();
        let consumer = join(&config, &topics, &shared)?;
        Ok(Box::new(KafkaConsumer {
            consumer,
            config,
            topics,
            shared,
            assigned,
            empty_since: None,
        }))
    }
}

/// How long a member may sit between a revocation and the assignment that
/// should follow it, or hold no partition at all, before it leaves and joins
/// the group afresh. A healthy group completes a rebalance in a heartbeat or
/// two; a coordinator that lost track of the round (seen with tansu after a
/// member is killed: the survivor's partitions revoked and never assigned
/// again, or a replacement member left with none while a dead one keeps
/// them) never does. The price: a member of a group with more members than
/// partitions rejoins every so often, which moves no partition.
const STUCK_REBALANCE: Duration = Duration::from_secs(20);

/// Joins `config`'s group on `topics` with a new member.
fn join(
    config: &ClientConfig,
    topics: &[String],
    shared: &Arc<GroupState>,
) -> Result<StreamConsumer<GroupContext>, LogError> {
    *shared.revoked_at.lock().expect("group state lock") = None;
    let consumer: StreamConsumer<GroupContext> = config
        .create_with_context(GroupContext {
            shared: shared.clone(),
        })
        .map_err(unavailable)?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).map_err(unavailable)?;
    Ok(consumer)
}

/// What a member's rebalance callbacks tell the rest of the consumer.
struct GroupState {
    assigned: watch::Sender<bool>,
    /// When partitions were last revoked with no assignment since.
    revoked_at: Mutex<Option<std::time::Instant>>,
    /// The lag of each partition the member fetches, from the last statistics.
    lag: Mutex<Vec<PartitionLag>>,
}

/// How often librdkafka reports its statistics, the consumer lag among them.
const STATISTICS_INTERVAL: Duration = Duration::from_secs(5);

/// Reports assignments so that services can say when they are really reading,
/// and notes revocations so that a stuck rebalance can be noticed.
struct GroupContext {
    shared: Arc<GroupState>,
}

impl ClientContext for GroupContext {
    /// Keeps the lag of the partitions this member fetches (`consumer_lag`:
    /// the partition's end against the member's position, -1 while either
    /// is unknown).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lag = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values().map(move |p| (t, p)))
            .filter(|(_, p)| p.partition >= 0 && p.fetch_state == "active" && p.consumer_lag >= 0)
            .map(|(t, p)| PartitionLag {
                topic: t.topic.clone(),
                partition: p.partition,
                records: p.consumer_lag,
            })
            .collect();
        *self.shared.lag.lock().expect("group state lock") = lag;
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = partitions.count(), "partitions assigned");
                *self.shared.revoked_at.lock().expect("group state lock") = None;
                self.shared.assigned.send_replace(true);
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = partitions.count(), "partitions revoked");
                self.shared
                    .revoked_at
                    .lock()
                    .expect("group state lock")
                    .get_or_insert_with(std::time::Instant::now);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

struct KafkaConsumer {
    consumer: StreamConsumer<GroupContext>,
    config: ClientConfig,
    topics: Vec<String>,
    shared: Arc<GroupState>,
    assigned: watch::Receiver<bool>,
    /// Since when this member has held no partition.
    empty_since: Option<std::time::Instant>,
}

impl KafkaConsumer {
    /// Leaves and rejoins the group if a rebalance has been stuck too long.
    /// Nothing is lost: positions come from the group's committed offsets.
    fn rejoin_if_stuck(&mut self) -> Result<(), LogError> {
        let revoked_long_ago = self
            .shared
            .revoked_at
            .lock()
            .expect("group state lock")
            .is_some_and(|at| at.elapsed() > STUCK_REBALANCE);
        let holds_nothing = self
            .consumer
            .assignment()
            .map(|list| list.count() == 0)
            .unwrap_or(false);
        let now = std::time::Instant::now();
        self.empty_since = if holds_nothing {
            Some(self.empty_since.unwrap_or(now))
        } else {
            None
        };
        let empty_long = self
            .empty_since
            .is_some_and(|since| now.duration_since(since) > STUCK_REBALANCE);
        if revoked_long_ago || empty_long {
            tracing::warn!(
                revoked_long_ago,
                empty_long,
                "rebalance looks stuck; rejoining the group"
            );
            self.consumer = join(&self.config, &self.topics, &self.shared)?;
            self.empty_since = None;
        }
        Ok(())
    }
}

fn owned(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(Bytes::copy_from_slice),
        value: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
    }
}

#[async_trait]
impl LogConsumer for KafkaConsumer {
    async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<Record>, LogError> {
        // Wake up now and then while idle, to notice a stuck rebalance (an
        // unassigned member waits for records that can never come).
        let first = loop {
            match tokio::time::timeout(Duration::from_secs(1), self.consumer.recv()).await {
                Ok(result) => break result.map_err(unavailable)?,
                Err(_) => self.rejoin_if_stuck()?,
            }
        };
        let mut batch = vec![owned(&first)];
        drop(first);
        let deadline = Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(owned(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error while batching");
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    fn commit(&mut self, records: &[Record]) -> Result<(), LogError> {
        let next = commit_positions(records);
        if next.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            list.add_partition_offset(&topic, partition, Offset::Offset(offset))
                .map_err(unavailable)?;
        }
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(unavailable)
    }

    fn assigned(&self) -> watch::Receiver<bool> {
        self.assigned.clone()
    }

    /// From librdkafka's statistics (see [`GroupContext`]'s `stats`): no
    /// round trip, at most [`STATISTICS_INTERVAL`] old.
    fn lag(&self) -> Vec<PartitionLag> {
        self.shared.lag.lock().expect("group state lock").clone()
    }
}
