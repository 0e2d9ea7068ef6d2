//! Keeping the route registry in step with the hub.
//!
//! The registry learns which streams (users' inboxes, topics) this node
//! follows. All changes go through one task, in the order the hub made them,
//! so that a stream left and followed again within a moment ends registered,
//! never the reverse. A heartbeat refreshes the node's liveness and every
//! followed stream's route well before their leases lapse; after a registry
//! outage it is also what re-registers everything.

use crate::hub::Hub;
use herald_common::routes::RouteRegistry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Lease timings: routes and liveness last `ttl`; the heartbeat runs three
/// times per lease, so two missed beats still leave a live node routed.
#[derive(Clone, Copy, Debug)]
pub struct Leases {
    pub ttl: Duration,
}

impl Leases {
    pub fn beat(&self) -> Duration {
        self.ttl / 3
    }
}

enum Change {
    Arrived(String, oneshot::Sender<()>),
    Left(String),
}

#[derive(Clone)]
pub struct Registrar {
    changes: mpsc::UnboundedSender<Change>,
}

impl Registrar {
    /// Registers `user`'s route; returns once the registry has it (or could
    /// not take it: the heartbeat will retry).
    pub async fn arrived(&self, user: &str) {
        let (done, wait) = oneshot::channel();
        if self
            .changes
            .send(Change::Arrived(user.to_string(), done))
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    pub fn left(&self, user: &str) {
        let _ = self.changes.send(Change::Left(user.to_string()));
    }
}

pub fn spawn(
    registry: Arc<dyn RouteRegistry>,
    hub: Arc<Hub>,
    node: String,
    leases: Leases,
) -> Registrar {
    let (changes, mut incoming) = mpsc::unbounded_channel::<Change>();
    let writer_registry = registry.clone();
    let writer_node = node.clone();
    tokio::spawn(async move {
        while let Some(first) = incoming.recv().await {
            // Collapse what queued meanwhile to each user's latest change.
            let mut latest: HashMap<String, bool> = HashMap::new();
            let mut waiters = Vec::new();
            let mut apply = |change: Change| match change {
                Change::Arrived(user, done) => {
                    latest.insert(user, true);
                    waiters.push(done);
                }
                Change::Left(user) => {
                    latest.insert(user, false);
                }
            };
            apply(first);
            while let Ok(more) = incoming.try_recv() {
                apply(more);
            }
            let (arrived, left): (Vec<_>, Vec<_>) = latest.into_iter().partition(|(_, here)| *here);
            let arrived: Vec<String> = arrived.into_iter().map(|(u, _)| u).collect();
            let left: Vec<String> = left.into_iter().map(|(u, _)| u).collect();
            if let Err(e) = writer_registry
                .register(&writer_node, &arrived, leases.ttl)
                .await
            {
                tracing::warn!(error = %e, "cannot register routes; the heartbeat will retry");
            }
            if let Err(e) = writer_registry.unregister(&writer_node, &left).await {
                tracing::warn!(error = %e, "cannot remove routes; they lapse with their lease");
            }
            for done in waiters {
                let _ = done.send(());
            }
        }
    });
    tokio::spawn(heartbeat(registry, hub, node, leases));
    Registrar { changes }
}

/// Streams registered per pipelined call, to bound one call's size.
const HEARTBEAT_CHUNK: usize = 1000;

async fn heartbeat(registry: Arc<dyn RouteRegistry>, hub: Arc<Hub>, node: String, leases: Leases) {
    let mut tick = tokio::time::interval(leases.beat());
    loop {
        tick.tick().await;
        if let Err(e) = registry.node_heartbeat(&node, leases.ttl).await {
            tracing::warn!(error = %e, "node heartbeat failed");
            continue;
        }
        // `all` needs no route: broadcasts go to every live node.
        let streams: Vec<String> = hub
            .streams()
            .into_iter()
            .filter(|s| s != herald_common::envelope::ALL_STREAM)
            .collect();
        for chunk in streams.chunks(HEARTBEAT_CHUNK) {
            if let Err(e) = registry.register(&node, chunk, leases.ttl).await {
                tracing::warn!(error = %e, "route refresh failed");
                break;
            }
        }
    }
}
