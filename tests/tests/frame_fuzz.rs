//! Fuzzing the client frame decoder from the outside: random frames, from
//! noise to frames of every `type` with fields of random values and types,
//! go down one connection. The protocol, not the decoder's code, is what is
//! held: every frame gets a documented answer or none, the connection stays
//! open, and a last `subscribe` after them all is answered.
//!
//! Frames come from a seeded generator: `HERALD_FUZZ_SEED` replays a run
//! (the seed is printed on failure), `HERALD_FUZZ_FRAMES` sets how many
//! (default 300; docs/operations.md has a longer run).

use anyhow::Result;
use herald_tests::{Cluster, Topology, WsClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Frame types a server may send; anything else is a protocol violation.
const SERVER_TYPES: &[&str] = &[
    "error",
    "pong",
    "subscribed",
    "unsubscribed",
    "published",
    "msg",
    "reset",
];

fn text(rng: &mut StdRng) -> String {
    let len = rng.random_range(0..12);
    (0..len)
        .map(|_| match rng.random_range(0..4) {
            0 => char::from(rng.random_range(b'a'..=b'z')),
            1 => ['*', ':', '.', '-', '"', '\\', ' ', 'é'][rng.random_range(0..8)],
            2 => char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or('x'),
            _ => char::from(rng.random_range(b'0'..=b'9')),
        })
        .collect()
}

/// A seq-like number, the edges of `u64` included (`since` = `u64::MAX`
/// once overflowed `since + 1` in the pusher and ended the connection).
fn number(rng: &mut StdRng) -> Value {
    match rng.random_range(0..6) {
        0 => json!(0),
        1 => json!(if rng.random() { u64::MAX } else { u64::MAX - 1 }),
        2 => json!(u64::MAX - rng.random_range(1..4)),
        3 => json!(-1),
        4 => json!(rng.random::<f64>() * 1e20),
        _ => json!(rng.random_range(0..100u64)),
    }
}

/// Any JSON value, `depth` levels at most.
fn value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => number(rng),
        3 => json!(text(rng)),
        4 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| (text(rng), value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// A field's value: mostly of a plausible type, sometimes anything.
fn field(rng: &mut StdRng, plausible: Value) -> Value {
    if rng.random_range(0..4) == 0 {
        value(rng, 2)
    } else {
        plausible
    }
}

fn frame(rng: &mut StdRng) -> String {
    let types = [
        "ack",
        "resume",
        "subscribe",
        "unsubscribe",
        "publish",
        "ping",
        "nope",
    ];
    match rng.random_range(0..10) {
        0 => text(rng),
        1 => value(rng, 3).to_string(),
        _ => {
            let kind = types[rng.random_range(0..types.len())];
            let mut f = serde_json::Map::new();
            let kind = field(rng, json!(kind));
            f.insert("type".into(), kind);
            let stream = ["user", "all", "topic:x", "user:alice"][rng.random_range(0..4)];
            let plausible = [
                ("stream", json!(stream)),
                ("seq", number(rng)),
                ("streams", json!({stream: number(rng)})),
                ("epochs", json!({"user": text(rng)})),
                ("topic", json!(text(rng))),
                ("since", number(rng)),
                ("epoch", json!(text(rng))),
                ("to", json!({"users": [text(rng)]})),
                ("payload", value(rng, 3)),
                ("key", json!(text(rng))),
            ];
            let mut candidates = Vec::with_capacity(plausible.len());
            for (name, v) in plausible {
                candidates.push((name, field(rng, v)));
            }
            for (name, v) in candidates {
                if rng.random_range(0..3) == 0 {
                    f.insert(name.into(), v);
                }
            }
            Value::Object(f).to_string()
        }
    }
}

#[tokio::test]
async fn random_frames_get_answers_and_never_end_the_connection() -> Result<()> {
    let seed: u64 = std::env::var("HERALD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let count: usize = std::env::var("HERALD_FUZZ_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = Cluster::start(
        "frame-fuzz",
        Topology {
            pushers: 1,
            ..Topology::default()
        },
    )
    .await?;
    let token = cluster
        .token_with(json!({"user_id": "fuzz", "topics": ["*"]}))
        .await?;
    let mut client = WsClient::connect(&cluster.ws_url(0, &format!("token={token}"))).await?;
    for i in 0..count {
        let f = frame(&mut rng);
        client
            .send_text(&f)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}, frame {i} {f}: {e}"));
    }
    // A last frame none of the random ones can be: its answer comes after
    // theirs.
    client
        .send_json(json!({"type": "subscribe", "topic": "fuzz-end"}))
        .await?;
    loop {
        let answer = client
            .next_frame()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: the connection ended: {e}"));
        let kind = answer["type"].as_str().unwrap_or_default();
        assert!(SERVER_TYPES.contains(&kind), "seed {seed}: {answer}");
        if kind == "subscribed" && answer["topic"] == "fuzz-end" {
            break;
        }
    }
    Ok(())
}
