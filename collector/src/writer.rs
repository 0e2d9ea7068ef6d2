//! Group commit: every accepted message goes through one writer task, which
//! appends whatever has queued up since its last write as one store
//! transaction. Under load that turns many small requests into few large
//! MongoDB commits; when idle a lone request is written at once.

use crate::publisher::PublisherHandle;
use herald_common::envelope::Submission;
use herald_common::store::{Appended, MessageStore, NewMessage, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most messages one transaction carries.
const MAX_MESSAGES_PER_WRITE: usize = 1000;

/// The store form of a validated submission.
pub fn new_message(s: Submission) -> NewMessage {
    NewMessage {
        streams: s.target.streams(),
        payload: s.payload,
        key: s.key,
        from: s.from,
        ttl_secs: s.ttl_secs,
        id: s.id,
    }
}

struct WriteRequest {
    messages: Vec<NewMessage>,
    reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
}

/// Submits messages to the writer task.
#[derive(Clone)]
pub struct WriterHandle {
    requests: mpsc::Sender<WriteRequest>,
}

impl WriterHandle {
    /// Appends `messages` (as one unit: all or none) and returns once they are
    /// durable, or why they are not.
    pub async fn append(&self, messages: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::unavailable("writer stopped");
        self.requests
            .send(WriteRequest { messages, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

pub fn spawn(
    store: Arc<dyn MessageStore>,
    publisher: PublisherHandle,
    crash_after_store: bool,
) -> WriterHandle {
    let (requests, mut queue) = mpsc::channel::<WriteRequest>(4096);
    tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            let mut pending = vec![first];
            let mut count = pending[0].messages.len();
            while count < MAX_MESSAGES_PER_WRITE {
                match queue.try_recv() {
                    Ok(next) => {
                        count += next.messages.len();
                        pending.push(next);
                    }
                    Err(_) => break,
                }
            }
            let sizes: Vec<usize> = pending.iter().map(|r| r.messages.len()).collect();
            let all: Vec<NewMessage> = pending
                .iter_mut()
                .flat_map(|r| std::mem::take(&mut r.messages))
                .collect();
            match store.append(all).await {
                Ok(results) => {
                    if crash_after_store {
                        tracing::error!("fault hook: crashing after store, before publish");
                        std::process::exit(137);
                    }
                    publisher.offer(
                        results
                            .iter()
                            .filter(|a| a.is_stored())
                            .map(|a| (a.id.clone(), a.events.clone()))
                            .collect(),
                    );
                    let mut results = results.into_iter();
                    for (request, size) in pending.into_iter().zip(sizes) {
                        let _ = request
                            .reply
                            .send(Ok(results.by_ref().take(size).collect()));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "append failed");
                    for request in pending {
                        let _ = request.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    });
    WriterHandle { requests }
}
