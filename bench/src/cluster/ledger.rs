//! What was sent and what arrived, per message: the send time, the intended
//! user, whether the cluster accepted it, and every arrival. The readers of
//! all connections and the senders write it concurrently, with atomics only.
//!
//! A message is the index `i` of its slot; its payload carries `i` and the
//! user index it is for, so an arrival is matched without any lookup table.

use std::ops::Range;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Outcome of a send.
const UNSENT: u8 = 0;
const SENDING: u8 = 1;
const ACCEPTED: u8 = 2;
const REFUSED: u8 = 3;

pub struct Ledger {
    /// Every time here is nanoseconds since this instant.
    epoch: Instant,
    state: Vec<AtomicU8>,
    user: Vec<AtomicU32>,
    /// Send time + 1 (0: not sent).
    sent_at: Vec<AtomicU64>,
    /// Send to the server's acceptance (202, or the broker's ack).
    accept_nanos: Vec<AtomicU64>,
    /// Send to the first arrival + 1 (0: not arrived).
    latency: Vec<AtomicU64>,
    arrivals: Vec<AtomicU32>,
    /// When the message was first seen on the events topic and on a node
    /// topic, + 1 (0: not seen), by the observer (`observer.rs`).
    seen: [Vec<AtomicU64>; 2],
    /// Frames that were not a message of this run for this connection's user.
    pub misrouted: AtomicU64,
    /// Connections that ended or failed while the run was going.
    pub connections_lost: AtomicU64,
}

impl Ledger {
    pub fn new(capacity: usize) -> Self {
        let vec8 = || (0..capacity).map(|_| AtomicU8::new(0)).collect();
        let vec32 = || (0..capacity).map(|_| AtomicU32::new(0)).collect();
        let vec64 = || (0..capacity).map(|_| AtomicU64::new(0)).collect();
        Ledger {
            epoch: Instant::now(),
            state: vec8(),
            user: vec32(),
            sent_at: vec64(),
            accept_nanos: vec64(),
            latency: vec64(),
            arrivals: vec32(),
            seen: [vec64(), vec64()],
            misrouted: AtomicU64::new(0),
            connections_lost: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.state.len()
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Message `i` is about to be sent to `user`: the clock starts now.
    pub fn sending(&self, i: usize, user: u32) {
        self.user[i].store(user, Ordering::Relaxed);
        self.state[i].store(SENDING, Ordering::Relaxed);
        // Release: a reader that sees the send time sees the user too.
        self.sent_at[i].store(self.now() + 1, Ordering::Release);
    }

    /// The server accepted message `i` (or refused it: it is then not
    /// expected to arrive).
    pub fn answered(&self, i: usize, accepted: bool) {
        let sent = self.sent_at[i].load(Ordering::Acquire).saturating_sub(1);
        self.accept_nanos[i].store(self.now().saturating_sub(sent), Ordering::Relaxed);
        self.state[i].store(if accepted { ACCEPTED } else { REFUSED }, Ordering::Release);
    }

    /// A connection of user `user` received the message whose payload says
    /// it is message `i` for user `for_user`.
    pub fn arrived(&self, user: u32, i: u64, for_user: u32) {
        let now = self.now();
        let Some(slot) = usize::try_from(i).ok().filter(|&i| i < self.capacity()) else {
            self.misrouted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let sent = self.sent_at[slot].load(Ordering::Acquire);
        if sent == 0 || for_user != user || self.user[slot].load(Ordering::Relaxed) != user {
            self.misrouted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.arrivals[slot].fetch_add(1, Ordering::Relaxed) == 0 {
            self.latency[slot].store(now - (sent - 1) + 1, Ordering::Relaxed);
        }
    }

    /// The observer saw message `i` on the events topic (`Topic::Events`)
    /// or on a node topic: the first sighting counts.
    pub fn seen(&self, topic: Topic, i: u64) {
        let now = self.now();
        if let Some(slot) = usize::try_from(i)
            .ok()
            .and_then(|i| self.seen[topic as usize].get(i))
        {
            let _ = slot.compare_exchange(0, now + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Whether every message of `range` that was sent and not refused has
    /// arrived (and every send has been answered).
    pub fn complete(&self, mut range: Range<usize>) -> bool {
        range.all(|i| match self.state[i].load(Ordering::Acquire) {
            UNSENT | REFUSED => true,
            SENDING => false,
            _ => self.arrivals[i].load(Ordering::Relaxed) > 0,
        })
    }

    /// The figures of the messages in `range`.
    pub fn tally(&self, range: Range<usize>) -> Tally {
        let mut t = Tally::default();
        for i in range {
            let state = self.state[i].load(Ordering::Acquire);
            if state == UNSENT {
                continue;
            }
            t.sent += 1;
            let sent = self.sent_at[i].load(Ordering::Relaxed) - 1;
            t.first_send = Some(t.first_send.map_or(sent, |f: u64| f.min(sent)));
            t.last_send = t.last_send.max(sent);
            let arrivals = self.arrivals[i].load(Ordering::Relaxed);
            match state {
                REFUSED => t.refused += 1,
                SENDING => t.unanswered += 1,
                _ => t.accept.push(Duration::from_nanos(
                    self.accept_nanos[i].load(Ordering::Relaxed),
                )),
            }
            if arrivals == 0 {
                if state == ACCEPTED {
                    t.lost += 1;
                }
                continue;
            }
            t.repeated += u64::from(arrivals - 1);
            let latency = self.latency[i].load(Ordering::Relaxed) - 1;
            t.latency.push(Duration::from_nanos(latency));
            let events = self.seen[Topic::Events as usize][i].load(Ordering::Relaxed);
            let node = self.seen[Topic::Node as usize][i].load(Ordering::Relaxed);
            if events > 0 && node > 0 {
                let (events, node, arrival) = (events - 1, node - 1, sent + latency);
                let span = |from: u64, to: u64| Duration::from_nanos(to.saturating_sub(from));
                t.hops[0].push(span(sent, events));
                t.hops[1].push(span(events, node));
                t.hops[2].push(span(node, arrival));
            }
            t.last_arrival = t.last_arrival.max(sent + latency);
        }
        t.latency.sort_unstable();
        t.accept.sort_unstable();
        for hop in &mut t.hops {
            hop.sort_unstable();
        }
        t
    }
}

/// The topics the observer reads.
#[derive(Clone, Copy, Debug)]
pub enum Topic {
    Events = 0,
    Node = 1,
}

/// The stretches of a message's way that the observer separates.
pub const HOPS: [&str; 3] = [
    "send -> events topic",
    "events -> node topic",
    "node topic -> socket",
];

/// What happened to a range of messages.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub refused: u64,
    /// Sends with no answer from the server yet.
    pub unanswered: u64,
    /// Accepted and never arrived.
    pub lost: u64,
    /// Arrivals beyond the first.
    pub repeated: u64,
    /// Send to first arrival, sorted, one per arrived message.
    pub latency: Vec<Duration>,
    /// Send to acceptance, sorted.
    pub accept: Vec<Duration>,
    /// Per stretch of [`HOPS`], sorted, for the messages the observer saw
    /// on both topics.
    pub hops: [Vec<Duration>; 3],
    /// Nanos since the epoch.
    pub first_send: Option<u64>,
    pub last_send: u64,
    pub last_arrival: u64,
}

impl Tally {
    pub fn delivered(&self) -> u64 {
        self.latency.len() as u64
    }

    /// Whether every accepted message arrived exactly once.
    pub fn exact(&self) -> bool {
        self.lost == 0 && self.repeated == 0 && self.unanswered == 0
    }

    /// Messages per second the senders managed to send.
    pub fn send_rate(&self) -> f64 {
        rate(self.sent, self.first_send, self.last_send)
    }

    /// Deliveries per second from the first send to the last arrival.
    pub fn delivery_rate(&self) -> f64 {
        rate(self.delivered(), self.first_send, self.last_arrival)
    }
}

/// `n` events spread from `first` to `last` (nanos): n - 1 intervals.
fn rate(n: u64, first: Option<u64>, last: u64) -> f64 {
    match first {
        Some(first) if n > 1 && last > first => (n - 1) as f64 / ((last - first) as f64 / 1e9),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_is_checked_per_message() {
        let ledger = Ledger::new(5);
        for i in 0..4 {
            ledger.sending(i, i as u32);
        }
        ledger.answered(0, true);
        ledger.answered(1, true);
        ledger.answered(2, true);
        ledger.answered(3, false);
        assert!(!ledger.complete(0..5));
        ledger.arrived(0, 0, 0);
        ledger.arrived(1, 1, 1);
        ledger.arrived(1, 1, 1);
        // For user 2, received by user 3's connection: misrouted, not delivered.
        ledger.arrived(3, 2, 2);
        // An index past the ledger, and one never sent.
        ledger.arrived(0, 99, 0);
        ledger.arrived(4, 4, 4);
        assert_eq!(ledger.misrouted.load(Ordering::Relaxed), 3);
        assert!(!ledger.complete(0..5), "message 2 is missing");
        let t = ledger.tally(0..5);
        assert_eq!((t.sent, t.refused, t.lost, t.repeated), (4, 1, 1, 1));
        assert_eq!((t.delivered(), t.accept.len()), (2, 3));
        assert!(!t.exact());
        ledger.arrived(2, 2, 2);
        assert!(ledger.complete(0..5));
        let t = ledger.tally(0..3);
        assert_eq!((t.lost, t.repeated, t.delivered()), (0, 1, 3));
        assert!(ledger.tally(2..5).exact());
        assert!(t.last_arrival >= t.last_send);
        assert!(t.hops.iter().all(Vec::is_empty), "nothing observed");
    }

    #[test]
    fn hops_need_both_sightings() {
        let ledger = Ledger::new(2);
        for i in 0..2 {
            ledger.sending(i, 0);
            ledger.answered(i, true);
            ledger.seen(Topic::Events, i as u64);
        }
        ledger.seen(Topic::Node, 0);
        ledger.seen(Topic::Node, 7);
        ledger.arrived(0, 0, 0);
        ledger.arrived(0, 1, 0);
        let t = ledger.tally(0..2);
        assert_eq!(t.delivered(), 2);
        assert!(t.hops.iter().all(|h| h.len() == 1), "{:?}", t.hops);
    }

    #[test]
    fn rates_count_intervals() {
        assert_eq!(rate(11, Some(0), 1_000_000_000), 10.0);
        assert_eq!(rate(1, Some(0), 1_000_000_000), 0.0);
        assert_eq!(rate(5, None, 7), 0.0);
    }
}
