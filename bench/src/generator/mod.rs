//! The load generator: many WebSocket connections to a target, opened a
//! bounded number at a time, held idle, then subscribed, each counting the
//! topic's messages as they arrive.
//!
//! Every connection is a task of its own and speaks the target's
//! [`Protocol`]; the generator knows nothing else of the server. Arrivals
//! are counted in one shared counter, and each connection checks that the
//! positions it sees go up by one, so a lost or repeated message is noticed.

mod connection;
mod shared;

pub use connection::open;

use crate::target::Protocol;
use anyhow::Result;
use shared::Shared;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the connections are told to do next.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    /// Stay connected, unsubscribed.
    Hold,
    /// Subscribe to the topic, then count its messages.
    Subscribe,
}

/// The generator's connections to one target. Dropping it ends them.
pub struct Connections<P: Protocol> {
    protocol: Arc<P>,
    shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
    tasks: Vec<JoinHandle<()>>,
}

impl<P: Protocol> Connections<P> {
    /// No connections yet; at most `concurrency` handshakes (and, later,
    /// subscribes) will be in flight at once.
    pub fn new(protocol: Arc<P>, concurrency: usize) -> Self {
        Connections {
            protocol,
            shared: Arc::new(Shared::new(concurrency)),
            phase: watch::Sender::new(Phase::Hold),
            tasks: Vec::new(),
        }
    }

    /// Starts connections number `range` (the protocol gives each its URL);
    /// returns at once. They hold, unsubscribed, until [`Self::subscribe`].
    pub fn open(&mut self, range: Range<usize>) {
        for i in range {
            self.tasks.push(tokio::spawn(connection::run(
                self.protocol.clone(),
                i,
                self.shared.clone(),
                self.phase.subscribe(),
            )));
        }
    }

    /// Waits until `n` connections are open, failing on a broken one or
    /// after `limit`.
    pub async fn wait_open(&self, n: usize, limit: Duration) -> Result<()> {
        self.shared
            .wait_for("connections", n as u64, limit, || {
                self.shared.connected.load(Ordering::SeqCst) as u64
            })
            .await
    }

    /// Tells every connection, open or still opening, to subscribe.
    pub fn subscribe(&self) {
        self.phase.send_replace(Phase::Subscribe);
    }

    /// Waits until `n` connections are subscribed, failing on a broken one
    /// or after `limit`.
    pub async fn wait_subscribed(&self, n: usize, limit: Duration) -> Result<()> {
        self.shared
            .wait_for("subscriptions", n as u64, limit, || {
                self.shared.subscribed.load(Ordering::SeqCst) as u64
            })
            .await
    }

    /// Fails if any connection has failed (dropped, errored, or received a
    /// frame it did not expect), with the first error.
    pub fn check(&self) -> Result<()> {
        self.shared.check()
    }

    /// Topic messages received so far, over all connections.
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::SeqCst)
    }

    /// Messages whose position was not the one after their connection's
    /// previous one: a repeat, a gap or a reordering.
    pub fn out_of_order(&self) -> u64 {
        self.shared.out_of_order.load(Ordering::SeqCst)
    }

    /// Waits until [`Self::delivered`] reaches `want`, failing on a broken
    /// connection or after `limit`. Call it with the messages already sent:
    /// the waiter is woken by the connection whose arrival reaches `want`,
    /// so `want` is announced first (see [`Self::expect`]).
    pub async fn wait_delivered(&self, want: u64, limit: Duration) -> Result<()> {
        self.shared
            .wait_for("deliveries", want, limit, || {
                self.shared.delivered.load(Ordering::Relaxed)
            })
            .await
    }

    /// Announces the delivered count the next [`Self::wait_delivered`] is
    /// for. Call it before sending, so the arrival that completes the count
    /// wakes the waiter at once rather than at its next poll.
    pub fn expect(&self, want: u64) {
        self.shared.target.store(want, Ordering::SeqCst);
    }
}

impl<P: Protocol> Drop for Connections<P> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
