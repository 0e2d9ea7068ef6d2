//! An append, planned: everything [`MessageStore::append`] decides that does
//! not depend on how the store keeps its data, written once for every store.
//!
//! A store's append is then only its I/O, in three steps inside its
//! transaction:
//!
//! 1. read what it knows of the batch's idempotency keys
//!    ([`keys_to_look_up`]) and make an [`AppendPlan`] of them: which messages
//!    are duplicates (of a stored key, or of a key earlier in the batch), the
//!    ids of the fresh ones, and how many seqs each stream takes;
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

use super::{Appended, NewMessage};
use crate::envelope::Event;
use std::collections::{BTreeMap, HashMap};

/// What the store knows of an idempotency key: the message that first
/// carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownKey {
    pub id: String,
    pub recipients: usize,
}

/// The batch's idempotency keys, each once, in batch order: what a store
/// looks up before planning.
pub fn keys_to_look_up(batch: &[NewMessage]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    batch
        .iter()
        .filter_map(|m| m.key.as_deref())
        .filter(|key| seen.insert(*key))
        .collect()
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

impl<'a> AppendPlan<'a> {
    /// Plans `batch`, accepted at `ts` (unix ms), given what the store
    /// knows of its keys. A message whose key is known, or carried by an
    /// earlier message of the batch, is a duplicate: it resolves to the first
    /// message's id and recipients and is not stored. Every other message is
    /// fresh: it keeps the id its submitter chose or gets a new UUIDv7.
    pub fn new(batch: &'a [NewMessage], mut known: HashMap<String, KnownKey>, ts: i64) -> Self {
        let mut results = Vec::with_capacity(batch.len());
        let mut fresh = Vec::new();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            if let Some(first) = m.key.as_ref().and_then(|k| known.get(k)) {
                results.push(Appended {
                    id: first.id.clone(),
                    recipients: first.recipients,
                    duplicate: true,
                    events: Vec::new(),
                });
                continue;
            }
            let id =
                m.id.clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            if let Some(key) = &m.key {
                let first = KnownKey {
                    id: id.clone(),
                    recipients: m.streams.len(),
                };
                known.insert(key.clone(), first);
            }
            for stream in &m.streams {
                *counts.entry(stream.as_str()).or_insert(0) += 1;
            }
            results.push(Appended {
                id,
                recipients: m.streams.len(),
                duplicate: false,
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

    /// Whether every message is a duplicate: the store has nothing to write,
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

    fn known(entries: &[(&str, &str, usize)]) -> HashMap<String, KnownKey> {
        entries
            .iter()
            .map(|(key, id, recipients)| {
                let first = KnownKey {
                    id: id.to_string(),
                    recipients: *recipients,
                };
                (key.to_string(), first)
            })
            .collect()
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
        let plan = AppendPlan::new(&batch, HashMap::new(), TS);
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
            assert!(!r.duplicate);
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
        assert!(dup.duplicate);
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
        let plan = AppendPlan::new(&batch, HashMap::new(), TS);
        assert_eq!(plan.counts().get("user:c"), None);
        let placed = plan.place(&heads(&[("user:a", 2), ("user:b", 1)]));
        let [first, repeat, other] = &placed.results[..] else {
            panic!("three results");
        };
        assert!(repeat.duplicate);
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
                .all(|r| r.duplicate && r.id == "first-id")
        );
    }

    #[test]
    fn expiry_saturates() {
        let mut forever = msg(&["user:a"], None);
        forever.ttl_secs = u64::MAX;
        let batch = [forever];
        let placed = AppendPlan::new(&batch, HashMap::new(), TS).place(&heads(&[("user:a", 1)]));
        assert_eq!(placed.placements[0].expires_at, i64::MAX);
    }

    #[test]
    #[should_panic(expected = "no head for stream user:a")]
    fn a_store_that_did_not_step_a_counter_is_a_bug() {
        let batch = [msg(&["user:a"], None)];
        AppendPlan::new(&batch, HashMap::new(), TS).place(&HashMap::new());
    }

    #[test]
    #[should_panic(expected = "below its count")]
    fn a_head_below_the_count_is_a_bug() {
        let batch = [msg(&["user:a"], None), msg(&["user:a"], None)];
        AppendPlan::new(&batch, HashMap::new(), TS).place(&heads(&[("user:a", 1)]));
    }
}
