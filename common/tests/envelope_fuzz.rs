//! Property-based fuzzing of what producers send (`Submission::parse`, the
//! same parser for HTTP and Kafka records) and of the claim-pattern matcher
//! tokens bring: any input gets an answer, never a panic, and what is
//! accepted keeps every limit.
//!
//! Runs `PROPTEST_CASES` cases per property (proptest's default, 256, in the
//! normal `cargo test`); a longer run is `PROPTEST_CASES=100000 cargo test -p
//! herald-common --test envelope_fuzz` (docs/operations.md).

use herald_common::envelope::{Limits, Submission, Target, pattern_matches, valid_topic};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Small limits, so that generated inputs cross them often.
fn limits() -> Limits {
    Limits {
        max_payload_bytes: 200,
        max_recipients: 4,
        max_id_bytes: 12,
        max_message_ttl_secs: 1000,
        default_message_ttl_secs: 100,
    }
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A user id, sometimes valid, sometimes not.
fn user() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-c]{1,3}".prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
        any_json(),
    ]
}

/// Something shaped like a submission: each field absent, of the right
/// type, or of any type.
fn submission_like() -> impl Strategy<Value = Value> {
    let to = prop_oneof![
        prop::collection::vec(user(), 0..7).prop_map(|u| json!({"users": u})),
        "[a-z:*._-]{0,10}".prop_map(|t| json!({"topic": t})),
        any::<bool>().prop_map(|a| json!({"all": a})),
        any_json(),
    ];
    let field = |value: BoxedStrategy<Value>| prop::option::of(value);
    (
        prop::option::of(to),
        field(any_json().boxed()),
        field(prop_oneof![".{0,16}".prop_map(Value::from), any_json()].boxed()),
        field(prop_oneof![(0u64..2000).prop_map(Value::from), any_json()].boxed()),
        field(user().boxed()),
        field(
            prop_oneof![
                Just(json!("0190a8e4-6c1f-7a52-9d7e-3b1f0c2a4e55")),
                ".{0,40}".prop_map(Value::from),
            ]
            .boxed(),
        ),
    )
        .prop_map(|(to, payload, key, ttl, from, id)| {
            let mut m = serde_json::Map::new();
            for (name, value) in [
                ("to", to),
                ("payload", payload),
                ("key", key),
                ("ttl_secs", ttl),
                ("from", from),
                ("id", id),
            ] {
                if let Some(v) = value {
                    m.insert(name.to_string(), v);
                }
            }
            Value::Object(m)
        })
}

/// What every accepted submission must be, whatever came in.
fn assert_within_limits(s: &Submission, l: &Limits) {
    match &s.target {
        Target::Users(users) => {
            assert!(!users.is_empty() && users.len() <= l.max_recipients);
            let mut distinct = users.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), users.len(), "recipients are distinct");
            for u in users {
                assert!(!u.is_empty() && u.len() <= l.max_id_bytes, "{u:?}");
                assert!(!u.chars().any(|c| c.is_whitespace() || c.is_control()));
            }
        }
        Target::Topic(topic) => assert!(valid_topic(topic), "{topic:?}"),
        Target::All => {}
    }
    assert!(s.payload.get().len() <= l.max_payload_bytes);
    assert!(serde_json::from_str::<Value>(s.payload.get()).is_ok());
    assert!(s.ttl_secs >= 1 && s.ttl_secs <= l.max_message_ttl_secs);
    if let Some(key) = &s.key {
        assert!(!key.is_empty() && key.len() <= l.max_id_bytes);
    }
    if let Some(id) = &s.id {
        assert_eq!(id.len(), 36, "a UUID: {id:?}");
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_get_an_answer(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let l = limits();
        if let Ok(s) = Submission::parse(&bytes, &l) {
            assert_within_limits(&s, &l);
        }
        if let Ok(batch) = Submission::parse_batch(&bytes, &l) {
            batch.iter().for_each(|s| assert_within_limits(s, &l));
        }
    }

    #[test]
    fn submission_shaped_json_is_accepted_only_within_limits(v in submission_like()) {
        let l = limits();
        let text = v.to_string();
        match Submission::parse(text.as_bytes(), &l) {
            Ok(s) => {
                assert_within_limits(&s, &l);
                // The payload is kept as the text it was sent as.
                let sent = serde_json::to_string(&v["payload"]).unwrap();
                prop_assert_eq!(s.payload.get(), sent.as_str());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn a_batch_is_accepted_whole_or_refused_whole(
        items in prop::collection::vec(submission_like(), 0..5)
    ) {
        let l = limits();
        let text = Value::from(items.clone()).to_string();
        let each: Vec<bool> = items
            .iter()
            .map(|v| Submission::parse(v.to_string().as_bytes(), &l).is_ok())
            .collect();
        match Submission::parse_batch(text.as_bytes(), &l) {
            Ok(batch) => {
                prop_assert!(each.iter().all(|ok| *ok));
                prop_assert_eq!(batch.len(), items.len());
            }
            Err(_) => prop_assert!(each.iter().any(|ok| !*ok)),
        }
    }

    /// The greedy matcher against the definition (a `*` stands for any run
    /// of characters), over any text, multibyte characters included.
    #[test]
    fn pattern_matching_agrees_with_its_definition(
        pattern in "[ab*é]{0,8}",
        name in "[abé]{0,10}",
    ) {
        fn by_definition(pattern: &[char], name: &[char]) -> bool {
            match pattern.split_first() {
                None => name.is_empty(),
                Some(('*', rest)) => (0..=name.len()).any(|i| by_definition(rest, &name[i..])),
                Some((c, rest)) => name.first() == Some(c) && by_definition(rest, &name[1..]),
            }
        }
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        prop_assert_eq!(pattern_matches(&pattern, &name), by_definition(&p, &n));
    }

    #[test]
    fn any_pattern_against_any_name_gets_an_answer(pattern in ".{0,64}", name in ".{0,128}") {
        let _ = pattern_matches(&pattern, &name);
    }
}

/// Nesting deeper than the parser recurses is refused, not a stack
/// overflow that would take the collector down with every message in it.
#[test]
fn a_deeply_nested_payload_is_refused_not_a_crash() {
    for depth in [1_000, 100_000] {
        let payload = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let body = format!(r#"{{"to":{{"all":true}},"payload":{payload}}}"#);
        let limits = Limits {
            max_payload_bytes: usize::MAX,
            ..Limits::default()
        };
        assert!(
            Submission::parse(body.as_bytes(), &limits).is_err(),
            "{depth}"
        );
        let batch = format!("[{body}]");
        assert!(Submission::parse_batch(batch.as_bytes(), &limits).is_err());
    }
}
