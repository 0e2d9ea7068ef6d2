//! What a process counts and times, served at `GET /metrics` in the
//! OpenMetrics text format (which Prometheus scrapes) by the
//! `prometheus-client` library.
//!
//! One [`Registry`] per process: a cluster binary makes one for its service,
//! `herald standalone` one for the four services inside, so every metric
//! appears once with its `# TYPE` and `# HELP`. Services register their
//! metrics when they start and keep the handles (cheap clones of shared
//! atomics) to update them.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// A monotonic count: `inc()`, `inc_by(n)`.
pub use prometheus_client::metrics::counter::Counter;

/// The `Content-Type` of [`Registry::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A process's metrics. Clones share the same registry.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Shared>,
}

/// Where a sampled gauge reads its value.
type Sample = Box<dyn Fn() -> i64 + Send + Sync>;

#[derive(Default)]
struct Shared {
    registry: Mutex<prometheus_client::registry::Registry>,
    /// Gauges read from their source at each scrape, with that source.
    sampled: Mutex<Vec<(Gauge, Sample)>>,
    /// Registered by the first consumer that asks, shared by the others.
    consumer_lag: OnceLock<ConsumerLag>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

/// Locks, ignoring poisoning: no update panics half-way, and metrics that
/// stopped after an unrelated panic would hide what happened.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    /// A counter; its samples are named `name` + `_total`.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        lock(&self.inner.registry).register(name, help, counter.clone());
        counter
    }

    /// A gauge whose value is `read` at each scrape: for what the service
    /// already knows (connections held) and need not count twice.
    pub fn sampled_gauge(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        let gauge = Gauge::default();
        lock(&self.inner.registry).register(name, help, gauge.clone());
        lock(&self.inner.sampled).push((gauge, Box::new(read)));
    }

    /// A latency histogram, in seconds (`name` should end in `_seconds`).
    pub fn latency(&self, name: &str, help: &str) -> Latency {
        let latency = Latency(Histogram::new(latency_buckets()));
        lock(&self.inner.registry).register(name, help, latency.0.clone());
        latency
    }

    /// The consumer lag gauges, one per (group, topic, partition), shared by
    /// every consumer of the process.
    pub fn consumer_lag(&self) -> ConsumerLag {
        self.inner
            .consumer_lag
            .get_or_init(|| {
                let family = Family::default();
                lock(&self.inner.registry).register(
                    "herald_log_consumer_lag",
                    "Records published to a partition and not yet consumed by the group's member here.",
                    family.clone(),
                );
                ConsumerLag(family)
            })
            .clone()
    }

    /// Every metric, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        for (gauge, read) in lock(&self.inner.sampled).iter() {
            gauge.set(read());
        }
        let mut text = String::new();
        encode(&mut text, &lock(&self.inner.registry)).expect("writing to a String cannot fail");
        text
    }

    /// Whether `self` and `other` are the same registry.
    pub fn same_as(&self, other: &Registry) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether no metric was ever registered.
    pub fn is_empty(&self) -> bool {
        // The encoder writes only `# EOF` for an empty registry.
        self.render().trim() == "# EOF"
    }
}

/// Labels of a consumer lag gauge: group, topic, partition.
type LagLabels = Vec<(&'static str, String)>;

/// How many records each consumer group member of the process is behind.
#[derive(Clone)]
pub struct ConsumerLag(Family<LagLabels, Gauge>);

impl ConsumerLag {
    fn labels(group: &str, topic: &str, partition: i32) -> LagLabels {
        vec![
            ("group", group.to_string()),
            ("topic", topic.to_string()),
            ("partition", partition.to_string()),
        ]
    }

    pub fn set(&self, group: &str, topic: &str, partition: i32, records: i64) {
        self.0
            .get_or_create(&Self::labels(group, topic, partition))
            .set(records);
    }

    /// Stops reporting a partition (it moved to another member).
    pub fn remove(&self, group: &str, topic: &str, partition: i32) {
        self.0.remove(&Self::labels(group, topic, partition));
    }
}

/// Buckets from 0.5 ms to about 16 s, doubling: a hop on loopback takes a
/// millisecond or less, a fetch window tens of them, an outage seconds.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

/// A histogram of durations, in seconds.
#[derive(Clone)]
pub struct Latency(Histogram);

impl Latency {
    pub fn observe(&self, elapsed: Duration) {
        self.0.observe(elapsed.as_secs_f64());
    }

    /// Records the time since `started`.
    pub fn since(&self, started: Instant) {
        self.observe(started.elapsed());
    }

    /// Records the time since `accepted_ms` (a message's `ts`, unix
    /// milliseconds, from another process's clock): how long ago the
    /// collector accepted it. A clock behind the collector's counts as 0.
    pub fn since_accepted(&self, accepted_ms: i64) {
        let ms = crate::time::now_ms().saturating_sub(accepted_ms).max(0);
        self.observe(Duration::from_millis(ms as u64));
    }

    /// Awaits `work` and records how long it took.
    pub async fn time<T>(&self, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let output = work.await;
        self.since(started);
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_types_help_and_values() {
        let metrics = Registry::default();
        assert!(metrics.is_empty());
        let sent = metrics.counter("herald_test_sent", "Messages sent.");
        sent.inc_by(3);
        metrics.sampled_gauge("herald_test_open", "Open things.", || 7);
        let latency = metrics.latency("herald_test_hop_seconds", "One hop.");
        latency.observe(Duration::from_millis(3));
        let text = metrics.render();
        assert!(!metrics.is_empty());
        for line in [
            "# TYPE herald_test_sent counter",
            "herald_test_sent_total 3",
            "# TYPE herald_test_open gauge",
            "herald_test_open 7",
            "# TYPE herald_test_hop_seconds histogram",
            "herald_test_hop_seconds_count 1",
            "herald_test_hop_seconds_bucket{le=\"0.004\"} 1",
            "herald_test_hop_seconds_bucket{le=\"0.002\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn buckets_span_half_a_millisecond_to_ten_seconds() {
        let buckets: Vec<f64> = latency_buckets().collect();
        assert_eq!(buckets[0], 0.0005);
        assert!(*buckets.last().unwrap() >= 10.0, "{buckets:?}");
    }

    #[test]
    fn an_acceptance_in_the_future_counts_as_no_delay() {
        let metrics = Registry::default();
        let delay = metrics.latency("herald_test_delay_seconds", "Delay.");
        delay.since_accepted(crate::time::now_ms() + 60_000);
        let text = metrics.render();
        assert!(
            text.contains("herald_test_delay_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
    }
}
