//! The [`RouteRegistry`] contract, asserted alike on [`MemoryRoutes`] and on
//! [`RedisRoutes`] (keys under a namespace of the case's own) on the Redis
//! server at [`REDIS_URL`] and on the Redis Cluster of `infra/redis-cluster`:
//! leases lapse, refreshing extends them, dead and departed nodes are
//! filtered out. Then, on Redis alone, [`skewed_clock`]: nodes whose clocks
//! disagree evict no one.
//!
//! Leases are counted in units of [`Registry::unit`]. The memory registry runs
//! on paused time with a unit of a second, so its leases are tested to the
//! unit without waiting (the runtime jumps to each sleep's end); Redis keeps
//! real time, so its unit is short, and every "still alive" assertion has a
//! margin of several units for a slow machine ("lapsed" ones need none: late
//! is only more lapsed).

use herald_cluster::{RedisConfig, RedisRoutes};
use herald_common::names::Names;
use herald_common::routes::RouteRegistry;
use herald_contract::{REDIS_URL, contract, namespace};
use herald_embedded::MemoryRoutes;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// A registry under test and the unit its leases are counted in.
struct Registry {
    routes: Box<dyn RouteRegistry>,
    unit: Duration,
}

impl Registry {
    /// A lease of `units`.
    fn ttl(&self, units: u32) -> Duration {
        self.unit * units
    }

    /// Lets `units` pass.
    async fn pass(&self, units: u32) {
        tokio::time::sleep(self.unit * units).await;
    }

    /// The nodes `lookup` finds for each of `streams`.
    async fn lookup(&self, streams: &[&str]) -> HashMap<String, Vec<String>> {
        self.routes.lookup(&names(streams)).await.unwrap()
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Runs `case` on a fresh in-memory registry, on paused time (see the
/// module docs).
async fn on_memory<F, Fut>(case: F, _name: &str)
where
    F: FnOnce(Registry) -> Fut,
    Fut: Future<Output = ()>,
{
    case(Registry {
        routes: Box::new(MemoryRoutes::new()),
        unit: Duration::from_secs(1),
    })
    .await;
}

/// Runs `case` on the Redis server, in a namespace of its own. Its keys are
/// left to expire with their leases.
async fn on_redis<F, Fut>(case: F, name: &str)
where
    F: FnOnce(Registry) -> Fut,
    Fut: Future<Output = ()>,
{
    on(RedisConfig::server(REDIS_URL), case, name).await;
}

/// Runs `case` on the Redis Cluster of `infra/redis-cluster`: a case's keys
/// (its streams' routes, its nodes' liveness keys, the node set) fall on
/// different masters.
async fn on_redis_cluster<F, Fut>(case: F, name: &str)
where
    F: FnOnce(Registry) -> Fut,
    Fut: Future<Output = ()>,
{
    on(RedisConfig::cluster(&REDIS_CLUSTER), case, name).await;
}

async fn on<F, Fut>(config: RedisConfig, case: F, name: &str)
where
    F: FnOnce(Registry) -> Fut,
    Fut: Future<Output = ()>,
{
    let routes = RedisRoutes::connect(&config, Names::new(namespace(name)))
        .await
        .expect("a Redis URL");
    case(Registry {
        routes: Box::new(routes),
        unit: Duration::from_millis(250),
    })
    .await;
}

/// The masters of `infra/redis-cluster`.
const REDIS_CLUSTER: [&str; 3] = [
    "redis://127.0.0.1:7301/",
    "redis://127.0.0.1:7302/",
    "redis://127.0.0.1:7303/",
];

contract!(
    #[tokio::test(start_paused = true)] memory => super::on_memory,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] redis => super::on_redis,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] redis_cluster => super::on_redis_cluster;
    [
        a_route_lives_for_its_last_lease,
        only_live_nodes_are_returned_sorted,
        unregister_removes_one_nodes_route,
        live_nodes_are_those_whose_lease_holds,
    ]
);

async fn a_route_lives_for_its_last_lease(r: Registry) {
    let routes = &r.routes;
    routes.node_heartbeat("n1", r.ttl(100)).await.unwrap();
    routes
        .register("n1", &names(&["user:u1", "user:u2"]), r.ttl(10))
        .await
        .unwrap();
    let found = r.lookup(&["user:u1", "user:u2", "user:u3"]).await;
    assert_eq!(found.get("user:u1"), Some(&names(&["n1"])));
    assert_eq!(found.get("user:u2"), Some(&names(&["n1"])));
    assert!(
        !found.contains_key("user:u3"),
        "streams without routes are absent"
    );
    assert!(r.lookup(&[]).await.is_empty());

    // Registering again sets the lease anew, even to a shorter one.
    routes
        .register("n1", &names(&["user:short"]), r.ttl(10))
        .await
        .unwrap();
    routes
        .register("n1", &names(&["user:short"]), r.ttl(2))
        .await
        .unwrap();

    r.pass(9).await;
    routes
        .register("n1", &names(&["user:u1"]), r.ttl(10))
        .await
        .unwrap();
    r.pass(2).await;
    let found = r.lookup(&["user:u1", "user:u2", "user:short"]).await;
    assert_eq!(found.get("user:u1"), Some(&names(&["n1"])), "refreshed");
    assert!(!found.contains_key("user:u2"), "lapsed");
    assert!(
        !found.contains_key("user:short"),
        "lapsed with its last lease"
    );

    r.pass(9).await;
    assert!(r.lookup(&["user:u1"]).await.is_empty());
}

async fn only_live_nodes_are_returned_sorted(r: Registry) {
    let routes = &r.routes;
    for node in ["n3", "n1", "n2"] {
        routes
            .register(node, &names(&["topic:t"]), r.ttl(60))
            .await
            .unwrap();
    }
    // No heartbeat yet: no node is alive.
    assert!(r.lookup(&["topic:t"]).await.is_empty());

    for node in ["n3", "n1", "n2"] {
        routes.node_heartbeat(node, r.ttl(10)).await.unwrap();
        routes
            .register(node, &names(&["topic:t"]), r.ttl(60))
            .await
            .unwrap();
    }
    let found = r.lookup(&["topic:t"]).await;
    assert_eq!(found.get("topic:t"), Some(&names(&["n1", "n2", "n3"])));

    // n2 says goodbye; n3 stops its heartbeat and its lease lapses.
    routes.node_gone("n2").await.unwrap();
    r.pass(5).await;
    routes.node_heartbeat("n1", r.ttl(10)).await.unwrap();
    r.pass(6).await;
    let found = r.lookup(&["topic:t"]).await;
    assert_eq!(found.get("topic:t"), Some(&names(&["n1"])));

    // The dead nodes' routes were removed by that lookup: a node that comes
    // back alive must register again to be found.
    routes.node_heartbeat("n2", r.ttl(10)).await.unwrap();
    let found = r.lookup(&["topic:t"]).await;
    assert_eq!(found.get("topic:t"), Some(&names(&["n1"])));
    routes
        .register("n2", &names(&["topic:t"]), r.ttl(60))
        .await
        .unwrap();
    let found = r.lookup(&["topic:t"]).await;
    assert_eq!(found.get("topic:t"), Some(&names(&["n1", "n2"])));
}

async fn unregister_removes_one_nodes_route(r: Registry) {
    let routes = &r.routes;
    routes.node_heartbeat("n1", r.ttl(60)).await.unwrap();
    routes.node_heartbeat("n2", r.ttl(60)).await.unwrap();
    for node in ["n1", "n2"] {
        routes
            .register(node, &names(&["user:u"]), r.ttl(60))
            .await
            .unwrap();
    }
    routes
        .unregister("n1", &names(&["user:u", "user:nobody"]))
        .await
        .unwrap();
    assert_eq!(
        r.lookup(&["user:u"]).await.get("user:u"),
        Some(&names(&["n2"]))
    );
    routes.unregister("n2", &names(&["user:u"])).await.unwrap();
    assert!(r.lookup(&["user:u"]).await.is_empty());
    // Nothing to do is not an error.
    routes.register("n1", &[], r.ttl(60)).await.unwrap();
    routes.unregister("n1", &[]).await.unwrap();
}

async fn live_nodes_are_those_whose_lease_holds(r: Registry) {
    let routes = &r.routes;
    assert!(routes.live_nodes().await.unwrap().is_empty());
    routes.node_heartbeat("n2", r.ttl(10)).await.unwrap();
    routes.node_heartbeat("n1", r.ttl(10)).await.unwrap();
    routes.node_heartbeat("n3", r.ttl(2)).await.unwrap();
    assert_eq!(
        routes.live_nodes().await.unwrap(),
        names(&["n1", "n2", "n3"])
    );

    routes.node_gone("n2").await.unwrap();
    assert_eq!(routes.live_nodes().await.unwrap(), names(&["n1", "n3"]));
    r.pass(3).await;
    assert_eq!(
        routes.live_nodes().await.unwrap(),
        names(&["n1"]),
        "n3 lapsed"
    );
    // A heartbeat brings a node back.
    routes.node_heartbeat("n3", r.ttl(10)).await.unwrap();
    assert_eq!(routes.live_nodes().await.unwrap(), names(&["n1", "n3"]));
}

/// Liveness and routes judged by Redis's clock, not the nodes': another
/// process of this test binary, run with its clock an hour ahead (and then
/// one an hour behind) by libfaketime, heartbeats and registers its own node
/// beside this process's; neither evicts the other's node or routes.
mod skewed_clock {
    use super::{REDIS_CLUSTER, names};
    use herald_cluster::{RedisConfig, RedisRoutes};
    use herald_common::names::Names;
    use herald_common::routes::RouteRegistry;
    use herald_common::time::now_ms;
    use herald_contract::{REDIS_URL, namespace};
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    /// Installed by `infra/install-tools` (Debian package `faketime`).
    const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

    /// Tells [`skewed_node`] what to do: lines of namespace, the Redis URLs
    /// (comma separated), whether they are a cluster, its node, the nodes it
    /// must find, and this process's clock when it started the child.
    const CHILD_ENV: &str = "HERALD_SKEWED_NODE";

    /// Long enough that only a broken registry sees a lease lapse during the
    /// test, far shorter than the skew.
    const TTL: Duration = Duration::from_secs(60);
    const SKEW_SECS: i64 = 3600;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_redis() {
        nodes_ahead_and_behind_evict_no_one(RedisConfig::server(REDIS_URL), "skew-redis").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_redis_cluster() {
        nodes_ahead_and_behind_evict_no_one(RedisConfig::cluster(&REDIS_CLUSTER), "skew-cluster")
            .await;
    }

    async fn nodes_ahead_and_behind_evict_no_one(config: RedisConfig, name: &str) {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: run infra/install-tools (Debian package faketime)"
        );
        let namespace = namespace(name);
        let routes = RedisRoutes::connect(&config, Names::new(namespace.clone()))
            .await
            .unwrap();
        routes.node_heartbeat("n1", TTL).await.unwrap();
        routes
            .register("n1", &names(&["topic:t"]), TTL)
            .await
            .unwrap();

        let mut expected = vec!["n1"];
        for (node, skew) in [("n2", SKEW_SECS), ("n3", -SKEW_SECS)] {
            expected.push(node);
            let spec = [
                namespace.clone(),
                config.urls.join(","),
                config.cluster.to_string(),
                node.to_string(),
                expected.join(","),
                now_ms().to_string(),
            ]
            .join("\n");
            let status = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "skewed_clock::skewed_node",
                    "--ignored",
                    "--nocapture",
                ])
                .args(["--test-threads", "1"])
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", format!("{skew:+}"))
                // Timers (tokio's Instant) keep real time; only the wall
                // clock, the one a registry could read, is skewed.
                .env("DONT_FAKE_MONOTONIC", "1")
                .env(CHILD_ENV, spec)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "node {node} with its clock {skew:+} s off failed (its output is above)"
            );
            assert_eq!(
                routes.live_nodes().await.unwrap(),
                names(&expected),
                "after {node} ({skew:+} s) beat"
            );
            let found = routes.lookup(&names(&["topic:t"])).await.unwrap();
            assert_eq!(
                found.get("topic:t"),
                Some(&names(&expected)),
                "after {node} ({skew:+} s) registered"
            );
        }
    }

    /// The skewed node's half of [`on_redis`] and [`on_redis_cluster`], run by
    /// them in a process of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "run by the skewed_clock cases, with a skewed clock"]
    async fn skewed_node() {
        let spec = std::env::var(CHILD_ENV).expect("the spec of skewed_clock's other half");
        let [namespace, urls, cluster, node, expected, parent_now] =
            <[&str; 6]>::try_from(spec.lines().collect::<Vec<_>>()).expect("six lines");
        let skew = now_ms() - parent_now.parse::<i64>().unwrap();
        assert!(
            skew.abs() > SKEW_SECS * 1000 / 2,
            "libfaketime did not skew this process's clock ({skew} ms)"
        );
        let urls: Vec<&str> = urls.split(',').collect();
        let config = if cluster == "true" {
            RedisConfig::cluster(&urls)
        } else {
            RedisConfig::server(urls[0])
        };
        let routes = RedisRoutes::connect(&config, Names::new(namespace.to_string()))
            .await
            .unwrap();
        routes.node_heartbeat(node, TTL).await.unwrap();
        routes
            .register(node, &names(&["topic:t"]), TTL)
            .await
            .unwrap();
        let expected: Vec<&str> = expected.split(',').collect();
        assert_eq!(routes.live_nodes().await.unwrap(), names(&expected));
        let found = routes.lookup(&names(&["topic:t"])).await.unwrap();
        assert_eq!(found.get("topic:t"), Some(&names(&expected)));
    }
}
