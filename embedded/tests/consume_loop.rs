//! The shared consume loop (`herald_common::log::Subscription`) on the
//! in-memory log: it waits out a log that fails (topic creation, joining,
//! reading), hands records over in order, and commits what it handed over.

use async_trait::async_trait;
use bytes::Bytes;
use herald_common::log::{
    BatchHandler, Log, LogConsumer, LogError, OutgoingRecord, PartitionLag, Record, StartAt,
    Subscription,
};
use herald_common::metrics::Registry;
use herald_embedded::MemoryLog;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const PATIENCE: Duration = Duration::from_secs(60);

/// A memory log whose every call fails while its budget of failures lasts:
/// each of `ensure_topic`, `consume` and `next_batch` fails `failures` times.
struct FlakyLog {
    inner: MemoryLog,
    failures: usize,
    topic_failures: AtomicUsize,
    join_failures: AtomicUsize,
    read_failures: Arc<AtomicUsize>,
}

impl FlakyLog {
    fn new(failures: usize) -> Self {
        Self {
            inner: MemoryLog::new(),
            failures,
            topic_failures: AtomicUsize::new(0),
            join_failures: AtomicUsize::new(0),
            read_failures: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// True (and counted) while `counter` is under `budget`.
fn fails(counter: &AtomicUsize, budget: usize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < budget).then_some(n + 1)
        })
        .is_ok()
}

fn down() -> LogError {
    LogError::Unavailable {
        message: "log down (test)".into(),
        cause: None,
    }
}

#[async_trait]
impl Log for FlakyLog {
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), LogError> {
        if fails(&self.topic_failures, self.failures) {
            return Err(down());
        }
        self.inner.ensure_topic(topic, partitions).await
    }

    async fn publish(&self, records: Vec<OutgoingRecord>) -> Vec<Result<(), LogError>> {
        self.inner.publish(records).await
    }

    async fn consume(
        &self,
        group: &str,
        topics: &[String],
        start: StartAt,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        if fails(&self.join_failures, self.failures) {
            return Err(down());
        }
        Ok(Box::new(FlakyConsumer {
            inner: self.inner.consume(group, topics, start).await?,
            failures: self.failures,
            read_failures: self.read_failures.clone(),
        }))
    }
}

struct FlakyConsumer {
    inner: Box<dyn LogConsumer>,
    failures: usize,
    read_failures: Arc<AtomicUsize>,
}

#[async_trait]
impl LogConsumer for FlakyConsumer {
    async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<Record>, LogError> {
        if fails(&self.read_failures, self.failures) {
            return Err(down());
        }
        self.inner.next_batch(max, linger).await
    }

    fn commit(&mut self, records: &[Record]) -> Result<(), LogError> {
        self.inner.commit(records)
    }

    fn assigned(&self) -> watch::Receiver<bool> {
        self.inner.assigned()
    }

    fn lag(&self) -> Vec<PartitionLag> {
        self.inner.lag()
    }
}

/// Hands each record's value over a channel, in the order it got them.
struct Collect(mpsc::UnboundedSender<String>);

#[async_trait]
impl BatchHandler for Collect {
    async fn handle(&mut self, records: &[Record]) {
        for r in records {
            let _ = self
                .0
                .send(String::from_utf8(r.value.to_vec()).expect("utf-8"));
        }
    }
}

fn subscription() -> Subscription {
    Subscription {
        group: "g".into(),
        topic: "t".into(),
        partitions: 2,
        start: StartAt::Earliest,
        batch: 3,
        linger: Duration::ZERO,
        metrics: Registry::default(),
    }
}

async fn publish(log: &dyn Log, values: &[&str]) {
    let records = values
        .iter()
        .map(|v| OutgoingRecord {
            topic: "t".into(),
            key: "one-key".into(),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect();
    for result in log.publish(records).await {
        result.expect("published");
    }
}

async fn next(received: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(PATIENCE, received.recv())
        .await
        .expect("a record is handed over")
        .expect("the loop is running")
}

/// Paused time: the backoff's waits pass at once, and a loop that gave up
/// would show as a record never handed over.
#[tokio::test(start_paused = true)]
async fn a_failing_log_is_waited_out_and_records_come_in_order() {
    let log = Arc::new(FlakyLog::new(3));
    let (assigned_tx, mut assigned) = watch::channel(false);
    let (tx, mut received) = mpsc::unbounded_channel();
    let running = tokio::spawn({
        let log: Arc<dyn Log> = log.clone();
        async move { subscription().run(log, assigned_tx, &mut Collect(tx)).await }
    });

    tokio::time::timeout(PATIENCE, assigned.wait_for(|a| *a))
        .await
        .expect("the member gets its partitions despite the failures")
        .expect("flag alive");
    assert_eq!(log.topic_failures.load(Ordering::SeqCst), 3);
    assert_eq!(log.join_failures.load(Ordering::SeqCst), 3);

    let values = ["a", "b", "c", "d", "e", "f", "g"];
    publish(log.as_ref(), &values).await;
    let mut got = Vec::new();
    for _ in values {
        got.push(next(&mut received).await);
    }
    assert_eq!(got, values);
    // Every read failure happened, and was survived.
    assert_eq!(log.read_failures.load(Ordering::SeqCst), 3);
    running.abort();
}

#[tokio::test(start_paused = true)]
async fn handed_over_batches_are_committed() {
    let log: Arc<dyn Log> = Arc::new(FlakyLog::new(0));
    let (assigned_tx, mut assigned) = watch::channel(false);
    let (tx, mut received) = mpsc::unbounded_channel();
    let first = tokio::spawn({
        let log = log.clone();
        async move { subscription().run(log, assigned_tx, &mut Collect(tx)).await }
    });
    assigned.wait_for(|a| *a).await.unwrap();
    publish(log.as_ref(), &["one", "two"]).await;
    assert_eq!(next(&mut received).await, "one");
    assert_eq!(next(&mut received).await, "two");
    // On this one-thread runtime the loop commits in the same poll that
    // handed "two" over, before this task runs again.
    first.abort();
    let _ = first.await;

    // The group's next member resumes after them.
    let (assigned_tx, _assigned) = watch::channel(false);
    let (tx, mut received) = mpsc::unbounded_channel();
    let second = tokio::spawn({
        let log = log.clone();
        async move { subscription().run(log, assigned_tx, &mut Collect(tx)).await }
    });
    publish(log.as_ref(), &["three"]).await;
    assert_eq!(next(&mut received).await, "three");
    second.abort();
}

/// Holds the first batch until told to let go, then hands over the rest.
struct Stuck {
    release: Arc<tokio::sync::Notify>,
    held: bool,
}

#[async_trait]
impl BatchHandler for Stuck {
    async fn handle(&mut self, _records: &[Record]) {
        if !self.held {
            self.held = true;
            self.release.notified().await;
        }
    }
}

/// The lag of group `g` over its partitions, as the registry renders it
/// (`None` before any is reported).
fn lag_of(metrics: &Registry) -> Option<i64> {
    let lags: Vec<i64> = metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("herald_log_consumer_lag{") && l.contains("group=\"g\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    (!lags.is_empty()).then(|| lags.iter().sum())
}

#[tokio::test(start_paused = true)]
async fn a_stuck_batch_shows_as_growing_lag_and_catching_up_clears_it() {
    let log: Arc<dyn Log> = Arc::new(MemoryLog::new());
    let metrics = Registry::default();
    let release = Arc::new(tokio::sync::Notify::new());
    let (assigned_tx, mut assigned) = watch::channel(false);
    let running = tokio::spawn({
        let (log, metrics, release) = (log.clone(), metrics.clone(), release.clone());
        async move {
            let mut stuck = Stuck {
                release,
                held: false,
            };
            Subscription {
                metrics,
                ..subscription()
            }
            .run(log, assigned_tx, &mut stuck)
            .await
        }
    });
    assigned.wait_for(|a| *a).await.unwrap();
    // Batches of 3: the first is held, 2 wait behind it; then 4 more come.
    publish(log.as_ref(), &["1", "2", "3", "4", "5"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lag_of(&metrics), Some(2), "{}", metrics.render());
    publish(log.as_ref(), &["6", "7", "8", "9"]).await;
    // Reported again while the batch is still held.
    tokio::time::sleep(LAG_REFRESH_WAIT).await;
    assert_eq!(lag_of(&metrics), Some(6), "{}", metrics.render());

    release.notify_one();
    tokio::time::sleep(LAG_REFRESH_WAIT).await;
    assert_eq!(lag_of(&metrics), Some(0), "{}", metrics.render());
    running.abort();
}

/// Longer than the loop's lag refresh while a batch is handled (5 s).
const LAG_REFRESH_WAIT: Duration = Duration::from_secs(6);
