//! [`Log`] as an in-process bus: what Kafka does for Herald, for one process.
//!
//! Topics are vectors of partitions, partitions are queues of records whose
//! offsets count from 0. Consumer groups keep committed offsets per
//! (topic, partition) and split the partitions of their topics among their
//! live members, re-splitting whenever a member joins, a member is dropped or
//! a topic they subscribe to is created.
//!
//! How it meets the [`Log`] contract:
//!
//! * **Order**: a record goes to partition `fnv1a(key) % partitions`, so one
//!   key always lands in one partition, and a partition hands its records out
//!   in append order.
//! * **Durability**: a record is in memory once `publish` returns, which is as
//!   durable as this log gets: it lasts as long as the process. That is enough
//!   because the store, not the log, is Herald's record (see the crate docs).
//! * **At-least-once**: a member reads from its own position, which starts at
//!   the group's committed offset; a partition that moves to another member
//!   restarts there, so what was read but not committed is read again.
//! * **Errors**: nothing here is remote, so nothing is unavailable. Publishing
//!   to a topic that was never created fails with [`LogError::Other`] (Herald
//!   creates every topic before writing to it; a typo should not silently
//!   make a topic nobody reads).
//!
//! A topic consumed before it exists is *waited for*, not created: the member
//! joins with no partitions of it, and receives them when `ensure_topic`
//! creates it with the number of partitions its owner chose. Creating it on
//! first consume would fix it at one partition for good.
//!
//! Differences from Kafka worth knowing: the partitioner is FNV-1a, not
//! murmur2 (nobody outside the process produces here); a group's `StartAt` is
//! the one given by its first member; and a partition kept by a member across
//! a rebalance keeps that member's position (cooperative rebalancing) rather
//! than going back to the committed offset.

use async_trait::async_trait;
use bytes::Bytes;
use herald_common::log::{
    Log, LogConsumer, LogError, OutgoingRecord, PartitionLag, Record, StartAt, commit_positions,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// A partition's name within the log: the unit of assignment and commits.
type TopicPartition = (String, i32);

/// The log: a handle on shared state, cheap to clone so every service of the
/// process can hold one.
#[derive(Clone, Default)]
pub struct MemoryLog {
    state: Arc<Mutex<State>>,
}

/// Everything the log knows, behind one lock: publishes, commits and
/// rebalances are short and never wait while holding it.
#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    groups: HashMap<String, Group>,
    /// Source of member ids, so that members sort in join order.
    next_member: u64,
    /// Whether records every group has committed past are dropped.
    drop_consumed: bool,
}

/// A topic: its partition count is fixed at creation, as in Kafka.
struct Topic {
    partitions: Vec<Partition>,
}

/// One ordered sequence of records.
#[derive(Default)]
struct Partition {
    /// Offset of the first record still held (above 0 only once consumed
    /// records are dropped).
    base: i64,
    records: VecDeque<Stored>,
}

impl Partition {
    /// The offset the next published record will take.
    fn end(&self) -> i64 {
        self.base + self.records.len() as i64
    }

    /// The record at `offset`, if still held.
    fn get(&self, offset: i64) -> Option<&Stored> {
        let index = usize::try_from(offset - self.base).ok()?;
        self.records.get(index)
    }
}

/// A record as held: the topic and offset are implied by where it sits.
struct Stored {
    key: Bytes,
    value: Bytes,
}

/// A consumer group: outlives its members, so that a member joining later
/// (a restarted service) resumes from what the group committed.
struct Group {
    /// Where partitions without a committed offset start.
    start: StartAt,
    /// Every topic a member ever subscribed: their partitions get a start
    /// position when first seen, and keep their commits.
    topics: BTreeSet<String>,
    committed: HashMap<TopicPartition, i64>,
    /// Where each partition starts while nothing is committed: fixed when the
    /// group first covers the partition, so `Latest` means "after the group
    /// first joined", not "after whichever member happens to get it".
    initial: HashMap<TopicPartition, i64>,
    members: BTreeMap<u64, Member>,
}

/// A live member's share of its group.
struct Member {
    topics: BTreeSet<String>,
    /// Assigned partitions and the next offset to hand out from each.
    positions: BTreeMap<TopicPartition, i64>,
    /// Where to start the next batch, so that a busy partition does not
    /// starve the others of a member's batches.
    rotation: usize,
    /// Woken on new records in its partitions and on rebalances. `Notify`
    /// keeps a permit when nobody waits, so no wakeup is lost between a
    /// member looking and it starting to wait.
    wake: Arc<Notify>,
}

/// FNV-1a, 64 bits: stable across runs and platforms (unlike std's hasher,
/// whose keys may change), so a key's partition never moves.
fn partition_of(key: &[u8], partitions: usize) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % partitions as u64) as i32
}

impl MemoryLog {
    /// A log that keeps every record for the life of the process, like a Kafka
    /// topic with unlimited retention.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log that drops a record once every group that consumes its topic has
    /// committed past it, so a long-running process does not grow without
    /// bound. A group that joins a topic later only sees what is still held
    /// (as with Kafka after retention), and a topic nobody has consumed yet
    /// keeps everything.
    pub fn dropping_consumed() -> Self {
        let log = Self::default();
        log.lock().drop_consumed = true;
        log
    }

    /// Locks the state. Poisoning is ignored: no update panics half-way, and
    /// a bus that refused every call after some unrelated panic would stop
    /// every service of the process with it.
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// Locks the shared state, ignoring poisoning (see [`MemoryLog::lock`]).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Recomputes `group`'s assignment: every partition of its existing topics
    /// goes to the subscribed member with the fewest so far (ties to the
    /// oldest member), which spreads one-partition topics as well as
    /// many-partition ones. Members keep the position of partitions they keep;
    /// a partition new to a member starts at the committed offset.
    fn rebalance(&mut self, group_name: &str) {
        let Some(group) = self.groups.get_mut(group_name) else {
            return;
        };
        let mut load: BTreeMap<u64, usize> = group.members.keys().map(|id| (*id, 0)).collect();
        let mut assignment: BTreeMap<u64, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for topic_name in &group.topics {
            let Some(topic) = self.topics.get(topic_name) else {
                continue;
            };
            let eligible: Vec<u64> = group
                .members
                .iter()
                .filter(|(_, m)| m.topics.contains(topic_name))
                .map(|(id, _)| *id)
                .collect();
            for (index, partition) in topic.partitions.iter().enumerate() {
                let tp = (topic_name.clone(), index as i32);
                let initial = *group
                    .initial
                    .entry(tp.clone())
                    .or_insert(match group.start {
                        StartAt::Earliest => partition.base,
                        StartAt::Latest => partition.end(),
                    });
                let Some(owner) = eligible.iter().copied().min_by_key(|id| (load[id], *id)) else {
                    continue;
                };
                *load.get_mut(&owner).expect("members are loaded") += 1;
                let start = group.committed.get(&tp).copied().unwrap_or(initial);
                assignment
                    .entry(owner)
                    .or_default()
                    .push((tp, start.max(partition.base)));
            }
        }
        for (id, member) in group.members.iter_mut() {
            let old = std::mem::take(&mut member.positions);
            for (tp, start) in assignment.remove(id).unwrap_or_default() {
                let position = old.get(&tp).copied().unwrap_or(start);
                member.positions.insert(tp, position);
            }
            member.wake.notify_one();
        }
    }

    /// Drops the records of `tp` that every group consuming its topic has
    /// committed past (only in [`MemoryLog::dropping_consumed`] logs).
    fn trim_consumed(&mut self, tp: &TopicPartition) {
        let mut floor: Option<i64> = None;
        for group in self.groups.values() {
            if !group.topics.contains(&tp.0) {
                continue;
            }
            let done = group
                .committed
                .get(tp)
                .or_else(|| group.initial.get(tp))
                .copied()
                .unwrap_or(0);
            floor = Some(floor.map_or(done, |f| f.min(done)));
        }
        let (Some(floor), Some(topic)) = (floor, self.topics.get_mut(&tp.0)) else {
            return;
        };
        let Some(partition) = topic.partitions.get_mut(tp.1 as usize) else {
            return;
        };
        while partition.base < floor && partition.records.pop_front().is_some() {
            partition.base += 1;
        }
    }
}

#[async_trait]
impl Log for MemoryLog {
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), LogError> {
        if partitions < 1 {
            return Err(LogError::other(format!(
                "topic {topic}: {partitions} partitions; at least 1 needed"
            )));
        }
        let mut state = self.lock();
        if state.topics.contains_key(topic) {
            return Ok(());
        }
        state.topics.insert(
            topic.to_string(),
            Topic {
                partitions: (0..partitions).map(|_| Partition::default()).collect(),
            },
        );
        // Groups already waiting for this topic get its partitions now.
        let waiting: Vec<String> = state
            .groups
            .iter()
            .filter(|(_, g)| g.topics.contains(topic))
            .map(|(name, _)| name.clone())
            .collect();
        for group in waiting {
            state.rebalance(&group);
        }
        Ok(())
    }

    async fn publish(&self, records: Vec<OutgoingRecord>) -> Vec<Result<(), LogError>> {
        let mut state = self.lock();
        let mut touched: HashSet<TopicPartition> = HashSet::new();
        let results = records
            .into_iter()
            .map(|r| {
                let Some(topic) = state.topics.get_mut(&r.topic) else {
                    return Err(LogError::other(format!("unknown topic {}", r.topic)));
                };
                let index = partition_of(r.key.as_bytes(), topic.partitions.len());
                topic.partitions[index as usize].records.push_back(Stored {
                    key: Bytes::from(r.key),
                    value: r.value,
                });
                touched.insert((r.topic, index));
                Ok(())
            })
            .collect();
        if !touched.is_empty() {
            for group in state.groups.values() {
                for member in group.members.values() {
                    if member.positions.keys().any(|tp| touched.contains(tp)) {
                        member.wake.notify_one();
                    }
                }
            }
        }
        results
    }

    async fn consume(
        &self,
        group: &str,
        topics: &[String],
        start: StartAt,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        let wake = Arc::new(Notify::new());
        let mut state = self.lock();
        state.next_member += 1;
        let id = state.next_member;
        let entry = state
            .groups
            .entry(group.to_string())
            .or_insert_with(|| Group {
                start,
                topics: BTreeSet::new(),
                committed: HashMap::new(),
                initial: HashMap::new(),
                members: BTreeMap::new(),
            });
        entry.topics.extend(topics.iter().cloned());
        entry.members.insert(
            id,
            Member {
                topics: topics.iter().cloned().collect(),
                positions: BTreeMap::new(),
                rotation: 0,
                wake: wake.clone(),
            },
        );
        state.rebalance(group);
        drop(state);
        // The assignment is made synchronously above, so the member is
        // reading from the moment it exists.
        let (assigned_tx, _) = watch::channel(true);
        Ok(Box::new(MemoryConsumer {
            state: self.state.clone(),
            group: group.to_string(),
            id,
            wake,
            assigned: assigned_tx,
        }))
    }
}

/// One member of a consumer group. Dropping it leaves the group, whose other
/// members take over its partitions from the committed offsets.
struct MemoryConsumer {
    state: Arc<Mutex<State>>,
    group: String,
    id: u64,
    wake: Arc<Notify>,
    /// Kept (rather than only a receiver) so `assigned()` can hand out
    /// receivers for the member's whole life.
    assigned: watch::Sender<bool>,
}

impl MemoryConsumer {
    /// Looks at the member's partitions once: returns a batch when one is
    /// ready to go (full, or `linger` after its first record was seen, which
    /// `deadline` remembers), advancing the positions past it; otherwise
    /// leaves everything as it was. Positions move only when a
    /// batch is returned, so a `next_batch` cancelled while waiting loses
    /// nothing.
    fn try_take(
        &self,
        max: usize,
        linger: Duration,
        deadline: &mut Option<Instant>,
    ) -> Option<Vec<Record>> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let State { topics, groups, .. } = &mut *state;
        let member = groups.get_mut(&self.group)?.members.get_mut(&self.id)?;
        let assigned: Vec<(TopicPartition, i64)> = member
            .positions
            .iter()
            .map(|(tp, p)| (tp.clone(), *p))
            .collect();
        let mut batch = Vec::new();
        let mut taken: Vec<(TopicPartition, i64)> = Vec::new();
        let count = assigned.len();
        for i in 0..count {
            let (tp, position) = &assigned[(member.rotation + i) % count];
            let Some(partition) = topics
                .get(&tp.0)
                .and_then(|t| t.partitions.get(tp.1 as usize))
            else {
                continue;
            };
            let mut offset = (*position).max(partition.base);
            while batch.len() < max {
                let Some(stored) = partition.get(offset) else {
                    break;
                };
                batch.push(Record {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    offset,
                    key: Some(stored.key.clone()),
                    value: stored.value.clone(),
                });
                offset += 1;
            }
            taken.push((tp.clone(), offset));
            if batch.len() >= max {
                break;
            }
        }
        if batch.is_empty() {
            // Nothing to linger over: the next record starts a new wait.
            *deadline = None;
            return None;
        }
        let due = *deadline.get_or_insert(now + linger);
        if batch.len() < max && now < due {
            return None;
        }
        for (tp, offset) in taken {
            member.positions.insert(tp, offset);
        }
        member.rotation = member.rotation.wrapping_add(1);
        Some(batch)
    }
}

#[async_trait]
impl LogConsumer for MemoryConsumer {
    async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<Record>, LogError> {
        let max = max.max(1);
        // `None` until a first record is seen; then the instant the batch
        // must go, full or not.
        let mut deadline: Option<Instant> = None;
        loop {
            if let Some(batch) = self.try_take(max, linger, &mut deadline) {
                return Ok(batch);
            }
            match deadline {
                None => self.wake.notified().await,
                Some(due) => {
                    let _ = tokio::time::timeout_at(due, self.wake.notified()).await;
                }
            }
        }
    }

    fn commit(&mut self, records: &[Record]) -> Result<(), LogError> {
        let mut state = lock(&self.state);
        let Some(group) = state.groups.get_mut(&self.group) else {
            return Ok(());
        };
        let Some(member) = group.members.get(&self.id) else {
            return Ok(());
        };
        let mut touched = Vec::new();
        for (tp, next) in commit_positions(records) {
            // A partition that moved to another member is that member's to
            // commit now (Kafka refuses such a commit too); its records will
            // be read again there, which at-least-once allows.
            if !member.positions.contains_key(&tp) {
                continue;
            }
            let slot = group.committed.entry(tp.clone()).or_insert(0);
            *slot = (*slot).max(next);
            touched.push(tp);
        }
        if state.drop_consumed {
            for tp in &touched {
                state.trim_consumed(tp);
            }
        }
        Ok(())
    }

    fn assigned(&self) -> watch::Receiver<bool> {
        self.assigned.subscribe()
    }

    fn lag(&self) -> Vec<PartitionLag> {
        let state = lock(&self.state);
        let Some(member) = state
            .groups
            .get(&self.group)
            .and_then(|g| g.members.get(&self.id))
        else {
            return Vec::new();
        };
        member
            .positions
            .iter()
            .filter_map(|((topic, partition), position)| {
                let end = state
                    .topics
                    .get(topic)?
                    .partitions
                    .get(*partition as usize)?
                    .end();
                Some(PartitionLag {
                    topic: topic.clone(),
                    partition: *partition,
                    records: (end - position).max(0),
                })
            })
            .collect()
    }
}

impl Drop for MemoryConsumer {
    /// Leaves the group so that its partitions go to the remaining members:
    /// a dropped consumer is this log's crashed or stopped member.
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if let Some(group) = state.groups.get_mut(&self.group) {
            group.members.remove(&self.id);
            state.rebalance(&self.group);
        }
        self.assigned.send_replace(false);
    }
}

#[cfg(test)]
mod tests {
    use super::partition_of;

    /// The partitioner must never change: a key's partition is its order.
    #[test]
    fn partitioning_is_stable_and_in_range() {
        assert_eq!(partition_of(b"user:u1", 1), 0);
        let p = partition_of(b"user:u1", 8);
        assert!((0..8).contains(&p));
        for _ in 0..3 {
            assert_eq!(partition_of(b"user:u1", 8), p);
        }
        // FNV-1a of the empty input is its offset basis.
        assert_eq!(partition_of(b"", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as i32);
    }
}
