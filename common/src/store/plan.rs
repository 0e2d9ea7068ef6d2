//! An append, planned: everything [`MessageStore::append`] decides that does
//! not depend on how the store keeps its data, written once for every store.
//!
//! A store's append is then only its I/O, in three steps inside its
//! transaction:
//!
//! 1. read what it knows of the batch's idempotency keys
//!    ([`keys_to_look_up`]) and chosen ids ([`ids_to_look_up`]) and make an
//!    [`AppendPlan`] of them: which messages are duplicates (of a stored key
//!    or id, or of one earlier in the batch), which reuse an id of a
//!    different message (conflicts), the ids of the fresh ones, and how many
//!    seqs each stream takes;
//! 2. step each stream's counter by its [`AppendPlan::counts`], in that
//!    (sorted) order;
//! 3. hand the counters' new values to [`AppendPlan::place`], which gives
//!    every fresh message its seq in each of its streams, and store the
//!    [`Placement`]s it returns; its `results` are `append`'s answer.
//!
//! Nothing here does I/O or keeps state, so every rule of the store contract
//! that is about numbering and idempotency is tested here case by case, and
//! the contract suite checks that each store wires it to its storage.
//!
//! [`MessageStore::append`]: super::MessageStore::append

use super::{Appended, NewMessage, Outcome};
use crate::envelope::Event;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the store knows of an idempotency key: the message that first
/// carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownKey {
    pub id: String,
    pub recipients: usize,
}

/// What the store knows of a message id already taken: enough of its
/// message to tell a repeat of it from a different message reusing the id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownId {
    /// Its streams, in any order.
    pub streams: Vec<String>,
    pub from: Option<String>,
    /// Its payload's JSON text; `None` when its entries are already gone
    /// (expired, not yet purged with the rest): with nothing to compare, a
    /// reuse is a conflict.
    pub payload: Option<String>,
}

/// Everything a store looked up before planning.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// By idempotency key.
    pub keys: HashMap<String, KnownKey>,
    /// By message id, whether or not the message has expired: a store's id
    /// stays taken until its message is purged.
    pub ids: HashMap<String, KnownId>,
}

/// The batch's idempotency keys, each once, in batch order: what a store
/// looks up before planning.
pub fn keys_to_look_up(batch: &[NewMessage]) -> Vec<&str> {
    let mut seen = HashSet::new();
    batch
        .iter()
        .filter_map(|m| m.key.as_deref())
        .filter(|key| seen.insert(*key))
        .collect()
}

/// The ids the batch's submitters chose, each once, in batch order: what a
/// store looks up before planning, so that a reused id is an answer rather
/// than a failed insert.
pub fn ids_to_look_up(batch: &[NewMessage]) -> Vec<&str> {
    let mut seen = HashSet::new();
    batch
        .iter()
        .filter_map(|m| m.id.as_deref())
        .filter(|id| seen.insert(*id))
        .collect()
}

/// Whether `message` is the message stored as `known`: the same streams (in
/// any order), the same sender and byte for byte the same payload. Key and
/// ttl are not compared: a producer repeating a message may well have added
/// a key, and the ttl is not kept.
pub fn same_content(known: &KnownId, message: &NewMessage) -> bool {
    Content::of_known(known) == Content::of(message)
}

/// What [`same_content`] compares.
#[derive(PartialEq, Eq)]
struct Content<'a> {
    /// Sorted.
    streams: Vec<&'a str>,
    from: Option<&'a str>,
    payload: Option<&'a str>,
}

impl<'a> Content<'a> {
    fn new(streams: &'a [String], from: Option<&'a str>, payload: Option<&'a str>) -> Self {
        let mut streams: Vec<&str> = streams.iter().map(String::as_str).collect();
        streams.sort_unstable();
        Self {
            streams,
            from,
            payload,
        }
    }

    fn of(m: &'a NewMessage) -> Self {
        Self::new(&m.streams, m.from.as_deref(), Some(m.payload.get()))
    }

    fn of_known(k: &'a KnownId) -> Self {
        Self::new(&k.streams, k.from.as_deref(), k.payload.as_deref())
    }
}

/// An append before the counters are stepped.
#[derive(Debug)]
pub struct AppendPlan<'a> {
    batch: &'a [NewMessage],
    ts: i64,
    /// One per message; fresh ones get their events in [`AppendPlan::place`].
    results: Vec<Appended>,
    /// Indexes of the messages to store, in batch order.
    fresh: Vec<usize>,
    counts: BTreeMap<&'a str, u64>,
}

/// A fresh message with its place in each of its streams: what a store
/// writes for it.
#[derive(Debug)]
pub struct Placement<'a> {
    pub message: &'a NewMessage,
    pub id: String,
    /// When it was accepted, unix ms (the whole batch shares it).
    pub ts: i64,
    /// When it expires, unix ms: `ts` plus its ttl (saturating).
    pub expires_at: i64,
    /// Its seq in each of its streams, in the order the message names them.
    pub deliveries: Vec<(&'a str, u64)>,
}

/// A planned append with every seq given.
#[derive(Debug)]
pub struct Placed<'a> {
    /// What to store, one per fresh message, in batch order.
    pub placements: Vec<Placement<'a>>,
    /// `append`'s answer, one per message of the batch, in batch order.
    pub results: Vec<Appended>,
}

/// A message that is not stored: its answer.
fn not_stored(id: String, recipients: usize, outcome: Outcome) -> Appended {
    Appended {
        id,
        recipients,
        outcome,
        events: Vec::new(),
    }
}

impl<'a> AppendPlan<'a> {
    /// Plans `batch`, accepted at `ts` (unix ms), given what the store
    /// knows of its keys and ids. In batch order, a message is:
    ///
    /// * a duplicate when its key is known, or carried by an earlier message
    ///   of the batch: it resolves to the first message's id and recipients;
    /// * else, when its chosen id is known, or chosen by an earlier stored
    ///   message of the batch: a duplicate of that message if it has the
    ///   [same content](same_content), a conflict if not;
    /// * else fresh: it keeps the id its submitter chose or gets a new
    ///   UUIDv7, and is the one stored.
    ///
    /// Duplicates and conflicts are not stored and take no seq.
    pub fn new(batch: &'a [NewMessage], known: Known, ts: i64) -> Self {
        let Known {
            keys: mut known_keys,
            ids: known_ids,
        } = known;
        // Ids taken by fresh messages of this batch: the index of the message.
        let mut chosen: HashMap<&str, usize> = HashMap::new();
        let mut results = Vec::with_capacity(batch.len());
        let mut fresh = Vec::new();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            if let Some(first) = m.key.as_ref().and_then(|k| known_keys.get(k)) {
                results.push(not_stored(
                    first.id.clone(),
                    first.recipients,
                    Outcome::Duplicate,
                ));
                continue;
            }
            if let Some(id) = m.id.as_deref() {
                // The message that took the id first, if one did: is this
                // the same message, and how many streams it went to.
                let taken = if let Some(stored) = known_ids.get(id) {
                    Some((same_content(stored, m), stored.streams.len()))
                } else {
                    chosen.get(id).map(|&first| {
                        let first = &batch[first];
                        (Content::of(first) == Content::of(m), first.streams.len())
                    })
                };
                match taken {
                    Some((true, recipients)) => {
                        // A later repeat of this key in the batch is the
                        // same message again.
                        if let Some(key) = &m.key {
                            let first = KnownKey {
                                id: id.to_string(),
                                recipients,
                            };
                            known_keys.insert(key.clone(), first);
                        }
                        results.push(not_stored(id.to_string(), recipients, Outcome::Duplicate));
                        continue;
                    }
                    Some((false, _)) => {
                        results.push(not_stored(id.to_string(), 0, Outcome::Conflict));
                        continue;
                    }
                    None => {
                        chosen.insert(id, i);
                    }
                }
            }
            let id =
                m.id.clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            if let Some(key) = &m.key {
                let first = KnownKey {
                    id: id.clone(),
                    recipients: m.streams.len(),
                };
                known_keys.insert(key.clone(), first);
            }
            for stream in &m.streams {
                *counts.entry(stream.as_str()).or_insert(0) += 1;
            }
            results.push(Appended {
                id,
                recipients: m.streams.len(),
                outcome: Outcome::Stored,
                events: Vec::with_capacity(m.streams.len()),
            });
            fresh.push(i);
        }
        Self {
            batch,
            ts,
            results,
            fresh,
            counts,
        }
    }

    /// Whether no message is fresh: the store has nothing to write,
    /// and `place` (with no heads) gives the answer.
    pub fn stores_nothing(&self) -> bool {
        self.fresh.is_empty()
    }

    /// How many seqs each stream takes, by stream name. Stores step the
    /// counters in this order, so that concurrent appenders meet on the same
    /// counter first and conflict early rather than deadlock or fail late.
    pub fn counts(&self) -> &BTreeMap<&'a str, u64> {
        &self.counts
    }

    /// Gives every fresh message its seqs, from `heads`: each counted
    /// stream's counter after it was stepped by its count, so the batch's
    /// seqs in a stream run from `head - count + 1` to `head`, in batch order.
    ///
    /// # Panics
    ///
    /// If `heads` lacks a stream of [`AppendPlan::counts`] or holds a head
    /// below its count: the store did not step the counters it was asked to.
    pub fn place(self, heads: &HashMap<&str, u64>) -> Placed<'a> {
        let mut next: HashMap<&str, u64> = self
            .counts
            .iter()
            .map(|(stream, count)| {
                let head = heads
                    .get(stream)
                    .copied()
                    .unwrap_or_else(|| panic!("no head for stream {stream}"));
                let first = head
                    .checked_sub(count - 1)
                    .filter(|first| *first >= 1)
                    .unwrap_or_else(|| {
                        panic!("head {head} of {stream} is below its count {count}")
                    });
                (*stream, first)
            })
            .collect();
        let mut results = self.results;
        let mut placements = Vec::with_capacity(self.fresh.len());
        for &i in &self.fresh {
            let m = &self.batch[i];
            let result = &mut results[i];
            let mut deliveries = Vec::with_capacity(m.streams.len());
            for stream in &m.streams {
                let slot = next.get_mut(stream.as_str()).expect("counted in new");
                let seq = *slot;
                *slot += 1;
                deliveries.push((stream.as_str(), seq));
                result.events.push(Event {
                    id: result.id.clone(),
                    stream: stream.clone(),
                    seq,
                    ts: self.ts,
                    from: m.from.clone(),
                    payload: m.payload.clone(),
                });
            }
            placements.push(Placement {
                message: m,
                id: result.id.clone(),
                ts: self.ts,
                expires_at: expiry(self.ts, m.ttl_secs),
                deliveries,
            });
        }
        Placed {
            placements,
            results,
        }
    }
}

/// `ts` plus `ttl_secs`, in unix ms, saturating rather than wrapping for a
/// ttl no one will wait for.
fn expiry(ts: i64, ttl_secs: u64) -> i64 {
    let ttl_ms = i64::try_from(ttl_secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    ts.saturating_add(ttl_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    const TS: i64 = 1_700_000_000_000;

    fn msg(streams: &[&str], key: Option<&str>) -> NewMessage {
        NewMessage {
            streams: streams.iter().map(|s| s.to_string()).collect(),
            payload: RawValue::from_string(r#"{"n":1}"#.to_string()).unwrap(),
            key: key.map(str::to_string),
            from: Some("u9".to_string()),
            ttl_secs: 60,
            id: None,
        }
    }

    fn known(entries: &[(&str, &str, usize)]) -> Known {
        let keys = entries
            .iter()
            .map(|(key, id, recipients)| {
                let first = KnownKey {
                    id: id.to_string(),
                    recipients: *recipients,
                };
                (key.to_string(), first)
            })
            .collect();
        Known {
            keys,
            ids: HashMap::new(),
        }
    }

    /// `m` with its submitter's `id`.
    fn with_id(mut m: NewMessage, id: &str) -> NewMessage {
        m.id = Some(id.to_string());
        m
    }

    /// What a store knows of the id of `m`, stored before.
    fn known_ids(stored: &[&NewMessage]) -> Known {
        let ids = stored
            .iter()
            .map(|m| {
                let known = KnownId {
                    streams: m.streams.clone(),
                    from: m.from.clone(),
                    payload: Some(m.payload.get().to_string()),
                };
                (m.id.clone().unwrap(), known)
            })
            .collect();
        Known {
            keys: HashMap::new(),
            ids,
        }
    }

    fn heads(entries: &[(&'static str, u64)]) -> HashMap<&'static str, u64> {
        entries.iter().copied().collect()
    }

    fn seqs(appended: &Appended) -> Vec<(&str, u64)> {
        appended
            .events
            .iter()
            .map(|e| (e.stream.as_str(), e.seq))
            .collect()
    }

    #[test]
    fn keys_are_looked_up_once_each_in_batch_order() {
        let batch = [
            msg(&["user:a"], Some("k2")),
            msg(&["user:a"], None),
            msg(&["user:a"], Some("k1")),
            msg(&["user:b"], Some("k2")),
        ];
        assert_eq!(keys_to_look_up(&batch), ["k2", "k1"]);
        assert!(keys_to_look_up(&[msg(&["user:a"], None)]).is_empty());
    }

    #[test]
    fn fresh_messages_take_consecutive_seqs_in_batch_order() {
        let mut chosen = msg(&["user:a"], None);
        chosen.id = Some("chosen-id".to_string());
        let batch = [
            msg(&["user:a", "topic:t"], None),
            msg(&["topic:t"], None),
            chosen,
        ];
        let plan = AppendPlan::new(&batch, Known::default(), TS);
        assert!(!plan.stores_nothing());
        let counts: Vec<(&str, u64)> = plan.counts().iter().map(|(s, n)| (*s, *n)).collect();
        assert_eq!(counts, [("topic:t", 2), ("user:a", 2)], "sorted by stream");

        // topic:t had 5 before (head 7 after taking 2), user:a was new.
        let placed = plan.place(&heads(&[("topic:t", 7), ("user:a", 2)]));
        let results = &placed.results;
        assert_eq!(seqs(&results[0]), [("user:a", 1), ("topic:t", 6)]);
        assert_eq!(seqs(&results[1]), [("topic:t", 7)]);
        assert_eq!(seqs(&results[2]), [("user:a", 2)]);
        assert_eq!(results[2].id, "chosen-id");
        for r in results {
            assert!(r.is_stored());
            assert_eq!(r.recipients, r.events.len());
        }
        let made = uuid::Uuid::parse_str(&results[0].id).unwrap();
        assert_eq!(made.get_version_num(), 7);
        assert_ne!(results[0].id, results[1].id);

        assert_eq!(placed.placements.len(), 3);
        for (p, r) in placed.placements.iter().zip(results) {
            assert_eq!(p.id, r.id);
            assert_eq!(p.ts, TS);
            assert_eq!(p.expires_at, TS + 60_000);
            assert_eq!(p.deliveries, seqs(r));
            for e in &r.events {
                assert_eq!((e.id.as_str(), e.ts), (r.id.as_str(), TS));
                assert_eq!(e.from.as_deref(), Some("u9"));
                assert_eq!(e.payload.get(), r#"{"n":1}"#);
            }
        }
        assert!(std::ptr::eq(placed.placements[1].message, &batch[1]));
    }

    #[test]
    fn a_known_key_is_a_duplicate_of_its_first_message() {
        let batch = [msg(&["user:a"], Some("k")), msg(&["user:a"], None)];
        let plan = AppendPlan::new(&batch, known(&[("k", "first-id", 3)]), TS);
        assert_eq!(
            plan.counts().get("user:a"),
            Some(&1),
            "the duplicate takes no seq"
        );
        let placed = plan.place(&heads(&[("user:a", 1)]));
        let dup = &placed.results[0];
        assert!(dup.is_duplicate());
        assert_eq!((dup.id.as_str(), dup.recipients), ("first-id", 3));
        assert!(dup.events.is_empty());
        assert_eq!(seqs(&placed.results[1]), [("user:a", 1)]);
        assert_eq!(placed.placements.len(), 1);
        assert_eq!(placed.placements[0].id, placed.results[1].id);
    }

    #[test]
    fn a_key_repeated_in_the_batch_resolves_to_its_first_carrier() {
        let batch = [
            msg(&["user:a", "user:b"], Some("k")),
            msg(&["user:c"], Some("k")),
            msg(&["user:a"], None),
        ];
        let plan = AppendPlan::new(&batch, Known::default(), TS);
        assert_eq!(plan.counts().get("user:c"), None);
        let placed = plan.place(&heads(&[("user:a", 2), ("user:b", 1)]));
        let [first, repeat, other] = &placed.results[..] else {
            panic!("three results");
        };
        assert!(repeat.is_duplicate());
        assert_eq!(repeat.id, first.id);
        assert_eq!(repeat.recipients, 2, "the first message's recipients");
        assert!(repeat.events.is_empty());
        assert_eq!(seqs(other), [("user:a", 2)]);
        let keys: Vec<Option<&str>> = placed
            .placements
            .iter()
            .map(|p| p.message.key.as_deref())
            .collect();
        assert_eq!(keys, [Some("k"), None], "the key is stored once");
    }

    #[test]
    fn a_batch_of_duplicates_stores_nothing() {
        let batch = [msg(&["user:a"], Some("k")), msg(&["user:b"], Some("k"))];
        let plan = AppendPlan::new(&batch, known(&[("k", "first-id", 1)]), TS);
        assert!(plan.stores_nothing());
        assert!(plan.counts().is_empty());
        let placed = plan.place(&HashMap::new());
        assert!(placed.placements.is_empty());
        assert!(
            placed
                .results
                .iter()
                .all(|r| r.is_duplicate() && r.id == "first-id")
        );
    }

    #[test]
    fn ids_are_looked_up_once_each_in_batch_order() {
        let batch = [
            with_id(msg(&["user:a"], None), "id-2"),
            msg(&["user:a"], None),
            with_id(msg(&["user:a"], None), "id-1"),
            with_id(msg(&["user:b"], None), "id-2"),
        ];
        assert_eq!(ids_to_look_up(&batch), ["id-2", "id-1"]);
        assert!(ids_to_look_up(&[msg(&["user:a"], None)]).is_empty());
    }

    #[test]
    fn a_stored_id_with_the_same_content_is_a_duplicate() {
        let stored = with_id(msg(&["user:a", "user:b"], None), "taken");
        // The same message, its streams named in another order and with a
        // key it did not have: still the same message.
        let mut repeat = with_id(msg(&["user:b", "user:a"], Some("k")), "taken");
        repeat.ttl_secs = 5;
        let batch = [repeat, msg(&["user:a"], None), msg(&["user:c"], Some("k"))];
        let plan = AppendPlan::new(&batch, known_ids(&[&stored]), TS);
        let counts: Vec<(&str, u64)> = plan.counts().iter().map(|(s, n)| (*s, *n)).collect();
        assert_eq!(counts, [("user:a", 1)], "only the other message is stored");
        let placed = plan.place(&heads(&[("user:a", 4)]));
        let [dup, other, by_key] = &placed.results[..] else {
            panic!("three results");
        };
        assert_eq!(dup.outcome, Outcome::Duplicate);
        assert_eq!((dup.id.as_str(), dup.recipients), ("taken", 2));
        assert!(dup.events.is_empty());
        assert!(other.is_stored());
        assert_eq!(seqs(other), [("user:a", 4)]);
        assert!(by_key.is_duplicate(), "its key now names the same message");
        assert_eq!((by_key.id.as_str(), by_key.recipients), ("taken", 2));
        assert_eq!(placed.placements.len(), 1);
    }

    #[test]
    fn a_stored_id_with_other_content_is_a_conflict() {
        let stored = with_id(msg(&["user:a"], None), "taken");
        let mut other_payload = with_id(msg(&["user:a"], None), "taken");
        other_payload.payload = RawValue::from_string(r#"{"n":2}"#.to_string()).unwrap();
        let mut other_sender = with_id(msg(&["user:a"], None), "taken");
        other_sender.from = None;
        let other_streams = with_id(msg(&["user:a", "user:b"], None), "taken");
        // The same JSON value written differently is other content: payloads
        // are kept byte for byte.
        let mut other_text = with_id(msg(&["user:a"], None), "taken");
        other_text.payload = RawValue::from_string(r#"{"n": 1}"#.to_string()).unwrap();
        let batch = [
            other_payload,
            other_sender,
            other_streams,
            other_text,
            msg(&["user:a"], None),
        ];
        let plan = AppendPlan::new(&batch, known_ids(&[&stored]), TS);
        assert_eq!(plan.counts().get("user:a"), Some(&1));
        assert_eq!(plan.counts().get("user:b"), None);
        let placed = plan.place(&heads(&[("user:a", 2)]));
        for conflict in &placed.results[..4] {
            assert_eq!(conflict.outcome, Outcome::Conflict, "{conflict:?}");
            assert_eq!((conflict.id.as_str(), conflict.recipients), ("taken", 0));
            assert!(conflict.events.is_empty());
        }
        assert!(placed.results[4].is_stored());
        assert_eq!(seqs(&placed.results[4]), [("user:a", 2)]);
        assert_eq!(placed.placements.len(), 1);
    }

    #[test]
    fn an_id_whose_payload_is_gone_cannot_be_confirmed_so_conflicts() {
        let stored = with_id(msg(&["user:a"], None), "taken");
        let mut known = known_ids(&[&stored]);
        known.ids.get_mut("taken").unwrap().payload = None;
        let batch = [with_id(msg(&["user:a"], None), "taken")];
        let plan = AppendPlan::new(&batch, known, TS);
        assert!(plan.stores_nothing());
        let placed = plan.place(&HashMap::new());
        assert!(placed.results[0].is_conflict());
    }

    #[test]
    fn an_id_repeated_in_the_batch_follows_the_same_rule() {
        let first = with_id(msg(&["user:a"], None), "once");
        let same = with_id(msg(&["user:a"], None), "once");
        let mut other = with_id(msg(&["user:a"], None), "once");
        other.payload = RawValue::from_string("2".to_string()).unwrap();
        let batch = [first, same, other, msg(&["user:a"], None)];
        let plan = AppendPlan::new(&batch, Known::default(), TS);
        assert_eq!(
            plan.counts().get("user:a"),
            Some(&2),
            "the first and the last"
        );
        let placed = plan.place(&heads(&[("user:a", 2)]));
        let [first, same, other, last] = &placed.results[..] else {
            panic!("four results");
        };
        assert!(first.is_stored());
        assert_eq!(first.id, "once");
        assert_eq!(seqs(first), [("user:a", 1)]);
        assert!(same.is_duplicate());
        assert_eq!((same.id.as_str(), same.recipients), ("once", 1));
        assert!(other.is_conflict());
        assert_eq!(other.id, "once");
        assert_eq!(seqs(last), [("user:a", 2)]);
        let ids: Vec<&str> = placed.placements.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["once", last.id.as_str()], "the id is stored once");
    }

    #[test]
    fn a_known_key_wins_over_the_id() {
        // A retried client publish: the same key, a new id the store has
        // never seen. The key makes it a duplicate of the first.
        let batch = [with_id(msg(&["user:a"], Some("k")), "new-id")];
        let placed =
            AppendPlan::new(&batch, known(&[("k", "first-id", 1)]), TS).place(&HashMap::new());
        assert!(placed.results[0].is_duplicate());
        assert_eq!(placed.results[0].id, "first-id");
    }

    #[test]
    fn expiry_saturates() {
        let mut forever = msg(&["user:a"], None);
        forever.ttl_secs = u64::MAX;
        let batch = [forever];
        let placed = AppendPlan::new(&batch, Known::default(), TS).place(&heads(&[("user:a", 1)]));
        assert_eq!(placed.placements[0].expires_at, i64::MAX);
    }

    #[test]
    #[should_panic(expected = "no head for stream user:a")]
    fn a_store_that_did_not_step_a_counter_is_a_bug() {
        let batch = [msg(&["user:a"], None)];
        AppendPlan::new(&batch, Known::default(), TS).place(&HashMap::new());
    }

    #[test]
    #[should_panic(expected = "below its count")]
    fn a_head_below_the_count_is_a_bug() {
        let batch = [msg(&["user:a"], None), msg(&["user:a"], None)];
        AppendPlan::new(&batch, Known::default(), TS).place(&heads(&[("user:a", 1)]));
    }
}
