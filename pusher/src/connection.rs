//! One WebSocket connection, from welcome to close.
//!
//! The connection keeps a cursor: the last seq of its user stream written to
//! the socket. Every event, whether replayed from the store or live from the
//! node topic, goes through one rule: a seq at or below the cursor is a
//! duplicate and is dropped; the next seq is written; a seq beyond the next is
//! a gap, filled from the store before it is written. That one rule is what
//! makes replay-then-live seamless, and what absorbs re-consumed topics,
//! retried dispatches and publishes that reach the log out of order.

use crate::Node;
use crate::auth::Identity;
use crate::frames::{self, ClientFrame, USER_STREAM};
use crate::hub::{ConnSlot, LiveEvent, Presence};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use herald_common::envelope::user_stream;
use herald_common::store::StreamInfo;
use std::collections::BTreeMap;
use std::sync::Arc;
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

/// Why the connection ends.
enum Ending {
    /// The peer closed or vanished: nothing more can be said.
    Gone,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
}

struct Conn {
    socket: WebSocket,
    incoming: mpsc::Receiver<Arc<LiveEvent>>,
    node: Arc<Node>,
    slot: Arc<ConnSlot>,
    user: String,
    stream: String,
    cursor: u64,
    last_heard: Instant,
}

pub async fn serve(socket: WebSocket, node: Arc<Node>, identity: Identity, start: Start) {
    let user = identity.user_id;
    let (queue, incoming) = mpsc::channel::<Arc<LiveEvent>>(node.config.send_queue);
    let (slot, presence) = node.hub.add(&user, queue);
    // The route is in the registry before anything is read from the store:
    // whatever is stored after that read is dispatched here live.
    if presence == Presence::Changed {
        node.registrar.arrived(&user).await;
    }
    let mut conn = Conn {
        socket,
        incoming,
        node: node.clone(),
        slot: slot.clone(),
        stream: user_stream(&user),
        user: user.clone(),
        cursor: 0,
        last_heard: Instant::now(),
    };
    let ending = conn.run(start).await;
    if node.hub.remove(&user, &slot) == Presence::Changed {
        node.registrar.left(&user);
    }
    if let Ending::Close(code, reason) = ending {
        tracing::debug!(%user, code, reason, "closing connection");
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = conn.socket.send(Message::Close(Some(frame))).await;
    }
}

impl Conn {
    async fn run(&mut self, start: Start) -> Ending {
        match self.open(start).await {
            Ok(()) => {}
            Err(ending) => return ending,
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

    async fn open(&mut self, start: Start) -> Result<(), Ending> {
        let info = self.info().await?;
        let epochs = BTreeMap::from([(USER_STREAM, info.epoch.as_str())]);
        self.send(frames::welcome(
            &self.user,
            &self.node.config.node_id,
            &epochs,
        ))
        .await?;
        self.sync(start.since, start.epoch.as_deref(), &info).await
    }

    async fn info(&mut self) -> Result<StreamInfo, Ending> {
        self.node
            .store
            .stream_info(&self.stream)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read stream info");
                Ending::Close(close::STORE_UNAVAILABLE, "store unavailable")
            })
    }

    /// Positions the cursor where the client asked (or at a `reset` when that
    /// position cannot be continued) and replays everything after it.
    async fn sync(
        &mut self,
        since: Option<u64>,
        epoch: Option<&str>,
        info: &StreamInfo,
    ) -> Result<(), Ending> {
        let wanted = since.unwrap_or(info.acked);
        let recreated = epoch.is_some_and(|e| e != info.epoch) || wanted > info.head;
        let expired = wanted + 1 < info.first;
        if recreated || expired {
            self.send(frames::reset(USER_STREAM, info.first, &info.epoch))
                .await?;
            self.move_cursor(info.first - 1);
        } else {
            self.move_cursor(wanted);
        }
        self.fill(None).await?;
        // Live events that piled up while replaying may have overflowed the
        // queue: that is catching up, not slowness. Everything dropped is in
        // the store, so forget the queue and read the store once more.
        while self.slot.clear_overflow() {
            while self.incoming.try_recv().is_ok() {}
            self.fill(None).await?;
        }
        Ok(())
    }

    /// Writes stored entries after the cursor: all of them (`until: None`) or
    /// up to `until`, waiting a bounded time for ones not readable yet.
    async fn fill(&mut self, until: Option<u64>) -> Result<(), Ending> {
        let mut waited = 0;
        loop {
            let limit = match until {
                Some(u) if u <= self.cursor => return Ok(()),
                Some(u) => PAGE.min((u - self.cursor) as usize),
                None => PAGE,
            };
            let page = self
                .node
                .store
                .read_stream(&self.stream, self.cursor, limit)
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
            if first.seq > self.cursor + 1 {
                if waited < GAP_RETRIES {
                    waited += 1;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(waited))).await;
                    continue;
                }
                // Later entries are kept and earlier ones are not: they
                // expired (messages may carry different ttls). Say so.
                let epoch = self.info().await?.epoch;
                self.send(frames::reset(USER_STREAM, first.seq, &epoch))
                    .await?;
                self.move_cursor(first.seq - 1);
            }
            waited = 0;
            for event in &page {
                if event.seq != self.cursor + 1 {
                    break;
                }
                self.send(frames::msg(event, USER_STREAM)).await?;
                self.delivered(event.seq);
            }
            if until.is_none() && complete {
                return Ok(());
            }
        }
    }

    async fn live(&mut self, event: &LiveEvent) -> Result<(), Ending> {
        if self.slot.overflowed() {
            return Err(Ending::Close(
                close::SLOW_CONSUMER,
                "send queue overflow; resume to catch up",
            ));
        }
        if event.seq <= self.cursor {
            return Ok(());
        }
        if event.seq > self.cursor + 1 {
            self.fill(Some(event.seq - 1)).await?;
            if event.seq <= self.cursor {
                return Ok(());
            }
        }
        self.send(event.frame.clone()).await?;
        self.delivered(event.seq);
        Ok(())
    }

    fn delivered(&mut self, seq: u64) {
        self.move_cursor(seq);
        self.node.progress.delivered(&self.stream, seq);
    }

    fn move_cursor(&mut self, seq: u64) {
        self.cursor = seq;
        self.slot.set_cursor(seq);
    }

    async fn inbound(
        &mut self,
        message: Option<Result<Message, axum::Error>>,
    ) -> Result<(), Ending> {
        self.last_heard = Instant::now();
        match message {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Err(Ending::Gone),
            Some(Ok(Message::Text(text))) => self.client_frame(&text).await,
            Some(Ok(Message::Binary(_))) => {
                self.send(frames::error("bad_frame", "frames are JSON text"))
                    .await
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
        }
    }

    async fn client_frame(&mut self, text: &str) -> Result<(), Ending> {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(e) => {
                return self.send(frames::error("bad_frame", &e.to_string())).await;
            }
        };
        match frame {
            ClientFrame::Ack { stream, seq } => {
                if stream != USER_STREAM {
                    return self.send(frames::error("unknown_stream", &stream)).await;
                }
                // An ack cannot run ahead of what was delivered.
                let acked = seq.min(self.cursor);
                if acked > 0 {
                    self.node.progress.acked(&self.stream, acked);
                }
                Ok(())
            }
            ClientFrame::Resume { streams, epochs } => {
                if let Some(unknown) = streams.keys().find(|s| *s != USER_STREAM) {
                    return self.send(frames::error("unknown_stream", unknown)).await;
                }
                if let Some(&since) = streams.get(USER_STREAM) {
                    let info = self.info().await?;
                    let epoch = epochs.get(USER_STREAM).map(String::as_str);
                    self.sync(Some(since), epoch, &info).await?;
                }
                Ok(())
            }
            ClientFrame::Ping => {
                self.send(Utf8Bytes::from_static(r#"{"type":"pong"}"#))
                    .await
            }
        }
    }

    async fn keepalive(&mut self) -> Result<(), Ending> {
        if self.last_heard.elapsed() > IDLE_AFTER {
            return Err(Ending::Close(close::IDLE, "idle"));
        }
        self.socket
            .send(Message::Ping(bytes::Bytes::new()))
            .await
            .map_err(|_| Ending::Gone)
    }

    async fn send(&mut self, frame: Utf8Bytes) -> Result<(), Ending> {
        self.socket
            .send(Message::Text(frame))
            .await
            .map_err(|_| Ending::Gone)
    }
}
