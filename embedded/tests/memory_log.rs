//! What only [`MemoryLog`] does, beyond the [`Log`] contract it shares with
//! the Kafka log (`contract/tests/log.rs`): lingering timed exactly (on paused
//! time), topics consumed before they exist, and dropping consumed records.

use bytes::Bytes;
use herald_common::log::{Log, LogConsumer, OutgoingRecord, Record, StartAt};
use herald_embedded::MemoryLog;
use std::time::Duration;

/// Bound on any wait a test expects to end: generous, since a wait that should
/// end ends in microseconds.
const PATIENCE: Duration = Duration::from_secs(5);

/// Records keyed `k` (one partition, in order) for `topic`, valued `values`.
async fn publish(log: &MemoryLog, topic: &str, values: &[&str]) {
    let records = values
        .iter()
        .map(|v| OutgoingRecord {
            topic: topic.to_string(),
            key: "k".to_string(),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect();
    for result in log.publish(records).await {
        result.expect("published");
    }
}

/// One batch of what is there now: the memory log hands out everything
/// published before the call in one batch, up to `max`.
async fn take(consumer: &mut Box<dyn LogConsumer>, max: usize) -> Vec<Record> {
    tokio::time::timeout(PATIENCE, consumer.next_batch(max, Duration::ZERO))
        .await
        .expect("records arrive")
        .expect("next_batch")
}

fn text(r: &Record) -> String {
    String::from_utf8(r.value.to_vec()).unwrap()
}

fn topics(name: &str) -> Vec<String> {
    vec![name.to_string()]
}

/// Runs on paused time: the runtime jumps to the next timer when idle, so the
/// linger is exact and a wait that should not happen shows as a jump.
#[tokio::test(start_paused = true)]
async fn next_batch_wakes_on_publish_and_lingers_for_more() {
    let log = MemoryLog::new();
    log.ensure_topic("t", 1).await.unwrap();
    let mut c = log
        .consume("g", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        let batch = c.next_batch(10, Duration::from_millis(300)).await.unwrap();
        (c, batch)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "nothing to read yet");
    publish(&log, "t", &["1"]).await;
    // Within the linger, a second record joins the first one's batch.
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish(&log, "t", &["2"]).await;
    let (mut c, batch) = tokio::time::timeout(PATIENCE, waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.iter().map(text).collect::<Vec<_>>(), ["1", "2"]);

    // A full batch does not wait for the linger.
    publish(&log, "t", &["0", "1", "2"]).await;
    let started = tokio::time::Instant::now();
    let batch = c.next_batch(3, Duration::from_secs(60)).await.unwrap();
    assert_eq!(batch.len(), 3);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_topic_consumed_before_it_exists_is_waited_for() {
    let log = MemoryLog::new();
    let early = OutgoingRecord {
        topic: "later".to_string(),
        key: "k".to_string(),
        value: Bytes::from_static(b"x"),
    };
    assert!(log.publish(vec![early]).await[0].is_err(), "not created");
    let mut c = log
        .consume("g", &topics("later"), StartAt::Latest)
        .await
        .unwrap();
    assert!(*c.assigned().borrow());
    log.ensure_topic("later", 3).await.unwrap();
    publish(&log, "later", &["first"]).await;
    let got = take(&mut c, 10).await;
    assert_eq!(text(&got[0]), "first");
}

#[tokio::test]
async fn dropping_consumed_keeps_what_is_not_committed() {
    let log = MemoryLog::dropping_consumed();
    log.ensure_topic("t", 1).await.unwrap();
    publish(&log, "t", &["0", "1", "2", "3"]).await;
    let mut c = log
        .consume("g", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    let got = take(&mut c, 10).await;
    assert_eq!(got.len(), 4);
    c.commit(&got[..2]).unwrap();
    drop(c);
    // The committed two are gone; a new group starts at the oldest held.
    let mut other = log
        .consume("h", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    let held = take(&mut other, 10).await;
    assert_eq!(held.iter().map(|r| r.offset).collect::<Vec<_>>(), [2, 3]);
}
