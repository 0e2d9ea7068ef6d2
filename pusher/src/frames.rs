//! The WebSocket frames, as JSON text (see docs/protocol.md).
//!
//! Server frames are built here and nowhere else. A `msg` frame is serialised
//! once per event and node, then shared (reference-counted bytes) by every
//! local connection it goes to.

use axum::extract::ws::Utf8Bytes;
use herald_common::envelope::Event;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The client-facing name of the connection's own user stream.
pub const USER_STREAM: &str = "user";

/// The name a client knows a stream by: `user` for its own inbox, the storage
/// name (`topic:<name>`, `all`) for the rest.
pub fn client_stream(storage: &str) -> &str {
    if herald_common::envelope::stream_user(storage).is_some() {
        USER_STREAM
    } else {
        storage
    }
}

/// Everything the server sends, each frame built here and nowhere else.
/// Serialised with the `type` tag first, then the fields in order.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// The first frame of every connection.
    Welcome {
        user: &'a str,
        node: &'a str,
        /// The epochs of the streams every connection follows (`user`, `all`).
        epochs: BTreeMap<&'a str, &'a str>,
        /// When the connection's token expires, unix seconds: refresh before.
        expires_at: i64,
    },
    /// One stored event, naming its stream as the client knows it.
    Msg {
        id: &'a str,
        stream: &'a str,
        seq: u64,
        ts: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<&'a str>,
        /// The stored JSON text, verbatim.
        payload: &'a RawValue,
    },
    /// The position the client asked for cannot be continued: it must
    /// reload, and the stream goes on from `from` (the oldest seq still kept).
    Reset {
        stream: &'a str,
        from: u64,
        epoch: &'a str,
    },
    Subscribed {
        topic: &'a str,
        stream: &'a str,
        epoch: &'a str,
        head: u64,
    },
    Unsubscribed {
        topic: &'a str,
    },
    Published {
        key: &'a str,
        id: &'a str,
    },
    /// Answer to `refresh`: the connection now lives until `expires_at`.
    Refreshed {
        expires_at: i64,
    },
    /// A client frame was refused; the connection stays open.
    Error {
        code: &'a str,
        message: &'a str,
    },
    Pong,
}

impl ServerFrame<'_> {
    /// The frame as the JSON text that goes on the socket.
    pub fn text(&self) -> Utf8Bytes {
        serde_json::to_string(self)
            .expect("server frames serialise")
            .into()
    }
}

/// `{"type":"msg",...}` for `event`, naming its stream as the client knows it.
pub fn msg(event: &Event, client_stream: &str) -> Utf8Bytes {
    ServerFrame::Msg {
        id: &event.id,
        stream: client_stream,
        seq: event.seq,
        ts: event.ts,
        from: event.from.as_deref(),
        payload: &event.payload,
    }
    .text()
}

/// What a client may send.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    /// Acknowledges everything up to `seq` of `stream` (cumulative).
    Ack {
        stream: String,
        seq: u64,
    },
    /// Re-syncs streams from the given seqs on the open connection.
    Resume {
        streams: BTreeMap<String, u64>,
        #[serde(default)]
        epochs: BTreeMap<String, String>,
    },
    /// Follows a topic's stream, from `since` (replaying what came after it)
    /// or from its current head.
    Subscribe {
        topic: String,
        #[serde(default)]
        since: Option<u64>,
        #[serde(default)]
        epoch: Option<String>,
    },
    Unsubscribe {
        topic: String,
    },
    /// Sends a message the way a business system does, as this user.
    /// (The payload is a parsed value, not raw text: serde cannot keep raw
    /// text inside an internally tagged enum. Its JSON meaning is kept; its
    /// spacing and number spelling may not be.)
    Publish {
        to: serde_json::Value,
        payload: serde_json::Value,
        key: String,
    },
    /// Application-level keep-alive for clients that cannot send pings.
    Ping,
    /// Replaces the connection's token (same user) before it expires.
    Refresh {
        token: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_frame_carries_the_payload_text_verbatim() {
        let event: Event = serde_json::from_str(
            r#"{"id":"m1","stream":"user:u1","seq":4,"ts":9,"payload":{"x": [1, 2.50]}}"#,
        )
        .unwrap();
        let frame = msg(&event, USER_STREAM);
        assert_eq!(
            frame.as_str(),
            r#"{"type":"msg","id":"m1","stream":"user","seq":4,"ts":9,"payload":{"x": [1, 2.50]}}"#
        );
    }

    #[test]
    fn server_frames_are_tagged_json_with_their_fields() {
        let json = |frame: ServerFrame| -> serde_json::Value {
            serde_json::from_str(frame.text().as_str()).unwrap()
        };
        assert_eq!(ServerFrame::Pong.text().as_str(), r#"{"type":"pong"}"#);
        assert_eq!(
            json(ServerFrame::Welcome {
                user: "u1",
                node: "node-a",
                epochs: BTreeMap::from([("user", "e1"), ("all", "e2")]),
                expires_at: 1_764_090_000,
            }),
            serde_json::json!({"type": "welcome", "user": "u1", "node": "node-a",
                "epochs": {"user": "e1", "all": "e2"}, "expires_at": 1_764_090_000})
        );
        assert_eq!(
            json(ServerFrame::Reset {
                stream: "user",
                from: 3,
                epoch: "e1"
            }),
            serde_json::json!({"type": "reset", "stream": "user", "from": 3, "epoch": "e1"})
        );
        assert_eq!(
            json(ServerFrame::Error {
                code: "forbidden",
                message: "no"
            }),
            serde_json::json!({"type": "error", "code": "forbidden", "message": "no"})
        );
        assert_eq!(
            json(ServerFrame::Refreshed { expires_at: 7 }),
            serde_json::json!({"type": "refreshed", "expires_at": 7})
        );
    }

    #[test]
    fn parses_client_frames_and_refuses_unknown_ones() {
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"ack","stream":"user","seq":3}"#)
                .unwrap(),
            ClientFrame::Ack {
                stream: "user".into(),
                seq: 3
            }
        );
        let resume: ClientFrame =
            serde_json::from_str(r#"{"type":"resume","streams":{"user":7},"epochs":{"user":"e"}}"#)
                .unwrap();
        assert!(matches!(resume, ClientFrame::Resume { ref streams, .. } if streams["user"] == 7));
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"subscribe","topic":"m","since":4}"#)
                .unwrap(),
            ClientFrame::Subscribe {
                topic: "m".into(),
                since: Some(4),
                epoch: None
            }
        );
        assert_eq!(client_stream("user:u1"), "user");
        assert_eq!(client_stream("topic:m"), "topic:m");
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"refresh","token":"t2"}"#).unwrap(),
            ClientFrame::Refresh { token: "t2".into() }
        );
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"refresh"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"ack","seq":-1}"#).is_err());
    }
}
