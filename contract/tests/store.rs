//! The [`MessageStore`] contract, asserted alike on [`SqliteStore`] (in a
//! temporary directory) and on [`MongoStore`] (in a fresh database of the
//! MongoDB-protocol server at [`MONGO_URI`]), so the embedded store is held to
//! the behaviour of the one it stands in for. What only SQLite can show
//! (reopening a directory, expiry that is exact rather than up to the TTL
//! monitor's minute) is tested in `embedded/tests/sqlite_store.rs`.

use futures::FutureExt;
use herald_cluster::MongoStore;
use herald_common::store::{
    Appended, DeliveryStatus, MessageStore, NewMessage, Outcome, StreamProgress,
};
use herald_contract::{MONGO_URI, contract, namespace};
use herald_embedded::SqliteStore;
use serde_json::value::RawValue;
use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// A message to `streams` whose payload names it.
fn msg(streams: &[&str], key: Option<&str>, n: u32) -> NewMessage {
    NewMessage {
        id: None,
        streams: streams.iter().map(|s| s.to_string()).collect(),
        payload: RawValue::from_string(format!(r#"{{"n": {n}}}"#)).unwrap(),
        key: key.map(str::to_string),
        from: Some("sender".to_string()),
        ttl_secs: 3600,
    }
}

/// The seq `appended` took in `stream`.
fn seq_in(appended: &Appended, stream: &str) -> u64 {
    appended
        .events
        .iter()
        .find(|e| e.stream == stream)
        .unwrap_or_else(|| panic!("no event in {stream}: {appended:?}"))
        .seq
}

/// Runs `case` on a store in a fresh temporary directory.
async fn on_sqlite<F, Fut>(case: F, _name: &str)
where
    F: FnOnce(Arc<dyn MessageStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    case(Arc::new(store)).await;
}

/// Runs `case` on the MongoDB store in a database of its own, dropped
/// afterwards whether the case passed or not.
async fn on_mongo<F, Fut>(case: F, name: &str)
where
    F: FnOnce(Arc<dyn MessageStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    // MongoDB database names are at most 63 bytes and take no `-`.
    let database: String = namespace(name).replace('-', "_").chars().take(63).collect();
    let store = MongoStore::connect(MONGO_URI, &database)
        .await
        .expect("the MongoDB-protocol server is up");
    let outcome = AssertUnwindSafe(case(Arc::new(store))).catch_unwind().await;
    let client = mongodb::Client::with_uri_str(MONGO_URI).await.unwrap();
    let _ = client.database(&database).drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

contract!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] sqlite => super::on_sqlite,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] mongo => super::on_mongo;
    [
        seqs_follow_batch_order_across_appends,
        a_message_takes_one_seq_in_each_stream,
        idempotency_keys_within_and_across_batches,
        read_stream_pages_in_seq_order,
        stream_info_fixes_epoch_and_tracks_positions,
        progress_only_rises_and_shows_in_status,
        unpublished_until_marked,
        concurrent_appends_neither_duplicate_nor_skip,
        a_reused_id_is_a_per_message_outcome,
        an_id_reused_within_a_batch_follows_the_same_rule,
    ]
);

async fn seqs_follow_batch_order_across_appends(store: Arc<dyn MessageStore>) {
    let first = store
        .append(vec![
            msg(&["user:a"], None, 1),
            msg(&["user:b"], None, 2),
            msg(&["user:a"], None, 3),
        ])
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(seq_in(&first[0], "user:a"), 1);
    assert_eq!(seq_in(&first[1], "user:b"), 1);
    assert_eq!(seq_in(&first[2], "user:a"), 2);
    let second = store.append(vec![msg(&["user:a"], None, 4)]).await.unwrap();
    assert_eq!(seq_in(&second[0], "user:a"), 3);
    for a in first.iter().chain(&second) {
        assert!(a.is_stored());
        assert_eq!(a.recipients, 1);
        assert_eq!(uuid::Uuid::parse_str(&a.id).unwrap().get_version_num(), 7);
    }
    let ids: BTreeSet<&str> = first.iter().chain(&second).map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "ids are distinct");

    let read = store.read_stream("user:a", 0, 10).await.unwrap();
    assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        read.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [
            first[0].id.as_str(),
            first[2].id.as_str(),
            second[0].id.as_str()
        ]
    );
    assert_eq!(
        read[1].payload.get(),
        r#"{"n": 3}"#,
        "payload text kept as sent"
    );
    assert_eq!(read[1].from.as_deref(), Some("sender"));
    assert_eq!(read[1].ts, first[2].events[0].ts);
}

async fn a_message_takes_one_seq_in_each_stream(store: Arc<dyn MessageStore>) {
    store.append(vec![msg(&["user:b"], None, 0)]).await.unwrap();
    let appended = store
        .append(vec![msg(&["user:a", "user:b"], None, 1)])
        .await
        .unwrap();
    let a = &appended[0];
    assert_eq!(a.recipients, 2);
    assert_eq!(a.events.len(), 2);
    assert_eq!(seq_in(a, "user:a"), 1);
    assert_eq!(seq_in(a, "user:b"), 2);
    assert!(a.events.iter().all(|e| e.id == a.id));
    let in_a = store.read_stream("user:a", 0, 10).await.unwrap();
    let in_b = store.read_stream("user:b", 1, 10).await.unwrap();
    assert_eq!(in_a[0].id, a.id);
    assert_eq!(in_b[0].id, a.id);
    assert_eq!(in_b[0].seq, 2);
}

async fn idempotency_keys_within_and_across_batches(store: Arc<dyn MessageStore>) {
    let results = store
        .append(vec![
            msg(&["user:a", "user:b"], Some("k1"), 1),
            msg(&["user:a"], Some("k1"), 2),
            msg(&["user:a"], None, 3),
            msg(&["user:a"], Some("k2"), 4),
        ])
        .await
        .unwrap();
    assert!(results[0].is_stored());
    assert!(results[1].is_duplicate(), "repeated within the batch");
    assert_eq!(results[1].id, results[0].id);
    assert_eq!(results[1].recipients, 2, "the first message's recipients");
    assert!(results[1].events.is_empty());
    assert_eq!(
        seq_in(&results[2], "user:a"),
        2,
        "the duplicate took no seq"
    );
    assert_eq!(seq_in(&results[3], "user:a"), 3);

    let again = store
        .append(vec![
            msg(&["user:c"], Some("k2"), 5),
            msg(&["user:c"], Some("k3"), 6),
        ])
        .await
        .unwrap();
    assert!(again[0].is_duplicate(), "repeated across calls");
    assert_eq!(again[0].id, results[3].id);
    assert_eq!(again[0].recipients, 1);
    assert!(again[0].events.is_empty());
    assert!(again[1].is_stored());
    assert_eq!(
        seq_in(&again[1], "user:c"),
        1,
        "the duplicate took no seq in c"
    );

    let only_duplicates = store
        .append(vec![msg(&["user:d"], Some("k1"), 7)])
        .await
        .unwrap();
    assert!(only_duplicates[0].is_duplicate());
    assert_eq!(store.stream_info("user:d").await.unwrap().head, 0);
    assert_eq!(store.read_stream("user:a", 0, 10).await.unwrap().len(), 3);
}

async fn read_stream_pages_in_seq_order(store: Arc<dyn MessageStore>) {
    let batch = (1..=5).map(|n| msg(&["user:a"], None, n)).collect();
    store.append(batch).await.unwrap();
    let seqs = |events: Vec<herald_common::envelope::Event>| {
        events.into_iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(
        seqs(store.read_stream("user:a", 0, 2).await.unwrap()),
        [1, 2]
    );
    assert_eq!(
        seqs(store.read_stream("user:a", 2, 2).await.unwrap()),
        [3, 4]
    );
    assert_eq!(seqs(store.read_stream("user:a", 4, 10).await.unwrap()), [5]);
    assert!(store.read_stream("user:a", 5, 10).await.unwrap().is_empty());
    assert!(
        store
            .read_stream("user:none", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A limit of 0 is no limit (MongoDB's meaning, kept).
    assert_eq!(
        seqs(store.read_stream("user:a", 1, 0).await.unwrap()),
        [2, 3, 4, 5]
    );
}

async fn stream_info_fixes_epoch_and_tracks_positions(store: Arc<dyn MessageStore>) {
    let fresh = store.stream_info("user:new").await.unwrap();
    assert_eq!((fresh.head, fresh.first, fresh.acked), (0, 1, 0));
    assert_eq!(fresh.epoch.len(), 8);
    assert!(fresh.epoch.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        store.stream_info("user:new").await.unwrap(),
        fresh,
        "stable"
    );

    store
        .append(vec![
            msg(&["user:new"], None, 1),
            msg(&["user:new"], None, 2),
        ])
        .await
        .unwrap();
    let after = store.stream_info("user:new").await.unwrap();
    assert_eq!(after.epoch, fresh.epoch, "appending keeps the epoch");
    assert_eq!((after.head, after.first, after.acked), (2, 1, 0));

    // A stream created by an append has its epoch fixed there.
    store
        .append(vec![msg(&["user:appended"], None, 1)])
        .await
        .unwrap();
    let one = store.stream_info("user:appended").await.unwrap();
    let two = store.stream_info("user:appended").await.unwrap();
    assert_eq!(one, two);
    assert_eq!((one.head, one.first), (1, 1));

    store
        .record_progress(&[StreamProgress {
            stream: "user:new".into(),
            delivered: Some(2),
            acked: Some(1),
        }])
        .await
        .unwrap();
    assert_eq!(store.stream_info("user:new").await.unwrap().acked, 1);
}

async fn progress_only_rises_and_shows_in_status(store: Arc<dyn MessageStore>) {
    let appended = store
        .append(vec![
            msg(&["user:a"], None, 1),
            msg(&["user:a"], None, 2),
            msg(&["user:a", "user:b"], None, 3),
        ])
        .await
        .unwrap();
    let progress = |delivered, acked| StreamProgress {
        stream: "user:a".into(),
        delivered,
        acked,
    };
    store
        .record_progress(&[progress(Some(2), Some(1))])
        .await
        .unwrap();
    store
        .record_progress(&[progress(Some(1), Some(0))])
        .await
        .unwrap();
    store
        .record_progress(&[progress(None, None)])
        .await
        .unwrap();
    // Progress of a stream the store never saw changes nothing.
    store
        .record_progress(&[StreamProgress {
            stream: "user:ghost".into(),
            delivered: Some(5),
            acked: Some(5),
        }])
        .await
        .unwrap();
    assert_eq!(
        store.stream_info("user:a").await.unwrap().acked,
        1,
        "never lowered"
    );

    let status = |i: usize| {
        let store = store.clone();
        let id = appended[i].id.clone();
        async move {
            store
                .message_status(&id)
                .await
                .unwrap()
                .expect("message known")
        }
    };
    let first = status(0).await;
    assert_eq!(first.id, appended[0].id);
    assert_eq!(first.from.as_deref(), Some("sender"));
    assert_eq!(first.payload.get(), r#"{"n": 1}"#);
    assert_eq!(first.ts, appended[0].events[0].ts);
    assert!(!first.published);
    assert_eq!(
        first.recipients,
        [DeliveryStatus {
            stream: "user:a".into(),
            seq: 1,
            delivered: true,
            acked: true
        }]
    );
    let second = status(1).await;
    assert_eq!(
        (second.recipients[0].delivered, second.recipients[0].acked),
        (true, false)
    );

    store
        .record_progress(&[
            progress(Some(3), None),
            StreamProgress {
                stream: "user:b".into(),
                delivered: Some(1),
                acked: Some(1),
            },
        ])
        .await
        .unwrap();
    let third = status(2).await;
    assert_eq!(
        third.recipients,
        [
            DeliveryStatus {
                stream: "user:a".into(),
                seq: 3,
                delivered: true,
                acked: false
            },
            DeliveryStatus {
                stream: "user:b".into(),
                seq: 1,
                delivered: true,
                acked: true
            },
        ]
    );
    assert!(store.message_status("no-such-id").await.unwrap().is_none());
}

async fn unpublished_until_marked(store: Arc<dyn MessageStore>) {
    let appended = store
        .append(vec![
            msg(&["user:b", "user:a"], None, 1),
            msg(&["user:a"], None, 2),
        ])
        .await
        .unwrap();
    // Nothing is older than a minute yet.
    assert!(store.unpublished(60_000, 10).await.unwrap().is_empty());

    let pending = store.unpublished(0, 10).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        [appended[0].id.as_str(), appended[1].id.as_str()],
        "oldest first"
    );
    let streams: Vec<&str> = pending[0].1.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, ["user:a", "user:b"], "events by stream");
    assert_eq!(pending[0].1[0].seq, seq_in(&appended[0], "user:a"));
    assert_eq!(pending[0].1[0].payload.get(), r#"{"n": 1}"#);
    assert_eq!(store.unpublished(0, 1).await.unwrap().len(), 1, "limit");

    store
        .mark_published(std::slice::from_ref(&appended[0].id))
        .await
        .unwrap();
    store.mark_published(&[]).await.unwrap();
    let pending = store.unpublished(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0, appended[1].id);
    assert!(
        store
            .message_status(&appended[0].id)
            .await
            .unwrap()
            .unwrap()
            .published
    );
    assert!(
        !store
            .message_status(&appended[1].id)
            .await
            .unwrap()
            .unwrap()
            .published
    );
}

async fn concurrent_appends_neither_duplicate_nor_skip(store: Arc<dyn MessageStore>) {
    const TASKS: usize = 6;
    const APPENDS: usize = 8;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..APPENDS {
                // Batches of 1 to 3 messages, some also to a second stream.
                let batch = (0..1 + (t + i) % 3)
                    .map(|j| {
                        if j == 1 {
                            msg(&["user:hot", &format!("user:t{t}")], None, 0)
                        } else {
                            msg(&["user:hot"], None, 0)
                        }
                    })
                    .collect();
                let appended = store.append(batch).await.expect("append");
                let batch_seqs: Vec<u64> = appended.iter().map(|a| seq_in(a, "user:hot")).collect();
                assert!(
                    batch_seqs.windows(2).all(|w| w[1] == w[0] + 1),
                    "one batch takes consecutive seqs in order: {batch_seqs:?}"
                );
                seqs.extend(batch_seqs);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    let total = all.len() as u64;
    assert_eq!(all, (1..=total).collect::<Vec<_>>(), "gapless and unique");
    assert_eq!(store.stream_info("user:hot").await.unwrap().head, total);
    let read = store.read_stream("user:hot", 0, 0).await.unwrap();
    assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), all);
}

/// `m` with the id its submitter chose.
fn with_id(mut m: NewMessage, id: &str) -> NewMessage {
    m.id = Some(id.to_string());
    m
}

async fn a_reused_id_is_a_per_message_outcome(store: Arc<dyn MessageStore>) {
    let id = uuid::Uuid::now_v7().to_string();
    let first = store
        .append(vec![with_id(msg(&["user:a", "user:b"], None, 1), &id)])
        .await
        .unwrap();
    assert!(first[0].is_stored());
    assert_eq!(first[0].id, id);

    // The same message again (streams in another order), a different
    // message under the same id, and an innocent message in the same batch.
    let again = store
        .append(vec![
            with_id(msg(&["user:b", "user:a"], None, 1), &id),
            with_id(msg(&["user:a"], None, 2), &id),
            msg(&["user:a"], None, 3),
        ])
        .await
        .expect("a reused id never fails the batch");
    assert_eq!(again[0].outcome, Outcome::Duplicate);
    assert_eq!(
        (again[0].id.as_str(), again[0].recipients),
        (id.as_str(), 2)
    );
    assert!(again[0].events.is_empty());
    assert_eq!(again[1].outcome, Outcome::Conflict);
    assert_eq!(again[1].id, id);
    assert!(again[1].events.is_empty());
    assert!(again[2].is_stored());
    assert_eq!(seq_in(&again[2], "user:a"), 2, "neither took a seq");

    let read = store.read_stream("user:a", 0, 10).await.unwrap();
    let payloads: Vec<&str> = read.iter().map(|e| e.payload.get()).collect();
    assert_eq!(payloads, [r#"{"n": 1}"#, r#"{"n": 3}"#]);
    assert_eq!(store.stream_info("user:b").await.unwrap().head, 1);
    let status = store.message_status(&id).await.unwrap().unwrap();
    assert_eq!(
        status.payload.get(),
        r#"{"n": 1}"#,
        "the first message stays"
    );
    assert_eq!(status.recipients.len(), 2);

    // Alone in its batch, a conflict stores nothing and still answers.
    let alone = store
        .append(vec![with_id(msg(&["user:c"], None, 4), &id)])
        .await
        .unwrap();
    assert!(alone[0].is_conflict());
    assert_eq!(store.stream_info("user:c").await.unwrap().head, 0);
    let pending = store.unpublished(0, 10).await.unwrap();
    assert_eq!(
        pending.len(),
        2,
        "only the two stored messages: {pending:?}"
    );
}

async fn an_id_reused_within_a_batch_follows_the_same_rule(store: Arc<dyn MessageStore>) {
    let id = uuid::Uuid::now_v7().to_string();
    let results = store
        .append(vec![
            with_id(msg(&["user:a"], None, 1), &id),
            with_id(msg(&["user:a"], None, 1), &id),
            with_id(msg(&["user:a"], None, 2), &id),
            msg(&["user:a"], None, 3),
        ])
        .await
        .expect("a reused id never fails the batch");
    let outcomes: Vec<Outcome> = results.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Stored,
            Outcome::Duplicate,
            Outcome::Conflict,
            Outcome::Stored
        ]
    );
    assert_eq!(results[1].id, id);
    assert_eq!(results[1].recipients, 1);
    assert_eq!(seq_in(&results[0], "user:a"), 1);
    assert_eq!(seq_in(&results[3], "user:a"), 2);
    assert_eq!(store.read_stream("user:a", 0, 10).await.unwrap().len(), 2);
}
