//! The push pipeline end to end, on the real servers: HTTP or Kafka in,
//! MongoDB, the events topic, a dispatcher, Redis, the node topic, the socket.

use anyhow::Result;
use herald_tests::{Cluster, Topology, WsClient, eventually, kafka_producer, produce};
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::collections::HashMap;

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn a_message_reaches_its_recipient_and_no_one_else() -> Result<()> {
    let cluster = Cluster::start("recipient", Topology::default()).await?;
    let mut alice = cluster.connect(0, "alice").await?;
    let mut bob = cluster.connect(0, "bob").await?;
    assert_eq!(alice.welcome["user"], "alice");
    assert_eq!(alice.welcome["node"], cluster.node_id(0));

    let for_bob = cluster.send(&["bob"], json!({"text": "for bob"})).await?;
    let for_alice = cluster
        .send(&["alice"], json!({"text": "for alice"}))
        .await?;
    assert_eq!(for_alice["recipients"], 1);

    // Alice's first message is hers: bob's, sent before, never reached her.
    let got = alice.next_msg().await?;
    assert_eq!(got["id"], for_alice["id"]);
    assert_eq!(got["payload"], json!({"text": "for alice"}));
    assert_eq!(got["stream"], "user");
    assert_eq!(got["seq"], 1);
    assert!(got["ts"].as_i64().unwrap() > 0);

    let got = bob.next_msg().await?;
    assert_eq!(got["id"], for_bob["id"]);
    assert_eq!(got["seq"], 1);
    Ok(())
}

#[tokio::test]
async fn one_user_on_two_nodes_receives_on_both() -> Result<()> {
    let cluster = Cluster::start("two-devices", Topology::default()).await?;
    let mut phone = cluster.connect(0, "carol").await?;
    let mut laptop = cluster.connect(1, "carol").await?;
    assert_eq!(laptop.welcome["node"], cluster.node_id(1));

    let sent = cluster.send(&["carol"], json!("hi")).await?;
    for device in [&mut phone, &mut laptop] {
        let got = device.next_msg().await?;
        assert_eq!(got["id"], sent["id"]);
        assert_eq!(got["seq"], 1);
    }
    Ok(())
}

#[tokio::test]
async fn a_kafka_ingest_record_arrives_like_an_http_message() -> Result<()> {
    if herald_tests::skip_in_standalone("the Kafka ingest topic") {
        return Ok(());
    }
    let cluster = Cluster::start("ingest", Topology::default()).await?;
    let mut dave = cluster.connect(1, "dave").await?;
    let producer = kafka_producer()?;
    produce(
        &producer,
        &cluster.ingest_topic(),
        "dave",
        &json!({"to": {"users": ["dave"]}, "payload": {"via": "kafka"}}).to_string(),
    )
    .await?;
    let got = dave.next_msg().await?;
    assert_eq!(got["payload"], json!({"via": "kafka"}));
    assert_eq!(got["seq"], 1);
    Ok(())
}

#[tokio::test]
async fn seq_is_gapless_and_ordered_across_both_paths_and_two_collectors() -> Result<()> {
    if herald_tests::skip_in_standalone("the Kafka ingest topic and two collectors") {
        return Ok(());
    }
    let cluster = Cluster::start(
        "seq",
        Topology {
            collectors: 2,
            ..Topology::default()
        },
    )
    .await?;
    let mut erin = cluster.connect(0, "erin").await?;
    let producer = kafka_producer()?;
    const EACH: usize = 15;

    let http = |collector: usize| {
        let cluster = &cluster;
        async move {
            for i in 0..EACH {
                cluster
                    .send_via(
                        collector,
                        json!({"to": {"users": ["erin"]}, "payload": {"c": collector, "i": i}}),
                    )
                    .await?;
            }
            anyhow::Ok(())
        }
    };
    let kafka = async {
        for i in 0..EACH {
            let value = json!({"to": {"users": ["erin"]}, "payload": {"c": "kafka", "i": i}});
            produce(
                &producer,
                &cluster.ingest_topic(),
                "erin",
                &value.to_string(),
            )
            .await?;
        }
        anyhow::Ok(())
    };
    let (a, b, c) = tokio::join!(http(0), http(1), kafka);
    a?;
    b?;
    c?;

    let got = erin.msgs(3 * EACH).await?;
    assert_eq!(seqs(&got), (1..=3 * EACH as u64).collect::<Vec<_>>());
    // Every source's messages are all there, each once, in its own order.
    let mut per_source: HashMap<String, Vec<u64>> = HashMap::new();
    for frame in &got {
        per_source
            .entry(frame["payload"]["c"].to_string())
            .or_default()
            .push(frame["payload"]["i"].as_u64().unwrap());
    }
    assert_eq!(per_source.len(), 3);
    for (source, order) in per_source {
        assert_eq!(
            order,
            (0..EACH as u64).collect::<Vec<_>>(),
            "source {source}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_same_idempotency_key_stores_and_delivers_once() -> Result<()> {
    let cluster = Cluster::start("idempotency", Topology::default()).await?;
    let mut frank = cluster.connect(0, "frank").await?;
    let message = json!({"to": {"users": ["frank"]}, "payload": "once", "key": "order-17"});
    let first = cluster.send_via(0, message.clone()).await?;
    let again = cluster.send_via(0, message).await?;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["duplicate"], true);
    let after = cluster.send(&["frank"], json!("after")).await?;

    let got = frank.msgs(2).await?;
    assert_eq!(got[0]["id"], first["id"]);
    assert_eq!(got[1]["id"], after["id"]);
    assert_eq!(seqs(&got), vec![1, 2]);

    let (status, page) = cluster.get(0, "/v1/streams/frank/messages").await?;
    assert_eq!(status, 200);
    assert_eq!(page["head"], 2);
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_stores_nothing() -> Result<()> {
    let cluster = Cluster::start("bad-input", Topology::default()).await?;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed", "{\"to\": ".into(), 400, "malformed"),
        ("missing to", json!({"payload": 1}).to_string(), 400, "`to`"),
        (
            "empty users",
            json!({"to": {"users": []}, "payload": 1}).to_string(),
            400,
            "at least one",
        ),
        (
            "missing payload",
            json!({"to": {"users": ["gina"]}}).to_string(),
            400,
            "payload",
        ),
        (
            "oversized",
            json!({"to": {"users": ["gina"]}, "payload": "x".repeat(70 * 1024)}).to_string(),
            413,
            "limit",
        ),
        (
            "bad user",
            json!({"to": {"users": ["a b"]}, "payload": 1}).to_string(),
            400,
            "user id",
        ),
    ];
    for (what, body, status, says) in cases {
        let (got, answer) = cluster.post_raw(0, "/v1/messages", body).await?;
        assert_eq!(got, status, "{what}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{what}: {answer}");
        assert!(answer["error"].is_string(), "{what}: {answer}");
    }

    let http = reqwest::Client::new();
    let url = format!("{}/v1/messages", cluster.collectors[0].url());
    let body = json!({"to": {"users": ["gina"]}, "payload": 1}).to_string();
    let wrong = http
        .post(&url)
        .bearer_auth("nope")
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(wrong.status(), 401);
    let missing = http.post(&url).body(body).send().await?;
    assert_eq!(missing.status(), 401);

    let (status, answer) = cluster
        .post_raw(
            0,
            "/v1/messages/batch",
            json!([{"to": {"users": ["gina"]}, "payload": 1}, {"payload": 2}]).to_string(),
        )
        .await?;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("element 1"));

    // Nothing of the above was stored.
    let (status, page) = cluster.get(0, "/v1/streams/gina/messages").await?;
    assert_eq!(status, 200);
    assert_eq!(page["head"], 0, "{page}");

    // A good batch is stored whole.
    let (status, answer) = cluster
        .post_raw(
            0,
            "/v1/messages/batch",
            json!([{"to": {"users": ["gina"]}, "payload": 1}, {"to": {"users": ["gina", "hal"]}, "payload": 2}]).to_string(),
        )
        .await?;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["messages"][1]["recipients"], 2);
    let (_, page) = cluster.get(0, "/v1/streams/gina/messages").await?;
    assert_eq!(page["head"], 2);
    Ok(())
}

#[tokio::test]
async fn a_bad_ingest_record_is_skipped_and_never_blocks_the_partition() -> Result<()> {
    if herald_tests::skip_in_standalone("the Kafka ingest topic") {
        return Ok(());
    }
    let cluster = Cluster::start("bad-ingest", Topology::default()).await?;
    let mut ivan = cluster.connect(0, "ivan").await?;
    let producer = kafka_producer()?;
    let topic = cluster.ingest_topic();
    // One key, so all three share a partition: the good one comes after the bad.
    produce(&producer, &topic, "k", "not json at all").await?;
    produce(
        &producer,
        &topic,
        "k",
        &json!({"to": {"users": []}, "payload": 1}).to_string(),
    )
    .await?;
    produce(
        &producer,
        &topic,
        "k",
        &json!({"to": {"users": ["ivan"]}, "payload": "good"}).to_string(),
    )
    .await?;
    let got = ivan.next_msg().await?;
    assert_eq!(got["payload"], "good");
    assert_eq!(got["seq"], 1);

    let metrics = reqwest::get(format!("{}/metrics", cluster.collectors[0].url()))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("herald_collector_ingest_rejected_total 2"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_token_is_refused_at_the_handshake() -> Result<()> {
    let cluster = Cluster::start(
        "bad-token",
        Topology {
            pushers: 1,
            ..Topology::default()
        },
    )
    .await?;
    assert_eq!(
        WsClient::refused_status(&cluster.ws_url(0, "token=garbage")).await?,
        401
    );
    assert_eq!(WsClient::refused_status(&cluster.ws_url(0, "")).await?, 401);
    let token = cluster.token("judy").await?;
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        WsClient::refused_status(&cluster.ws_url(0, &format!("token={forged}"))).await?,
        401
    );
    // The good token works, through the header as well as the query.
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        cluster.ws_url(0, ""),
    )?;
    let mut request = request;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    use futures::StreamExt;
    let welcome = socket.next().await.unwrap()?;
    assert!(welcome.to_text()?.contains("\"welcome\""));
    Ok(())
}

#[tokio::test]
async fn a_closed_connection_removes_its_route() -> Result<()> {
    if herald_tests::skip_in_standalone("Redis routes") {
        return Ok(());
    }
    let cluster = Cluster::start("route-removal", Topology::default()).await?;
    let mut redis = cluster.redis().await?;
    let key = cluster.route_key("kim");
    let kim = cluster.connect(0, "kim").await?;
    let routes: HashMap<String, i64> = redis.hgetall(&key).await?;
    assert!(routes.contains_key("node-a"), "{routes:?}");
    kim.close().await?;
    cluster.route_removed(&key, "node-a").await
}

#[tokio::test]
async fn a_dead_nodes_routes_stop_being_used() -> Result<()> {
    if herald_tests::skip_in_standalone("two nodes and Redis routes") {
        return Ok(());
    }
    let mut cluster = Cluster::start(
        "dead-node",
        Topology {
            route_ttl_secs: 3,
            ..Topology::default()
        },
    )
    .await?;
    let mut redis = cluster.redis().await?;
    let key = cluster.route_key("leo");
    let mut on_a = cluster.connect(0, "leo").await?;
    let _on_b = cluster.connect(1, "leo").await?;
    cluster.pushers[1].kill();

    // The dead node's lease lapses; it left its route behind.
    let alive_key = format!("{}:node:node-b", cluster.namespace);
    eventually("node-b's liveness lease lapses", || {
        let mut redis = redis.clone();
        let alive_key = alive_key.clone();
        async move { Ok(!redis.exists::<_, bool>(&alive_key).await?) }
    })
    .await?;
    // Hash fields do not expire by themselves: only a reader's clean-up removes it.
    assert!(redis.hexists::<_, _, bool>(&key, "node-b").await?);

    let sent = cluster.send(&["leo"], json!("still here")).await?;
    assert_eq!(on_a.next_msg().await?["id"], sent["id"]);
    // The dispatcher ignored node-b's route and removed it.
    let routes: HashMap<String, i64> = redis.hgetall(&key).await?;
    assert!(!routes.contains_key("node-b"), "{routes:?}");
    assert!(routes.contains_key("node-a"), "{routes:?}");
    let metrics = reqwest::get(format!("{}/metrics", cluster.dispatchers[0].url()))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("herald_dispatcher_forwarded_total 1\n"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn an_offline_user_gets_the_message_on_connect() -> Result<()> {
    let cluster = Cluster::start("offline", Topology::default()).await?;
    let first = cluster.send(&["mia"], json!(1)).await?;
    let second = cluster.send(&["mia"], json!(2)).await?;
    let mut mia = cluster.connect(1, "mia").await?;
    let got = mia.msgs(2).await?;
    assert_eq!(got[0]["id"], first["id"]);
    assert_eq!(got[1]["id"], second["id"]);
    assert_eq!(seqs(&got), vec![1, 2]);
    let third = cluster.send(&["mia"], json!(3)).await?;
    assert_eq!(mia.next_msg().await?["id"], third["id"]);
    Ok(())
}
