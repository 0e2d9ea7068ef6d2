//! Topics, broadcast and client-to-client messages, with the replay
//! guarantees of the user stream, on the real servers.

use anyhow::{Result, bail};
use herald_tests::{Cluster, Topology, WsClient, seqs, skip_in_standalone};
use serde_json::{Value, json};

async fn connect_with_claims(cluster: &Cluster, node: usize, claims: Value) -> Result<WsClient> {
    let token = cluster.token_with(claims).await?;
    WsClient::connect(&cluster.ws_url(node, &format!("token={token}"))).await
}

/// A client of `user` allowed `match-*` and `room-*`, subscribed to `topic`.
async fn subscriber(
    cluster: &Cluster,
    node: usize,
    user: &str,
    topic: &str,
    since: Option<u64>,
) -> Result<WsClient> {
    let mut client = connect_with_claims(
        cluster,
        node,
        json!({"user_id": user, "topics": ["match-*", "room-*"]}),
    )
    .await?;
    subscribe(&mut client, topic, since).await?;
    Ok(client)
}

async fn subscribe(client: &mut WsClient, topic: &str, since: Option<u64>) -> Result<Value> {
    let mut frame = json!({"type": "subscribe", "topic": topic});
    if let Some(since) = since {
        frame["since"] = json!(since);
    }
    client.send_json(frame).await?;
    let answer = client.next_frame().await?;
    if answer["type"] != "subscribed" {
        bail!("subscribe {topic} answered {answer}");
    }
    Ok(answer)
}

async fn to_topic(cluster: &Cluster, topic: &str, payload: Value) -> Result<Value> {
    cluster
        .send_via(0, json!({"to": {"topic": topic}, "payload": payload}))
        .await
}

#[tokio::test]
async fn subscribers_on_two_nodes_get_a_topic_message_and_others_do_not() -> Result<()> {
    let cluster = Cluster::start("topic-fanout", Topology::default()).await?;
    let mut ann = subscriber(&cluster, 0, "ann", "match-42", None).await?;
    let mut ben = subscriber(&cluster, 1, "ben", "match-42", None).await?;
    let mut cid = subscriber(&cluster, 0, "cid", "match-7", None).await?;

    let sent = to_topic(&cluster, "match-42", json!({"goal": 1})).await?;
    assert_eq!(sent["recipients"], 1);
    for client in [&mut ann, &mut ben] {
        let got = client.next_msg().await?;
        assert_eq!(got["stream"], "topic:match-42");
        assert_eq!(got["seq"], 1);
        assert_eq!(got["id"], sent["id"]);
        assert_eq!(got["payload"], json!({"goal": 1}));
    }
    // cid follows another topic: its next message is its own.
    let own = cluster.send(&["cid"], json!("yours")).await?;
    assert_eq!(cid.next_msg().await?["id"], own["id"]);
    Ok(())
}

#[tokio::test]
async fn all_reaches_every_connection_on_every_node() -> Result<()> {
    let cluster = Cluster::start("broadcast", Topology::default()).await?;
    let mut clients = vec![
        cluster.connect(0, "dan").await?,
        cluster.connect(1, "eva").await?,
        cluster.connect(1, "fay").await?,
    ];
    for c in &clients {
        assert!(c.welcome["epochs"]["all"].is_string(), "{}", c.welcome);
    }
    let sent = cluster
        .send_via(0, json!({"to": {"all": true}, "payload": "notice"}))
        .await?;
    for c in clients.iter_mut() {
        let got = c.next_msg().await?;
        assert_eq!(
            (got["stream"].as_str(), got["id"].clone()),
            (Some("all"), sent["id"].clone())
        );
    }
    // `all` starts at the present for a new connection, and resumes like any stream.
    let head = clients[0].msgs(0).await?;
    assert!(head.is_empty());
    let mut late = cluster.connect(0, "gus").await?;
    late.send_json(json!({"type": "resume", "streams": {"all": 0}}))
        .await?;
    let got = late.next_msg().await?;
    assert_eq!(
        (got["stream"].as_str(), got["seq"].as_u64()),
        (Some("all"), Some(1))
    );
    Ok(())
}

#[tokio::test]
async fn subscribing_with_since_replays_then_continues_live() -> Result<()> {
    let cluster = Cluster::start("topic-since", Topology::default()).await?;
    for i in 1..=3 {
        to_topic(&cluster, "match-9", json!(i)).await?;
    }
    let mut hal = connect_with_claims(
        &cluster,
        0,
        json!({"user_id": "hal", "topics": ["match-*"]}),
    )
    .await?;
    let answer = subscribe(&mut hal, "match-9", Some(1)).await?;
    assert_eq!(answer["head"], 3);
    assert_eq!(seqs(&hal.msgs(2).await?), vec![2, 3]);
    to_topic(&cluster, "match-9", json!(4)).await?;
    assert_eq!(hal.next_msg().await?["seq"], 4);

    // Without since: from the head, nothing replayed.
    let mut ida = subscriber(&cluster, 1, "ida", "match-9", None).await?;
    to_topic(&cluster, "match-9", json!(5)).await?;
    assert_eq!(ida.next_msg().await?["seq"], 5);
    assert_eq!(hal.next_msg().await?["seq"], 5);
    Ok(())
}

#[tokio::test]
async fn unsubscribing_stops_delivery_and_the_node_leaves_the_topic() -> Result<()> {
    let cluster = Cluster::start("unsubscribe", Topology::default()).await?;
    let mut jo = subscriber(&cluster, 0, "jo", "room-1", None).await?;
    jo.send_json(json!({"type": "unsubscribe", "topic": "room-1"}))
        .await?;
    assert_eq!(jo.next_frame().await?["type"], "unsubscribed");
    to_topic(&cluster, "room-1", json!("missed")).await?;
    let own = cluster.send(&["jo"], json!("own")).await?;
    assert_eq!(jo.next_msg().await?["id"], own["id"]);

    if !skip_in_standalone("Redis routes") {
        let key = format!("{}:routes:topic:room-1", cluster.namespace);
        cluster.route_removed(&key, "node-a").await?;
    }
    Ok(())
}

#[tokio::test]
async fn subscribing_outside_the_tokens_topics_is_refused() -> Result<()> {
    let cluster = Cluster::start("topic-claims", Topology::default()).await?;
    let mut kai = connect_with_claims(
        &cluster,
        0,
        json!({"user_id": "kai", "topics": ["match-*"]}),
    )
    .await?;
    kai.send_json(json!({"type": "subscribe", "topic": "secret-1"}))
        .await?;
    let refused = kai.next_frame().await?;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    let mut none = cluster.connect(0, "lou").await?;
    none.send_json(json!({"type": "subscribe", "topic": "match-1"}))
        .await?;
    assert_eq!(none.next_frame().await?["code"], "forbidden");
    // The refusal followed nothing: a message to the topic does not arrive.
    to_topic(&cluster, "secret-1", json!("no")).await?;
    let own = cluster.send(&["kai"], json!("own")).await?;
    assert_eq!(kai.next_msg().await?["id"], own["id"]);
    Ok(())
}

#[tokio::test]
async fn a_client_publishes_to_a_topic_and_to_a_user_within_its_claims() -> Result<()> {
    let cluster = Cluster::start("client-publish", Topology::default()).await?;
    let mut sender = connect_with_claims(
        &cluster,
        0,
        json!({"user_id": "max", "topics": ["room-*"], "publish": ["room-*"], "direct": true}),
    )
    .await?;
    let mut listener = subscriber(&cluster, 1, "ned", "room-7", None).await?;
    let mut friend = cluster.connect(1, "oli").await?;

    sender
        .send_json(json!({"type": "publish", "to": {"topic": "room-7"}, "payload": {"hi": "room"}, "key": "k1"}))
        .await?;
    let confirmed = sender.next_frame().await?;
    assert_eq!(
        (confirmed["type"].as_str(), confirmed["key"].as_str()),
        (Some("published"), Some("k1")),
        "{confirmed}"
    );
    let got = listener.next_msg().await?;
    assert_eq!(got["from"], "max");
    assert_eq!(got["payload"], json!({"hi": "room"}));
    assert_eq!(got["id"], confirmed["id"]);

    sender
        .send_json(
            json!({"type": "publish", "to": {"users": ["oli"]}, "payload": "psst", "key": "k2"}),
        )
        .await?;
    assert_eq!(sender.next_frame().await?["type"], "published");
    let got = friend.next_msg().await?;
    assert_eq!(
        (got["from"].as_str(), got["payload"].as_str()),
        (Some("max"), Some("psst"))
    );

    // Outside the claims: refused, nothing sent.
    sender
        .send_json(json!({"type": "publish", "to": {"topic": "lobby"}, "payload": 1, "key": "k3"}))
        .await?;
    assert_eq!(sender.next_frame().await?["code"], "forbidden");
    let mut mute = connect_with_claims(
        &cluster,
        0,
        json!({"user_id": "pat", "publish": ["room-*"]}),
    )
    .await?;
    mute.send_json(json!({"type": "publish", "to": {"users": ["oli"]}, "payload": 1, "key": "k4"}))
        .await?;
    assert_eq!(mute.next_frame().await?["code"], "forbidden");
    mute.send_json(json!({"type": "publish", "to": {"topic": "room-7"}, "payload": 1}))
        .await?;
    assert_eq!(mute.next_frame().await?["code"], "bad_frame");

    // A flood is throttled with an error, the connection stays.
    let mut throttled = false;
    for i in 0..60 {
        sender
            .send_json(json!({"type": "publish", "to": {"topic": "room-7"}, "payload": i, "key": format!("f{i}")}))
            .await?;
    }
    for _ in 0..60 {
        let answer = sender.next_frame().await?;
        if answer["code"] == "throttled" {
            throttled = true;
        }
    }
    assert!(throttled, "60 publishes at once were not throttled");
    sender.send_json(json!({"type": "ping"})).await?;
    assert_eq!(sender.next_frame().await?["type"], "pong");
    Ok(())
}

#[tokio::test]
async fn a_client_publish_is_checked_against_the_limits_the_collector_applies() -> Result<()> {
    // One [limits] setting for every service: the pusher refuses at once
    // what the collector would refuse later, after `published`.
    let topology = Topology {
        env: vec![("HERALD_MAX_PAYLOAD_BYTES".into(), "100".into())],
        ..Topology::default()
    };
    let cluster = Cluster::start("publish-limits", topology).await?;
    let mut sender = connect_with_claims(
        &cluster,
        0,
        json!({"user_id": "rae", "publish": ["room-*"]}),
    )
    .await?;
    let mut listener = subscriber(&cluster, 0, "sal", "room-1", None).await?;

    let big = "x".repeat(200);
    sender
        .send_json(
            json!({"type": "publish", "to": {"topic": "room-1"}, "payload": big, "key": "big"}),
        )
        .await?;
    let refused = sender.next_frame().await?;
    assert_eq!(refused["code"], "bad_message", "{refused}");

    let small = "y".repeat(50);
    sender
        .send_json(
            json!({"type": "publish", "to": {"topic": "room-1"}, "payload": small, "key": "small"}),
        )
        .await?;
    assert_eq!(sender.next_frame().await?["type"], "published");
    let got = listener.next_msg().await?;
    assert_eq!(got["payload"], json!(small), "only the small one arrives");
    Ok(())
}

#[tokio::test]
async fn topic_subscribers_of_a_killed_pusher_resume_on_the_other_without_loss() -> Result<()> {
    if skip_in_standalone("two nodes") {
        return Ok(());
    }
    let cluster = Cluster::start("topic-kill", Topology::default()).await?;
    const N: u64 = 40;
    let mut reader = subscriber(&cluster, 0, "quin", "match-1", Some(0)).await?;
    let node_a = cluster.pushers[0].pid().expect("node-a runs");
    let mut got: Vec<u64> = Vec::new();
    for i in 1..=N / 2 {
        to_topic(&cluster, "match-1", json!(i)).await?;
    }
    while got.len() < (N / 2) as usize {
        got.push(reader.next_msg().await?["seq"].as_u64().unwrap());
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", &node_a.to_string()])
        .status();
    for i in N / 2 + 1..=N {
        to_topic(&cluster, "match-1", json!(i)).await?;
    }
    // The client library's move: reconnect elsewhere, subscribe from its last seq.
    let last = *got.last().unwrap();
    let mut again = subscriber(&cluster, 1, "quin", "match-1", Some(last)).await?;
    while got.len() < N as usize {
        got.push(again.next_msg().await?["seq"].as_u64().unwrap());
    }
    assert_eq!(got, (1..=N).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn client_keys_of_users_whose_ids_contain_a_colon_stay_apart() -> Result<()> {
    // Before keys carried the user id's length, user `a:b` with key `c` and
    // user `a` with key `b:c` shared the stored key `client:a:b:c`: the second
    // publish was taken for a retry of the first and never delivered.
    let cluster = Cluster::start("colon-keys", Topology::default()).await?;
    let mut listener = subscriber(&cluster, 0, "ned", "room-9", None).await?;
    for (user, key) in [("a:b", "c"), ("a", "b:c")] {
        let mut sender =
            connect_with_claims(&cluster, 0, json!({"user_id": user, "publish": ["room-*"]}))
                .await?;
        sender
            .send_json(
                json!({"type": "publish", "to": {"topic": "room-9"}, "payload": user, "key": key}),
            )
            .await?;
        assert_eq!(sender.next_frame().await?["type"], "published");
    }
    let got = listener.msgs(2).await?;
    let froms: Vec<&str> = got.iter().filter_map(|m| m["from"].as_str()).collect();
    assert_eq!(froms, ["a:b", "a"]);
    Ok(())
}
