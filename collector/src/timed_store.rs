//! The message store with its appends timed: the store-append hop of a
//! message, measured around the store itself so that the group commit's
//! queueing is not counted in it.

use async_trait::async_trait;
use herald_common::envelope::Event;
use herald_common::metrics::Latency;
use herald_common::store::{
    Appended, MessageStatus, MessageStore, NewMessage, StoreError, StreamInfo, StreamProgress,
};
use std::sync::Arc;

pub struct TimedStore {
    pub inner: Arc<dyn MessageStore>,
    pub append: Latency,
}

#[async_trait]
impl MessageStore for TimedStore {
    async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<Appended>, StoreError> {
        self.append.time(self.inner.append(batch)).await
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        self.inner.mark_published(ids).await
    }

    async fn unpublished(
        &self,
        older_than_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Event>)>, StoreError> {
        self.inner.unpublished(older_than_ms, limit).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.read_stream(stream, after, limit).await
    }

    async fn stream_info(&self, stream: &str) -> Result<StreamInfo, StoreError> {
        self.inner.stream_info(stream).await
    }

    async fn record_progress(&self, progress: &[StreamProgress]) -> Result<(), StoreError> {
        self.inner.record_progress(progress).await
    }

    async fn message_status(&self, id: &str) -> Result<Option<MessageStatus>, StoreError> {
        self.inner.message_status(id).await
    }
}
