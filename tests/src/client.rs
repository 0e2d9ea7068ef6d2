//! A WebSocket client as an application would write one, with helpers that
//! read frames in order and fail loudly on anything unexpected.

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream, connect_async, connect_async_tls_with_config,
};

use crate::PATIENCE;

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The welcome frame.
    pub welcome: Value,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16),
    NoCode,
}

impl WsClient {
    /// Connects and reads the welcome frame.
    pub async fn connect(url: &str) -> Result<Self> {
        let (socket, _) = connect_async(url)
            .await
            .with_context(|| format!("connecting {url}"))?;
        Self::greeted(socket).await
    }

    /// Connects to a `wss://` URL trusting what `tls` trusts, and reads the
    /// welcome frame.
    pub async fn connect_tls(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self> {
        let (socket, _) =
            connect_async_tls_with_config(url, None, false, Some(Connector::Rustls(tls)))
                .await
                .with_context(|| format!("connecting {url}"))?;
        Self::greeted(socket).await
    }

    async fn greeted(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Result<Self> {
        let mut client = Self {
            socket,
            welcome: Value::Null,
        };
        let welcome = client.next_frame().await?;
        if welcome["type"] != "welcome" {
            bail!("first frame is not welcome: {welcome}");
        }
        client.welcome = welcome;
        Ok(client)
    }

    /// The HTTP status with which a handshake to `url` is refused.
    pub async fn refused_status(url: &str) -> Result<u16> {
        match connect_async(url).await {
            Ok(_) => bail!("handshake to {url} was accepted"),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Ok(response.status().as_u16())
            }
            Err(e) => bail!("handshake failed without an HTTP answer: {e}"),
        }
    }

    /// The next text frame, parsed.
    pub async fn next_frame(&mut self) -> Result<Value> {
        // One deadline for the whole wait: the server's pings (every 25 s)
        // must not restart it, or a frame that never comes hangs the test.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .context("no frame in time")?
                .context("connection ended")??;
            match message {
                Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(frame) => bail!("connection closed: {frame:?}"),
                other => bail!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next frame, which must be a `msg`.
    pub async fn next_msg(&mut self) -> Result<Value> {
        let frame = self.next_frame().await?;
        if frame["type"] != "msg" {
            bail!("expected a msg frame, got {frame}");
        }
        Ok(frame)
    }

    /// Reads `n` msg frames.
    pub async fn msgs(&mut self, n: usize) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_msg().await?);
        }
        Ok(out)
    }

    /// Sends `text` as a text frame, whatever it holds.
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.socket.send(Message::Text(text.into())).await?;
        Ok(())
    }

    pub async fn send_json(&mut self, frame: Value) -> Result<()> {
        self.socket
            .send(Message::Text(frame.to_string().into()))
            .await?;
        Ok(())
    }

    /// Waits for the server to close the connection, reading (and discarding)
    /// frames until it does; returns the close code.
    pub async fn closed(&mut self) -> Result<Closed> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .context("not closed in time")?;
            match message {
                None => return Ok(Closed::NoCode),
                Some(Err(_)) => return Ok(Closed::NoCode),
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ok(Closed::Code(frame.code.into()));
                }
                Some(Ok(Message::Close(None))) => return Ok(Closed::NoCode),
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn close(mut self) -> Result<()> {
        self.socket.close(None).await?;
        // Drain until the server's close arrives, so the server has seen ours.
        while let Some(Ok(_)) = self.socket.next().await {}
        Ok(())
    }
}
