//! Herald's WebSocket protocol as a subscriber of one topic speaks it (see
//! docs/protocol.md): `welcome` first, `subscribe` answered by `subscribed`
//! with the topic's head, then `msg` frames with the topic's seqs.

use crate::target::Protocol;
use crate::ws::{self, Ws};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;

pub struct HeraldProtocol {
    addr: String,
    tokens: Vec<String>,
    /// The `subscribe` frame, the same for every connection.
    subscribe: String,
    /// The stream the topic's messages arrive on: `topic:<topic>`.
    stream: String,
}

/// The parts of a server frame the generator looks at.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    stream: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    head: Option<u64>,
}

impl HeraldProtocol {
    /// Connection i presents `tokens[i % tokens.len()]`, which must be
    /// allowed `topic`.
    pub fn new(addr: &str, tokens: Vec<String>, topic: &str) -> Self {
        assert!(!tokens.is_empty(), "at least one token");
        HeraldProtocol {
            addr: addr.to_string(),
            tokens,
            subscribe: json!({"type": "subscribe", "topic": topic}).to_string(),
            stream: format!("topic:{topic}"),
        }
    }
}

impl Protocol for HeraldProtocol {
    fn url(&self, i: usize) -> String {
        format!(
            "ws://{}/ws?token={}",
            self.addr,
            self.tokens[i % self.tokens.len()]
        )
    }

    async fn greet(&self, ws: &mut Ws) -> Result<()> {
        welcome(&ws::next_text(ws).await?)
    }

    async fn subscribe(&self, ws: &mut Ws) -> Result<u64> {
        ws::send_text(ws, self.subscribe.clone()).await?;
        subscribed(&ws::next_text(ws).await?)
    }

    fn position(&self, frame: &str) -> Result<u64> {
        let parsed: Frame = serde_json::from_str(frame)?;
        if parsed.kind != "msg" || parsed.stream != Some(self.stream.as_str()) {
            bail!("unexpected frame: {frame}");
        }
        parsed.seq.context("msg without seq")
    }
}

fn welcome(frame: &str) -> Result<()> {
    let parsed: Frame = serde_json::from_str(frame)?;
    if parsed.kind != "welcome" {
        bail!("first frame is not welcome: {frame}");
    }
    Ok(())
}

/// The topic's head in a `subscribed` frame.
fn subscribed(frame: &str) -> Result<u64> {
    let parsed: Frame = serde_json::from_str(frame)?;
    if parsed.kind != "subscribed" {
        bail!("expected subscribed, got {frame}");
    }
    parsed.head.context("subscribed without head")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench() -> HeraldProtocol {
        HeraldProtocol::new("127.0.0.1:9", vec!["t0".into(), "t1".into()], "bench")
    }

    #[test]
    fn connections_take_the_tokens_in_turn() {
        let p = bench();
        assert_eq!(p.url(0), "ws://127.0.0.1:9/ws?token=t0");
        assert_eq!(p.url(3), "ws://127.0.0.1:9/ws?token=t1");
        // Compared as JSON: key order depends on serde_json's features, which
        // the workspace unifies (bson turns on `preserve_order`).
        let subscribe: serde_json::Value = serde_json::from_str(&p.subscribe).unwrap();
        assert_eq!(
            subscribe,
            serde_json::json!({"type": "subscribe", "topic": "bench"})
        );
    }

    #[test]
    fn opening_and_subscribing_frames() {
        assert!(welcome(r#"{"type":"welcome","user":"bench-0","node":"n"}"#).is_ok());
        assert!(welcome(r#"{"type":"error","code":"unauthorized"}"#).is_err());
        assert_eq!(
            subscribed(r#"{"type":"subscribed","topic":"bench","stream":"topic:bench","head":41}"#)
                .unwrap(),
            41
        );
        assert!(subscribed(r#"{"type":"subscribed","topic":"bench"}"#).is_err());
        assert!(subscribed(r#"{"type":"error"}"#).is_err());
        assert!(subscribed("not json").is_err());
    }

    #[test]
    fn positions_are_the_topic_seqs() {
        let p = bench();
        let msg = r#"{"type":"msg","stream":"topic:bench","seq":42,"payload":{"i":1}}"#;
        assert_eq!(p.position(msg).unwrap(), 42);
        // Another stream, another kind, or no seq is not a delivery.
        assert!(
            p.position(r#"{"type":"msg","stream":"topic:other","seq":42}"#)
                .is_err()
        );
        assert!(
            p.position(r#"{"type":"msg","stream":"user","seq":42}"#)
                .is_err()
        );
        assert!(p.position(r#"{"type":"subscribed","head":42}"#).is_err());
        assert!(
            p.position(r#"{"type":"msg","stream":"topic:bench"}"#)
                .is_err()
        );
        assert!(p.answer(msg).is_none());
    }
}
