//! The node's local table of who follows what: stream -> the connections on
//! this node that follow it (`user:<id>` for each of that user's
//! connections, `topic:<name>` for its subscribers, `all` for everyone).
//! Live events from the node topic are handed to each follower's bounded
//! queue here; the connection's own task writes them.
//!
//! Handing over never waits and never copies: one framed event is shared by
//! reference among all its followers. A connection whose queue is full is
//! marked overflowed and closes itself, so one slow client never slows the
//! node topic, and so never anyone else.

use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One event, framed once, shared by every local connection it goes to.
pub struct LiveEvent {
    /// Storage name of the stream (`user:u1`, `topic:x`, `all`).
    pub stream: String,
    pub seq: u64,
    pub frame: Utf8Bytes,
}

/// The hub's handle on one connection.
pub struct ConnSlot {
    id: u64,
    queue: mpsc::Sender<Arc<LiveEvent>>,
    overflowed: AtomicBool,
}

impl ConnSlot {
    /// Whether the hub dropped an event for this connection because its queue
    /// was full: it must close, and the client resumes to catch up.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Clears the overflow mark; returns whether it was set.
    pub fn clear_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::Relaxed)
    }
}

/// A connection following a stream, with its cursor on that stream mirrored
/// here: events at or below it are repeats and are not queued at all, so a
/// re-consumed backlog cannot overflow a connection that is keeping up.
struct Follower {
    conn: Arc<ConnSlot>,
    cursor: Arc<AtomicU64>,
}

/// The connections on this node following one stream, keyed by connection
/// id: following and leaving cost the same with 10 followers or 10,000, and
/// so does the time they hold the lock delivery needs.
type Followers = HashMap<u64, Follower>;

#[derive(Default)]
pub struct Hub {
    streams: Mutex<HashMap<String, Followers>>,
    next_id: AtomicU64,
    connections: AtomicU64,
}

/// What following or leaving a stream changed for this node.
#[derive(Debug, PartialEq, Eq)]
pub enum Presence {
    /// The stream's first follower here arrived / last one left: the route
    /// registry must learn of it.
    Changed,
    Unchanged,
}

impl Hub {
    /// A new connection, whose events go to `queue`.
    pub fn open(&self, queue: mpsc::Sender<Arc<LiveEvent>>) -> Arc<ConnSlot> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        Arc::new(ConnSlot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            queue,
            overflowed: AtomicBool::new(false),
        })
    }

    /// The connection is gone (call after it left every stream).
    pub fn close(&self, _slot: &ConnSlot) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// `slot` follows `stream` from now on; `cursor` is its position there.
    pub fn follow(&self, stream: &str, slot: &Arc<ConnSlot>, cursor: Arc<AtomicU64>) -> Presence {
        let mut streams = self.streams.lock().expect("hub lock");
        let followers = streams.entry(stream.to_string()).or_default();
        if followers.contains_key(&slot.id) {
            return Presence::Unchanged;
        }
        followers.insert(
            slot.id,
            Follower {
                conn: slot.clone(),
                cursor,
            },
        );
        if followers.len() == 1 {
            Presence::Changed
        } else {
            Presence::Unchanged
        }
    }

    /// `slot` stops following `stream`; idempotent.
    pub fn unfollow(&self, stream: &str, slot: &ConnSlot) -> Presence {
        let mut streams = self.streams.lock().expect("hub lock");
        let Some(followers) = streams.get_mut(stream) else {
            return Presence::Unchanged;
        };
        if followers.remove(&slot.id).is_none() {
            return Presence::Unchanged;
        }
        if followers.is_empty() {
            streams.remove(stream);
            return Presence::Changed;
        }
        Presence::Unchanged
    }

    /// Whether anyone here follows `stream` (checked before framing an event,
    /// so events nobody here wants cost no serialisation).
    pub fn has(&self, stream: &str) -> bool {
        self.streams.lock().expect("hub lock").contains_key(stream)
    }

    /// Queues `event` to every follower of its stream; returns how many took it.
    pub fn deliver(&self, event: &Arc<LiveEvent>) -> usize {
        let streams = self.streams.lock().expect("hub lock");
        let Some(followers) = streams.get(&event.stream) else {
            return 0;
        };
        let mut taken = 0;
        for follower in followers.values() {
            if event.seq <= follower.cursor.load(Ordering::Relaxed) {
                continue;
            }
            match follower.conn.queue.try_send(event.clone()) {
                Ok(()) => taken += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    follower.conn.overflowed.store(true, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        taken
    }

    /// Every stream followed here, for the route heartbeat.
    pub fn streams(&self) -> Vec<String> {
        self.streams
            .lock()
            .expect("hub lock")
            .keys()
            .cloned()
            .collect()
    }

    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, seq: u64) -> Arc<LiveEvent> {
        Arc::new(LiveEvent {
            stream: stream.into(),
            seq,
            frame: Utf8Bytes::from_static("{}"),
        })
    }

    fn cursor() -> Arc<AtomicU64> {
        Arc::new(AtomicU64::new(0))
    }

    #[test]
    fn presence_changes_only_on_first_and_last_follower() {
        let hub = Hub::default();
        let (a, _ra) = mpsc::channel(4);
        let (b, _rb) = mpsc::channel(4);
        let slot_a = hub.open(a);
        let slot_b = hub.open(b);
        assert_eq!(hub.follow("user:u", &slot_a, cursor()), Presence::Changed);
        assert_eq!(hub.follow("user:u", &slot_b, cursor()), Presence::Unchanged);
        assert_eq!(hub.unfollow("user:u", &slot_a), Presence::Unchanged);
        assert_eq!(hub.unfollow("user:u", &slot_a), Presence::Unchanged);
        assert_eq!(hub.unfollow("user:u", &slot_b), Presence::Changed);
        assert!(!hub.has("user:u"));
        hub.close(&slot_a);
        hub.close(&slot_b);
        assert_eq!(hub.connection_count(), 0);
    }

    #[test]
    fn leaving_one_of_many_followers_keeps_the_others() {
        let hub = Hub::default();
        let mut slots = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..5 {
            let (tx, rx) = mpsc::channel(4);
            let slot = hub.open(tx);
            hub.follow("all", &slot, cursor());
            slots.push(slot);
            receivers.push(rx);
        }
        assert_eq!(hub.unfollow("all", &slots[2]), Presence::Unchanged);
        assert_eq!(hub.follow("all", &slots[0], cursor()), Presence::Unchanged);
        assert_eq!(hub.deliver(&event("all", 1)), 4);
        assert!(receivers[2].try_recv().is_err());
        assert_eq!(receivers[0].try_recv().unwrap().seq, 1);
        assert!(
            receivers[0].try_recv().is_err(),
            "followed twice, queued once"
        );
    }

    #[test]
    fn one_event_reaches_every_follower_and_no_one_else() {
        let hub = Hub::default();
        let mut receivers = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = mpsc::channel(4);
            let slot = hub.open(tx);
            hub.follow("topic:t", &slot, cursor());
            receivers.push(rx);
        }
        let (other, mut other_rx) = mpsc::channel(4);
        let other = hub.open(other);
        hub.follow("topic:u", &other, cursor());
        let shared = event("topic:t", 1);
        assert_eq!(hub.deliver(&shared), 3);
        for rx in receivers.iter_mut() {
            // The very same allocation, not a copy per follower.
            assert!(Arc::ptr_eq(&rx.try_recv().unwrap(), &shared));
        }
        assert!(other_rx.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_marks_only_its_connection_overflowed() {
        let hub = Hub::default();
        let (slow, _slow_rx) = mpsc::channel(1);
        let (fast, mut fast_rx) = mpsc::channel(8);
        let slow_slot = hub.open(slow);
        let fast_slot = hub.open(fast);
        hub.follow("user:u", &slow_slot, cursor());
        hub.follow("user:u", &fast_slot, cursor());
        assert_eq!(hub.deliver(&event("user:u", 1)), 2);
        assert_eq!(hub.deliver(&event("user:u", 2)), 1);
        assert!(slow_slot.overflowed());
        assert!(!fast_slot.overflowed());
        assert_eq!(fast_rx.try_recv().unwrap().seq, 1);
        assert_eq!(fast_rx.try_recv().unwrap().seq, 2);
        assert_eq!(hub.deliver(&event("user:nobody", 3)), 0);
    }

    #[test]
    fn repeats_below_the_cursor_are_not_queued() {
        let hub = Hub::default();
        let (queue, mut rx) = mpsc::channel(1);
        let slot = hub.open(queue);
        let position = cursor();
        hub.follow("user:u", &slot, position.clone());
        position.store(5, Ordering::Relaxed);
        for seq in 1..=5 {
            assert_eq!(hub.deliver(&event("user:u", seq)), 0);
        }
        assert!(!slot.overflowed());
        assert_eq!(hub.deliver(&event("user:u", 6)), 1);
        assert_eq!(rx.try_recv().unwrap().seq, 6);
    }
}
