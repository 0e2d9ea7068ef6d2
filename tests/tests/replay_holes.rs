//! Replay past history that expired in the middle of a stream (messages
//! carry their own `ttl_secs`, so a stream can lose an entry between two
//! kept ones). Both modes.

use anyhow::Result;
use herald_tests::{Cluster, Topology};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn replay_continues_past_an_expired_message_and_announces_it_with_a_reset() -> Result<()> {
    let cluster = Cluster::start("replay-hole", Topology::default()).await?;
    let mut sent = Vec::new();
    for (n, ttl_secs) in [(1, 3600), (2, 1), (3, 3600)] {
        sent.push(
            cluster
                .send_via(
                    0,
                    json!({"to": {"users": ["yan"]}, "payload": n, "ttl_secs": ttl_secs}),
                )
                .await?,
        );
    }
    // The middle message's whole life; expiry is what is tested, and there
    // is nothing to wait on but the clock.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut yan = cluster.connect_with(0, "yan", "since=0").await?;
    let first = yan.next_msg().await?;
    assert_eq!(
        (first["seq"].as_u64(), &first["id"]),
        (Some(1), &sent[0]["id"])
    );
    let reset = yan.next_frame().await?;
    assert_eq!(
        (
            reset["type"].as_str(),
            reset["stream"].as_str(),
            reset["from"].as_u64()
        ),
        (Some("reset"), Some("user"), Some(3)),
        "{reset}"
    );
    assert_eq!(reset["epoch"], yan.welcome["epochs"]["user"]);
    let third = yan.next_msg().await?;
    assert_eq!(
        (third["seq"].as_u64(), &third["id"]),
        (Some(3), &sent[2]["id"])
    );

    // And it goes on live from there.
    let live = cluster.send(&["yan"], json!(4)).await?;
    let got = yan.next_msg().await?;
    assert_eq!((got["seq"].as_u64(), &got["id"]), (Some(4), &live["id"]));
    Ok(())
}
