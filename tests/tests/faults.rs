//! Herald's promise under faults: every accepted message reaches its
//! recipient, in order, once on their screen, whatever single process dies or
//! whichever server stops for a while. Each test asserts the exact sequence
//! each client ended with.

use anyhow::{Result, bail};
use futures::StreamExt;
use herald_tests::client::Closed;
use herald_tests::servers::{Kind, PrivateServer};
use herald_tests::{Cluster, Topology, WsClient, eventually, seqs};
use redis::AsyncCommands;
use serde_json::json;
use std::time::Duration;

fn in_order(n: usize) -> Vec<u64> {
    (1..=n as u64).collect()
}

/// Sends `n` messages to each of `users`, one user's in order.
async fn send_stream(cluster: &Cluster, users: &[String], n: usize) -> Result<()> {
    for i in 1..=n {
        let to: Vec<&str> = users.iter().map(String::as_str).collect();
        cluster.send(&to, json!({"i": i})).await?;
    }
    Ok(())
}

#[tokio::test]
async fn killing_a_pusher_loses_nothing_its_clients_resume_on_the_other() -> Result<()> {
    let cluster = Cluster::start("kill-pusher", Topology::default()).await?;
    const N: usize = 60;
    let users: Vec<String> = (0..3).map(|i| format!("kp{i}")).collect();
    // Connected to node-a first, falling back to node-b.
    let node_a = cluster.pushers[0].pid().expect("node-a runs");
    let readers = futures::future::try_join_all(
        users
            .iter()
            .map(|u| cluster.receive_resuming(u, &[0, 1], N)),
    );
    let sending = async {
        // Once node-a holds all three readers, kill it mid-stream.
        let redis = cluster.redis().await?;
        eventually("all readers on node-a", || {
            let mut redis = redis.clone();
            let keys: Vec<String> = users.iter().map(|u| cluster.route_key(u)).collect();
            async move {
                for k in keys {
                    if !redis.hexists::<_, _, bool>(&k, "node-a").await? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        })
        .await?;
        send_stream(&cluster, &users, N / 3).await?;
        kill_pid(node_a);
        send_stream(&cluster, &users, N - N / 3).await
    };
    let (got, sent) = tokio::join!(readers, sending);
    sent?;
    for (user, frames) in users.iter().zip(got?) {
        assert_eq!(seqs(&frames), in_order(N), "{user}");
    }
    Ok(())
}

/// SIGKILL by pid, for a process whose handle other futures borrow.
fn kill_pid(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

#[tokio::test]
async fn killing_a_dispatcher_mid_stream_loses_nothing_and_shows_no_repeat() -> Result<()> {
    let cluster = Cluster::start(
        "kill-dispatcher",
        Topology {
            dispatchers: 2,
            ..Topology::default()
        },
    )
    .await?;
    const N: usize = 60;
    let users: Vec<String> = (0..4).map(|i| format!("kd{i}")).collect();
    let mut clients = Vec::new();
    for u in &users {
        clients.push(cluster.connect(0, u).await?);
    }
    send_stream(&cluster, &users, N / 3).await?;
    kill_pid(cluster.dispatchers[0].pid().expect("dispatcher runs"));
    send_stream(&cluster, &users, N - N / 3).await?;
    for (user, client) in users.iter().zip(clients.iter_mut()) {
        let got = client.msgs(N).await?;
        assert_eq!(seqs(&got), in_order(N), "{user}");
    }
    // Nothing more arrives after the last: the next message is the next seq.
    cluster.send(&[users[0].as_str()], json!("last")).await?;
    assert_eq!(clients[0].next_msg().await?["seq"], N as u64 + 1);
    Ok(())
}

#[tokio::test]
async fn a_collector_killed_between_store_and_publish_publishes_after_restart() -> Result<()> {
    let mut cluster = Cluster::start(
        "kill-collector",
        Topology {
            collector_env: vec![("HERALD_FAULT_CRASH_AFTER_STORE".into(), "true".into())],
            ..Topology::default()
        },
    )
    .await?;
    let mut tia = cluster.connect(0, "tia").await?;
    // The collector stores, then dies before answering or publishing.
    assert!(cluster.send(&["tia"], json!("survivor")).await.is_err());
    cluster.collectors[0].set_env("HERALD_FAULT_CRASH_AFTER_STORE", None);
    cluster.collectors[0].restart().await?;
    let got = tia.next_msg().await?;
    assert_eq!(
        (got["payload"].as_str(), got["seq"].as_u64()),
        (Some("survivor"), Some(1))
    );
    let metrics = reqwest::get(format!("{}/metrics", cluster.collectors[0].url()))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("herald_collector_outbox_published_total 1"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn with_kafka_stopped_http_still_accepts_and_all_is_delivered_after() -> Result<()> {
    let mut kafka = PrivateServer::start(Kind::Kafka).await?;
    let cluster = Cluster::start(
        "kafka-down",
        Topology {
            kafka: kafka.url(),
            ..Topology::default()
        },
    )
    .await?;
    let mut uma = cluster.connect(0, "uma").await?;
    cluster.send(&["uma"], json!(0)).await?;
    assert_eq!(uma.next_msg().await?["seq"], 1);

    kafka.stop();
    for i in 1..=5 {
        cluster.send(&["uma"], json!(i)).await?;
    }
    kafka.resume().await?;
    let got = uma.msgs(5).await?;
    assert_eq!(seqs(&got), vec![2, 3, 4, 5, 6]);
    Ok(())
}

#[tokio::test]
async fn with_redis_stopped_clients_stay_connected_and_routes_come_back() -> Result<()> {
    let mut redis_server = PrivateServer::start(Kind::Redis).await?;
    let cluster = Cluster::start(
        "redis-down",
        Topology {
            redis: redis_server.url(),
            route_ttl_secs: 3,
            ..Topology::default()
        },
    )
    .await?;
    let mut vic = cluster.connect(0, "vic").await?;
    redis_server.stop();
    let during = cluster.send(&["vic"], json!("during")).await?;
    redis_server.resume().await?;

    // Redis came back empty; the heartbeat registers vic's route again.
    let key = cluster.route_key("vic");
    eventually("vic's route is re-registered", || {
        let cluster = &cluster;
        let key = key.clone();
        async move {
            let Ok(mut redis) = cluster.redis().await else {
                return Ok(false);
            };
            Ok(redis
                .hexists::<_, _, bool>(&key, "node-a")
                .await
                .unwrap_or(false))
        }
    })
    .await?;
    let after = cluster.send(&["vic"], json!("after")).await?;
    // The same socket gets both, in order: live, or filled from the store.
    let got = vic.msgs(2).await?;
    assert_eq!(seqs(&got), vec![1, 2]);
    assert_eq!(got[0]["id"], during["id"]);
    assert_eq!(got[1]["id"], after["id"]);
    Ok(())
}

#[tokio::test]
async fn with_mongodb_stopped_the_collector_answers_503_and_stores_nothing_half() -> Result<()> {
    let mut mongo = PrivateServer::start(Kind::Mongo).await?;
    let cluster = Cluster::start(
        "mongo-down",
        Topology {
            mongo: mongo.url(),
            ..Topology::default()
        },
    )
    .await?;
    mongo.stop();
    let (status, body) = cluster
        .post_raw(
            0,
            "/v1/messages",
            json!({"to": {"users": ["wes"]}, "payload": "lost?"}).to_string(),
        )
        .await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    mongo.resume().await?;

    let mut stored = None;
    for _ in 0..60 {
        match cluster.send(&["wes"], json!("kept")).await {
            Ok(answer) => {
                stored = Some(answer);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let Some(stored) = stored else {
        bail!("collector never recovered")
    };
    let got = cluster.receive_resuming("wes", &[0], 1).await?;
    assert_eq!(
        (got[0]["id"].clone(), got[0]["seq"].as_u64()),
        (stored["id"].clone(), Some(1))
    );
    let (_, page) = cluster.get(0, "/v1/streams/wes/messages").await?;
    assert_eq!(page["head"], 1, "{page}");
    Ok(())
}

#[tokio::test]
async fn a_slow_client_is_closed_alone_and_catches_up_on_resume() -> Result<()> {
    let cluster = Cluster::start(
        "slow",
        Topology {
            pushers: 1,
            send_queue: 16,
            ..Topology::default()
        },
    )
    .await?;
    const N: usize = 120;
    let token = cluster.token("slow").await?;
    // A client that reads nothing, with a tiny receive window.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket
        .connect(format!("127.0.0.1:{}", cluster.pushers[0].port).parse()?)
        .await?;
    let (mut slow, _) =
        tokio_tungstenite::client_async(cluster.ws_url(0, &format!("token={token}")), stream)
            .await?;
    let welcome = slow.next().await.unwrap()?;
    assert!(welcome.to_text()?.contains("welcome"));
    let mut fast = cluster.connect(0, "fast").await?;

    let big = "x".repeat(48 * 1024);
    for i in 1..=N {
        cluster.send(&["slow"], json!({"i": i, "pad": big})).await?;
        if i % 20 == 0 {
            cluster.send(&["fast"], json!(i)).await?;
        }
    }
    // The fast client on the same node got all of its own meanwhile.
    assert_eq!(seqs(&fast.msgs(N / 20).await?), in_order(N / 20));

    // Now the slow one reads: what was written, then the close.
    let mut last = 0;
    let code = loop {
        match slow.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                let frame: serde_json::Value = serde_json::from_str(&t)?;
                assert_eq!(frame["seq"], last + 1);
                last += 1;
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(c)))) => {
                break Closed::Code(c.code.into());
            }
            Some(Ok(_)) => {}
            _ => break Closed::NoCode,
        }
    };
    assert_eq!(code, Closed::Code(SLOW_CONSUMER));
    assert!(last < N as u64, "the slow client was never cut off");

    let mut again =
        WsClient::connect(&cluster.ws_url(0, &format!("token={token}&since={last}"))).await?;
    let rest = again.msgs(N - last as usize).await?;
    assert_eq!(seqs(&rest), ((last + 1)..=N as u64).collect::<Vec<_>>());
    Ok(())
}

/// The close code docs/protocol.md gives a connection whose queue overflowed.
const SLOW_CONSUMER: u16 = 4001;

#[tokio::test]
async fn a_reconnect_storm_of_2000_clients_all_resume_correctly() -> Result<()> {
    let cluster = Cluster::start("storm", Topology::default()).await?;
    const CLIENTS: usize = 2000;
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("s{i}")).collect();
    let tokens: Vec<String> = futures::stream::iter(users.iter())
        .map(|u| cluster.token(u))
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut clients: Vec<WsClient> = futures::stream::iter(tokens.iter())
        .map(|t| {
            let url = cluster.ws_url(0, &format!("token={t}"));
            async move { WsClient::connect(&url).await }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let everyone: Vec<&str> = users.iter().map(String::as_str).collect();
    cluster
        .send_via(0, json!({"to": {"users": everyone}, "payload": "before"}))
        .await?;
    for c in clients.iter_mut() {
        assert_eq!(c.next_msg().await?["seq"], 1);
    }

    // Node-a dies: everyone drops at once.
    kill_pid(cluster.pushers[0].pid().expect("node-a runs"));
    for c in clients.iter_mut() {
        c.closed().await?;
    }
    drop(clients);
    cluster
        .send_via(0, json!({"to": {"users": everyone}, "payload": "during"}))
        .await?;

    // They come back to node-b with jitter, resuming after seq 1.
    let reconnected: Vec<WsClient> = futures::stream::iter(tokens.iter())
        .map(|t| {
            let url = cluster.ws_url(1, &format!("token={t}&since=1"));
            async move {
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 2000)).await;
                WsClient::connect(&url).await
            }
        })
        .buffer_unordered(500)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut reconnected = reconnected;
    cluster
        .send_via(0, json!({"to": {"users": everyone}, "payload": "after"}))
        .await?;
    for c in reconnected.iter_mut() {
        let got = c.msgs(2).await?;
        assert_eq!(seqs(&got), vec![2, 3], "{}", c.welcome["user"]);
        assert_eq!(got[0]["payload"], "during");
    }
    Ok(())
}
