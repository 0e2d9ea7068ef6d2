//! The generator against a toy server speaking a protocol of its own, the
//! way a peer target would: no greeting, a keep-alive the client answers,
//! a subscribe frame, messages with their position in plain text.

use super::*;
use crate::ws::{self, Ws};
use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

struct Toy {
    addr: String,
}

impl Protocol for Toy {
    fn url(&self, i: usize) -> String {
        format!("ws://{}/{i}", self.addr)
    }

    async fn greet(&self, _ws: &mut Ws) -> Result<()> {
        Ok(())
    }

    async fn subscribe(&self, ws: &mut Ws) -> Result<u64> {
        ws::send_text(ws, "sub".into()).await?;
        let ok = ws::next_text(ws).await?;
        ok.strip_prefix("ok ")
            .context("no ok")?
            .parse()
            .context("bad ok")
    }

    fn position(&self, frame: &str) -> Result<u64> {
        match frame.strip_prefix("m ") {
            Some(n) => Ok(n.parse()?),
            None => bail!("unexpected frame: {frame}"),
        }
    }

    fn answer(&self, frame: &str) -> Option<String> {
        (frame == "ping").then(|| "pong".into())
    }
}

/// Serves every connection: `ping`, waits for `pong` and `sub`, answers
/// `ok 10`, then sends `frames`. A client that does otherwise is
/// disconnected (the server task panics), which fails its connection.
async fn toy_server(frames: &'static [&'static str]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                ws.send(Message::Text("ping".into())).await.unwrap();
                for want in ["pong", "sub"] {
                    let got = ws.next().await.unwrap().unwrap();
                    assert_eq!(got, Message::Text(want.into()));
                }
                ws.send(Message::Text("ok 10".into())).await.unwrap();
                for frame in frames {
                    ws.send(Message::Text((*frame).into())).await.unwrap();
                }
                // Hold the connection open until the client goes.
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn counts_arrivals_and_those_out_of_order() {
    // 11 and 12 in order, 12 repeated, 13 after the repeat is in order again.
    let addr = toy_server(&["m 11", "m 12", "m 12", "m 13"]).await;
    let limit = Duration::from_secs(10);
    let mut connections = Connections::new(Arc::new(Toy { addr }), 2);
    connections.open(0..2);
    connections.open(2..3);
    connections.wait_open(3, limit).await.unwrap();
    connections.expect(12);
    connections.subscribe();
    // Subscribed: so each answered the keep-alive it got while idle.
    connections.wait_subscribed(3, limit).await.unwrap();
    connections.wait_delivered(12, limit).await.unwrap();
    assert_eq!(connections.delivered(), 12);
    assert_eq!(connections.out_of_order(), 3);
    connections.check().unwrap();
}

#[tokio::test]
async fn a_frame_that_is_no_message_fails_the_run() {
    let addr = toy_server(&["m 11", "surprise"]).await;
    let limit = Duration::from_secs(10);
    let mut connections = Connections::new(Arc::new(Toy { addr }), 1);
    connections.open(0..1);
    connections.wait_open(1, limit).await.unwrap();
    connections.subscribe();
    connections.wait_subscribed(1, limit).await.unwrap();
    let err = connections.wait_delivered(2, limit).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("unexpected frame: surprise"),
        "{err:#}"
    );
}
