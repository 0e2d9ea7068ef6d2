//! The node's local table of connections: user -> the connections of that
//! user on this node. Live events from the node topic are handed to each
//! connection's bounded queue here; the connection's own task writes them.
//!
//! Handing over never waits: a connection whose queue is full is marked
//! overflowed and closes itself, so one slow client never slows the node
//! topic, and so never anyone else.

use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;

/// One event, framed once, shared by every local connection it goes to.
pub struct LiveEvent {
    pub seq: u64,
    pub frame: Utf8Bytes,
}

/// The hub's handle on one connection.
pub struct ConnSlot {
    id: u64,
    queue: mpsc::Sender<Arc<LiveEvent>>,
    overflowed: AtomicBool,
    /// The connection's cursor, mirrored: events at or below it are repeats
    /// and are not queued at all, so a re-consumed backlog cannot overflow a
    /// connection that is keeping up.
    cursor: AtomicU64,
}

impl ConnSlot {
    /// Whether the hub dropped an event for this connection because its queue
    /// was full: it must close, and the client resumes to catch up.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Publishes the connection's cursor to the hub.
    pub fn set_cursor(&self, seq: u64) {
        self.cursor.store(seq, Ordering::Relaxed);
    }

    /// Clears the overflow mark; returns whether it was set.
    pub fn clear_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<String, Vec<Arc<ConnSlot>>>>,
    next_id: AtomicU64,
    connections: AtomicU64,
}

/// What adding or removing a connection changed for its user on this node.
#[derive(Debug, PartialEq, Eq)]
pub enum Presence {
    /// The user's first connection here arrived / last one left: the route
    /// registry must learn of it.
    Changed,
    Unchanged,
}

impl Hub {
    /// Adds a connection of `user`, whose events go to `queue`.
    pub fn add(
        &self,
        user: &str,
        queue: mpsc::Sender<Arc<LiveEvent>>,
    ) -> (Arc<ConnSlot>, Presence) {
        let slot = Arc::new(ConnSlot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            queue,
            overflowed: AtomicBool::new(false),
            cursor: AtomicU64::new(0),
        });
        let mut users = self.users.lock().expect("hub lock");
        let conns = users.entry(user.to_string()).or_default();
        conns.push(slot.clone());
        self.connections.fetch_add(1, Ordering::Relaxed);
        let presence = if conns.len() == 1 {
            Presence::Changed
        } else {
            Presence::Unchanged
        };
        (slot, presence)
    }

    /// Removes a connection; idempotent.
    pub fn remove(&self, user: &str, slot: &ConnSlot) -> Presence {
        let mut users = self.users.lock().expect("hub lock");
        let Some(conns) = users.get_mut(user) else {
            return Presence::Unchanged;
        };
        let before = conns.len();
        conns.retain(|c| c.id != slot.id);
        if conns.len() < before {
            self.connections.fetch_sub(1, Ordering::Relaxed);
        }
        if conns.is_empty() {
            users.remove(user);
            Presence::Changed
        } else {
            Presence::Unchanged
        }
    }

    /// Whether `user` has a connection here (checked before framing an event,
    /// so events for departed users cost no serialisation).
    pub fn has(&self, user: &str) -> bool {
        self.users.lock().expect("hub lock").contains_key(user)
    }

    /// Queues `event` to every connection of `user`; returns how many took it.
    pub fn deliver(&self, user: &str, event: &Arc<LiveEvent>) -> usize {
        let users = self.users.lock().expect("hub lock");
        let Some(conns) = users.get(user) else {
            return 0;
        };
        let mut taken = 0;
        for conn in conns {
            if event.seq <= conn.cursor.load(Ordering::Relaxed) {
                continue;
            }
            match conn.queue.try_send(event.clone()) {
                Ok(()) => taken += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    conn.overflowed.store(true, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        taken
    }

    /// Every user with a connection here, for the route heartbeat.
    pub fn users(&self) -> Vec<String> {
        self.users
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

    fn event(seq: u64) -> Arc<LiveEvent> {
        Arc::new(LiveEvent {
            seq,
            frame: Utf8Bytes::from_static("{}"),
        })
    }

    #[test]
    fn presence_changes_only_on_first_and_last_connection() {
        let hub = Hub::default();
        let (a, _ra) = mpsc::channel(4);
        let (b, _rb) = mpsc::channel(4);
        let (slot_a, p) = hub.add("u", a);
        assert_eq!(p, Presence::Changed);
        let (slot_b, p) = hub.add("u", b);
        assert_eq!(p, Presence::Unchanged);
        assert_eq!(hub.remove("u", &slot_a), Presence::Unchanged);
        assert_eq!(hub.remove("u", &slot_a), Presence::Unchanged);
        assert_eq!(hub.remove("u", &slot_b), Presence::Changed);
        assert!(!hub.has("u"));
        assert_eq!(hub.connection_count(), 0);
    }

    #[test]
    fn a_full_queue_marks_only_its_connection_overflowed() {
        let hub = Hub::default();
        let (slow, _slow_rx) = mpsc::channel(1);
        let (fast, mut fast_rx) = mpsc::channel(8);
        let (slow_slot, _) = hub.add("u", slow);
        let (fast_slot, _) = hub.add("u", fast);
        assert_eq!(hub.deliver("u", &event(1)), 2);
        assert_eq!(hub.deliver("u", &event(2)), 1);
        assert!(slow_slot.overflowed());
        assert!(!fast_slot.overflowed());
        assert_eq!(fast_rx.try_recv().unwrap().seq, 1);
        assert_eq!(fast_rx.try_recv().unwrap().seq, 2);
        assert_eq!(hub.deliver("nobody", &event(3)), 0);
    }

    #[test]
    fn repeats_below_the_cursor_are_not_queued() {
        let hub = Hub::default();
        let (queue, mut rx) = mpsc::channel(1);
        let (slot, _) = hub.add("u", queue);
        slot.set_cursor(5);
        for seq in 1..=5 {
            assert_eq!(hub.deliver("u", &event(seq)), 0);
        }
        assert!(!slot.overflowed());
        assert_eq!(hub.deliver("u", &event(6)), 1);
        assert_eq!(rx.try_recv().unwrap().seq, 6);
    }
}
