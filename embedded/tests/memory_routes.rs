//! The [`RouteRegistry`] contract on [`MemoryRoutes`]: leases lapse, dead and
//! departed nodes are filtered out. Time is paused and moved by hand, so the
//! leases are tested to the millisecond without sleeping.

use herald_common::routes::RouteRegistry;
use herald_embedded::MemoryRoutes;
use std::collections::HashMap;
use std::time::Duration;

fn users(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn nodes(found: &HashMap<String, Vec<String>>, user: &str) -> Option<Vec<String>> {
    found.get(user).cloned()
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn a_route_lives_for_its_lease_and_is_refreshed_by_registering() {
    let routes = MemoryRoutes::new();
    routes.node_heartbeat("n1", 100 * SEC).await.unwrap();
    routes
        .register("n1", &users(&["u1", "u2"]), 10 * SEC)
        .await
        .unwrap();
    let found = routes.lookup(&users(&["u1", "u2", "u3"])).await.unwrap();
    assert_eq!(nodes(&found, "u1"), Some(vec!["n1".to_string()]));
    assert_eq!(nodes(&found, "u2"), Some(vec!["n1".to_string()]));
    assert!(!found.contains_key("u3"), "users without routes are absent");

    tokio::time::advance(9 * SEC).await;
    routes
        .register("n1", &users(&["u1"]), 10 * SEC)
        .await
        .unwrap();
    tokio::time::advance(2 * SEC).await;
    let found = routes.lookup(&users(&["u1", "u2"])).await.unwrap();
    assert_eq!(
        nodes(&found, "u1"),
        Some(vec!["n1".to_string()]),
        "refreshed"
    );
    assert!(!found.contains_key("u2"), "lapsed");

    tokio::time::advance(9 * SEC).await;
    assert!(routes.lookup(&users(&["u1"])).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn only_live_nodes_are_returned_sorted() {
    let routes = MemoryRoutes::new();
    for node in ["n3", "n1", "n2"] {
        routes
            .register(node, &users(&["u"]), 60 * SEC)
            .await
            .unwrap();
    }
    // No heartbeat yet: no node is alive.
    assert!(routes.lookup(&users(&["u"])).await.unwrap().is_empty());

    for node in ["n3", "n1", "n2"] {
        routes.node_heartbeat(node, 10 * SEC).await.unwrap();
        routes
            .register(node, &users(&["u"]), 60 * SEC)
            .await
            .unwrap();
    }
    let found = routes.lookup(&users(&["u"])).await.unwrap();
    assert_eq!(nodes(&found, "u"), Some(users(&["n1", "n2", "n3"])));

    // n2 says goodbye; n3 stops its heartbeat and its lease lapses.
    routes.node_gone("n2").await.unwrap();
    tokio::time::advance(5 * SEC).await;
    routes.node_heartbeat("n1", 10 * SEC).await.unwrap();
    tokio::time::advance(6 * SEC).await;
    let found = routes.lookup(&users(&["u"])).await.unwrap();
    assert_eq!(nodes(&found, "u"), Some(users(&["n1"])));

    // The dead nodes' routes were removed by that lookup: a node that comes
    // back alive must register again to be found.
    routes.node_heartbeat("n2", 10 * SEC).await.unwrap();
    let found = routes.lookup(&users(&["u"])).await.unwrap();
    assert_eq!(nodes(&found, "u"), Some(users(&["n1"])));
    routes
        .register("n2", &users(&["u"]), 60 * SEC)
        .await
        .unwrap();
    let found = routes.lookup(&users(&["u"])).await.unwrap();
    assert_eq!(nodes(&found, "u"), Some(users(&["n1", "n2"])));
}

#[tokio::test(start_paused = true)]
async fn unregister_removes_one_nodes_route() {
    let routes = MemoryRoutes::new();
    routes.node_heartbeat("n1", 60 * SEC).await.unwrap();
    routes.node_heartbeat("n2", 60 * SEC).await.unwrap();
    routes
        .register("n1", &users(&["u"]), 60 * SEC)
        .await
        .unwrap();
    routes
        .register("n2", &users(&["u"]), 60 * SEC)
        .await
        .unwrap();
    routes
        .unregister("n1", &users(&["u", "nobody"]))
        .await
        .unwrap();
    let found = routes.lookup(&users(&["u"])).await.unwrap();
    assert_eq!(nodes(&found, "u"), Some(users(&["n2"])));
    routes.unregister("n2", &users(&["u"])).await.unwrap();
    assert!(routes.lookup(&users(&["u"])).await.unwrap().is_empty());
}
