//! Issue 10.1: a submission reusing a stored message's `id` is answered on
//! its own (a duplicate, or a conflict) and never fails, delays or blocks the
//! other messages it was written with.

use anyhow::Result;
use herald_tests::{Cluster, Topology, eventually, kafka_producer, produce, seqs};
use serde_json::json;

fn new_id() -> String {
    // The tests crate has no uuid dependency; any UUID the parser accepts
    // will do, and this one is unique per run.
    let n: u128 = rand::random();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[tokio::test]
async fn over_http_a_reused_id_is_a_duplicate_or_a_409_and_others_are_unaffected() -> Result<()> {
    let cluster = Cluster::start("reused-id-http", Topology::default()).await?;
    let mut ann = cluster.connect(0, "ann").await?;
    let id = new_id();
    let first = json!({"to": {"users": ["ann"]}, "payload": {"n": 1}, "id": id});
    let stored = cluster.send_via(0, first.clone()).await?;
    assert_eq!(stored["id"], id.as_str());
    assert!(stored.get("duplicate").is_none(), "{stored}");

    // The same message again is a duplicate; other content under the id is
    // a conflict. Both race with innocent messages that the writer may merge
    // into the same store transaction: every one of those is accepted.
    let other = json!({"to": {"users": ["ann"]}, "payload": {"n": 2}, "id": id});
    let innocents = (0..20).map(|i| {
        let body = json!({"to": {"users": ["ann"]}, "payload": {"innocent": i}});
        cluster.post_raw(0, "/v1/messages", body.to_string())
    });
    let (repeat, conflict, innocents) = tokio::join!(
        cluster.post_raw(0, "/v1/messages", first.to_string()),
        cluster.post_raw(0, "/v1/messages", other.to_string()),
        futures::future::join_all(innocents),
    );
    let (status, repeat) = repeat?;
    assert_eq!(status, 202, "{repeat}");
    assert_eq!(repeat["duplicate"], true);
    assert_eq!(repeat["id"], id.as_str());
    assert_eq!(repeat["recipients"], 1);
    let (status, conflict) = conflict?;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"], "conflict");
    let says = conflict["message"].as_str().unwrap_or_default();
    assert!(
        says.contains(&id) && says.contains("different message"),
        "{says}"
    );
    for answer in innocents {
        let (status, body) = answer?;
        assert_eq!(status, 202, "an innocent message was refused: {body}");
    }

    // Ann got the first message once and every innocent one, nothing else.
    let got = ann.msgs(21).await?;
    assert_eq!(seqs(&got), (1..=21).collect::<Vec<u64>>());
    assert_eq!(got[0]["id"], id.as_str());
    assert_eq!(got[0]["payload"], json!({"n": 1}));
    assert!(
        got[1..]
            .iter()
            .all(|m| m["payload"]["innocent"].is_number())
    );
    let (_, status) = cluster.get(0, &format!("/v1/messages/{id}")).await?;
    assert_eq!(
        status["payload"],
        json!({"n": 1}),
        "the first message stays"
    );

    // In a batch, each message is answered on its own, and two messages with
    // one new id follow the same rule among themselves.
    let fresh = new_id();
    let (status, answer) = cluster
        .post_raw(
            0,
            "/v1/messages/batch",
            json!([
                first,
                other,
                {"to": {"users": ["ann"]}, "payload": "new", "id": fresh},
                {"to": {"users": ["ann"]}, "payload": "new", "id": fresh},
                {"to": {"users": ["ann"]}, "payload": "not new", "id": fresh},
                {"to": {"users": ["ann"]}, "payload": "plain"},
            ])
            .to_string(),
        )
        .await?;
    assert_eq!(status, 202, "{answer}");
    let m = &answer["messages"];
    assert_eq!(m[0]["duplicate"], true, "{answer}");
    assert_eq!(m[1]["error"], "conflict", "{answer}");
    assert_eq!(m[1]["id"], id.as_str());
    assert!(m[2].get("duplicate").is_none(), "{answer}");
    assert_eq!(m[2]["id"], fresh.as_str());
    assert_eq!(m[3]["duplicate"], true, "{answer}");
    assert_eq!(m[4]["error"], "conflict", "{answer}");
    assert_eq!(m[5]["recipients"], 1, "{answer}");
    let got = ann.msgs(2).await?;
    assert_eq!(seqs(&got), [22, 23]);
    assert_eq!(got[0]["payload"], "new");
    assert_eq!(got[1]["payload"], "plain");
    Ok(())
}

#[tokio::test]
async fn on_kafka_records_reusing_a_stored_id_never_block_their_partition() -> Result<()> {
    if herald_tests::skip_in_standalone("the Kafka ingest topic") {
        return Ok(());
    }
    let cluster = Cluster::start("reused-id-kafka", Topology::default()).await?;
    let mut bea = cluster.connect(0, "bea").await?;
    let id = new_id();
    let first = json!({"to": {"users": ["bea"]}, "payload": {"n": 1}, "id": id});
    cluster.send_via(0, first.clone()).await?;
    assert_eq!(bea.next_msg().await?["id"], id.as_str());

    // Three records reusing the id (the same message once, other content
    // twice), then a good one, all on one partition.
    let producer = kafka_producer()?;
    let topic = cluster.ingest_topic();
    for record in [
        first.clone(),
        json!({"to": {"users": ["bea"]}, "payload": {"n": 2}, "id": id}),
        json!({"to": {"users": ["bea", "cy"]}, "payload": {"n": 1}, "id": id}),
        json!({"to": {"users": ["bea"]}, "payload": "after"}),
    ] {
        produce(&producer, &topic, "one-partition", &record.to_string()).await?;
    }
    let got = bea.next_msg().await?;
    assert_eq!(
        got["payload"], "after",
        "the records before it were skipped"
    );
    assert_eq!(got["seq"], 2);

    // And HTTP is not held up behind them.
    let sent = cluster.send(&["bea"], json!("over http")).await?;
    assert_eq!(bea.next_msg().await?["id"], sent["id"]);

    // The two conflicts are counted, the duplicate is not. (The counter is
    // raised just after the store answers, with no event to wait on.)
    let url = format!("{}/metrics", cluster.collectors[0].url());
    eventually("two ingest records rejected", || {
        let url = url.clone();
        async move {
            let metrics = reqwest::get(url).await?.text().await?;
            Ok(metrics.contains("herald_collector_ingest_rejected_total 2"))
        }
    })
    .await?;
    Ok(())
}
