//! [`MessageStore`] on MongoDB (a replica set: transactions need one).
//!
//! Collections (database = the namespace):
//!
//! * `streams`: `{_id: <stream>, head, epoch, delivered, acked, created_at}`:
//!   one document per stream, whose `head` is the seq counter.
//! * `entries`: `{stream, seq, id, ts, from, payload, expires_at}`: one per
//!   (message, stream); unique on `(stream, seq)`; `payload` is the JSON text
//!   as submitted, so replay sends back exactly what was accepted.
//! * `messages`: `{_id: <id>, ts, from, deliveries: [{stream, seq}], published,
//!   expires_at}`: one per message; `published: false` is the outbox.
//! * `idempotency`: `{_id: <key>, id, recipients, expires_at}`.
//!
//! An append is one transaction, planned (duplicates, ids, seqs) by
//! [`herald_common::store::plan`]: keys read, counters stepped with `$inc`,
//! entries, messages and keys inserted, committed with majority journaled write
//! concern. Two collectors stepping one counter conflict; the loser's
//! transaction is retried, so seqs are unique and gapless.

use async_trait::async_trait;
use futures::TryStreamExt;
use herald_common::envelope::Event;
use herald_common::retry::Policy;
use herald_common::store::plan::{
    AppendPlan, Known, KnownId, KnownKey, ids_to_look_up, keys_to_look_up,
};
use herald_common::store::{
    Appended, DeliveryStatus, MessageStatus, MessageStore, NewMessage, StoreError, StreamInfo,
    StreamProgress, new_epoch,
};
use herald_common::time::now_ms;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::error::{
    Error as MongoError, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, ClientSession, Collection, IndexModel};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::time::Duration;

/// How many times a conflicting transaction is retried before the append
/// reports the store unavailable.
const MAX_TRANSACTION_ATTEMPTS: u32 = 50;

/// Between attempts at a transaction that conflicted with another writer:
/// short waits, as that writer is done within milliseconds, jittered so the
/// two do not collide again.
const CONFLICT_BACKOFF: Policy = Policy::bounded(MAX_TRANSACTION_ATTEMPTS as usize)
    .starting_at(Duration::from_millis(5))
    .capped_at(Duration::from_millis(100));

/// Between attempts at creating a stream's document that a racing reader is
/// creating too: its document is there a moment later.
const STREAM_RACE: Policy = Policy::bounded(11)
    .starting_at(Duration::from_millis(10))
    .capped_at(Duration::from_millis(100));

#[derive(Serialize, Deserialize)]
struct EntryDoc {
    stream: String,
    seq: i64,
    id: String,
    ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    payload: String,
    expires_at: DateTime,
}

#[derive(Serialize, Deserialize)]
struct DeliveryDoc {
    stream: String,
    seq: i64,
}

#[derive(Serialize, Deserialize)]
struct MessageDoc {
    #[serde(rename = "_id")]
    id: String,
    ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    deliveries: Vec<DeliveryDoc>,
    published: bool,
    expires_at: DateTime,
}

#[derive(Serialize, Deserialize)]
struct KeyDoc {
    #[serde(rename = "_id")]
    key: String,
    id: String,
    recipients: i64,
    expires_at: DateTime,
}

#[derive(Deserialize)]
struct StreamDoc {
    #[serde(default)]
    head: i64,
    epoch: String,
    #[serde(default)]
    acked: i64,
}

pub struct MongoStore {
    client: Client,
    streams: Collection<StreamDoc>,
    entries: Collection<EntryDoc>,
    messages: Collection<MessageDoc>,
    keys: Collection<KeyDoc>,
}

fn unavailable(e: MongoError) -> StoreError {
    StoreError::from_cause("", e)
}

fn entry_event(e: EntryDoc) -> Result<Event, StoreError> {
    let payload = RawValue::from_string(e.payload)
        .map_err(|err| StoreError::from_cause("stored payload is not JSON", err))?;
    Ok(Event {
        id: e.id,
        stream: e.stream,
        seq: e.seq as u64,
        ts: e.ts,
        from: e.from,
        payload,
    })
}

impl MongoStore {
    /// Connects and makes sure the indexes exist. Server selection is short so
    /// that a store that is down turns into a prompt 503, not a hung request.
    pub async fn connect(uri: &str, database: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri).await.map_err(unavailable)?;
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(3));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(3));
        options.app_name.get_or_insert_with(|| "herald".to_string());
        let client = Client::with_options(options).map_err(unavailable)?;
        let db = client.database(database);
        let store = Self {
            streams: db.collection("streams"),
            entries: db.collection("entries"),
            messages: db.collection("messages"),
            keys: db.collection("idempotency"),
            client,
        };
        store.create_indexes().await?;
        Ok(store)
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let ttl = || IndexOptions::builder().expire_after(Duration::ZERO).build();
        let model = |keys: Document, options: Option<IndexOptions>| {
            IndexModel::builder().keys(keys).options(options).build()
        };
        let unique = IndexOptions::builder().unique(true).build();
        self.entries
            .create_indexes([
                model(doc! {"stream": 1, "seq": 1}, Some(unique)),
                model(doc! {"id": 1}, None),
                model(doc! {"expires_at": 1}, Some(ttl())),
            ])
            .await
            .map_err(unavailable)?;
        self.messages
            .create_indexes([
                model(doc! {"published": 1, "ts": 1}, None),
                model(doc! {"expires_at": 1}, Some(ttl())),
            ])
            .await
            .map_err(unavailable)?;
        self.keys
            .create_indexes([model(doc! {"expires_at": 1}, Some(ttl()))])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Creates a stream's document, fixing its epoch. Many first readers may
    /// race to create it (a burst of connections joining `all`): the losers
    /// can get a duplicate-key error or, from some servers, no document at
    /// all; either way they read the winner's after a moment.
    async fn create_stream(&self, stream: &str) -> Result<StreamDoc, StoreError> {
        for wait in STREAM_RACE.delays() {
            let result = self
                .streams
                .find_one_and_update(
                    doc! {"_id": stream},
                    doc! {"$setOnInsert": {"head": 0_i64, "epoch": new_epoch(), "created_at": DateTime::now()}},
                )
                .upsert(true)
                .return_document(ReturnDocument::After)
                .await;
            match result {
                Ok(Some(doc)) => return Ok(doc),
                Ok(None) => {}
                Err(e) if e.sql_code() == Some(11000) => {}
                Err(e) => return Err(unavailable(e)),
            }
            tokio::time::sleep(wait).await;
            if let Some(doc) = self
                .streams
                .find_one(doc! {"_id": stream})
                .await
                .map_err(unavailable)?
            {
                return Ok(doc);
            }
        }
        Err(StoreError::unavailable(format!(
            "could not create stream {stream}"
        )))
    }

    fn durable() -> WriteConcern {
        WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .build()
    }

    /// What the store knows of the batch's idempotency keys.
    async fn known_keys(
        &self,
        session: &mut ClientSession,
        batch: &[NewMessage],
    ) -> Result<HashMap<String, KnownKey>, MongoError> {
        let keys = keys_to_look_up(batch);
        let mut known = HashMap::new();
        if keys.is_empty() {
            return Ok(known);
        }
        let mut cursor = self
            .keys
            .find(doc! {"_id": {"$in": &keys}})
            .session(&mut *session)
            .await?;
        while let Some(k) = cursor.next(&mut *session).await.transpose()? {
            let first = KnownKey {
                id: k.id,
                recipients: k.recipients as usize,
            };
            known.insert(k.key, first);
        }
        Ok(known)
    }

    /// What the store knows of the ids the batch's submitters chose: every
    /// message still in `messages` (expired or not: its `_id` is taken until
    /// the TTL monitor removes it), with the payload of one of its entries.
    async fn known_ids(
        &self,
        session: &mut ClientSession,
        batch: &[NewMessage],
    ) -> Result<HashMap<String, KnownId>, MongoError> {
        let ids = ids_to_look_up(batch);
        let mut known = HashMap::new();
        if ids.is_empty() {
            return Ok(known);
        }
        let mut taken = Vec::new();
        let mut cursor = self
            .messages
            .find(doc! {"_id": {"$in": &ids}})
            .session(&mut *session)
            .await?;
        while let Some(m) = cursor.next(&mut *session).await.transpose()? {
            taken.push(m);
        }
        drop(cursor);
        // Reused ids are rare (a producer's mistake or a repeat), so one
        // read per id found is cheap where it happens at all.
        for m in taken {
            let payload = self
                .entries
                .find_one(doc! {"id": &m.id})
                .session(&mut *session)
                .await?
                .map(|e| e.payload);
            let id = KnownId {
                streams: m.deliveries.into_iter().map(|d| d.stream).collect(),
                from: m.from,
                payload,
            };
            known.insert(m.id, id);
        }
        Ok(known)
    }

    /// The body of one append transaction: the planner decides, this reads
    /// the keys and ids, steps the counters and inserts the documents.
    async fn append_in(
        &self,
        session: &mut ClientSession,
        batch: &[NewMessage],
    ) -> Result<Vec<Appended>, MongoError> {
        let known = Known {
            keys: self.known_keys(session, batch).await?,
            ids: self.known_ids(session, batch).await?,
        };
        let plan = AppendPlan::new(batch, known, now_ms());
        if plan.stores_nothing() {
            return Ok(plan.place(&HashMap::new()).results);
        }

        let mut heads: HashMap<&str, u64> = HashMap::new();
        for (stream, count) in plan.counts() {
            let updated = self
                .streams
                .find_one_and_update(
                    doc! {"_id": *stream},
                    doc! {
                        "$inc": {"head": *count as i64},
                        "$setOnInsert": {"epoch": new_epoch(), "created_at": DateTime::now()},
                    },
                )
                .upsert(true)
                .return_document(ReturnDocument::After)
                .session(&mut *session)
                .await?
                .ok_or_else(|| MongoError::custom("counter upsert returned nothing"))?;
            heads.insert(stream, updated.head as u64);
        }
        let placed = plan.place(&heads);

        let mut entries = Vec::new();
        let mut messages = Vec::with_capacity(placed.placements.len());
        let mut key_docs = Vec::new();
        for p in &placed.placements {
            let m = p.message;
            let expires_at = DateTime::from_millis(p.expires_at);
            for (stream, seq) in &p.deliveries {
                entries.push(EntryDoc {
                    stream: stream.to_string(),
                    seq: *seq as i64,
                    id: p.id.clone(),
                    ts: p.ts,
                    from: m.from.clone(),
                    payload: m.payload.get().to_string(),
                    expires_at,
                });
            }
            messages.push(MessageDoc {
                id: p.id.clone(),
                ts: p.ts,
                from: m.from.clone(),
                deliveries: p
                    .deliveries
                    .iter()
                    .map(|(stream, seq)| DeliveryDoc {
                        stream: stream.to_string(),
                        seq: *seq as i64,
                    })
                    .collect(),
                published: false,
                expires_at,
            });
            if let Some(key) = &m.key {
                key_docs.push(KeyDoc {
                    key: key.clone(),
                    id: p.id.clone(),
                    recipients: m.streams.len() as i64,
                    expires_at,
                });
            }
        }
        self.entries
            .insert_many(entries)
            .session(&mut *session)
            .await?;
        self.messages
            .insert_many(messages)
            .session(&mut *session)
            .await?;
        if !key_docs.is_empty() {
            self.keys
                .insert_many(key_docs)
                .session(&mut *session)
                .await?;
        }
        Ok(placed.results)
    }
}

/// Whether retrying the transaction can succeed now: a conflict with another
/// writer can, an unreachable server cannot (the driver labels both
/// transient; retrying the latter only delays the caller's 503).
fn is_transient(e: &MongoError) -> bool {
    use mongodb::error::ErrorKind;
    if matches!(
        e.kind.as_ref(),
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
    ) {
        return false;
    }
    e.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || matches!(
            e.sql_code(),
            Some(112) | Some(11000) // WriteConflict; duplicate key from a racing upsert or key
        )
}

/// Error codes, for the few that decide a retry.
trait ErrorCode {
    fn sql_code(&self) -> Option<i32>;
}

impl ErrorCode for MongoError {
    fn sql_code(&self) -> Option<i32> {
        use mongodb::error::{ErrorKind, WriteFailure};
        match self.kind.as_ref() {
            ErrorKind::Command(c) => Some(c.code),
            ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
            ErrorKind::InsertMany(im) => im
                .write_errors
                .as_ref()
                .and_then(|errs| errs.first().map(|w| w.code)),
            _ => None,
        }
    }
}

#[async_trait]
impl MessageStore for MongoStore {
    async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut session = self.client.start_session().await.map_err(unavailable)?;
        let mut delays = CONFLICT_BACKOFF.delays();
        let mut attempt = 0;
        loop {
            attempt += 1;
            session
                .start_transaction()
                .write_concern(Self::durable())
                .await
                .map_err(unavailable)?;
            let outcome = self.append_in(&mut session, &batch).await;
            let results = match outcome {
                Ok(results) => results,
                Err(e) => {
                    let _ = session.abort_transaction().await;
                    if is_transient(&e) && attempt < MAX_TRANSACTION_ATTEMPTS {
                        backoff(&mut delays).await;
                        continue;
                    }
                    return Err(unavailable(e));
                }
            };
            // A commit whose result is unknown is retried as a commit: the
            // server makes a repeated commit of one transaction idempotent.
            loop {
                match session.commit_transaction().await {
                    Ok(()) => return Ok(results),
                    Err(e)
                        if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                            && attempt < MAX_TRANSACTION_ATTEMPTS =>
                    {
                        attempt += 1;
                        backoff(&mut delays).await;
                    }
                    Err(e) if is_transient(&e) && attempt < MAX_TRANSACTION_ATTEMPTS => break,
                    Err(e) => return Err(unavailable(e)),
                }
            }
            backoff(&mut delays).await;
        }
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.messages
            .update_many(
                doc! {"_id": {"$in": ids}},
                doc! {"$set": {"published": true}},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn unpublished(
        &self,
        older_than_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Event>)>, StoreError> {
        let cutoff = now_ms() - older_than_ms;
        let pending: Vec<MessageDoc> = self
            .messages
            .find(doc! {"published": false, "ts": {"$lte": cutoff}})
            .sort(doc! {"published": 1, "ts": 1})
            .limit(limit as i64)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = pending.iter().map(|m| m.id.as_str()).collect();
        let entries: Vec<EntryDoc> = self
            .entries
            .find(doc! {"id": {"$in": &ids}})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let mut by_id: HashMap<String, Vec<Event>> = HashMap::new();
        for e in entries {
            let event = entry_event(e)?;
            by_id.entry(event.id.clone()).or_default().push(event);
        }
        Ok(pending
            .into_iter()
            .map(|m| {
                let mut events = by_id.remove(&m.id).unwrap_or_default();
                events.sort_by(|a, b| a.stream.cmp(&b.stream));
                (m.id, events)
            })
            .collect())
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let docs: Vec<EntryDoc> = self
            .entries
            // Expired entries stay until MongoDB's TTL monitor deletes them
            // (about a minute); they are never served meanwhile.
            .find(doc! {"stream": stream, "seq": {"$gt": after as i64}, "expires_at": {"$gt": DateTime::now()}})
            .sort(doc! {"stream": 1, "seq": 1})
            .limit(limit as i64)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        docs.into_iter().map(entry_event).collect()
    }

    async fn stream_info(&self, stream: &str) -> Result<StreamInfo, StoreError> {
        // Almost always the stream exists: a plain read, so that thousands of
        // connections (re)joining `all` at once do not queue on one document.
        let existing = self
            .streams
            .find_one(doc! {"_id": stream})
            .await
            .map_err(unavailable)?;
        let doc = match existing {
            Some(doc) => doc,
            None => self.create_stream(stream).await?,
        };
        let first = self
            .entries
            .find_one(doc! {"stream": stream, "expires_at": {"$gt": DateTime::now()}})
            .sort(doc! {"stream": 1, "seq": 1})
            .await
            .map_err(unavailable)?
            .map(|e| e.seq as u64)
            .unwrap_or(doc.head as u64 + 1);
        Ok(StreamInfo {
            epoch: doc.epoch,
            head: doc.head as u64,
            first,
            acked: doc.acked as u64,
        })
    }

    async fn record_progress(&self, progress: &[StreamProgress]) -> Result<(), StoreError> {
        for p in progress {
            let mut max = Document::new();
            if let Some(d) = p.delivered {
                max.insert("delivered", d as i64);
            }
            if let Some(a) = p.acked {
                max.insert("acked", a as i64);
            }
            if max.is_empty() {
                continue;
            }
            self.streams
                .update_one(doc! {"_id": &p.stream}, doc! {"$max": max})
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn message_status(&self, id: &str) -> Result<Option<MessageStatus>, StoreError> {
        let Some(message) = self
            .messages
            .find_one(doc! {"_id": id})
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let Some(entry) = self
            .entries
            .find_one(doc! {"id": id})
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let streams: Vec<&str> = message
            .deliveries
            .iter()
            .map(|d| d.stream.as_str())
            .collect();
        let mut cursor = self
            .streams
            .clone_with_type::<Document>()
            .find(doc! {"_id": {"$in": &streams}})
            .await
            .map_err(unavailable)?;
        let mut positions: HashMap<String, (i64, i64)> = HashMap::new();
        while let Some(d) = cursor.try_next().await.map_err(unavailable)? {
            let get = |f: &str| {
                d.get_i64(f)
                    .or_else(|_| d.get_i32(f).map(i64::from))
                    .unwrap_or(0)
            };
            if let Ok(stream) = d.get_str("_id") {
                positions.insert(stream.to_string(), (get("delivered"), get("acked")));
            }
        }
        let payload = entry_event(entry)?.payload;
        Ok(Some(MessageStatus {
            id: message.id,
            ts: message.ts,
            from: message.from,
            payload,
            published: message.published,
            recipients: message
                .deliveries
                .into_iter()
                .map(|d| {
                    let (delivered, acked) = positions.get(&d.stream).copied().unwrap_or((0, 0));
                    DeliveryStatus {
                        delivered: delivered >= d.seq,
                        acked: acked >= d.seq,
                        stream: d.stream,
                        seq: d.seq as u64,
                    }
                })
                .collect(),
        }))
    }
}

/// Waits before the next attempt at a transaction that conflicted.
async fn backoff(delays: &mut impl Iterator<Item = Duration>) {
    let wait = delays.next().unwrap_or(CONFLICT_BACKOFF.max_delay);
    tokio::time::sleep(wait).await;
}
