//! The [`Log`] contract on [`MemoryLog`]: order per key, groups splitting
//! partitions and resuming from commits, and consumers woken by publishes.

use bytes::Bytes;
use herald_common::log::{Log, LogConsumer, OutgoingRecord, Record, StartAt};
use herald_embedded::MemoryLog;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Bound on any wait a test expects to end: generous, since a wait that should
/// end ends in microseconds.
const PATIENCE: Duration = Duration::from_secs(5);

/// A record for `topic` keyed `key` whose value says which it was.
fn record(topic: &str, key: &str, value: impl Into<String>) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_string(),
        key: key.to_string(),
        value: Bytes::from(value.into()),
    }
}

/// Publishes and insists every record was taken.
async fn publish(log: &MemoryLog, records: Vec<OutgoingRecord>) {
    for result in log.publish(records).await {
        result.expect("published");
    }
}

/// Reads batches until `count` records have come (failing after PATIENCE).
async fn read(consumer: &mut Box<dyn LogConsumer>, count: usize) -> Vec<Record> {
    let mut out = Vec::new();
    while out.len() < count {
        let batch = tokio::time::timeout(
            PATIENCE,
            consumer.next_batch(count - out.len(), Duration::ZERO),
        )
        .await
        .expect("records arrive")
        .expect("next_batch");
        out.extend(batch);
    }
    out
}

/// Whether a consumer gets nothing more within a short while.
async fn stays_idle(consumer: &mut Box<dyn LogConsumer>) -> bool {
    tokio::time::timeout(
        Duration::from_millis(100),
        consumer.next_batch(100, Duration::ZERO),
    )
    .await
    .is_err()
}

fn text(r: &Record) -> String {
    String::from_utf8(r.value.to_vec()).unwrap()
}

fn topics(name: &str) -> Vec<String> {
    vec![name.to_string()]
}

#[tokio::test]
async fn one_key_keeps_its_order_and_partition() {
    let log = MemoryLog::new();
    log.ensure_topic("t", 4).await.unwrap();
    log.ensure_topic("t", 9).await.unwrap(); // idempotent: stays at 4
    let keys = ["a", "b", "c", "d", "e"];
    let records = (0..100)
        .map(|i| {
            record(
                "t",
                keys[i % keys.len()],
                format!("{}:{i}", keys[i % keys.len()]),
            )
        })
        .collect();
    publish(&log, records).await;

    let mut consumer = log
        .consume("g", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    assert!(*consumer.assigned().borrow());
    let got = read(&mut consumer, 100).await;
    let mut per_key: HashMap<String, (BTreeSet<i32>, Vec<usize>)> = HashMap::new();
    for r in &got {
        assert!((0..4).contains(&r.partition), "partition {}", r.partition);
        let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        let (k, n) = text(r)
            .split_once(':')
            .map(|(k, n)| (k.to_string(), n.parse().unwrap()))
            .unwrap();
        assert_eq!(key, k);
        let slot = per_key.entry(key).or_default();
        slot.0.insert(r.partition);
        slot.1.push(n);
    }
    assert_eq!(per_key.len(), keys.len());
    for (key, (partitions, order)) in per_key {
        assert_eq!(partitions.len(), 1, "key {key} in one partition");
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "key {key} in order: {order:?}"
        );
        assert_eq!(order.len(), 20);
    }
    assert!(stays_idle(&mut consumer).await);
}

#[tokio::test]
async fn a_group_splits_partitions_and_resumes_from_its_commits() {
    let log = MemoryLog::new();
    log.ensure_topic("t", 4).await.unwrap();
    let mut a = log
        .consume("g", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    let mut b = log
        .consume("g", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    // Enough distinct keys to touch all four partitions.
    let records = (0..40)
        .map(|i| record("t", &format!("k{i}"), format!("{i}")))
        .collect();
    publish(&log, records).await;

    let mut from_a = Vec::new();
    let mut from_b = Vec::new();
    while from_a.len() + from_b.len() < 40 {
        tokio::select! {
            r = a.next_batch(100, Duration::ZERO) => from_a.extend(r.unwrap()),
            r = b.next_batch(100, Duration::ZERO) => from_b.extend(r.unwrap()),
            _ = tokio::time::sleep(PATIENCE) => panic!("records did not arrive"),
        }
    }
    let parts_a: BTreeSet<i32> = from_a.iter().map(|r| r.partition).collect();
    let parts_b: BTreeSet<i32> = from_b.iter().map(|r| r.partition).collect();
    assert_eq!(parts_a.len(), 2, "a has half: {parts_a:?}");
    assert_eq!(parts_b.len(), 2, "b has half: {parts_b:?}");
    assert!(parts_a.is_disjoint(&parts_b));
    assert!(stays_idle(&mut a).await);
    assert!(stays_idle(&mut b).await);

    // b commits all it read but the last record of each partition, then
    // leaves: a takes b's partitions over from b's commits.
    let mut committed = Vec::new();
    let mut redelivered = BTreeSet::new();
    for p in &parts_b {
        let of_p: Vec<&Record> = from_b.iter().filter(|r| r.partition == *p).collect();
        committed.extend(of_p[..of_p.len() - 1].iter().map(|r| (*r).clone()));
        redelivered.insert((*p, of_p.last().unwrap().offset));
    }
    b.commit(&committed).unwrap();
    drop(b);
    let again = read(&mut a, redelivered.len()).await;
    let got: BTreeSet<(i32, i64)> = again.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(got, redelivered);
    assert!(stays_idle(&mut a).await);

    // a commits everything and leaves; a new member resumes after it.
    a.commit(&from_a).unwrap();
    a.commit(&again).unwrap();
    drop(a);
    publish(&log, vec![record("t", "k1", "after")]).await;
    let mut c = log
        .consume("g", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    let next = read(&mut c, 1).await;
    assert_eq!(text(&next[0]), "after");
    assert!(stays_idle(&mut c).await);
}

#[tokio::test]
async fn a_member_resumes_at_the_committed_offset() {
    let log = MemoryLog::new();
    log.ensure_topic("t", 1).await.unwrap();
    publish(
        &log,
        (0..10).map(|i| record("t", "k", format!("{i}"))).collect(),
    )
    .await;
    let mut first = log
        .consume("g", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    let got = read(&mut first, 10).await;
    first.commit(&got[..5]).unwrap();
    drop(first);
    let mut second = log
        .consume("g", &topics("t"), StartAt::Latest)
        .await
        .unwrap();
    let again = read(&mut second, 5).await;
    let offsets: Vec<i64> = again.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![5, 6, 7, 8, 9]);
}

#[tokio::test]
async fn latest_skips_what_came_before_the_group_joined() {
    let log = MemoryLog::new();
    log.ensure_topic("t", 2).await.unwrap();
    publish(&log, vec![record("t", "a", "old"), record("t", "b", "old")]).await;
    let mut c = log
        .consume("g", &topics("t"), StartAt::Latest)
        .await
        .unwrap();
    assert!(stays_idle(&mut c).await);
    publish(&log, vec![record("t", "a", "new")]).await;
    let got = read(&mut c, 1).await;
    assert_eq!(text(&got[0]), "new");
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
    publish(&log, vec![record("t", "k", "1")]).await;
    // Within the linger, a second record joins the first one's batch.
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish(&log, vec![record("t", "k", "2")]).await;
    let (mut c, batch) = tokio::time::timeout(PATIENCE, waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.iter().map(text).collect::<Vec<_>>(), ["1", "2"]);

    // A full batch does not wait for the linger.
    publish(
        &log,
        (0..3).map(|i| record("t", "k", format!("{i}"))).collect(),
    )
    .await;
    let started = tokio::time::Instant::now();
    let batch = c.next_batch(3, Duration::from_secs(60)).await.unwrap();
    assert_eq!(batch.len(), 3);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_topic_consumed_before_it_exists_is_waited_for() {
    let log = MemoryLog::new();
    assert!(log.publish(vec![record("later", "k", "x")]).await[0].is_err());
    let mut c = log
        .consume("g", &topics("later"), StartAt::Latest)
        .await
        .unwrap();
    assert!(*c.assigned().borrow());
    log.ensure_topic("later", 3).await.unwrap();
    publish(&log, vec![record("later", "k", "first")]).await;
    let got = read(&mut c, 1).await;
    assert_eq!(text(&got[0]), "first");
}

#[tokio::test]
async fn groups_are_independent() {
    let log = MemoryLog::new();
    log.ensure_topic("t", 1).await.unwrap();
    let mut one = log
        .consume("one", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    let mut two = log
        .consume("two", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    publish(&log, vec![record("t", "k", "x")]).await;
    assert_eq!(text(&read(&mut one, 1).await[0]), "x");
    assert_eq!(text(&read(&mut two, 1).await[0]), "x");
}

#[tokio::test]
async fn dropping_consumed_keeps_what_is_not_committed() {
    let log = MemoryLog::dropping_consumed();
    log.ensure_topic("t", 1).await.unwrap();
    publish(
        &log,
        (0..4).map(|i| record("t", "k", format!("{i}"))).collect(),
    )
    .await;
    let mut c = log
        .consume("g", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    let got = read(&mut c, 4).await;
    c.commit(&got[..2]).unwrap();
    drop(c);
    // The committed two are gone; a new group starts at the oldest held.
    let mut other = log
        .consume("h", &topics("t"), StartAt::Earliest)
        .await
        .unwrap();
    let held = read(&mut other, 2).await;
    assert_eq!(held.iter().map(|r| r.offset).collect::<Vec<_>>(), [2, 3]);
}
