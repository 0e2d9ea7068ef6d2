//! Client publishing: a client's message goes the way a business message
//! does, onto the ingest topic with the sender as `from`. Here it is checked
//! (as the collector will check it, then against the token's claims) and
//! built; the connection sends it and answers.

use crate::auth::Identity;
use herald_common::envelope::{Invalid, Limits, Submission, Target, pattern_matches};
use herald_common::log::{Log, OutgoingRecord};

/// Client publishes: a burst of this many, refilled at this rate per second.
pub const BURST: f64 = 20.0;
pub const PER_SEC: f64 = 10.0;

/// A publish ready for the ingest topic.
pub struct Prepared {
    /// The id the message will be stored under, confirmed to the client.
    pub id: String,
    record: OutgoingRecord,
}

/// Why a publish was not sent.
#[derive(Debug)]
pub enum Refusal {
    /// Over the connection's rate.
    Throttled,
    /// Not a valid submission (the collector would refuse it too).
    Invalid(Invalid),
    /// The token's claims do not allow this target.
    Forbidden,
    /// The broker did not take it.
    Unavailable,
}

impl Refusal {
    /// The `error` frame's code and message for a publish of `key` to `to`.
    pub fn describe(&self, key: &str, to: &serde_json::Value) -> (&'static str, String) {
        match self {
            Refusal::Throttled => (
                "throttled",
                format!("publishing too fast; `{key}` was not sent"),
            ),
            Refusal::Invalid(e) => ("bad_message", format!("{e}; `{key}` was not sent")),
            Refusal::Forbidden => (
                "forbidden",
                format!("the token does not allow publishing to {to}; `{key}` was not sent"),
            ),
            Refusal::Unavailable => (
                "unavailable",
                format!("the broker did not take `{key}`; send it again"),
            ),
        }
    }
}

/// The stored idempotency key of `user`'s publish with key `key`: scoped to
/// the user, so two users' keys never collide, and a retried publish is
/// stored once. The user id's length comes first because ids may contain
/// `:`: without it, user `a:b` with key `c` and user `a` with key `b:c`
/// would share `client:a:b:c`.
pub fn scoped_key(user: &str, key: &str) -> String {
    format!("client:{}:{user}:{key}", user.len())
}

/// Builds the submission a client's `publish` stands for, validates it
/// against `limits` (which parses `to` into its typed target), then checks
/// that target against the claims of `identity`.
pub fn prepare(
    identity: &Identity,
    to: &serde_json::Value,
    payload: &serde_json::Value,
    key: &str,
    limits: &Limits,
    ingest_topic: &str,
) -> Result<Prepared, Refusal> {
    let id = uuid::Uuid::now_v7().to_string();
    let user = &identity.user_id;
    let record = serde_json::json!({
        "to": to,
        "payload": payload,
        "key": scoped_key(user, key),
        "from": user,
        "id": id,
    })
    .to_string();
    let submission = Submission::parse(record.as_bytes(), limits).map_err(Refusal::Invalid)?;
    if !may_publish(identity, &submission.target) {
        return Err(Refusal::Forbidden);
    }
    Ok(Prepared {
        id,
        record: OutgoingRecord {
            topic: ingest_topic.to_string(),
            // One user's publishes stay in the order sent.
            key: user.clone(),
            value: record.into_bytes().into(),
        },
    })
}

/// Clients publish to topics their `publish` patterns match, and to users
/// with the `direct` claim; never to everyone.
pub fn may_publish(identity: &Identity, target: &Target) -> bool {
    match target {
        Target::Topic(topic) => identity.publish.iter().any(|p| pattern_matches(p, topic)),
        Target::Users(_) => identity.direct,
        Target::All => false,
    }
}

/// Hands the publish to the broker; `Ok` once it has it durably.
pub async fn send(log: &dyn Log, prepared: Prepared) -> Result<String, Refusal> {
    match log.publish(vec![prepared.record]).await.pop() {
        Some(Ok(())) => Ok(prepared.id),
        _ => Err(Refusal::Unavailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(publish: &[&str], direct: bool) -> Identity {
        Identity {
            user_id: "u1".into(),
            expires_at: 0,
            topics: Vec::new(),
            publish: publish.iter().map(|p| p.to_string()).collect(),
            direct,
        }
    }

    fn prepared(who: &Identity, to: serde_json::Value) -> Result<Prepared, Refusal> {
        prepare(
            who,
            &to,
            &json!({"x": 1}),
            "k",
            &Limits::default(),
            "ns.ingest",
        )
    }

    #[test]
    fn a_publish_within_the_claims_becomes_an_ingest_record() {
        let who = identity(&["room-*"], false);
        let ok = prepared(&who, json!({"topic": "room-7"})).unwrap();
        assert_eq!(ok.record.topic, "ns.ingest");
        assert_eq!(ok.record.key, "u1");
        let record: serde_json::Value = serde_json::from_slice(&ok.record.value).unwrap();
        assert_eq!(
            record,
            json!({"to": {"topic": "room-7"}, "payload": {"x": 1}, "key": "client:2:u1:k", "from": "u1", "id": ok.id})
        );
    }

    #[test]
    fn keys_of_users_whose_ids_contain_a_colon_never_collide() {
        assert_ne!(scoped_key("a:b", "c"), scoped_key("a", "b:c"));
        assert_ne!(scoped_key("a", ""), scoped_key("", "a"));
        assert_eq!(scoped_key("u1", "k"), "client:2:u1:k");
    }

    #[test]
    fn targets_outside_the_claims_are_forbidden() {
        let topics_only = identity(&["room-*"], false);
        assert!(matches!(
            prepared(&topics_only, json!({"topic": "lobby"})),
            Err(Refusal::Forbidden)
        ));
        assert!(matches!(
            prepared(&topics_only, json!({"users": ["u2"]})),
            Err(Refusal::Forbidden)
        ));
        let direct = identity(&["*"], true);
        assert!(prepared(&direct, json!({"users": ["u2"]})).is_ok());
        // Nobody broadcasts from a connection.
        assert!(matches!(
            prepared(&direct, json!({"all": true})),
            Err(Refusal::Forbidden)
        ));
    }

    #[test]
    fn an_invalid_target_is_refused_before_the_claims_are_looked_at() {
        let anyone = identity(&["*"], true);
        for bad in [
            json!({}),
            json!({"topic": "a*"}),
            json!({"topic": "x", "all": true}),
            json!("room-7"),
        ] {
            assert!(
                matches!(prepared(&anyone, bad.clone()), Err(Refusal::Invalid(_))),
                "{bad}"
            );
        }
        let (code, message) = Refusal::Invalid(Invalid::BadTarget).describe("k", &json!({}));
        assert_eq!(code, "bad_message");
        assert!(message.ends_with("; `k` was not sent"), "{message}");
    }
}
