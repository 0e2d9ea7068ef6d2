//! The WebSocket client side that the generator and every target's
//! protocol share: connecting, reading text frames, sending, closing.

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Small client buffers: the generator holds as many connections as the
/// server, within the same file and memory limits.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// The WebSocket handshake with `url`, nothing after it.
pub async fn connect(url: &str) -> Result<Ws> {
    let (ws, _) = connect_async_with_config(url, Some(config()), true)
        .await
        .context("handshake")?;
    Ok(ws)
}

/// The next text frame (pings are answered by tungstenite while reading).
pub async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            Some(Ok(Message::Binary(_))) => bail!("unexpected binary frame"),
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: String) -> Result<()> {
    ws.send(Message::Text(text.into())).await?;
    Ok(())
}

/// Closes `ws` and reads until the server's close (at most 5 s of silence),
/// so the server has finished with the connection when this returns.
pub async fn close(mut ws: Ws) -> Result<()> {
    ws.close(None).await?;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
    Ok(())
}
