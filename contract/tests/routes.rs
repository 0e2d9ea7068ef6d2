//! The [`RouteRegistry`] contract, asserted alike on [`MemoryRoutes`] and on
//! [`RedisRoutes`] (keys under a namespace of the case's own on the Redis
//! server at [`REDIS_URL`]): leases lapse, refreshing extends them, dead and
//! departed nodes are filtered out.
//!
//! Leases are counted in units of [`Registry::unit`]. The memory registry runs
//! on paused time with a unit of a second, so its leases are tested to the
//! unit without waiting (the runtime jumps to each sleep's end); Redis keeps
//! real time, so its unit is short, and every "still alive" assertion has a
//! margin of several units for a slow machine ("lapsed" ones need none: late
//! is only more lapsed).

use herald_cluster::RedisRoutes;
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

/// Runs `case` on Redis, in a namespace of its own. Its keys are left to
/// expire with their leases.
async fn on_redis<F, Fut>(case: F, name: &str)
where
    F: FnOnce(Registry) -> Fut,
    Fut: Future<Output = ()>,
{
    let routes = RedisRoutes::connect(REDIS_URL, Names::new(namespace(name)))
        .await
        .expect("a Redis URL");
    case(Registry {
        routes: Box::new(routes),
        unit: Duration::from_millis(250),
    })
    .await;
}

contract!(
    #[tokio::test(start_paused = true)] memory => super::on_memory,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] redis => super::on_redis;
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
