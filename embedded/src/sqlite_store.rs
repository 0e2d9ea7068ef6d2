//! [`MessageStore`] on SQLite: the MongoDB store's collections as tables in one
//! file, with the same append transaction and the same answers.
//!
//! Tables (see [`SCHEMA`]):
//!
//! * `streams(stream PK, head, epoch, delivered, acked, created_at)`: one row
//!   per stream, whose `head` is the seq counter;
//! * `entries(stream, seq, id, ts, from_user, payload, expires_at)`, primary
//!   key `(stream, seq)`, indexed on `id`: one per (message, stream), the
//!   payload kept as the JSON text submitted;
//! * `messages(id PK, ts, from_user, published, expires_at)` with
//!   `deliveries(id, position, stream, seq)`: one per message, its streams in
//!   the order it named them; `published = 0` is the outbox;
//! * `idempotency(key PK, id, recipients, expires_at)`.
//!
//! Times are unix milliseconds. An append is one `BEGIN IMMEDIATE`
//! transaction, planned (duplicates, ids, seqs) by
//! [`herald_common::store::plan`] like the MongoDB store's; the database runs
//! in WAL mode with `synchronous=FULL`, so a committed append has reached the
//! disk and survives a crash of the process or the machine.
//!
//! rusqlite is synchronous: every call runs on tokio's blocking pool, on one
//! connection behind a mutex. One connection is what SQLite wants for writes
//! anyway (it has one writer at a time), and serialising appends is what
//! makes seqs unique and gapless without MongoDB's conflict retries.
//!
//! Retention: a task started by [`SqliteStore::open`] deletes expired rows
//! every [`PURGE_EVERY`], and every read filters on `expires_at` in the
//! meantime, so an expired message is never served (MongoDB's TTL monitor
//! may serve one for up to a minute; here it is gone on time).

use async_trait::async_trait;
use blocking::Fail;
use herald_common::envelope::Event;
use herald_common::store::plan::{
    AppendPlan, Known, KnownId, KnownKey, ids_to_look_up, keys_to_look_up,
};
use herald_common::store::{
    Appended, DeliveryStatus, MessageStatus, MessageStore, NewMessage, StoreError, StreamInfo,
    StreamProgress, new_epoch,
};
use herald_common::time::now_ms;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often expired entries, messages and keys are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Rows deleted per purge transaction, so a large purge never holds the
/// connection (and every append behind it) for long.
const PURGE_CHUNK: i64 = 5_000;

/// The database's file name inside the data directory.
const FILE_NAME: &str = "herald.sqlite3";

/// Version of [`SCHEMA`], kept in `PRAGMA user_version` so a later layout can
/// tell which one a file holds.
const SCHEMA_VERSION: i64 = 1;

/// The tables and indexes; idempotent so opening an existing file is safe.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS streams (
    stream     TEXT PRIMARY KEY,
    head       INTEGER NOT NULL DEFAULT 0,
    epoch      TEXT NOT NULL,
    delivered  INTEGER NOT NULL DEFAULT 0,
    acked      INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    stream     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    id         TEXT NOT NULL,
    ts         INTEGER NOT NULL,
    from_user  TEXT,
    payload    TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (stream, seq)
);
CREATE INDEX IF NOT EXISTS entries_by_id ON entries (id);
CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (expires_at);
CREATE TABLE IF NOT EXISTS messages (
    id         TEXT PRIMARY KEY,
    ts         INTEGER NOT NULL,
    from_user  TEXT,
    published  INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_outbox ON messages (ts) WHERE published = 0;
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id       TEXT NOT NULL,
    position INTEGER NOT NULL,
    stream   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (id, position)
);
CREATE TABLE IF NOT EXISTS idempotency (
    key        TEXT PRIMARY KEY,
    id         TEXT NOT NULL,
    recipients INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
";

/// The store: a handle on the connection, shared with the purge task.
pub struct SqliteStore {
    db: Arc<Db>,
}

/// The connection and where it lives.
struct Db {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// Running rusqlite on the blocking pool, and the error type its closures use.
mod blocking {
    use super::Db;
    use herald_common::store::StoreError;
    use rusqlite::Connection;
    use std::sync::{Arc, PoisonError};

    /// Why a call failed: every failure becomes
    /// [`StoreError::Unavailable`] (with rusqlite's error as its cause), and
    /// a local type lets `?` convert rusqlite's errors.
    pub struct Fail(pub StoreError);

    impl From<rusqlite::Error> for Fail {
        fn from(e: rusqlite::Error) -> Self {
            Fail(StoreError::from_cause("", e))
        }
    }

    impl From<Fail> for StoreError {
        fn from(f: Fail) -> Self {
            f.0
        }
    }

    /// Runs `f` on the connection in a blocking-pool thread. A transaction
    /// `f` leaves unfinished (an error returned early) is rolled back when
    /// dropped, so the call had no effect, as the contract wants of
    /// `Unavailable`.
    pub async fn call<T, F>(db: &Arc<Db>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fail> + Send + 'static,
    {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock unwound through (and so rolled
            // back) any open transaction: the connection is still sound.
            let mut conn = db.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::from_cause("store call failed", e))?
    }
}

/// A count or position from the API as SQLite's integer (u64 beyond i64 is
/// not a seq anyone will reach; clamp rather than wrap).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A page size as SQL `LIMIT`: 0 means no limit, as it does for MongoDB's
/// `limit(0)`, which the MongoDB store passes through unchanged.
fn sql_limit(limit: usize) -> i64 {
    if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    }
}

/// Turns a stored payload back into the JSON it was accepted as.
fn payload(text: String) -> Result<Box<RawValue>, Fail> {
    RawValue::from_string(text)
        .map_err(|e| Fail(StoreError::from_cause("stored payload is not JSON", e)))
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, a directory of its own
    /// (created if missing; the database is the file `herald.sqlite3` plus
    /// SQLite's `-wal` and `-shm` files), and starts the purge task, which
    /// ends when the store is dropped. Needs a tokio runtime.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_purge(dir, PURGE_EVERY).await
    }

    /// [`SqliteStore::open`] with another purge interval.
    pub async fn open_with_purge(dir: &Path, purge_every: Duration) -> Result<Self, StoreError> {
        let dir = dir.to_path_buf();
        let path = dir.join(FILE_NAME);
        let conn = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> Result<Connection, Fail> {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Fail(StoreError::from_cause(
                        &format!("cannot create {}", dir.display()),
                        e,
                    ))
                })?;
                let conn = Connection::open(&path)?;
                // WAL so reads do not block the writer; FULL so a commit is
                // on disk (WAL's NORMAL could lose the last commits on power
                // loss, which the durability contract forbids).
                let mode: String =
                    conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(Fail(StoreError::unavailable(format!(
                        "cannot use WAL mode (got {mode})"
                    ))));
                }
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.busy_timeout(Duration::from_secs(5))?;
                conn.execute_batch(SCHEMA)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                Ok(conn)
            }
        })
        .await
        .map_err(|e| StoreError::from_cause("opening the store failed", e))??;
        let store = Self {
            db: Arc::new(Db {
                conn: Mutex::new(conn),
                path,
            }),
        };
        tokio::spawn(purge_task(Arc::downgrade(&store.db), purge_every));
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// Deletes every expired entry, message (with its deliveries) and
    /// idempotency key now, and returns how many rows went. The purge task
    /// calls this; tests and operators may too.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        purge(&self.db).await
    }

    /// Runs `f` on the connection (see [`blocking::call`]).
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fail> + Send + 'static,
    {
        blocking::call(&self.db, f).await
    }
}

/// Purges every `every` while the store exists. It holds the store weakly,
/// so dropping the store closes the database rather than leaking it here.
async fn purge_task(db: Weak<Db>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(db) = db.upgrade() else {
            return;
        };
        match purge(&db).await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "purged expired messages"),
            Err(e) => tracing::warn!(error = %e, "cannot purge expired messages"),
        }
    }
}

/// Deletes expired rows in chunks of [`PURGE_CHUNK`], one transaction per
/// chunk, until none is left.
async fn purge(db: &Arc<Db>) -> Result<u64, StoreError> {
    let mut total = 0u64;
    loop {
        let now = now_ms();
        let rows = blocking::call(db, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut rows = tx.execute(
                "DELETE FROM entries WHERE rowid IN \
                 (SELECT rowid FROM entries WHERE expires_at <= ?1 LIMIT ?2)",
                params![now, PURGE_CHUNK],
            )?;
            let ids: Vec<String> = {
                let mut stmt =
                    tx.prepare_cached("SELECT id FROM messages WHERE expires_at <= ?1 LIMIT ?2")?;
                stmt.query_map(params![now, PURGE_CHUNK], |row| row.get(0))?
                    .collect::<Result<_, _>>()?
            };
            {
                let mut deliveries = tx.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
                let mut messages = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
                for id in &ids {
                    rows += deliveries.execute([id])?;
                    rows += messages.execute([id])?;
                }
            }
            rows += tx.execute(
                "DELETE FROM idempotency WHERE rowid IN \
                 (SELECT rowid FROM idempotency WHERE expires_at <= ?1 LIMIT ?2)",
                params![now, PURGE_CHUNK],
            )?;
            tx.commit()?;
            Ok(rows as u64)
        })
        .await?;
        total += rows;
        if rows == 0 {
            return Ok(total);
        }
    }
}

/// Keys already stored and not expired (an expired key the purge has not
/// reached yet is free again).
fn known_keys(
    tx: &rusqlite::Transaction<'_>,
    batch: &[NewMessage],
    ts: i64,
) -> Result<HashMap<String, KnownKey>, Fail> {
    let mut known = HashMap::new();
    let mut find = tx.prepare_cached(
        "SELECT id, recipients FROM idempotency WHERE key = ?1 AND expires_at > ?2",
    )?;
    for key in keys_to_look_up(batch) {
        let found: Option<(String, i64)> = find
            .query_row(params![key, ts], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        if let Some((id, recipients)) = found {
            let first = KnownKey {
                id,
                recipients: recipients as usize,
            };
            known.insert(key.to_string(), first);
        }
    }
    Ok(known)
}

/// The ids the batch's submitters chose that a message already has, expired
/// or not (its row holds the id until the purge removes it), with what the
/// planner compares.
fn known_ids(
    tx: &rusqlite::Transaction<'_>,
    batch: &[NewMessage],
) -> Result<HashMap<String, KnownId>, Fail> {
    let mut known = HashMap::new();
    let mut sender = tx.prepare_cached("SELECT from_user FROM messages WHERE id = ?1")?;
    let mut deliveries =
        tx.prepare_cached("SELECT stream FROM deliveries WHERE id = ?1 ORDER BY position")?;
    let mut one_entry = tx.prepare_cached("SELECT payload FROM entries WHERE id = ?1 LIMIT 1")?;
    for id in ids_to_look_up(batch) {
        let Some(from) = sender
            .query_row([id], |row| row.get::<_, Option<String>>(0))
            .optional()?
        else {
            continue;
        };
        let streams = deliveries
            .query_map([id], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let payload = one_entry.query_row([id], |row| row.get(0)).optional()?;
        let taken = KnownId {
            streams,
            from,
            payload,
        };
        known.insert(id.to_string(), taken);
    }
    Ok(known)
}

/// The body of one append transaction, as in the MongoDB store: the planner
/// decides, this reads the keys and ids, steps the counters and inserts the
/// rows.
fn append_in(
    tx: &rusqlite::Transaction<'_>,
    batch: &[NewMessage],
    ts: i64,
) -> Result<Vec<Appended>, Fail> {
    let known = Known {
        keys: known_keys(tx, batch, ts)?,
        ids: known_ids(tx, batch)?,
    };
    let plan = AppendPlan::new(batch, known, ts);
    if plan.stores_nothing() {
        return Ok(plan.place(&HashMap::new()).results);
    }

    // A stream seen for the first time gets its row, and its epoch, here.
    let mut heads: HashMap<&str, u64> = HashMap::new();
    {
        let mut step = tx.prepare_cached(
            "INSERT INTO streams (stream, head, epoch, delivered, acked, created_at) \
             VALUES (?1, ?2, ?3, 0, 0, ?4) \
             ON CONFLICT (stream) DO UPDATE SET head = head + excluded.head \
             RETURNING head",
        )?;
        for (stream, count) in plan.counts() {
            let head: i64 = step
                .query_row(params![stream, int(*count), new_epoch(), ts], |row| {
                    row.get(0)
                })?;
            heads.insert(stream, head as u64);
        }
    }
    let placed = plan.place(&heads);

    let mut entry = tx.prepare_cached(
        "INSERT INTO entries (stream, seq, id, ts, from_user, payload, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut message = tx.prepare_cached(
        "INSERT INTO messages (id, ts, from_user, published, expires_at) \
         VALUES (?1, ?2, ?3, 0, ?4)",
    )?;
    let mut delivery = tx.prepare_cached(
        "INSERT INTO deliveries (id, position, stream, seq) VALUES (?1, ?2, ?3, ?4)",
    )?;
    // REPLACE: an expired key the purge has not reached yet is free again.
    let mut key_row = tx.prepare_cached(
        "INSERT OR REPLACE INTO idempotency (key, id, recipients, expires_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for p in &placed.placements {
        let m = p.message;
        let text = m.payload.get();
        message.execute(params![p.id, p.ts, m.from, p.expires_at])?;
        for (position, (stream, seq)) in p.deliveries.iter().enumerate() {
            let seq = int(*seq);
            entry.execute(params![stream, seq, p.id, p.ts, m.from, text, p.expires_at])?;
            delivery.execute(params![p.id, position as i64, stream, seq])?;
        }
        if let Some(key) = &m.key {
            key_row.execute(params![key, p.id, m.streams.len() as i64, p.expires_at])?;
        }
    }
    Ok(placed.results)
}

/// Reads the entries of one message, ordered by stream as the MongoDB store
/// orders them.
fn events_of(conn: &Connection, id: &str, now: i64) -> Result<Vec<Event>, Fail> {
    let mut stmt = conn.prepare_cached(
        "SELECT stream, seq, ts, from_user, payload FROM entries \
         WHERE id = ?1 AND expires_at > ?2 ORDER BY stream",
    )?;
    let rows = stmt.query_map(params![id, now], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    let mut events = Vec::new();
    for row in rows {
        let (stream, seq, ts, from, text) = row?;
        events.push(Event {
            id: id.to_string(),
            stream,
            seq: seq as u64,
            ts,
            from,
            payload: payload(text)?,
        });
    }
    Ok(events)
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.call(move |conn| {
            // IMMEDIATE takes the write lock up front: the transaction cannot
            // fail half-way for want of it.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let results = append_in(&tx, &batch, now_ms())?;
            tx.commit()?;
            Ok(results)
        })
        .await
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut mark =
                    tx.prepare_cached("UPDATE messages SET published = 1 WHERE id = ?1")?;
                for id in &ids {
                    mark.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn unpublished(
        &self,
        older_than_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Event>)>, StoreError> {
        self.call(move |conn| {
            let now = now_ms();
            let cutoff = now - older_than_ms;
            let tx = conn.transaction()?;
            let pending: Vec<String> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id FROM messages \
                     WHERE published = 0 AND ts <= ?1 AND expires_at > ?2 \
                     ORDER BY ts, id LIMIT ?3",
                )?;
                stmt.query_map(params![cutoff, now, sql_limit(limit)], |row| row.get(0))?
                    .collect::<Result<_, _>>()?
            };
            let mut out = Vec::with_capacity(pending.len());
            for id in pending {
                let events = events_of(&tx, &id, now)?;
                out.push((id, events));
            }
            Ok(out)
        })
        .await
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let stream = stream.to_string();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, id, ts, from_user, payload FROM entries \
                 WHERE stream = ?1 AND seq > ?2 AND expires_at > ?3 \
                 ORDER BY seq LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![stream, int(after), now_ms(), sql_limit(limit)],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                },
            )?;
            let mut events = Vec::new();
            for row in rows {
                let (seq, id, ts, from, text) = row?;
                events.push(Event {
                    id,
                    stream: stream.clone(),
                    seq: seq as u64,
                    ts,
                    from,
                    payload: payload(text)?,
                });
            }
            Ok(events)
        })
        .await
    }

    async fn stream_info(&self, stream: &str) -> Result<StreamInfo, StoreError> {
        let stream = stream.to_string();
        self.call(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO streams (stream, head, epoch, delivered, acked, created_at) \
                 VALUES (?1, 0, ?2, 0, 0, ?3) ON CONFLICT (stream) DO NOTHING",
            )?
            .execute(params![stream, new_epoch(), now])?;
            let (epoch, head, acked): (String, i64, i64) = tx
                .prepare_cached("SELECT epoch, head, acked FROM streams WHERE stream = ?1")?
                .query_row([&stream], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            let first: Option<i64> = tx
                .prepare_cached(
                    "SELECT seq FROM entries WHERE stream = ?1 AND expires_at > ?2 \
                     ORDER BY seq LIMIT 1",
                )?
                .query_row(params![stream, now], |row| row.get(0))
                .optional()?;
            tx.commit()?;
            Ok(StreamInfo {
                epoch,
                head: head as u64,
                first: first.map_or(head as u64 + 1, |s| s as u64),
                acked: acked as u64,
            })
        })
        .await
    }

    async fn record_progress(&self, progress: &[StreamProgress]) -> Result<(), StoreError> {
        let progress: Vec<StreamProgress> = progress
            .iter()
            .filter(|p| p.delivered.is_some() || p.acked.is_some())
            .cloned()
            .collect();
        if progress.is_empty() {
            return Ok(());
        }
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                // Like `$max` on a missing document: a stream without a row is
                // left without one.
                let mut raise = tx.prepare_cached(
                    "UPDATE streams SET \
                     delivered = MAX(delivered, COALESCE(?2, delivered)), \
                     acked = MAX(acked, COALESCE(?3, acked)) \
                     WHERE stream = ?1",
                )?;
                for p in &progress {
                    raise.execute(params![p.stream, p.delivered.map(int), p.acked.map(int)])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn message_status(&self, id: &str) -> Result<Option<MessageStatus>, StoreError> {
        let id = id.to_string();
        self.call(move |conn| {
            let now = now_ms();
            let tx = conn.transaction()?;
            let Some((ts, from, published)) = tx
                .prepare_cached(
                    "SELECT ts, from_user, published FROM messages \
                     WHERE id = ?1 AND expires_at > ?2",
                )?
                .query_row(params![id, now], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, bool>(2)?,
                    ))
                })
                .optional()?
            else {
                return Ok(None);
            };
            // The payload lives in the entries, as in MongoDB: a message
            // without a retained entry has nothing to show.
            let Some(text) = tx
                .prepare_cached(
                    "SELECT payload FROM entries WHERE id = ?1 AND expires_at > ?2 LIMIT 1",
                )?
                .query_row(params![id, now], |row| row.get::<_, String>(0))
                .optional()?
            else {
                return Ok(None);
            };
            let recipients: Vec<DeliveryStatus> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT d.stream, d.seq, COALESCE(s.delivered, 0), COALESCE(s.acked, 0) \
                     FROM deliveries d LEFT JOIN streams s ON s.stream = d.stream \
                     WHERE d.id = ?1 ORDER BY d.position",
                )?;
                stmt.query_map([&id], |row| {
                    let seq: i64 = row.get(1)?;
                    let delivered: i64 = row.get(2)?;
                    let acked: i64 = row.get(3)?;
                    Ok(DeliveryStatus {
                        stream: row.get(0)?,
                        seq: seq as u64,
                        delivered: delivered >= seq,
                        acked: acked >= seq,
                    })
                })?
                .collect::<Result<_, _>>()?
            };
            Ok(Some(MessageStatus {
                id,
                ts,
                from,
                payload: payload(text)?,
                published,
                recipients,
            }))
        })
        .await
    }
}
