//! One test suite per port of `herald_common`, each case run on both adapter
//! families: the embedded ones (`herald_embedded`) and the cluster ones
//! (`herald_cluster`, on the servers of `infra/servers`).
//!
//! * `tests/log.rs`: [`Log`](herald_common::log::Log) on `MemoryLog` and on
//!   `KafkaLog` (tansu at [`KAFKA_BROKERS`]);
//! * `tests/routes.rs`: [`RouteRegistry`](herald_common::routes::RouteRegistry)
//!   on `MemoryRoutes` and on `RedisRoutes` ([`REDIS_URL`]);
//! * `tests/store.rs`: [`MessageStore`](herald_common::store::MessageStore) on
//!   `SqliteStore` and on `MongoStore` ([`MONGO_URI`]).
//!
//! A case is an async function of the adapter under test, written once; the
//! [`contract!`] macro makes one test of it per adapter, named
//! `<adapter>::<case>`. Each case gets names of its own (topics, groups,
//! Redis keys, a database) from [`namespace`], so runs and cases never see
//! each other's data on the shared servers. What only one adapter does
//! (SQLite reopening its file, the in-memory log's paused-time lingering) is
//! tested next to that adapter instead.

use std::sync::atomic::{AtomicU32, Ordering};

/// The Kafka-protocol server of `infra/servers`.
pub const KAFKA_BROKERS: &str = "127.0.0.1:9092";

/// The Redis server of `infra/servers`.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// The MongoDB-protocol server of `infra/servers`.
pub const MONGO_URI: &str = "mongodb://127.0.0.1:27017/?directConnection=true";

/// A name no other case, run or process uses: `c<pid>-<n>-<random>-<case>`,
/// with `_` in the case name turned into `-` (valid as a Kafka topic, a Redis
/// key prefix and, with `-` turned into `_`, a MongoDB database name).
pub fn namespace(case: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let short: String = case.chars().take(24).collect();
    format!(
        "c{}-{n}-{:06x}-{}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff,
        short.replace('_', "-")
    )
}

/// One test per (adapter, case):
///
/// ```ignore
/// contract!(
///     #[tokio::test] memory => super::on_memory,
///     #[tokio::test(flavor = "multi_thread")] kafka => super::on_kafka;
///     [case_one, case_two]
/// );
/// ```
///
/// makes a module per adapter (`memory`, `kafka`) with a test per case, run
/// under that adapter's test attribute, which calls `runner(case, "case")`.
/// The runner builds the adapter (in the case's own namespace), runs the case
/// on it and cleans up.
#[macro_export]
macro_rules! contract {
    ($(#[$test:meta] $adapter:ident => $runner:path),+ $(,)?; $cases:tt) => {
        $($crate::contract!(@adapter #[$test] $adapter => $runner, $cases);)+
    };
    (@adapter #[$test:meta] $adapter:ident => $runner:path, [$($case:ident),* $(,)?]) => {
        mod $adapter {
            $(
                #[$test]
                async fn $case() {
                    $runner(super::$case, stringify!($case)).await;
                }
            )*
        }
    };
}
