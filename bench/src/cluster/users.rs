//! The connected users: user `i` is `u-<i>`, holds one WebSocket connection
//! to pusher `i % pushers`, and records every `msg` frame it receives in the
//! ledger. Each connection is read by its own task for the whole run; a
//! connection that ends counts as lost in the ledger (the run then fails).

use super::ledger::Ledger;
use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// Handshakes (and token requests) in flight at once.
const CONCURRENCY: usize = 64;

pub fn user_id(i: u32) -> String {
    format!("u-{i}")
}

/// The reading tasks; dropping this aborts them (closing the connections).
pub struct Users {
    pub count: usize,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Users {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// Mints a token per user from authsvc, connects each user to its pusher,
/// waits for every `welcome` (by then the pusher has registered the user's
/// route), then leaves a task reading each connection.
pub async fn connect(
    auth_url: &str,
    api_key: &str,
    pusher_urls: &[String],
    count: usize,
    ledger: Arc<Ledger>,
) -> Result<Users> {
    let http = reqwest::Client::new();
    let readers: Vec<JoinHandle<()>> = stream::iter(0..count as u32)
        .map(|i| {
            let http = http.clone();
            let ledger = ledger.clone();
            let pusher = &pusher_urls[i as usize % pusher_urls.len()];
            async move {
                let token = token(&http, auth_url, api_key, &user_id(i)).await?;
                let url = format!("{}/ws?token={token}", pusher.replace("http://", "ws://"));
                let (mut ws, _) = connect_async(url.as_str())
                    .await
                    .with_context(|| format!("connecting {}", user_id(i)))?;
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if kind(&t) == Some("welcome") => {}
                    other => bail!("{}: expected welcome, got {other:?}", user_id(i)),
                }
                Ok(tokio::spawn(read(ws, i, ledger)))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(Users { count, readers })
}

async fn token(
    http: &reqwest::Client,
    auth_url: &str,
    api_key: &str,
    user: &str,
) -> Result<String> {
    let answer = http
        .post(format!("{auth_url}/v1/tokens"))
        .bearer_auth(api_key)
        .json(&json!({"user_id": user, "ttl_secs": 86400}))
        .send()
        .await?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await?;
    if !status.is_success() {
        bail!("token for {user}: {status} {body}");
    }
    Ok(body["token"].as_str().context("no token")?.to_string())
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    payload: Option<Payload>,
}

/// What the benchmark puts in each payload (see `senders::submission`).
#[derive(Deserialize)]
struct Payload {
    i: u64,
    u: u32,
}

fn kind(text: &str) -> Option<&str> {
    serde_json::from_str::<Frame>(text).ok().map(|f| f.kind)
}

/// Reads user `user`'s connection until it ends; pings are answered by
/// tungstenite while reading.
async fn read<S>(mut ws: S, user: u32, ledger: Arc<Ledger>)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(message) = ws.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        match serde_json::from_str::<Frame>(&text) {
            Ok(Frame {
                kind: "msg",
                payload: Some(p),
            }) => ledger.arrived(user, p.i, p.u),
            // Other frames (none expected on an idle user stream) are not
            // messages of this run.
            Ok(Frame { kind: "msg", .. }) | Err(_) => {
                ledger.misrouted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
        }
    }
    ledger.connections_lost.fetch_add(1, Ordering::Relaxed);
}
