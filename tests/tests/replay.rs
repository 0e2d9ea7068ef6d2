//! Replay: where a connection starts, `resume`, acks, epochs, retention and
//! live gap filling, on the real servers.

use anyhow::Result;
use herald_tests::{Cluster, MONGO, Topology, eventually, kafka_producer, produce, seqs};
use mongodb::bson::doc;
use serde_json::{Value, json};

async fn send_n(cluster: &Cluster, user: &str, n: usize) -> Result<Vec<Value>> {
    let mut sent = Vec::new();
    for i in 1..=n {
        sent.push(cluster.send(&[user], json!({"n": i})).await?);
    }
    Ok(sent)
}

#[tokio::test]
async fn since_replays_what_came_after_it_then_continues_live() -> Result<()> {
    let cluster = Cluster::start("since", Topology::default()).await?;
    let sent = send_n(&cluster, "nora", 3).await?;
    let mut nora = cluster.connect_with(0, "nora", "since=1").await?;
    assert!(
        nora.welcome["epochs"]["user"].is_string(),
        "{}",
        nora.welcome
    );
    let got = nora.msgs(2).await?;
    assert_eq!(seqs(&got), vec![2, 3]);
    assert_eq!(got[0]["id"], sent[1]["id"]);
    let live = cluster.send(&["nora"], json!("live")).await?;
    let got = nora.next_msg().await?;
    assert_eq!((got["seq"].as_u64(), &got["id"]), (Some(4), &live["id"]));

    // The same stream over HTTP, for clients that sync outside the socket.
    let (status, page) = cluster
        .get(0, "/v1/streams/nora/messages?after=1&limit=2")
        .await?;
    assert_eq!(status, 200);
    let listed: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![2, 3]);
    assert_eq!(page["messages"][0]["payload"], json!({"n": 2}));
    assert_eq!(page["epoch"], nora.welcome["epochs"]["user"]);
    Ok(())
}

#[tokio::test]
async fn without_since_a_connection_starts_after_the_last_ack() -> Result<()> {
    let cluster = Cluster::start("acks", Topology::default()).await?;
    let sent = send_n(&cluster, "omar", 3).await?;
    let mut omar = cluster.connect(0, "omar").await?;
    assert_eq!(seqs(&omar.msgs(3).await?), vec![1, 2, 3]);
    omar.send_json(json!({"type": "ack", "stream": "user", "seq": 2}))
        .await?;

    // Acks are written in batches; the status endpoint shows when it landed.
    let path = format!("/v1/messages/{}", sent[1]["id"].as_str().unwrap());
    eventually("message 2 shows acked", || {
        let cluster = &cluster;
        let path = path.clone();
        async move {
            let (_, status) = cluster.get(0, &path).await?;
            Ok(status["recipients"][0]["acked"] == true)
        }
    })
    .await?;
    let (status, message) = cluster.get(0, &path).await?;
    assert_eq!(status, 200);
    assert_eq!(message["recipients"][0]["user"], "omar");
    assert_eq!(message["recipients"][0]["stored"], true);
    assert_eq!(message["recipients"][0]["delivered"], true);
    assert_eq!(message["payload"], json!({"n": 2}));
    let (_, third) = cluster
        .get(
            0,
            &format!("/v1/messages/{}", sent[2]["id"].as_str().unwrap()),
        )
        .await?;
    assert_eq!(third["recipients"][0]["acked"], false, "{third}");
    let (missing, _) = cluster.get(0, "/v1/messages/no-such-id").await?;
    assert_eq!(missing, 404);
    omar.close().await?;

    let mut again = cluster.connect(1, "omar").await?;
    let got = again.next_msg().await?;
    assert_eq!(got["seq"], 3);
    Ok(())
}

#[tokio::test]
async fn resume_on_an_open_connection_resyncs_the_stream() -> Result<()> {
    let cluster = Cluster::start("resume", Topology::default()).await?;
    send_n(&cluster, "pia", 3).await?;
    let mut pia = cluster.connect(0, "pia").await?;
    assert_eq!(seqs(&pia.msgs(3).await?), vec![1, 2, 3]);
    let epoch = pia.welcome["epochs"]["user"].clone();
    pia.send_json(json!({"type": "resume", "streams": {"user": 1}, "epochs": {"user": epoch}}))
        .await?;
    assert_eq!(seqs(&pia.msgs(2).await?), vec![2, 3]);
    cluster.send(&["pia"], json!("next")).await?;
    assert_eq!(pia.next_msg().await?["seq"], 4);

    pia.send_json(json!({"type": "resume", "streams": {"nope": 1}}))
        .await?;
    let error = pia.next_frame().await?;
    assert_eq!(error["type"], "error");
    pia.send_json(json!({"type": "ack", "seq": "x"})).await?;
    let error = pia.next_frame().await?;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("bad_frame"))
    );
    Ok(())
}

#[tokio::test]
async fn a_position_from_another_epoch_or_beyond_the_head_gets_a_reset() -> Result<()> {
    let cluster = Cluster::start("epoch", Topology::default()).await?;
    send_n(&cluster, "quinn", 2).await?;
    let mut wrong_epoch = cluster
        .connect_with(0, "quinn", "since=1&epoch=deadbeef")
        .await?;
    let reset = wrong_epoch.next_frame().await?;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["stream"], "user");
    assert_eq!(reset["from"], 1);
    assert_eq!(reset["epoch"], wrong_epoch.welcome["epochs"]["user"]);
    assert_eq!(seqs(&wrong_epoch.msgs(2).await?), vec![1, 2]);

    // A position the stream never reached: the stream was recreated.
    let mut ahead = cluster.connect_with(1, "quinn", "since=40").await?;
    assert_eq!(ahead.next_frame().await?["type"], "reset");
    assert_eq!(ahead.next_msg().await?["seq"], 1);

    // The right epoch is a plain resume.
    let epoch = ahead.welcome["epochs"]["user"]
        .as_str()
        .unwrap()
        .to_string();
    let mut right = cluster
        .connect_with(0, "quinn", &format!("since=1&epoch={epoch}"))
        .await?;
    assert_eq!(right.next_frame().await?["seq"], 2);
    Ok(())
}

#[tokio::test]
async fn resuming_from_before_the_retention_gets_a_reset_not_a_hole() -> Result<()> {
    if herald_tests::skip_in_standalone("MongoDB (it deletes entries as the TTL monitor would)") {
        return Ok(());
    }
    let cluster = Cluster::start("retention", Topology::default()).await?;
    let sent = send_n(&cluster, "rosa", 4).await?;

    // Entries carry an expiry that a TTL index enforces.
    let client = mongodb::Client::with_uri_str(MONGO).await?;
    let db = client.database(&cluster.namespace.replace('.', "_"));
    let entries = db.collection::<mongodb::bson::Document>("entries");
    let indexes = entries.list_index_names().await?;
    assert!(
        indexes.iter().any(|i| i.starts_with("expires_at")),
        "{indexes:?}"
    );
    let first = entries
        .find_one(doc! {"stream": "user:rosa", "seq": 1_i64})
        .await?
        .unwrap();
    assert!(first.get_datetime("expires_at").is_ok());

    // Let the retention take seqs 1 and 2, as the TTL monitor would.
    entries
        .delete_many(doc! {"stream": "user:rosa", "seq": {"$lte": 2_i64}})
        .await?;

    let mut rosa = cluster.connect_with(0, "rosa", "since=0").await?;
    let reset = rosa.next_frame().await?;
    assert_eq!(
        (reset["type"].as_str(), reset["from"].as_u64()),
        (Some("reset"), Some(3)),
        "{reset}"
    );
    let got = rosa.msgs(2).await?;
    assert_eq!(seqs(&got), vec![3, 4]);
    assert_eq!(got[1]["id"], sent[3]["id"]);

    let (_, page) = cluster.get(0, "/v1/streams/rosa/messages?after=0").await?;
    assert_eq!(page["reset"]["from"], 3, "{page}");
    Ok(())
}

#[tokio::test]
async fn a_live_gap_is_filled_from_the_store_and_repeats_are_dropped() -> Result<()> {
    if herald_tests::skip_in_standalone("a dispatcher process and a Kafka node topic") {
        return Ok(());
    }
    let mut cluster = Cluster::start(
        "gap",
        Topology {
            pushers: 1,
            ..Topology::default()
        },
    )
    .await?;
    let mut sam = cluster.connect(0, "sam").await?;
    cluster.send(&["sam"], json!(1)).await?;
    assert_eq!(sam.next_msg().await?["seq"], 1);

    // With no dispatcher, 2 and 3 are stored but never routed...
    cluster.dispatchers[0].kill();
    send_n(&cluster, "sam", 2).await?;
    // ...until 3 alone reaches the node, as an out-of-order publish would.
    let (_, page) = cluster.get(0, "/v1/streams/sam/messages?after=2").await?;
    let third = &page["messages"][0];
    let event = json!({"id": third["id"], "stream": "user:sam", "seq": 3, "ts": third["ts"], "payload": third["payload"]});
    let producer = kafka_producer()?;
    let node_topic = format!("{}.node.node-a", cluster.namespace);
    produce(&producer, &node_topic, "sam", &event.to_string()).await?;
    let got = sam.msgs(2).await?;
    assert_eq!(seqs(&got), vec![2, 3]);

    // The dispatcher comes back and routes 2 and 3 again: both are repeats.
    cluster.dispatchers[0].restart().await?;
    produce(&producer, &node_topic, "sam", &event.to_string()).await?;
    cluster.send(&["sam"], json!(4)).await?;
    assert_eq!(sam.next_msg().await?["seq"], 4);
    Ok(())
}
