//! The [`Log`] contract, asserted alike on [`MemoryLog`] and on [`KafkaLog`]
//! (topics and groups of the case's own on the Kafka-protocol server at
//! [`KAFKA_BROKERS`]): order per key, groups splitting partitions and resuming
//! from their commits, `Latest` skipping the past, batches bounded by `max`.
//!
//! The in-process bus does everything before the call returns: a member is
//! assigned when `consume` returns, a publish is readable at once. A broker
//! gets there eventually: a member is assigned after the group's join round
//! (seconds on tansu, see docs/operations.md), a rebalance moves partitions
//! over a few rounds. So a case waits on the contract's own signals
//! (`assigned()`, records arriving) with a generous [`PATIENCE`], and where
//! only the memory log promises "at once" ([`Bus::at_once`]) it asserts that
//! too. What only the memory log does (paused-time lingering, dropping
//! consumed records, waiting for a topic that does not exist yet) is tested in
//! `embedded/tests/memory_log.rs`.

use bytes::Bytes;
use herald_cluster::{KafkaConfig, KafkaLog};
use herald_common::log::{Log, LogConsumer, OutgoingRecord, Record, StartAt};
use herald_contract::{KAFKA_BROKERS, contract, namespace};
use herald_embedded::MemoryLog;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

/// Bound on any wait a case expects to end: generous, since a wait that
/// should end ends in microseconds in memory and within seconds on tansu.
const PATIENCE: Duration = Duration::from_secs(60);

/// A log under test, with names of the case's own.
struct Bus {
    log: Box<dyn Log>,
    namespace: String,
    /// Whether joins, leaves and publishes take effect before the call
    /// returns, so that a case may assert at once what a broker reaches only
    /// eventually.
    at_once: bool,
    /// How long a consumer must get nothing to count as idle: longer on a
    /// broker, whose fetches take their time.
    quiet: Duration,
}

impl Bus {
    /// The case's topic or group called `name`.
    fn name(&self, name: &str) -> String {
        format!("{}.{name}", self.namespace)
    }

    async fn topic(&self, name: &str, partitions: i32) -> String {
        let topic = self.name(name);
        self.log.ensure_topic(&topic, partitions).await.unwrap();
        topic
    }

    /// Joins group `group` on `topic`. The memory log assigns the member
    /// before `consume` returns; a broker's assignment arrives while the
    /// member reads (its rebalance callbacks run inside `next_batch`), so
    /// cases that need it read until records come.
    async fn join(&self, group: &str, topic: &str, start: StartAt) -> Box<dyn LogConsumer> {
        let consumer = self
            .log
            .consume(&self.name(group), &[topic.to_string()], start)
            .await
            .unwrap();
        if self.at_once {
            assert!(
                *consumer.assigned().borrow(),
                "assigned when consume returns"
            );
        }
        consumer
    }

    /// Publishes and insists every record was taken.
    async fn publish(&self, records: Vec<OutgoingRecord>) {
        for result in self.log.publish(records).await {
            result.expect("published");
        }
    }

    /// Whether `consumer` gets nothing within [`Bus::quiet`].
    async fn stays_idle(&self, consumer: &mut Box<dyn LogConsumer>) -> bool {
        tokio::time::timeout(self.quiet, consumer.next_batch(100, Duration::ZERO))
            .await
            .is_err()
    }
}

/// A record for `topic` keyed `key` whose value says which it was.
fn record(topic: &str, key: &str, value: impl Into<String>) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_string(),
        key: key.to_string(),
        value: Bytes::from(value.into()),
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

fn text(r: &Record) -> String {
    String::from_utf8(r.value.to_vec()).unwrap()
}

/// Runs `case` on a fresh in-process bus.
async fn on_memory<F, Fut>(case: F, name: &str)
where
    F: FnOnce(Bus) -> Fut,
    Fut: Future<Output = ()>,
{
    case(Bus {
        log: Box::new(MemoryLog::new()),
        namespace: namespace(name),
        at_once: true,
        quiet: Duration::from_millis(100),
    })
    .await;
}

/// Runs `case` on the Kafka-protocol server, with topics and groups of its
/// own (left behind, like the end-to-end tests' topics).
async fn on_kafka<F, Fut>(case: F, name: &str)
where
    F: FnOnce(Bus) -> Fut,
    Fut: Future<Output = ()>,
{
    let log = KafkaLog::connect(KafkaConfig {
        brokers: KAFKA_BROKERS.to_string(),
        timeout: Duration::from_secs(10),
        replication: 1,
        ..KafkaConfig::default()
    })
    .expect("a Kafka client");
    case(Bus {
        log: Box::new(log),
        namespace: namespace(name),
        at_once: false,
        quiet: Duration::from_secs(1),
    })
    .await;
}

contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] memory => super::on_memory,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] kafka => super::on_kafka;
    [
        one_key_keeps_its_order_and_partition,
        a_group_splits_partitions_and_resumes_from_its_commits,
        a_member_resumes_at_the_committed_offset,
        latest_skips_what_came_before_the_group_joined,
        groups_are_independent,
        a_batch_holds_at_most_max_and_does_not_wait_when_full,
    ]
);

async fn one_key_keeps_its_order_and_partition(bus: Bus) {
    let t = bus.topic("t", 4).await;
    // Idempotent, and never changes an existing topic: it stays at 4.
    bus.log.ensure_topic(&t, 9).await.unwrap();
    let keys = ["a", "b", "c", "d", "e"];
    let records = (0..100)
        .map(|i| {
            let key = keys[i % keys.len()];
            record(&t, key, format!("{key}:{i}"))
        })
        .collect();
    bus.publish(records).await;

    let mut consumer = bus.join("g", &t, StartAt::Earliest).await;
    let got = read(&mut consumer, 100).await;
    assert!(
        *consumer.assigned().borrow(),
        "a member that reads is assigned"
    );
    let mut per_key: HashMap<String, (BTreeSet<i32>, Vec<usize>)> = HashMap::new();
    for r in &got {
        assert_eq!(r.topic, t);
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
    assert!(bus.stays_idle(&mut consumer).await);
}

/// What one member read of one round of records.
#[derive(Default)]
struct Share {
    /// The round's records, by partition.
    by_partition: BTreeMap<i32, Vec<Record>>,
    /// Everything read meanwhile, earlier rounds' redeliveries included.
    all: Vec<Record>,
}

impl Share {
    fn partitions(&self) -> BTreeSet<i32> {
        self.by_partition.keys().copied().collect()
    }

    fn count(&self) -> usize {
        self.by_partition.values().map(Vec::len).sum()
    }
}

/// Publishes round `round` (40 records, 40 keys: enough to touch all 4
/// partitions) and reads on `a` and `b` until every record of the round came.
async fn play_round(
    bus: &Bus,
    t: &str,
    round: usize,
    a: &mut Box<dyn LogConsumer>,
    b: &mut Box<dyn LogConsumer>,
) -> (Share, Share) {
    let tag = format!("r{round}:");
    let records = (0..40)
        .map(|i| record(t, &format!("k{i}"), format!("{tag}{i}")))
        .collect();
    bus.publish(records).await;
    let (mut from_a, mut from_b) = (Share::default(), Share::default());
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.len() < 40 {
        let (share, got) = tokio::select! {
            r = a.next_batch(100, Duration::ZERO) => (&mut from_a, r.unwrap()),
            r = b.next_batch(100, Duration::ZERO) => (&mut from_b, r.unwrap()),
            _ = tokio::time::sleep_until(deadline) => panic!("round {round} did not arrive"),
        };
        for r in got {
            if text(&r).starts_with(&tag) {
                seen.insert(text(&r));
                share
                    .by_partition
                    .entry(r.partition)
                    .or_default()
                    .push(r.clone());
            }
            share.all.push(r);
        }
    }
    (from_a, from_b)
}

async fn a_group_splits_partitions_and_resumes_from_its_commits(bus: Bus) {
    let t = bus.topic("t", 4).await;
    let mut a = bus.join("g", &t, StartAt::Earliest).await;
    let mut b = bus.join("g", &t, StartAt::Earliest).await;

    // Rounds of records until one is split cleanly: each member reads two
    // partitions of its own, every record once. The memory log splits when b
    // joins; a broker's group gets there once its rebalance settles (a round
    // read during one may come twice or from both sides of a moving
    // partition). Each unclean round is committed, so it never comes back.
    let mut round = 0;
    let (from_a, from_b) = loop {
        round += 1;
        let (from_a, from_b) = play_round(&bus, &t, round, &mut a, &mut b).await;
        let clean = from_a.count() + from_b.count() == 40
            && from_a.partitions().len() == 2
            && from_b.partitions().len() == 2
            && from_a.partitions().is_disjoint(&from_b.partitions());
        if clean {
            break (from_a, from_b);
        }
        assert!(!bus.at_once, "the memory log splits at once");
        assert!(round < 30, "the group never split its partitions");
        a.commit(&from_a.all).unwrap();
        b.commit(&from_b.all).unwrap();
    };
    assert!(bus.stays_idle(&mut a).await);
    assert!(bus.stays_idle(&mut b).await);

    // b commits all it read but the last record of each partition, then
    // leaves: a takes b's partitions over from b's commits.
    let mut committed = from_b.all.clone();
    let mut redelivered = BTreeSet::new();
    for records in from_b.by_partition.values() {
        let last = records.last().unwrap();
        committed.retain(|r| (r.partition, r.offset) != (last.partition, last.offset));
        redelivered.insert((last.partition, last.offset));
    }
    b.commit(&committed).unwrap();
    drop(b);
    let again = read(&mut a, redelivered.len()).await;
    let got: BTreeSet<(i32, i64)> = again.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(got, redelivered);
    assert!(bus.stays_idle(&mut a).await);

    // a commits everything and leaves; a new member resumes after it.
    a.commit(&from_a.all).unwrap();
    a.commit(&again).unwrap();
    drop(a);
    bus.publish(vec![record(&t, "k1", "after")]).await;
    let mut c = bus.join("g", &t, StartAt::Earliest).await;
    let next = read(&mut c, 1).await;
    assert_eq!(text(&next[0]), "after");
    assert!(bus.stays_idle(&mut c).await);
}

async fn a_member_resumes_at_the_committed_offset(bus: Bus) {
    let t = bus.topic("t", 1).await;
    bus.publish((0..10).map(|i| record(&t, "k", format!("{i}"))).collect())
        .await;
    let mut first = bus.join("g", &t, StartAt::Earliest).await;
    let got = read(&mut first, 10).await;
    first.commit(&got[..5]).unwrap();
    drop(first);
    // The group's commits decide, not the new member's `start`.
    let mut second = bus.join("g", &t, StartAt::Latest).await;
    let again = read(&mut second, 5).await;
    let offsets: Vec<i64> = again.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![5, 6, 7, 8, 9]);
    assert!(bus.stays_idle(&mut second).await);
}

async fn latest_skips_what_came_before_the_group_joined(bus: Bus) {
    let t = bus.topic("t", 2).await;
    bus.publish(vec![record(&t, "a", "old"), record(&t, "b", "old")])
        .await;
    let mut c = bus.join("g", &t, StartAt::Latest).await;
    assert!(bus.stays_idle(&mut c).await);
    // Once a member is assigned, what is published reaches the group. (On a
    // broker the member looks up where the log ends only after its
    // assignment; see `StartAt::Latest`. Publishing until something comes
    // makes the case independent of that moment.)
    let mut attempt = 0;
    let got = loop {
        attempt += 1;
        bus.publish(vec![record(&t, "a", format!("new{attempt}"))])
            .await;
        match tokio::time::timeout(bus.quiet, c.next_batch(100, Duration::ZERO)).await {
            Ok(batch) => break batch.unwrap(),
            Err(_) => assert!(attempt < 30, "nothing published after joining came"),
        }
    };
    if bus.at_once {
        assert_eq!(attempt, 1);
    }
    assert!(
        got.iter().all(|r| text(r).starts_with("new")),
        "nothing from before the group joined: {:?}",
        got.iter().map(text).collect::<Vec<_>>()
    );
}

async fn groups_are_independent(bus: Bus) {
    let t = bus.topic("t", 1).await;
    let mut one = bus.join("one", &t, StartAt::Earliest).await;
    let mut two = bus.join("two", &t, StartAt::Earliest).await;
    bus.publish(vec![record(&t, "k", "x")]).await;
    assert_eq!(text(&read(&mut one, 1).await[0]), "x");
    assert_eq!(text(&read(&mut two, 1).await[0]), "x");
    assert!(bus.stays_idle(&mut one).await);
    assert!(bus.stays_idle(&mut two).await);
}

async fn a_batch_holds_at_most_max_and_does_not_wait_when_full(bus: Bus) {
    let t = bus.topic("t", 1).await;
    let mut c = bus.join("g", &t, StartAt::Earliest).await;
    bus.publish((0..5).map(|i| record(&t, "k", format!("{i}"))).collect())
        .await;
    // A linger far longer than the patience: only a full batch returns in
    // time.
    let started = Instant::now();
    let first = tokio::time::timeout(PATIENCE, c.next_batch(2, 2 * PATIENCE))
        .await
        .expect("a full batch does not wait for its linger")
        .unwrap();
    assert_eq!(first.len(), 2, "at most max");
    assert!(started.elapsed() < PATIENCE);
    let rest = read(&mut c, 3).await;
    let order: Vec<String> = first.iter().chain(&rest).map(text).collect();
    assert_eq!(order, ["0", "1", "2", "3", "4"], "one key, in order");
    assert!(bus.stays_idle(&mut c).await);
}
