//! The log: an ordered, partitioned, durable sequence of records (Kafka in a
//! cluster).
//!
//! Herald moves every message through the log twice (events topic, then a node
//! topic) and reads business messages from it once (ingest topic). What the
//! services rely on, and every implementation must give:
//!
//! * **Order**: records published with the same key land in the same partition
//!   and are read back in publish order. Records with different keys have no
//!   relative order.
//! * **Durability**: [`Log::publish`] reports `Ok` for a record only once the
//!   log has it durably (Kafka: `acks=all`). A record whose result is `Err` may
//!   or may not have been written: callers that must not lose it keep their
//!   own copy (the collector's outbox) and publish again, so readers must
//!   tolerate duplicates.
//! * **At-least-once consumption**: a consumer group member receives every
//!   record of its assigned partitions from the group's committed position on.
//!   Records after the last [`LogConsumer::commit`] may be delivered again
//!   after a crash or a rebalance, never skipped.
//! * **Errors**: a publish to an unreachable log fails within the configured
//!   timeout rather than hanging; a consumer whose log is unreachable keeps
//!   retrying and resumes from its committed position.
//! * **Topics first**: a topic is created ([`Log::ensure_topic`]) before it is
//!   published to or consumed, as every service does. Otherwise the adapters
//!   differ: a publish to a missing topic fails (in memory at once with
//!   [`LogError::Other`]; on Kafka, which does not create it, with
//!   [`LogError::Unavailable`] after the timeout), and a member of a missing
//!   topic is waited for silently in memory, while on Kafka its `next_batch`
//!   fails (unknown topic) until the topic exists and it gets the partitions
//!   some 20 s later (measured on tansu: 23 s, by the stuck-rebalance rejoin
//!   of `herald-cluster`'s consumer).
//!
//! The contract suite (`contract/tests/log.rs`) runs every point above on
//! both adapters.

mod consume_loop;

pub use consume_loop::{BatchHandler, Subscription};

use crate::error::{Cause, described};
use async_trait::async_trait;
use bytes::Bytes;
use std::error::Error;
use std::time::Duration;
use tokio::sync::watch;

/// A record to append.
#[derive(Clone, Debug)]
pub struct OutgoingRecord {
    pub topic: String,
    /// Partitioning key: records with one key keep their order.
    pub key: String,
    pub value: Bytes,
}

/// A record read back, with the position needed to commit past it.
#[derive(Clone, Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
}

/// Where a group resumes after `records`: for each (topic, partition) they
/// touch, the offset after the last of them. What every
/// [`LogConsumer::commit`] stores.
pub fn commit_positions(records: &[Record]) -> std::collections::HashMap<(String, i32), i64> {
    let mut next = std::collections::HashMap::new();
    for r in records {
        let slot = next.entry((r.topic.clone(), r.partition)).or_insert(0);
        *slot = i64::max(*slot, r.offset + 1);
    }
    next
}

/// How far a member is behind on one partition it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Records in the partition after the member's position: published, not
    /// yet handed to the service.
    pub records: i64,
}

/// Why a log call failed: a message, and the client's own error as the
/// `source()` when one caused it (see [`crate::error`]).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log could not be reached, or did not answer in time.
    #[error("log unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The log answered, with a refusal (a topic it would not create, one
    /// that does not exist).
    #[error("log error: {message}")]
    Other {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl LogError {
    /// Unavailable because the client failed with `cause` while doing
    /// `context` (empty: the cause says it all).
    pub fn from_cause(context: &str, cause: impl Error + Send + Sync + 'static) -> Self {
        let (message, cause) = described(context, cause);
        Self::Unavailable {
            message,
            cause: Some(cause),
        }
    }

    /// Refused for a reason of the adapter's own.
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other {
            message: message.into(),
            cause: None,
        }
    }

    /// Refused by the log with `cause` while doing `context`.
    pub fn other_from_cause(context: &str, cause: impl Error + Send + Sync + 'static) -> Self {
        let (message, cause) = described(context, cause);
        Self::Other {
            message,
            cause: Some(cause),
        }
    }
}

/// Where a consumer group with no committed position starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record still in the log.
    Earliest,
    /// Only records published after the group first joins. On a broker,
    /// "joins" is when the first member, once assigned, looks up where each
    /// partition ends: a record published while it is still joining may be
    /// skipped.
    Latest,
}

#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Creates `topic` with `partitions` partitions unless it exists. Never
    /// changes an existing topic.
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), LogError>;

    /// Appends records and waits for each to be durable or to fail. The
    /// result at index i belongs to record i.
    async fn publish(&self, records: Vec<OutgoingRecord>) -> Vec<Result<(), LogError>>;

    /// Joins consumer group `group` on `topics`.
    async fn consume(
        &self,
        group: &str,
        topics: &[String],
        start: StartAt,
    ) -> Result<Box<dyn LogConsumer>, LogError>;
}

#[async_trait]
pub trait LogConsumer: Send {
    /// Waits for at least one record, then gathers more for up to `linger`
    /// (at most `max`). Records of one partition come in log order.
    async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<Record>, LogError>;

    /// Commits the group's position past every record in `records`: after a
    /// restart the group resumes after them. Call only once their processing is
    /// complete; committing is what turns at-least-once into "not again".
    fn commit(&mut self, records: &[Record]) -> Result<(), LogError>;

    /// Becomes `true` once the group has given this member its partitions
    /// (possibly none), i.e. once the consumer is actually reading. In memory
    /// that is before `consume` returns; a broker's assignment arrives while
    /// the member waits in [`LogConsumer::next_batch`], so wait on this from
    /// another task than the one reading.
    fn assigned(&self) -> watch::Receiver<bool>;

    /// How far behind the member is on each partition it reads, as far as it
    /// knows without asking the log (on Kafka: the client's last statistics,
    /// a few seconds old at most; partitions whose position or end is not
    /// known yet are left out).
    fn lag(&self) -> Vec<PartitionLag>;
}
