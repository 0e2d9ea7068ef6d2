//! The message store: the durable record of every accepted message, organised
//! as streams (MongoDB in a cluster).
//!
//! A stream is an append-only sequence with its own gapless `seq` (1, 2, 3...):
//! `user:<id>` is one user's inbox; other kinds of stream (topics) use the same
//! storage. The store is what makes Herald's delivery guarantee: a message is
//! *accepted* once [`MessageStore::append`] returns, and everything after that
//! (publishing, dispatch, delivery) can be retried or replayed from here.
//!
//! Contract:
//!
//! * **Atomic append.** `append` stores a whole batch or nothing. Each message
//!   takes, in every stream it names, the next seq of that stream; a seq is
//!   never handed out without its message, and two concurrent appenders
//!   (collectors) never hand out the same one. Within one stream, messages of
//!   one batch take seqs in batch order.
//! * **Durability.** When `append` returns `Ok`, the batch survives a crash of
//!   the store (MongoDB: majority, journaled write concern).
//! * **Idempotency.** A message whose `key` was already appended is not stored
//!   again: its result is the first message's id, marked
//!   [`Outcome::Duplicate`].
//! * **Ids are per-message outcomes.** A message whose chosen `id` is already
//!   a stored message's (or an earlier message's of the batch) is not stored:
//!   with the same content ([`plan::same_content`]) it is a
//!   [`Outcome::Duplicate`] of that message, with other content an
//!   [`Outcome::Conflict`]. Either way the rest of the batch is stored as if
//!   it were not there: a reused id never fails an append.
//! * **Read order.** [`MessageStore::read_stream`] returns entries in seq order;
//!   every seq up to a stream's head is readable once its append returned.
//! * **Retention.** Entries expire after their message's ttl. A stream's
//!   `first` seq rises as old entries go; its `epoch` changes only if the
//!   stream's storage is lost and created anew, which is how readers tell a
//!   recreated stream from a continued one.
//! * **Errors.** `Err(Unavailable)` means nothing of the call took effect
//!   (append) or nothing was read; callers answer 503 or retry. An `append`
//!   whose outcome is unknown (the connection dropped during commit) is
//!   retried internally until known.
//!
//! The contract suite (`contract/tests/store.rs`) runs these points on both
//! adapters; the numbering and idempotency rules are planned once for every
//! store in [`plan`].

pub mod plan;

use crate::envelope::Event;
use crate::error::{Cause, described};
use async_trait::async_trait;
use serde_json::value::RawValue;
use std::error::Error;

/// Why a store call failed: a message, and the client's own error as the
/// `source()` when one caused it (see [`crate::error`]). `Clone`, because a
/// failed append is reported to every submitter whose message was in it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("message store unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl StoreError {
    /// Unavailable for a reason of the caller's own.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            cause: None,
        }
    }

    /// Unavailable because the client failed with `cause` while doing
    /// `context` (empty: the cause says it all).
    pub fn from_cause(context: &str, cause: impl Error + Send + Sync + 'static) -> Self {
        let (message, cause) = described(context, cause);
        Self::Unavailable {
            message,
            cause: Some(cause),
        }
    }
}

/// A new stream's epoch: 8 random hex digits. Every store makes them the
/// same way, so a client cannot tell one store's from another's.
pub fn new_epoch() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A message to append.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Storage names of the streams it goes to, distinct.
    pub streams: Vec<String>,
    pub payload: Box<RawValue>,
    pub key: Option<String>,
    pub from: Option<String>,
    pub ttl_secs: u64,
    /// The id, when the submitter chose it (a pusher relaying a client's
    /// publish, so it can confirm the id at once); otherwise the store makes
    /// one (UUIDv7).
    pub id: Option<String>,
}

/// What `append` did with one message.
#[derive(Clone, Debug)]
pub struct Appended {
    /// The message's id; for a duplicate, the first message's; for a
    /// conflict, the id that is taken.
    pub id: String,
    /// How many streams the message went to (a duplicate: the first
    /// message's; a conflict: 0).
    pub recipients: usize,
    pub outcome: Outcome,
    /// One event per stream, with the seq it took there (empty unless
    /// [`Outcome::Stored`]).
    pub events: Vec<Event>,
}

impl Appended {
    /// Whether this message was stored by this append.
    pub fn is_stored(&self) -> bool {
        self.outcome == Outcome::Stored
    }

    /// Whether it repeats a message stored before (by key or by id).
    pub fn is_duplicate(&self) -> bool {
        self.outcome == Outcome::Duplicate
    }

    /// Whether its id belongs to a different message.
    pub fn is_conflict(&self) -> bool {
        self.outcome == Outcome::Conflict
    }
}

/// What became of one message of an append. Only `Stored` wrote anything;
/// the others are answers about messages already stored, so they never fail
/// the batch they came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now, with a seq in each of its streams.
    Stored,
    /// The same message was stored before: its `key` is known, or its `id`
    /// is, with the same content. Nothing stored.
    Duplicate,
    /// Its `id` is a different message's. Nothing stored; the submitter
    /// reused an id it should not have.
    Conflict,
}

/// A stream's position as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// Fixed when the stream's storage was created.
    pub epoch: String,
    /// The last seq handed out (0: none yet).
    pub head: u64,
    /// The oldest seq still retained (`head + 1` when none is).
    pub first: u64,
    /// The highest seq the stream's owner acknowledged (0: none).
    pub acked: u64,
}

/// Per-recipient state of a message, for status queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub stream: String,
    pub seq: u64,
    pub delivered: bool,
    pub acked: bool,
}

/// A stored message as the status query shows it.
#[derive(Clone, Debug)]
pub struct MessageStatus {
    pub id: String,
    pub ts: i64,
    pub from: Option<String>,
    pub payload: Box<RawValue>,
    pub published: bool,
    pub recipients: Vec<DeliveryStatus>,
}

/// Progress of one stream's reader, recorded in batches by the pusher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamProgress {
    pub stream: String,
    /// Highest seq written to a socket, if it advanced.
    pub delivered: Option<u64>,
    /// Highest seq the client acknowledged, if it advanced.
    pub acked: Option<u64>,
}

#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Appends a batch atomically (see the module contract).
    async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError>;

    /// Notes that these messages' events are durably in the log, so the outbox
    /// need not publish them again.
    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError>;

    /// Events of messages accepted more than `older_than_ms` ago and not yet
    /// marked published, oldest first: the outbox's work list.
    async fn unpublished(
        &self,
        older_than_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Event>)>, StoreError>;

    /// Up to `limit` entries of `stream` after seq `after`, in seq order.
    async fn read_stream(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;

    /// The stream's epoch and positions; creates its storage (fixing its
    /// epoch) if it has none yet.
    async fn stream_info(&self, stream: &str) -> Result<StreamInfo, StoreError>;

    /// Raises the recorded delivered / acked positions (never lowers them).
    async fn record_progress(&self, progress: &[StreamProgress]) -> Result<(), StoreError>;

    /// The message with the state of each of its recipients.
    async fn message_status(&self, id: &str) -> Result<Option<MessageStatus>, StoreError>;
}
