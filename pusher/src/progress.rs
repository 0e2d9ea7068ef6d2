//! Delivered and acknowledged positions, gathered in memory and written to the
//! store in one batch per interval: a busy node makes one small write per
//! stream per second, not one per frame.

use herald_common::store::{MessageStore, StreamProgress};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Progress {
    pending: Mutex<HashMap<String, (u64, u64)>>,
}

impl Progress {
    pub fn delivered(&self, stream: &str, seq: u64) {
        self.raise(stream, |p| p.0 = p.0.max(seq));
    }

    pub fn acked(&self, stream: &str, seq: u64) {
        self.raise(stream, |p| p.1 = p.1.max(seq));
    }

    fn raise(&self, stream: &str, f: impl FnOnce(&mut (u64, u64))) {
        let mut pending = self.pending.lock().expect("progress lock");
        match pending.get_mut(stream) {
            Some(p) => f(p),
            None => {
                let mut p = (0, 0);
                f(&mut p);
                pending.insert(stream.to_string(), p);
            }
        }
    }

    fn take(&self) -> Vec<StreamProgress> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("progress lock"));
        pending
            .into_iter()
            .map(|(stream, (delivered, acked))| StreamProgress {
                stream,
                delivered: (delivered > 0).then_some(delivered),
                acked: (acked > 0).then_some(acked),
            })
            .collect()
    }

    /// Puts back what could not be written, so an outage delays it only.
    fn restore(&self, batch: Vec<StreamProgress>) {
        for p in batch {
            if let Some(d) = p.delivered {
                self.delivered(&p.stream, d);
            }
            if let Some(a) = p.acked {
                self.acked(&p.stream, a);
            }
        }
    }
}

pub fn spawn(progress: Arc<Progress>, store: Arc<dyn MessageStore>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let batch = progress.take();
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = store.record_progress(&batch).await {
                tracing::warn!(error = %e, "cannot record progress; will retry");
                progress.restore(batch);
            }
        }
    });
}
