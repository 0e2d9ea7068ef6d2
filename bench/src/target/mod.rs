//! The server under test, as the generator and the scenarios reach it.
//!
//! A target has two faces. [`Protocol`] is how its WebSocket subscribers
//! talk to it: the URL each connection opens, what happens after the
//! handshake, how a connection subscribes, where a message frame says its
//! position. It is all the generator knows of a server. [`Target`] is the
//! rest the scenarios need: publishing to the topic, which process to read
//! from /proc, and how the report names the server.
//!
//! Today the one target is `herald standalone`, which `bench/run` starts. A
//! Herald cluster (pushers behind a collector) or a peer such as Nchan or
//! Sockudo (their own subscribe URLs, handshakes and publish endpoints) is
//! another implementation of the two traits; the generator and the
//! scenarios stay as they are.

pub mod herald;

use crate::ws::Ws;
use anyhow::Result;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// How a target's WebSocket subscribers talk to it. Each target subscribes
/// its connections to one topic, chosen when the target is made.
///
/// The steps run on tasks of their own (one per connection), hence `Send`.
pub trait Protocol: Send + Sync + 'static {
    /// The URL connection `i` opens (herald: with its user's token).
    fn url(&self, i: usize) -> String;

    /// Whatever must happen after the WebSocket handshake before the
    /// connection counts as open (herald: its `welcome` frame arrives).
    fn greet(&self, ws: &mut Ws) -> impl Future<Output = Result<()>> + Send;

    /// Subscribes an open connection to the topic (herald: `subscribe`, then
    /// `subscribed`). Returns the topic's position just before the first
    /// message this connection will receive (herald: the topic's head seq).
    fn subscribe(&self, ws: &mut Ws) -> impl Future<Output = Result<u64>> + Send;

    /// The position of the topic message in `frame`, a text frame received
    /// by a subscribed connection; an error for anything else. Positions go
    /// up by one per message published (herald: the seq); a target without
    /// its own can read the payload's index (see `payload`).
    fn position(&self, frame: &str) -> Result<u64>;

    /// The frame to send back when `frame` is the protocol's own keep-alive
    /// rather than a message (Pusher's `pusher:ping`, as Sockudo speaks).
    /// Herald's pings are WebSocket pings, answered below this layer.
    fn answer(&self, _frame: &str) -> Option<String> {
        None
    }
}

/// The server under test, as the scenarios use it.
pub trait Target {
    type Protocol: Protocol;

    /// What the generator's connections speak.
    fn protocol(&self) -> Arc<Self::Protocol>;

    /// Publishes `payload` to the topic; returns once the server accepted it.
    fn publish(&self, payload: &Value) -> impl Future<Output = Result<()>>;

    /// The process whose memory and CPU the scenarios read from /proc.
    fn server_pid(&self) -> u32;

    /// The report's first line: what the server is, its pid and address.
    fn describe(&self) -> String;
}
