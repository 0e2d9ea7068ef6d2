//! How a connection ends when its client misbehaves or its token runs out:
//! a client that stops reading, a token that expires, a refresh with a
//! token the server refuses. Both modes (cluster and standalone).

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use herald_tests::client::Closed;
use herald_tests::{Cluster, Topology, WsClient, eventually};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The open connections pusher `node` reports on /metrics.
async fn connections(cluster: &Cluster, node: usize) -> Result<u64> {
    let text = reqwest::get(format!("{}/metrics", cluster.pushers[node].url()))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|line| line.strip_prefix("herald_pusher_connections "))
        .context("herald_pusher_connections in /metrics")?
        .trim()
        .parse::<f64>()
        .map(|n| n as u64)
        .context("a number of connections")
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_its_connection_freed() -> Result<()> {
    let topology = Topology {
        env: vec![("HERALD_WRITE_TIMEOUT_MS".into(), "1000".into())],
        ..Topology::default()
    };
    let cluster = Cluster::start("slow-reader", topology).await?;
    let token = cluster.token("sid").await?;

    // A client whose socket takes little and which reads nothing after the
    // welcome: the server's writes soon stop making progress.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let tcp = socket
        .connect(format!("127.0.0.1:{}", cluster.pushers[0].port).parse()?)
        .await?;
    let (mut ws, _) =
        tokio_tungstenite::client_async(cluster.ws_url(0, &format!("token={token}")), tcp).await?;
    let welcome = ws.next().await.context("a welcome")??;
    assert!(welcome.to_text()?.contains("welcome"), "{welcome:?}");
    assert_eq!(connections(&cluster, 0).await?, 1);

    // About 6 MB for it, far more than the sockets between hold, and far
    // fewer frames than its send queue: only the stalled write can end it.
    let big = "x".repeat(60_000);
    for _ in 0..2 {
        let batch: Vec<Value> = (0..50)
            .map(|_| json!({"to": {"users": ["sid"]}, "payload": big}))
            .collect();
        let (status, body) = cluster
            .post_raw(0, "/v1/messages/batch", Value::Array(batch).to_string())
            .await?;
        if status != 202 {
            bail!("batch answered {status}: {body}");
        }
    }
    let c = &cluster;
    eventually("the pusher let the stalled connection go", || async move {
        Ok(connections(c, 0).await? == 0)
    })
    .await?;
    drop(ws);

    // The node is fine for everyone else.
    let mut other = cluster.connect(0, "sid").await?;
    cluster.send(&["sid"], json!("small")).await?;
    loop {
        let frame = other.next_msg().await?;
        if frame["payload"] == "small" {
            break;
        }
    }
    Ok(())
}

async fn connect_with(cluster: &Cluster, claims: Value) -> Result<WsClient> {
    let token = cluster.token_with(claims).await?;
    WsClient::connect(&cluster.ws_url(0, &format!("token={token}"))).await
}

#[tokio::test]
async fn a_connection_is_closed_4004_when_its_token_expires() -> Result<()> {
    let cluster = Cluster::start("token-expiry", Topology::default()).await?;
    let before = now_secs();
    let mut tia = connect_with(&cluster, json!({"user_id": "tia", "ttl_secs": 3})).await?;
    let expires_at = tia.welcome["expires_at"]
        .as_i64()
        .with_context(|| format!("expires_at in {}", tia.welcome))?;
    assert!(
        (before + 3..=now_secs() + 3).contains(&expires_at),
        "{}",
        tia.welcome
    );
    assert_eq!(tia.closed().await?, Closed::Code(4004));
    assert!(now_secs() >= expires_at, "closed before the token expired");
    Ok(())
}

#[tokio::test]
async fn a_refresh_keeps_the_connection_open_with_the_new_claims() -> Result<()> {
    let cluster = Cluster::start("token-refresh", Topology::default()).await?;
    let mut uma = connect_with(&cluster, json!({"user_id": "uma", "ttl_secs": 3})).await?;
    let first_expiry = uma.welcome["expires_at"].as_i64().context("expires_at")?;

    // Without the claim, publishing is refused.
    uma.send_json(json!({"type": "publish", "to": {"topic": "room-1"}, "payload": 1, "key": "a"}))
        .await?;
    assert_eq!(uma.next_frame().await?["code"], "forbidden");

    let fresh = cluster
        .token_with(json!({"user_id": "uma", "ttl_secs": 600, "publish": ["room-*"]}))
        .await?;
    uma.send_json(json!({"type": "refresh", "token": fresh}))
        .await?;
    let refreshed = uma.next_frame().await?;
    assert_eq!(refreshed["type"], "refreshed", "{refreshed}");
    assert!(
        refreshed["expires_at"].as_i64().context("expires_at")? > first_expiry + 500,
        "{refreshed}"
    );

    // Past the first token's expiry (nothing to wait on but the clock).
    let wait = (first_expiry + 1 - now_secs()).max(0) as u64;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let sent = cluster.send(&["uma"], json!("still here")).await?;
    let got = uma.next_msg().await?;
    assert_eq!(got["id"], sent["id"]);

    // The refreshed token's claims apply.
    uma.send_json(json!({"type": "publish", "to": {"topic": "room-1"}, "payload": 2, "key": "b"}))
        .await?;
    assert_eq!(uma.next_frame().await?["type"], "published");
    Ok(())
}

#[tokio::test]
async fn a_refresh_with_another_users_or_a_bad_token_closes_4006() -> Result<()> {
    let cluster = Cluster::start("token-refuse", Topology::default()).await?;
    let mut vic = cluster.connect(0, "vic").await?;
    let other = cluster.token("wes").await?;
    vic.send_json(json!({"type": "refresh", "token": other}))
        .await?;
    assert_eq!(vic.closed().await?, Closed::Code(4006));

    let mut vic = cluster.connect(0, "vic").await?;
    vic.send_json(json!({"type": "refresh", "token": "not-a-token"}))
        .await?;
    assert_eq!(vic.closed().await?, Closed::Code(4006));
    Ok(())
}
