//! What only [`SqliteStore`] can show: its data survives reopening its
//! directory, and expiry is exact (every read hides an expired message before
//! the purge deletes it). The contract it shares with the MongoDB store is
//! tested in `contract/tests/store.rs`.

use herald_common::store::{Appended, MessageStore, NewMessage, StreamProgress};
use herald_embedded::SqliteStore;
use serde_json::value::RawValue;
use std::time::Duration;

/// A message to `user:a`, kept for `ttl_secs`, whose payload says `n`.
fn to_a(key: Option<&str>, n: u32, ttl_secs: u64) -> NewMessage {
    NewMessage {
        id: None,
        streams: vec!["user:a".to_string()],
        payload: RawValue::from_string(format!(r#"{{"n": {n}}}"#)).unwrap(),
        key: key.map(str::to_string),
        from: None,
        ttl_secs,
    }
}

/// The seq a message to `user:a` alone took.
fn seq(appended: &Appended) -> u64 {
    assert_eq!(appended.events.len(), 1, "{appended:?}");
    appended.events[0].seq
}

const HOUR: u64 = 3600;

#[tokio::test]
async fn sqlite_keeps_data_and_epoch_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (epoch, id) = {
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let appended = store
            .append(vec![to_a(Some("k"), 1, HOUR), to_a(None, 2, HOUR)])
            .await
            .unwrap();
        store
            .record_progress(&[StreamProgress {
                stream: "user:a".into(),
                delivered: Some(2),
                acked: Some(1),
            }])
            .await
            .unwrap();
        (
            store.stream_info("user:a").await.unwrap().epoch,
            appended[0].id.clone(),
        )
    };
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let info = store.stream_info("user:a").await.unwrap();
    assert_eq!(info.epoch, epoch);
    assert_eq!((info.head, info.first, info.acked), (2, 1, 1));
    assert_eq!(store.read_stream("user:a", 0, 10).await.unwrap().len(), 2);
    let again = store.append(vec![to_a(Some("k"), 3, HOUR)]).await.unwrap();
    assert!(again[0].is_duplicate());
    assert_eq!(again[0].id, id);
    let next = store.append(vec![to_a(None, 4, HOUR)]).await.unwrap();
    assert_eq!(seq(&next[0]), 3);
    assert!(store.path().starts_with(dir.path()));
}

#[tokio::test]
async fn sqlite_hides_then_purges_expired_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let short = to_a(Some("k"), 1, 1);
    let appended = store
        .append(vec![short, to_a(None, 2, HOUR)])
        .await
        .unwrap();
    assert_eq!(store.stream_info("user:a").await.unwrap().first, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Expired but not yet purged: invisible all the same.
    let info = store.stream_info("user:a").await.unwrap();
    assert_eq!((info.head, info.first), (2, 2));
    let read = store.read_stream("user:a", 0, 10).await.unwrap();
    assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    assert!(
        store
            .message_status(&appended[0].id)
            .await
            .unwrap()
            .is_none()
    );
    let pending = store.unpublished(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0, appended[1].id);
    // Its key expired with it: the same key is a new message now.
    let again = store.append(vec![to_a(Some("k"), 3, HOUR)]).await.unwrap();
    assert!(again[0].is_stored());
    assert_eq!(seq(&again[0]), 3);

    // One entry, one message, one delivery (its key row was taken over by
    // the new message above).
    assert_eq!(store.purge_expired().await.unwrap(), 3);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    let info = store.stream_info("user:a").await.unwrap();
    assert_eq!((info.head, info.first), (3, 2));
}

#[tokio::test]
async fn sqlite_purges_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with_purge(dir.path(), Duration::from_millis(100))
        .await
        .unwrap();
    let short = to_a(None, 1, 1);
    store.append(vec![short]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.purge_expired().await.unwrap(), 0, "already purged");
    let info = store.stream_info("user:a").await.unwrap();
    assert_eq!((info.head, info.first), (1, 2));
}
