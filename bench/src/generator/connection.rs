//! One connection's life: open, hold, subscribe, count the topic's messages.

use super::Phase;
use super::shared::Shared;
use crate::target::Protocol;
use crate::ws::{self, Ws};
use anyhow::{Result, bail};
use std::sync::Arc;
use tokio::sync::watch;

/// Runs connection `i` until it fails (the failure goes to `shared`) or
/// its task is aborted.
pub(super) async fn run<P: Protocol>(
    protocol: Arc<P>,
    i: usize,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) {
    let life = async {
        let permit = shared.gate.acquire().await?;
        let mut ws = open(&*protocol, i).await?;
        drop(permit);
        shared.opened();
        hold(&*protocol, &mut ws, &mut phase).await?;
        let permit = shared.gate.acquire().await?;
        let last = protocol.subscribe(&mut ws).await?;
        drop(permit);
        shared.subscribed();
        receive(&*protocol, &mut ws, &shared, last).await
    };
    if let Err(e) = life.await {
        shared.fail(e);
    }
}

/// Opens connection `i`: the WebSocket handshake, then the protocol's
/// greeting.
pub async fn open<P: Protocol>(protocol: &P, i: usize) -> Result<Ws> {
    let mut ws = ws::connect(&protocol.url(i)).await?;
    protocol.greet(&mut ws).await?;
    Ok(ws)
}

/// Idles until told to subscribe, still reading, so that the server's
/// pings are answered.
async fn hold<P: Protocol>(
    protocol: &P,
    ws: &mut Ws,
    phase: &mut watch::Receiver<Phase>,
) -> Result<()> {
    loop {
        let text = tokio::select! {
            changed = phase.wait_for(|p| *p >= Phase::Subscribe) => {
                changed?;
                return Ok(());
            }
            text = ws::next_text(ws) => text?,
        };
        match protocol.answer(&text) {
            Some(answer) => ws::send_text(ws, answer).await?,
            None => bail!("unexpected frame while idle: {text}"),
        }
    }
}

/// Counts the topic's messages on `ws` for ever, checking their order.
/// `last` is the topic's position before the first one.
async fn receive<P: Protocol>(
    protocol: &P,
    ws: &mut Ws,
    shared: &Shared,
    mut last: u64,
) -> Result<()> {
    loop {
        let text = ws::next_text(ws).await?;
        if let Some(answer) = protocol.answer(&text) {
            ws::send_text(ws, answer).await?;
            continue;
        }
        let position = protocol.position(&text)?;
        shared.arrived(position == last + 1);
        last = position;
    }
}
