//! The cluster with its route registry on a Redis Cluster (the three masters
//! of `infra/redis-cluster`) instead of one Redis server: pushers register,
//! the dispatcher looks routes and live nodes up across masters, and
//! messages arrive.

use anyhow::Result;
use herald_tests::{Cluster, Topology, skip_in_standalone};
use redis::AsyncCommands;
use serde_json::json;

/// The masters of `infra/redis-cluster`.
const REDIS_CLUSTER: [&str; 3] = [
    "redis://127.0.0.1:7301/",
    "redis://127.0.0.1:7302/",
    "redis://127.0.0.1:7303/",
];

#[tokio::test]
async fn messages_are_routed_through_a_redis_cluster() -> Result<()> {
    if skip_in_standalone("Redis routes") {
        return Ok(());
    }
    // One seed URL and the setting: the client finds the other masters.
    let topology = Topology {
        redis: REDIS_CLUSTER[0].to_string(),
        env: vec![("HERALD_REDIS_CLUSTER".into(), "true".into())],
        ..Topology::default()
    };
    let cluster = Cluster::start("redis-cluster", topology).await?;
    let mut alice = cluster.connect(0, "alice").await?;
    let mut bob = cluster.connect(1, "bob").await?;

    let for_alice = cluster.send(&["alice"], json!("for alice")).await?;
    let for_bob = cluster.send(&["bob"], json!("for bob")).await?;
    assert_eq!(alice.next_msg().await?["id"], for_alice["id"]);
    assert_eq!(bob.next_msg().await?["id"], for_bob["id"]);

    // A broadcast reaches both nodes: the live-node set is read on the
    // cluster too.
    let notice = cluster
        .send_via(0, json!({"to": {"all": true}, "payload": "notice"}))
        .await?;
    for client in [&mut alice, &mut bob] {
        let got = client.next_msg().await?;
        assert_eq!(got["id"], notice["id"]);
        assert_eq!(got["stream"], "all");
    }

    // The routes are on the cluster (and so not on the single server).
    let mut on_cluster = redis::cluster::ClusterClient::new(REDIS_CLUSTER.to_vec())?
        .get_async_connection()
        .await?;
    let alice_route: Option<String> = on_cluster
        .hget(cluster.route_key("alice"), cluster.node_id(0))
        .await?;
    assert!(
        alice_route.is_some(),
        "alice's route is on the Redis Cluster"
    );
    let mut on_server = redis::Client::open(herald_tests::REDIS)?
        .get_multiplexed_async_connection()
        .await?;
    let on_server: bool = on_server.exists(cluster.route_key("alice")).await?;
    assert!(!on_server, "nothing went to the single Redis server");
    Ok(())
}
