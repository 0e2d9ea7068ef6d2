//! What a message looks like on its way through Herald.
//!
//! A business system submits a [`Submission`] (over HTTP or as a record on the
//! ingest topic: the same JSON either way). The collector stores it and, for
//! every stream it was appended to, publishes one [`Event`] to the events
//! topic; the dispatcher forwards that same event to node topics and the
//! pusher turns it into a `msg` frame.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeSet;

/// Limits applied to every submission, whichever path it came by: the
/// `[limits]` configuration section, read by every service that checks a
/// submission (the collector, and the pusher for client publishes) so that
/// they agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted `payload`, in bytes of its JSON text.
    pub max_payload_bytes: usize,
    /// Most recipients one message may name.
    pub max_recipients: usize,
    /// Longest accepted user id or idempotency key, in bytes.
    pub max_id_bytes: usize,
    /// Longest retention a submission may ask for.
    pub max_message_ttl_secs: u64,
    /// Retention when a submission names none.
    pub default_message_ttl_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            max_recipients: 10_000,
            max_id_bytes: 256,
            max_message_ttl_secs: 90 * 24 * 3600,
            default_message_ttl_secs: 7 * 24 * 3600,
        }
    }
}

/// The wire form of a submission, before validation.
#[derive(Deserialize)]
struct SubmissionWire {
    to: TargetWire,
    payload: Box<RawValue>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetWire {
    #[serde(default)]
    users: Option<Vec<String>>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    all: Option<bool>,
}

/// Who a message is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Each user's own stream, `user:<id>`: distinct ids, in the order first named.
    Users(Vec<String>),
    /// The topic's stream, `topic:<name>`, stored once for all its subscribers.
    Topic(String),
    /// The stream `all`, which every connection follows.
    All,
}

impl Target {
    /// The storage names of the streams the message is appended to.
    pub fn streams(&self) -> Vec<String> {
        match self {
            Target::Users(users) => users.iter().map(|u| user_stream(u)).collect(),
            Target::Topic(topic) => vec![topic_stream(topic)],
            Target::All => vec![ALL_STREAM.to_string()],
        }
    }
}

/// A validated business message: who it is for and what it says.
#[derive(Clone, Debug)]
pub struct Submission {
    pub target: Target,
    /// The payload's JSON text, exactly as submitted.
    pub payload: Box<RawValue>,
    /// Idempotency key: a second submission with the same key is the same message.
    pub key: Option<String>,
    /// How long the message is kept for replay.
    pub ttl_secs: u64,
    /// The sender, when a user (rather than a business system) sent it.
    pub from: Option<String>,
    /// An id chosen by the submitter (a UUID); normally absent.
    pub id: Option<String>,
}

/// Why a submission was refused. The text is shown to the submitter, so it
/// names the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Invalid {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("`to` must hold exactly one of `users`, `topic` or `all: true`")]
    BadTarget,
    #[error("`to.topic` must be 1 to 128 characters of letters, digits and . _ - : (got {0:?})")]
    BadTopic(String),
    #[error("`to.users` must name at least one user")]
    NoRecipients,
    #[error("`to.users` names {count} users; the limit is {limit}")]
    TooManyRecipients { count: usize, limit: usize },
    #[error("`to.users` holds an invalid user id: {0}")]
    BadUser(String),
    #[error("`payload` is {size} bytes; the limit is {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("`payload` nests arrays and objects more than {0} deep")]
    PayloadTooDeep(usize),
    #[error("`key` must be 1 to {0} bytes")]
    BadKey(usize),
    #[error("`id` must be a UUID")]
    BadId,
    #[error("`ttl_secs` must be 1 to {0}")]
    BadTtl(u64),
}

impl Invalid {
    /// Whether the fault is the payload's size (HTTP 413) rather than its form (400).
    pub fn is_too_large(&self) -> bool {
        matches!(self, Invalid::PayloadTooLarge { .. })
    }
}

/// The deepest nesting of arrays and objects a payload may have.
///
/// Parsing a payload as raw text does not limit its depth, but turning it
/// into a `serde_json::Value` does (128 levels), and the collector's HTTP
/// answers that show a payload (message status, stream pages) do that: a
/// deeper payload would be stored and then break every answer that shows
/// it. 64 leaves room for what is built around a payload.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// How deeply `json`, valid JSON text, nests arrays and objects: counted over
/// the text, skipping strings, without building anything.
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Checks that a user id can be used as a stream name and Redis key: non-empty,
/// bounded, and free of whitespace and control characters.
pub fn valid_user_id(user: &str, limits: &Limits) -> bool {
    !user.is_empty()
        && user.len() <= limits.max_id_bytes
        && !user.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Submission {
    /// Parses and validates one submission from its JSON text.
    pub fn parse(json: &[u8], limits: &Limits) -> Result<Self, Invalid> {
        let wire: SubmissionWire =
            serde_json::from_slice(json).map_err(|e| Invalid::Malformed(e.to_string()))?;
        Self::validate(wire, limits)
    }

    /// Parses a JSON array of submissions; one bad element refuses the batch,
    /// naming its index, so that nothing of a bad batch is stored.
    pub fn parse_batch(json: &[u8], limits: &Limits) -> Result<Vec<Self>, Invalid> {
        let wires: Vec<Box<RawValue>> =
            serde_json::from_slice(json).map_err(|e| Invalid::Malformed(e.to_string()))?;
        wires
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                Self::parse(raw.get().as_bytes(), limits).map_err(|e| match e {
                    Invalid::Malformed(m) => Invalid::Malformed(format!("element {i}: {m}")),
                    other => other,
                })
            })
            .collect()
    }

    fn validate(wire: SubmissionWire, limits: &Limits) -> Result<Self, Invalid> {
        let target = match (wire.to.users, wire.to.topic, wire.to.all) {
            (Some(users), None, None) => Target::Users(Self::recipients(users, limits)?),
            (None, Some(topic), None) => {
                if !valid_topic(&topic) {
                    return Err(Invalid::BadTopic(topic));
                }
                Target::Topic(topic)
            }
            (None, None, Some(true)) => Target::All,
            _ => return Err(Invalid::BadTarget),
        };
        let size = wire.payload.get().len();
        if size > limits.max_payload_bytes {
            return Err(Invalid::PayloadTooLarge {
                size,
                limit: limits.max_payload_bytes,
            });
        }
        if nesting_depth(wire.payload.get()) > MAX_PAYLOAD_DEPTH {
            return Err(Invalid::PayloadTooDeep(MAX_PAYLOAD_DEPTH));
        }
        if let Some(key) = &wire.key
            && (key.is_empty() || key.len() > limits.max_id_bytes)
        {
            return Err(Invalid::BadKey(limits.max_id_bytes));
        }
        let ttl_secs = wire.ttl_secs.unwrap_or(limits.default_message_ttl_secs);
        if ttl_secs == 0 || ttl_secs > limits.max_message_ttl_secs {
            return Err(Invalid::BadTtl(limits.max_message_ttl_secs));
        }
        if let Some(from) = &wire.from
            && !valid_user_id(from, limits)
        {
            return Err(Invalid::BadUser(from.clone()));
        }
        if let Some(id) = &wire.id
            && uuid::Uuid::parse_str(id).is_err()
        {
            return Err(Invalid::BadId);
        }
        Ok(Self {
            target,
            payload: wire.payload,
            key: wire.key,
            ttl_secs,
            from: wire.from,
            id: wire.id,
        })
    }

    /// Distinct, valid user ids, in the order first named.
    fn recipients(named: Vec<String>, limits: &Limits) -> Result<Vec<String>, Invalid> {
        let mut seen = BTreeSet::new();
        let mut users = Vec::with_capacity(named.len());
        for user in named {
            if !valid_user_id(&user, limits) {
                return Err(Invalid::BadUser(user));
            }
            if seen.insert(user.clone()) {
                users.push(user);
            }
        }
        if users.is_empty() {
            return Err(Invalid::NoRecipients);
        }
        if users.len() > limits.max_recipients {
            return Err(Invalid::TooManyRecipients {
                count: users.len(),
                limit: limits.max_recipients,
            });
        }
        Ok(users)
    }
}

/// Whether `topic` can name a topic: 1 to 128 letters, digits, `.`, `_`,
/// `-` or `:` (no `*`, which token claims use as a wildcard).
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 128
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

/// The stream every connection follows (broadcasts).
pub const ALL_STREAM: &str = "all";

/// A topic's stream: `topic:<name>`.
pub fn topic_stream(topic: &str) -> String {
    format!("topic:{topic}")
}

/// Whether `name` matches a claim pattern: exact, or with `*` standing for
/// any run of characters (`match-*`).
///
/// Greedy, never backtracking: the text before the first `*` must start the
/// name and the text after the last must end it; each piece in between is
/// taken at its leftmost place after the one before. Taking the leftmost
/// place is never wrong (it leaves the most room for the pieces after it),
/// so one pass decides, in O(name × pattern) at worst, however many `*` a
/// token's pattern holds: a hostile pattern costs no more than a long one.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut pieces = pattern.split('*');
    let head = pieces.next().unwrap_or_default();
    let Some(rest) = name.strip_prefix(head) else {
        return false;
    };
    let mut middle: Vec<&str> = pieces.collect();
    let Some(tail) = middle.pop() else {
        // No `*`: the pattern is the name.
        return rest.is_empty();
    };
    // The head and the tail may not overlap: strip both before the middle.
    let Some(mut rest) = rest.strip_suffix(tail) else {
        return false;
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// How many `*` wildcards a claim pattern holds.
pub fn pattern_stars(pattern: &str) -> usize {
    pattern.matches('*').count()
}

/// A stream's storage name: `user:<id>` for one user's inbox. Streams are the
/// unit of ordering: each has its own gapless `seq`.
pub fn user_stream(user: &str) -> String {
    format!("user:{user}")
}

/// The user whose inbox `stream` is, if it is a user stream.
pub fn stream_user(stream: &str) -> Option<&str> {
    stream.strip_prefix("user:")
}

/// One message appended to one stream: what travels on the events topic and
/// the node topics, and what replay reads back from the store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// The message id (UUIDv7, time-ordered), shared by every stream the
    /// message was appended to.
    pub id: String,
    /// Storage name of the stream, e.g. `user:u1`.
    pub stream: String,
    /// Position in the stream: 1, 2, 3... without gaps.
    pub seq: u64,
    /// When the collector accepted it, unix milliseconds.
    pub ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub payload: Box<RawValue>,
}

impl Event {
    /// The events-topic key: the stream, so that one stream's events share a
    /// partition and keep their order.
    pub fn partition_key(&self) -> &str {
        &self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn accepts_a_plain_message_and_dedups_recipients() {
        let s = Submission::parse(
            br#"{"to":{"users":["u1","u2","u1"]},"payload":{"a":1},"key":"k"}"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(s.target, Target::Users(vec!["u1".into(), "u2".into()]));
        assert_eq!(s.payload.get(), r#"{"a":1}"#);
        assert_eq!(s.key.as_deref(), Some("k"));
        assert_eq!(s.ttl_secs, 7 * 24 * 3600);
    }

    #[test]
    fn refuses_each_bad_input_with_its_reason() {
        let l = limits();
        assert!(matches!(
            Submission::parse(b"{not json", &l),
            Err(Invalid::Malformed(_))
        ));
        let missing_to = Submission::parse(br#"{"payload":1}"#, &l).unwrap_err();
        assert!(missing_to.to_string().contains("`to`"), "{missing_to}");
        assert_eq!(
            Submission::parse(br#"{"to":{"users":[]},"payload":1}"#, &l).unwrap_err(),
            Invalid::NoRecipients
        );
        assert!(matches!(
            Submission::parse(br#"{"to":{"users":["a b"]},"payload":1}"#, &l),
            Err(Invalid::BadUser(_))
        ));
        assert!(matches!(
            Submission::parse(br#"{"to":{"user":["a"]},"payload":1}"#, &l),
            Err(Invalid::Malformed(_))
        ));
        let big = format!(
            r#"{{"to":{{"users":["a"]}},"payload":"{}"}}"#,
            "x".repeat(70_000)
        );
        let err = Submission::parse(big.as_bytes(), &l).unwrap_err();
        assert!(err.is_too_large());
    }

    #[test]
    fn topic_and_all_targets_name_one_stream_each() {
        let l = limits();
        let t = Submission::parse(br#"{"to":{"topic":"match-42"},"payload":1}"#, &l).unwrap();
        assert_eq!(t.target.streams(), vec!["topic:match-42"]);
        let a = Submission::parse(br#"{"to":{"all":true},"payload":1}"#, &l).unwrap();
        assert_eq!(a.target.streams(), vec!["all"]);
        for bad in [
            r#"{"to":{"all":false},"payload":1}"#,
            r#"{"to":{},"payload":1}"#,
            r#"{"to":{"topic":"a","users":["b"]},"payload":1}"#,
        ] {
            assert_eq!(
                Submission::parse(bad.as_bytes(), &l).unwrap_err(),
                Invalid::BadTarget,
                "{bad}"
            );
        }
        assert!(matches!(
            Submission::parse(br#"{"to":{"topic":"a*"},"payload":1}"#, &l),
            Err(Invalid::BadTopic(_))
        ));
    }

    #[test]
    fn claim_patterns_match_exactly_or_by_wildcard() {
        assert!(pattern_matches("match-*", "match-42"));
        assert!(pattern_matches("match-*", "match-"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("*", ""));
        assert!(pattern_matches("room-7", "room-7"));
        assert!(pattern_matches("a*c*e", "abcde"));
        assert!(pattern_matches("*-7", "room-7"));
        assert!(pattern_matches("a**b", "ab"));
        assert!(!pattern_matches("match-*", "matches"));
        assert!(!pattern_matches("room-7", "room-70"));
        assert!(!pattern_matches("room-7", "room-"));
        assert!(!pattern_matches("*-7", "room-70"));
        assert!(!pattern_matches("", "x"));
        assert!(pattern_matches("", ""));
    }

    #[test]
    fn head_and_tail_of_a_pattern_do_not_overlap() {
        assert!(!pattern_matches("a*a", "a"));
        assert!(pattern_matches("a*a", "aa"));
        assert!(!pattern_matches("ab*bc", "abc"));
        assert!(pattern_matches("ab*bc", "abbc"));
    }

    #[test]
    fn middle_pieces_are_found_in_order() {
        assert!(pattern_matches("*b*a*", "xbxax"));
        assert!(!pattern_matches("*b*a*", "xaxbx"));
        // The leftmost place of a piece leaves room for the next.
        assert!(pattern_matches("*ab*ab*", "abab"));
        assert!(!pattern_matches("*ab*ab*", "aba"));
        assert!(pattern_matches("x*aab*b", "xaaabb"));
        // Multibyte characters are matched whole.
        assert!(pattern_matches("é*ü", "éaaü"));
        assert!(!pattern_matches("é*ü", "é"));
    }

    /// Issue 10.9: this pattern against this name took over 10 s by
    /// backtracking. The answer is what is asserted; how fast it comes is
    /// for benchmarks.
    #[test]
    fn a_pathological_pattern_gets_its_answer() {
        let pattern = format!("{}b", "*a".repeat(14));
        let name = "a".repeat(120);
        assert!(!pattern_matches(&pattern, &name));
        assert!(pattern_matches(&pattern, &format!("{name}b")));
        assert_eq!(pattern_stars(&pattern), 14);
    }

    /// The greedy matcher agrees with the obvious recursive definition on
    /// every short pattern and name over a small alphabet.
    #[test]
    fn agrees_with_the_definition_on_every_small_case() {
        fn by_definition(pattern: &[u8], name: &[u8]) -> bool {
            match pattern.split_first() {
                None => name.is_empty(),
                Some((b'*', rest)) => (0..=name.len()).any(|i| by_definition(rest, &name[i..])),
                Some((c, rest)) => name.first() == Some(c) && by_definition(rest, &name[1..]),
            }
        }
        fn all(alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
            let mut out = vec![Vec::new()];
            let mut last = vec![Vec::new()];
            for _ in 0..max_len {
                let next: Vec<Vec<u8>> = last
                    .iter()
                    .flat_map(|w: &Vec<u8>| {
                        alphabet.iter().map(move |c| {
                            let mut w = w.clone();
                            w.push(*c);
                            w
                        })
                    })
                    .collect();
                out.extend(next.iter().cloned());
                last = next;
            }
            out
        }
        let patterns = all(b"ab*", 5);
        let names = all(b"ab", 5);
        for p in &patterns {
            for n in &names {
                let (ps, ns) = (
                    std::str::from_utf8(p).unwrap(),
                    std::str::from_utf8(n).unwrap(),
                );
                assert_eq!(
                    pattern_matches(ps, ns),
                    by_definition(p, n),
                    "pattern {ps:?} name {ns:?}"
                );
            }
        }
    }

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(nesting_depth(r#"["[[[{{", "\\", "\"[["]"#), 1);
        assert_eq!(nesting_depth("[[],[[]]]"), 3);
    }

    #[test]
    fn a_payload_deeper_than_the_limit_is_refused_and_one_at_it_reads_back() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let message = |depth: usize| {
            format!(
                r#"{{"to":{{"all":true}},"payload":{{"deep":{}}}}}"#,
                nested(depth - 1)
            )
        };
        let at_limit = Submission::parse(message(MAX_PAYLOAD_DEPTH).as_bytes(), &limits())
            .expect("the deepest payload allowed");
        // What the collector's HTTP answers do with a payload.
        let shown = serde_json::to_value(&at_limit.payload).expect("it reads back as a value");
        assert!(shown["deep"].is_array());
        // Why the limit: raw text of any depth parses, but not as a value.
        let deeper: Box<RawValue> = serde_json::from_str(&nested(200)).unwrap();
        assert!(serde_json::to_value(&deeper).is_err());
        assert_eq!(
            Submission::parse(message(MAX_PAYLOAD_DEPTH + 1).as_bytes(), &limits()).unwrap_err(),
            Invalid::PayloadTooDeep(MAX_PAYLOAD_DEPTH)
        );
        // Far deeper than serde_json's recursion limit: an answer, no crash.
        let unbounded = Limits {
            max_payload_bytes: usize::MAX,
            ..limits()
        };
        assert_eq!(
            Submission::parse(message(100_000).as_bytes(), &unbounded).unwrap_err(),
            Invalid::PayloadTooDeep(MAX_PAYLOAD_DEPTH)
        );
    }

    #[test]
    fn a_bad_batch_element_names_its_index() {
        let err = Submission::parse_batch(
            br#"[{"to":{"users":["a"]},"payload":1},{"payload":2}]"#,
            &limits(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("element 1"), "{err}");
    }

    #[test]
    fn event_round_trips_with_payload_text_untouched() {
        let e: Event = serde_json::from_str(
            r#"{"id":"x","stream":"user:u1","seq":3,"ts":5,"payload":{"b": 1.50}}"#,
        )
        .unwrap();
        assert_eq!(e.payload.get(), r#"{"b": 1.50}"#);
        assert_eq!(stream_user(&e.stream), Some("u1"));
        let back = serde_json::to_string(&e).unwrap();
        assert!(back.contains(r#""payload":{"b": 1.50}"#), "{back}");
    }
}
