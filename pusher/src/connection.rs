//! One WebSocket connection, from welcome to close.
//!
//! A connection follows several streams: its user's own (`user:<id>`, named
//! `user` to the client), `all`, and the topics it subscribes to. For each it
//! keeps a cursor, moved by the rule in [`crate::cursor`]. This module does
//! the I/O around that rule: one loop over the live queue, the socket, the
//! timers and the node's shutdown, and the store reads that replay and fill.

use crate::Node;
use crate::auth::{AuthError, Identity};
use crate::bucket::TokenBucket;
use crate::cursor::{self, Page, Placement, Verdict};
use crate::frames::{self, ClientFrame, ServerFrame, USER_STREAM, client_stream};
use crate::hub::{ConnSlot, LiveEvent, Presence};
use crate::publish;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use herald_common::envelope::{
    ALL_STREAM, pattern_matches, topic_stream, user_stream, valid_topic,
};
use herald_common::retry::Policy;
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
    /// The node is shutting down: reconnect (to any node) and resume.
    pub const SERVICE_RESTART: u16 = 1012;
    /// The connection's send queue overflowed: reconnect and resume.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// The store could not be read to replay or fill a gap: reconnect and resume.
    pub const STORE_UNAVAILABLE: u16 = 4002;
    /// The client sent nothing (not even a pong) for too long.
    pub const IDLE: u16 = 4003;
    /// The token expired without a `refresh`: get a new one and reconnect.
    pub const TOKEN_EXPIRED: u16 = 4004;
    /// A `refresh` carried a token the server refused.
    pub const REFRESH_REFUSED: u16 = 4006;
}

/// Entries read from the store per replay round trip.
const PAGE: usize = 500;
/// How often the server pings, and how long silence may last.
const PING_EVERY: Duration = Duration::from_secs(25);
const IDLE_AFTER: Duration = Duration::from_secs(75);
/// How long a connection waits for a seq that is not readable yet (a lagging
/// read, or a hole that may still fill): 8 more reads of the store, 50 ms
/// apart at first, doubling to 250 ms, jittered (about 2 to 3 s in all),
/// before it reports the hole or gives up.
const GAP_WAIT: Policy = Policy::bounded(9)
    .starting_at(Duration::from_millis(50))
    .capped_at(Duration::from_millis(250));
/// Longest the server tries to send its close frame: a client that does not
/// take it gets none.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why the connection ends.
enum Ending {
    /// The peer closed or vanished: nothing more can be said.
    Gone,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
}

/// A write to the socket that did not complete in time: the client stopped
/// reading (or its network did).
const STALLED: Ending = Ending::Close(close::SLOW_CONSUMER, "writes stalled; resume to catch up");

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
    publishes: TokenBucket,
    /// When the token in force expires; a `refresh` moves it.
    token_expiry: Instant,
}

/// The instant a token expiring at `expires_at` (unix seconds) expires.
fn expiry_instant(expires_at: i64) -> Instant {
    let remaining_ms = expires_at
        .saturating_mul(1000)
        .saturating_sub(herald_common::time::now_ms())
        .max(0);
    let now = Instant::now();
    // A token good for centuries still gets a deadline Instant can hold.
    now.checked_add(Duration::from_millis(remaining_ms as u64))
        .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400))
}

pub async fn serve(socket: WebSocket, node: Arc<Node>, identity: Identity, start: Start) {
    let (queue, incoming) = mpsc::channel::<Arc<LiveEvent>>(node.config.send_queue);
    let token_expiry = expiry_instant(identity.expires_at);
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
        token_expiry,
        publishes: TokenBucket::new(publish::BURST, publish::PER_SEC, std::time::Instant::now()),
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
        // Bounded like every write: a client that stopped reading must not
        // keep this task (and its socket) for ever.
        let grace = CLOSE_GRACE.min(node.config.write_timeout());
        let _ = tokio::time::timeout(grace, conn.socket.send(Message::Close(Some(frame)))).await;
    }
}

impl Conn {
    /// The connection's life: open, then one event at a time from whichever
    /// source is ready (the live queue, the socket, the ping timer, the
    /// token's expiry, the node's shutdown) until one of them ends it.
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
        let mut shutdown = self.node.shutdown.subscribe();
        let expiry = tokio::time::sleep_until(self.token_expiry);
        tokio::pin!(expiry);
        loop {
            let step = tokio::select! {
                event = self.incoming.recv() => match event {
                    Some(event) => self.live(&event).await,
                    None => Err(Ending::Gone),
                },
                message = self.socket.recv() => self.inbound(message).await,
                _ = ping.tick() => self.keepalive().await,
                () = &mut expiry => Err(Ending::Close(close::TOKEN_EXPIRED, "token expired")),
                // (The guard `wait_for` returns is dropped at once: it is not Send.)
                () = async { drop(shutdown.wait_for(|closing| *closing).await) } => {
                    Err(Ending::Close(close::SERVICE_RESTART, "node shutting down"))
                }
            };
            if let Err(ending) = step {
                return ending;
            }
            if expiry.deadline() != self.token_expiry {
                expiry.as_mut().reset(self.token_expiry); // refreshed
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
        let welcome = ServerFrame::Welcome {
            user: &self.identity.user_id,
            node: &self.node.config.node_id,
            epochs: BTreeMap::from([
                (USER_STREAM, user.epoch.as_str()),
                (ALL_STREAM, all.epoch.as_str()),
            ]),
            expires_at: self.identity.expires_at,
        }
        .text();
        self.send(welcome).await?;
        // A new connection's `all` starts at the present; `resume` replays it.
        self.sync(ALL_STREAM, None, None, &all).await?;
        self.sync(&user_stream, start.since, start.epoch.as_deref(), &user)
            .await
    }

    /// Follows `stream` in the hub (and, for the node's first follower, in
    /// the route registry) with its cursor at "everything" until `sync`
    /// places it: nothing is queued for it meanwhile.
    async fn follow(&mut self, stream: &str) {
        let cursor = self
            .cursors
            .entry(stream.to_string())
            .or_insert_with(|| Arc::new(AtomicU64::new(u64::MAX)))
            .clone();
        let presence = self.node.hub.follow(stream, &self.slot, cursor);
        if presence == Presence::Changed && stream != ALL_STREAM {
            self.node.registrar.arrived(stream).await;
        }
    }

    /// Stops following `stream`, here and (for the node's last follower) in
    /// the route registry.
    fn unfollow(&mut self, stream: &str) {
        if self.cursors.remove(stream).is_some()
            && self.node.hub.unfollow(stream, &self.slot) == Presence::Changed
        {
            self.node.registrar.left(stream);
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
        let placement = cursor::place(since.unwrap_or(default), epoch, info);
        if let Placement::Reset { from } = placement {
            let reset = ServerFrame::Reset {
                stream: client_stream(stream),
                from,
                epoch: &info.epoch,
            }
            .text();
            self.send(reset).await?;
        }
        self.move_cursor(stream, placement.cursor());
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
        let mut waits = GAP_WAIT.delays();
        loop {
            let Some(cursor) = self.cursor(stream) else {
                return Ok(()); // unsubscribed meanwhile
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
            match cursor::read_page(cursor, page.iter().map(|e| e.seq)) {
                Page::Empty if until.is_none() => return Ok(()),
                Page::Empty => {
                    // The live event proves later seqs exist; this one is not
                    // readable yet (a lagging read). Wait, never skip.
                    let Some(wait) = waits.next() else {
                        return Err(Ending::Close(close::STORE_UNAVAILABLE, "cannot fill gap"));
                    };
                    tokio::time::sleep(wait).await;
                }
                Page::HoleBefore { next_kept } => {
                    if let Some(wait) = waits.next() {
                        // It may be a lagging read: give it the same time.
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    // Later entries are kept and earlier ones are not: they
                    // expired (messages may carry different ttls). Say so,
                    // and go on from the next kept one.
                    let epoch = self.info(stream).await?.epoch;
                    let reset = ServerFrame::Reset {
                        stream: client_stream(stream),
                        from: next_kept,
                        epoch: &epoch,
                    }
                    .text();
                    self.send(reset).await?;
                    self.move_cursor(stream, next_kept - 1);
                    waits = GAP_WAIT.delays();
                }
                Page::Run { run, hole_after } => {
                    waits = GAP_WAIT.delays();
                    let name = client_stream(stream);
                    for event in &page[..run] {
                        self.send(frames::msg(event, name)).await?;
                        self.delivered(stream, event.seq);
                    }
                    // A hole inside the page is not the end of the stream:
                    // the next read starts at it, and finds it filled (a
                    // lagging read) or announces it (expired entries).
                    if until.is_none() && complete && !hole_after {
                        return Ok(());
                    }
                }
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
        match cursor::judge(cursor, event.seq) {
            Verdict::Repeat => return Ok(()),
            Verdict::Next => {}
            Verdict::Gap { until } => {
                Box::pin(self.fill(&event.stream, Some(until))).await?;
                // The fill may have ended elsewhere (a reset past this event).
                if self
                    .cursor(&event.stream)
                    .map(|c| cursor::judge(c, event.seq))
                    != Some(Verdict::Next)
                {
                    return Ok(());
                }
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
            Some(Ok(Message::Binary(_))) => self.refuse("bad_frame", "frames are JSON text").await,
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
            Err(e) => return self.refuse("bad_frame", &e.to_string()).await,
        };
        match frame {
            ClientFrame::Ack { stream, seq } => self.ack(&stream, seq).await,
            ClientFrame::Resume { streams, epochs } => self.resume(&streams, &epochs).await,
            ClientFrame::Subscribe {
                topic,
                since,
                epoch,
            } => self.subscribe(&topic, since, epoch.as_deref()).await,
            ClientFrame::Unsubscribe { topic } => {
                self.unfollow(&topic_stream(&topic));
                self.send(ServerFrame::Unsubscribed { topic: &topic }.text())
                    .await
            }
            ClientFrame::Publish { to, payload, key } => self.publish(&to, &payload, &key).await,
            ClientFrame::Ping => self.send(ServerFrame::Pong.text()).await,
            ClientFrame::Refresh { token } => self.refresh(&token).await,
        }
    }

    /// Replaces the connection's token, checked as the handshake checks one:
    /// its expiry and claims apply from now on. Another user's token, or a
    /// bad one, ends the connection: the client's tokens are in doubt.
    async fn refresh(&mut self, token: &str) -> Step {
        match self.node.auth.verify(token).await {
            Ok(identity) if identity.user_id == self.identity.user_id => {
                self.token_expiry = expiry_instant(identity.expires_at);
                let expires_at = identity.expires_at;
                self.identity = identity;
                self.send(ServerFrame::Refreshed { expires_at }.text())
                    .await
            }
            Ok(_) => Err(Ending::Close(
                close::REFRESH_REFUSED,
                "refresh refused: token of another user",
            )),
            Err(AuthError::Rejected(reason)) => {
                tracing::debug!(user = %self.identity.user_id, reason = %reason, "refresh refused");
                Err(Ending::Close(
                    close::REFRESH_REFUSED,
                    "refresh refused: invalid token",
                ))
            }
            // Its token may well be good: the connection keeps the current
            // one, and the client may try again.
            Err(AuthError::Unavailable(e)) => {
                tracing::warn!(error = %e, "cannot check a refreshed token");
                self.refuse("unavailable", "cannot check the token now; send it again")
                    .await
            }
        }
    }

    async fn ack(&mut self, stream: &str, seq: u64) -> Step {
        if stream != USER_STREAM {
            return self
                .refuse("unknown_stream", "only the user stream is acknowledged")
                .await;
        }
        // An ack cannot run ahead of what was delivered.
        let acked = seq.min(self.cursor(&self.user_stream).unwrap_or(0));
        if acked > 0 {
            self.node.progress.acked(&self.user_stream, acked);
        }
        Ok(())
    }

    async fn resume(
        &mut self,
        streams: &BTreeMap<String, u64>,
        epochs: &BTreeMap<String, String>,
    ) -> Step {
        let mut targets = Vec::with_capacity(streams.len());
        for (name, since) in streams {
            match self.followed(name) {
                Some(storage) => targets.push((storage, name, *since)),
                None => return self.refuse("unknown_stream", name).await,
            }
        }
        for (storage, name, since) in targets {
            let info = self.info(&storage).await?;
            let epoch = epochs.get(name).map(String::as_str);
            self.sync(&storage, Some(since), epoch, &info).await?;
        }
        Ok(())
    }

    async fn subscribe(&mut self, topic: &str, since: Option<u64>, epoch: Option<&str>) -> Step {
        if !valid_topic(topic) {
            return self.refuse("bad_topic", topic).await;
        }
        if !self
            .identity
            .topics
            .iter()
            .any(|p| pattern_matches(p, topic))
        {
            let message = format!("the token does not allow subscribing to {topic}");
            return self.refuse("forbidden", &message).await;
        }
        let stream = topic_stream(topic);
        self.follow(&stream).await;
        let info = self.info(&stream).await?;
        let subscribed = ServerFrame::Subscribed {
            topic,
            stream: &stream,
            epoch: &info.epoch,
            head: info.head,
        }
        .text();
        self.send(subscribed).await?;
        self.sync(&stream, since, epoch, &info).await
    }

    /// A client's message, sent on as this user (see [`crate::publish`]);
    /// `published` confirms once the broker has it durably.
    async fn publish(
        &mut self,
        to: &serde_json::Value,
        payload: &serde_json::Value,
        key: &str,
    ) -> Step {
        // Every well-formed publish frame takes from the bucket, refused
        // ones too: refusals cost the server work as well.
        let sent = if !self.publishes.take(std::time::Instant::now()) {
            Err(publish::Refusal::Throttled)
        } else {
            match publish::prepare(
                &self.identity,
                to,
                payload,
                key,
                &self.node.limits,
                &self.node.ingest_topic,
            ) {
                Ok(prepared) => publish::send(self.node.log.as_ref(), prepared).await,
                Err(refusal) => Err(refusal),
            }
        };
        match sent {
            Ok(id) => {
                self.send(ServerFrame::Published { key, id: &id }.text())
                    .await
            }
            Err(refusal) => {
                let (code, message) = refusal.describe(key, to);
                self.refuse(code, &message).await
            }
        }
    }

    async fn keepalive(&mut self) -> Step {
        if self.last_heard.elapsed() > IDLE_AFTER {
            return Err(Ending::Close(close::IDLE, "idle"));
        }
        self.write(Message::Ping(bytes::Bytes::new())).await
    }

    /// Answers a client frame with an `error` frame; the connection stays.
    async fn refuse(&mut self, code: &str, message: &str) -> Step {
        self.send(ServerFrame::Error { code, message }.text()).await
    }

    async fn send(&mut self, frame: Utf8Bytes) -> Step {
        self.write(Message::Text(frame)).await
    }

    /// Writes one message. A write that makes no progress for the write
    /// timeout ends the connection: otherwise a client that stops reading
    /// would hold this task in `send` for ever, and neither the idle close
    /// nor the overflow close would ever run.
    async fn write(&mut self, message: Message) -> Step {
        let timeout = self.node.config.write_timeout();
        match tokio::time::timeout(timeout, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::Gone),
            Err(_) => Err(STALLED),
        }
    }
}
