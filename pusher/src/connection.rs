//! One WebSocket connection, from welcome to close.
//!
//! A connection follows several streams: its user's own (`user:<id>`, named
//! `user` to the client), `all`, and the topics it subscribes to. For each it
//! keeps a cursor: the last seq of that stream written to the socket. Every
//! event, replayed from the store or live from the node topic, goes through
//! one rule: a seq at or below the cursor is a repeat and is dropped; the next
//! seq is written; a seq beyond the next is a gap, filled from the store
//! before it is written. That one rule is what makes replay-then-live
//! seamless, and what absorbs re-consumed topics, retried dispatches and
//! publishes that reach the log out of order.

use crate::Node;
use crate::auth::Identity;
use crate::frames::{self, ClientFrame, USER_STREAM, client_stream};
use crate::hub::{ConnSlot, LiveEvent, Presence};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use herald_common::envelope::{
    ALL_STREAM, Submission, pattern_matches, topic_stream, user_stream, valid_topic,
};
use herald_common::log::OutgoingRecord;
use herald_common::store::StreamInfo;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where the client asked its user stream to start.
pub struct Start {
    /// The last seq the client has; `None`: the last it acknowledged.
    pub since: Option<u64>,
    /// The epoch that `since` belongs to, if the client knows it.
    pub epoch: Option<String>,
}

/// Close codes Herald uses beyond the standard ones (docs/protocol.md).
pub mod close {
    /// The connection's send queue overflowed: reconnect and resume.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// The store could not be read to replay or fill a gap: reconnect and resume.
    pub const STORE_UNAVAILABLE: u16 = 4002;
    /// The client sent nothing (not even a pong) for too long.
    pub const IDLE: u16 = 4003;
}

/// Entries read from the store per replay round trip.
const PAGE: usize = 500;
/// How often the server pings, and how long silence may last.
const PING_EVERY: Duration = Duration::from_secs(25);
const IDLE_AFTER: Duration = Duration::from_secs(75);
/// Re-reads of the store while waiting for a seq that is not readable yet.
const GAP_RETRIES: u32 = 8;
/// Client publishes: a burst of this many, refilled at this rate per second.
const PUBLISH_BURST: f64 = 20.0;
const PUBLISH_PER_SEC: f64 = 10.0;

/// Why the connection ends.
enum Ending {
    /// The peer closed or vanished: nothing more can be said.
    Gone,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
}

type Step = Result<(), Ending>;

struct Conn {
    socket: WebSocket,
    incoming: mpsc::Receiver<Arc<LiveEvent>>,
    node: Arc<Node>,
    slot: Arc<ConnSlot>,
    identity: Identity,
    /// Storage name of the user's own stream.
    user_stream: String,
    /// Cursor of every stream followed, shared with the hub.
    cursors: HashMap<String, Arc<AtomicU64>>,
    last_heard: Instant,
    publish_tokens: f64,
    publish_refilled: Instant,
}

pub async fn serve(socket: WebSocket, node: Arc<Node>, identity: Identity, start: Start) {
    let (queue, incoming) = mpsc::channel::<Arc<LiveEvent>>(node.config.send_queue);
    let slot = node.hub.open(queue);
    let mut conn = Conn {
        socket,
        incoming,
        node: node.clone(),
        slot: slot.clone(),
        user_stream: user_stream(&identity.user_id),
        identity,
        cursors: HashMap::new(),
        last_heard: Instant::now(),
        publish_tokens: PUBLISH_BURST,
        publish_refilled: Instant::now(),
    };
    let ending = conn.run(start).await;
    for stream in conn.cursors.keys() {
        if node.hub.unfollow(stream, &slot) == Presence::Changed && stream != ALL_STREAM {
            node.registrar.left(stream);
        }
    }
    node.hub.close(&slot);
    if let Ending::Close(code, reason) = ending {
        tracing::debug!(user = %conn.identity.user_id, code, reason, "closing connection");
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = conn.socket.send(Message::Close(Some(frame))).await;
    }
}

impl Conn {
    async fn run(&mut self, start: Start) -> Ending {
        // The rare, deep paths (opening, replay, client frames) are boxed:
        // every connection's task holds this future for its whole life, and
        // an async fn is as large as its largest await, so an idle
        // connection would otherwise carry their state inline.
        if let Err(ending) = Box::pin(self.open(start)).await {
            return ending;
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            let step = tokio::select! {
                event = self.incoming.recv() => match event {
                    Some(event) => self.live(&event).await,
                    None => Err(Ending::Gone),
                },
                message = self.socket.recv() => self.inbound(message).await,
                _ = ping.tick() => self.keepalive().await,
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    async fn open(&mut self, start: Start) -> Step {
        // Followed before anything is read from the store: whatever is stored
        // after that read reaches this connection live.
        let user_stream = self.user_stream.clone();
        self.follow(&user_stream).await;
        self.follow(ALL_STREAM).await;
        let user = self.info(&user_stream).await?;
        let all = self.info(ALL_STREAM).await?;
        let epochs = BTreeMap::from([
            (USER_STREAM, user.epoch.as_str()),
            (ALL_STREAM, all.epoch.as_str()),
        ]);
        let welcome = frames::welcome(&self.identity.user_id, &self.node.config.node_id, &epochs);
        self.send(welcome).await?;
        // A new connection's `all` starts at the present; `resume` replays it.
        self.sync(ALL_STREAM, None, None, &all).await?;
        self.sync(&user_stream, start.since, start.epoch.as_deref(), &user)
            .await
    }

    /// Follows `stream` in the hub (and, for the node's first follower, in
    /// the route registry) with a cursor at 0 until `sync` places it.
    async fn follow(&mut self, stream: &str) {
        let cursor = self
            .cursors
            .entry(stream.to_string())
            .or_insert_with(|| Arc::new(AtomicU64::new(u64::MAX)))
            .clone();
        // Until synced, the cursor is at "everything": nothing is queued.
        let presence = self.node.hub.follow(stream, &self.slot, cursor);
        if presence == Presence::Changed && stream != ALL_STREAM {
            self.node.registrar.arrived(stream).await;
        }
    }

    async fn info(&mut self, stream: &str) -> Result<StreamInfo, Ending> {
        self.node.store.stream_info(stream).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot read stream info");
            Ending::Close(close::STORE_UNAVAILABLE, "store unavailable")
        })
    }

    fn cursor(&self, stream: &str) -> Option<u64> {
        self.cursors.get(stream).map(|c| c.load(Ordering::Relaxed))
    }

    fn move_cursor(&mut self, stream: &str, seq: u64) {
        if let Some(c) = self.cursors.get(stream) {
            c.store(seq, Ordering::Relaxed);
        }
    }

    /// Positions `stream`'s cursor where the client asked (or at a `reset`
    /// when that position cannot be continued) and replays what follows it.
    /// Without `since`, the user stream starts after the last ack, the others
    /// at their current head.
    async fn sync(
        &mut self,
        stream: &str,
        since: Option<u64>,
        epoch: Option<&str>,
        info: &StreamInfo,
    ) -> Step {
        let default = if stream == self.user_stream {
            info.acked
        } else {
            info.head
        };
        let wanted = since.unwrap_or(default);
        let recreated = epoch.is_some_and(|e| e != info.epoch) || wanted > info.head;
        let expired = wanted + 1 < info.first;
        if recreated || expired {
            self.send(frames::reset(
                client_stream(stream),
                info.first,
                &info.epoch,
            ))
            .await?;
            self.move_cursor(stream, info.first - 1);
        } else {
            self.move_cursor(stream, wanted);
        }
        self.fill(stream, None).await?;
        // Live events that piled up while replaying may have overflowed the
        // queue: that is catching up, not slowness. Everything dropped is in
        // the store, so forget the queue and read the store once more.
        while self.slot.clear_overflow() {
            while self.incoming.try_recv().is_ok() {}
            let streams: Vec<String> = self.cursors.keys().cloned().collect();
            for s in streams {
                self.fill(&s, None).await?;
            }
        }
        Ok(())
    }

    /// Writes stored entries of `stream` after its cursor: all of them
    /// (`until: None`) or up to `until`, waiting a bounded time for ones not
    /// readable yet.
    async fn fill(&mut self, stream: &str, until: Option<u64>) -> Step {
        let mut waited = 0;
        loop {
            let Some(cursor) = self.cursor(stream) else {
                return Ok(());
            };
            let limit = match until {
                Some(u) if u <= cursor => return Ok(()),
                Some(u) => PAGE.min((u - cursor) as usize),
                None => PAGE,
            };
            let page = self
                .node
                .store
                .read_stream(stream, cursor, limit)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "cannot replay");
                    Ending::Close(close::STORE_UNAVAILABLE, "store unavailable")
                })?;
            let complete = page.len() < limit;
            let Some(first) = page.first() else {
                if until.is_none() {
                    return Ok(());
                }
                // The live event proves later seqs exist; this one is not
                // readable yet (a lagging read). Wait, never skip.
                waited += 1;
                if waited > GAP_RETRIES {
                    return Err(Ending::Close(close::STORE_UNAVAILABLE, "cannot fill gap"));
                }
                tokio::time::sleep(Duration::from_millis(50 * u64::from(waited))).await;
                continue;
            };
            if first.seq > cursor + 1 {
                if waited < GAP_RETRIES {
                    waited += 1;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(waited))).await;
                    continue;
                }
                // Later entries are kept and earlier ones are not: they
                // expired (messages may carry different ttls). Say so.
                let epoch = self.info(stream).await?.epoch;
                self.send(frames::reset(client_stream(stream), first.seq, &epoch))
                    .await?;
                self.move_cursor(stream, first.seq - 1);
            }
            waited = 0;
            let name = client_stream(stream).to_string();
            for event in &page {
                if Some(event.seq) != self.cursor(stream).map(|c| c + 1) {
                    break;
                }
                self.send(frames::msg(event, &name)).await?;
                self.delivered(stream, event.seq);
            }
            if until.is_none() && complete {
                return Ok(());
            }
        }
    }

    async fn live(&mut self, event: &LiveEvent) -> Step {
        if self.slot.overflowed() {
            return Err(Ending::Close(
                close::SLOW_CONSUMER,
                "send queue overflow; resume to catch up",
            ));
        }
        let Some(cursor) = self.cursor(&event.stream) else {
            return Ok(()); // unsubscribed meanwhile
        };
        if event.seq <= cursor {
            return Ok(());
        }
        if event.seq > cursor + 1 {
            Box::pin(self.fill(&event.stream, Some(event.seq - 1))).await?;
            if Some(event.seq) != self.cursor(&event.stream).map(|c| c + 1) {
                return Ok(());
            }
        }
        self.send(event.frame.clone()).await?;
        self.delivered(&event.stream, event.seq);
        Ok(())
    }

    fn delivered(&mut self, stream: &str, seq: u64) {
        self.move_cursor(stream, seq);
        // Delivery status is per recipient: only user streams have one.
        if stream == self.user_stream {
            self.node.progress.delivered(stream, seq);
        }
    }

    async fn inbound(&mut self, message: Option<Result<Message, axum::Error>>) -> Step {
        self.last_heard = Instant::now();
        match message {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Err(Ending::Gone),
            Some(Ok(Message::Text(text))) => Box::pin(self.client_frame(&text)).await,
            Some(Ok(Message::Binary(_))) => {
                self.send(frames::error("bad_frame", "frames are JSON text"))
                    .await
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
        }
    }

    /// The storage name of a stream the client names, if it follows it.
    fn followed(&self, client_name: &str) -> Option<String> {
        let storage = if client_name == USER_STREAM {
            self.user_stream.clone()
        } else {
            client_name.to_string()
        };
        self.cursors.contains_key(&storage).then_some(storage)
    }

    async fn client_frame(&mut self, text: &str) -> Step {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(e) => return self.send(frames::error("bad_frame", &e.to_string())).await,
        };
        match frame {
            ClientFrame::Ack { stream, seq } => {
                if stream != USER_STREAM {
                    return self
                        .send(frames::error(
                            "unknown_stream",
                            "only the user stream is acknowledged",
                        ))
                        .await;
                }
                // An ack cannot run ahead of what was delivered.
                let acked = seq.min(self.cursor(&self.user_stream).unwrap_or(0));
                if acked > 0 {
                    self.node.progress.acked(&self.user_stream, acked);
                }
                Ok(())
            }
            ClientFrame::Resume { streams, epochs } => {
                let mut targets = Vec::with_capacity(streams.len());
                for (name, since) in &streams {
                    match self.followed(name) {
                        Some(storage) => targets.push((storage, name, *since)),
                        None => return self.send(frames::error("unknown_stream", name)).await,
                    }
                }
                for (storage, name, since) in targets {
                    let info = self.info(&storage).await?;
                    let epoch = epochs.get(name).map(String::as_str);
                    self.sync(&storage, Some(since), epoch, &info).await?;
                }
                Ok(())
            }
            ClientFrame::Subscribe {
                topic,
                since,
                epoch,
            } => self.subscribe(&topic, since, epoch.as_deref()).await,
            ClientFrame::Unsubscribe { topic } => {
                let stream = topic_stream(&topic);
                if self.cursors.remove(&stream).is_some()
                    && self.node.hub.unfollow(&stream, &self.slot) == Presence::Changed
                {
                    self.node.registrar.left(&stream);
                }
                self.send(frames::unsubscribed(&topic)).await
            }
            ClientFrame::Publish { to, payload, key } => self.publish(to, payload, key).await,
            ClientFrame::Ping => {
                self.send(Utf8Bytes::from_static(r#"{"type":"pong"}"#))
                    .await
            }
        }
    }

    async fn subscribe(&mut self, topic: &str, since: Option<u64>, epoch: Option<&str>) -> Step {
        if !valid_topic(topic) {
            return self.send(frames::error("bad_topic", topic)).await;
        }
        if !self
            .identity
            .topics
            .iter()
            .any(|p| pattern_matches(p, topic))
        {
            return self
                .send(frames::error(
                    "forbidden",
                    &format!("the token does not allow subscribing to {topic}"),
                ))
                .await;
        }
        let stream = topic_stream(topic);
        self.follow(&stream).await;
        let info = self.info(&stream).await?;
        self.send(frames::subscribed(topic, &info.epoch, info.head))
            .await?;
        self.sync(&stream, since, epoch, &info).await
    }

    /// A client's message goes the way a business message does: onto the
    /// ingest topic, with the sender as `from`. `published` confirms once the
    /// broker has it durably; the collector then stores and routes it.
    async fn publish(
        &mut self,
        to: serde_json::Value,
        payload: serde_json::Value,
        key: String,
    ) -> Step {
        let now = Instant::now();
        let refill = now.duration_since(self.publish_refilled).as_secs_f64() * PUBLISH_PER_SEC;
        self.publish_tokens = (self.publish_tokens + refill).min(PUBLISH_BURST);
        self.publish_refilled = now;
        if self.publish_tokens < 1.0 {
            return self
                .send(frames::error(
                    "throttled",
                    &format!("publishing too fast; `{key}` was not sent"),
                ))
                .await;
        }
        self.publish_tokens -= 1.0;

        let allowed = match (&to["topic"], &to["users"], &to["all"]) {
            (
                serde_json::Value::String(topic),
                serde_json::Value::Null,
                serde_json::Value::Null,
            ) => self
                .identity
                .publish
                .iter()
                .any(|p| pattern_matches(p, topic)),
            (serde_json::Value::Null, serde_json::Value::Array(_), serde_json::Value::Null) => {
                self.identity.direct
            }
            _ => false,
        };
        if !allowed {
            return self
                .send(frames::error(
                    "forbidden",
                    &format!("the token does not allow publishing to {to}; `{key}` was not sent"),
                ))
                .await;
        }
        let id = uuid::Uuid::now_v7().to_string();
        let user = &self.identity.user_id;
        // The client's key is scoped to its user, so two users' keys never
        // collide, and a retried publish is stored once.
        let record = serde_json::json!({
            "to": to,
            "payload": payload,
            "key": format!("client:{user}:{key}"),
            "from": user,
            "id": id,
        })
        .to_string();
        if let Err(e) = Submission::parse(record.as_bytes(), &self.node.limits) {
            return self
                .send(frames::error(
                    "bad_message",
                    &format!("{e}; `{key}` was not sent"),
                ))
                .await;
        }
        let outgoing = OutgoingRecord {
            topic: self.node.ingest_topic.clone(),
            key: user.clone(),
            value: record.into_bytes().into(),
        };
        match self.node.log.publish(vec![outgoing]).await.pop() {
            Some(Ok(())) => self.send(frames::published(&key, &id)).await,
            _ => {
                self.send(frames::error(
                    "unavailable",
                    &format!("the broker did not take `{key}`; send it again"),
                ))
                .await
            }
        }
    }

    async fn keepalive(&mut self) -> Step {
        if self.last_heard.elapsed() > IDLE_AFTER {
            return Err(Ending::Close(close::IDLE, "idle"));
        }
        self.socket
            .send(Message::Ping(bytes::Bytes::new()))
            .await
            .map_err(|_| Ending::Gone)
    }

    async fn send(&mut self, frame: Utf8Bytes) -> Step {
        self.socket
            .send(Message::Text(frame))
            .await
            .map_err(|_| Ending::Gone)
    }
}
