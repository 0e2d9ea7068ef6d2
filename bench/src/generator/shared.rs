//! The state the generator's connections share with the task that drives
//! them: the handshake gate, counts, and the first failure.

use anyhow::{Result, bail};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

pub(super) struct Shared {
    /// Handshakes and subscribes in flight.
    pub gate: Semaphore,
    pub connected: AtomicUsize,
    pub subscribed: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
    /// Topic messages received, over all connections.
    pub delivered: AtomicU64,
    /// Messages that were not the next position of their connection.
    pub out_of_order: AtomicU64,
    /// `delivered` the driving task waits for.
    pub target: AtomicU64,
    progress: Notify,
}

impl Shared {
    pub fn new(concurrency: usize) -> Self {
        Shared {
            gate: Semaphore::new(concurrency),
            connected: AtomicUsize::new(0),
            subscribed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            delivered: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            progress: Notify::new(),
        }
    }

    pub fn opened(&self) {
        self.connected.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_one();
    }

    pub fn subscribed(&self) {
        self.subscribed.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_one();
    }

    /// Counts one topic message; `in_order` says whether its position was
    /// the one after its connection's previous one.
    pub fn arrived(&self, in_order: bool) {
        if !in_order {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.target.load(Ordering::Relaxed) {
            self.progress.notify_one();
        }
    }

    pub fn fail(&self, e: anyhow::Error) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
        drop(first);
        self.progress.notify_one();
    }

    pub fn check(&self) -> Result<()> {
        let failed = self.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let first = self.first_error.lock().unwrap().clone().unwrap_or_default();
            bail!("{failed} connection(s) failed; first error: {first}");
        }
        Ok(())
    }

    /// Waits until `count()` reaches `want`, failing on a broken connection
    /// or after `limit`.
    pub async fn wait_for(
        &self,
        what: &str,
        want: u64,
        limit: Duration,
        count: impl Fn() -> u64,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.check()?;
            let have = count();
            if have >= want {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out waiting for {what}: {have} of {want}");
            }
            let _ = tokio::time::timeout(
                (deadline - now).min(Duration::from_millis(250)),
                self.progress.notified(),
            )
            .await;
        }
    }
}
