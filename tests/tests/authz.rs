//! Authorization from the outside: every way a client or caller might read
//! what is not theirs, each refused. Tokens are forged here with a signer of
//! the test's own (HMAC-SHA256 over the RFC 7519 signing input), not with
//! Herald's, so a bug there cannot hide one in the verifier.

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_tests::{API_KEY, Cluster, JWT_SECRET, Topology, WsClient};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT with this header and these claims, signed with `secret`.
fn jwt(header: &Value, claims: &Value, secret: &str) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn hs256() -> Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

/// Claims for `user` valid for an hour, with `extra` claims merged in.
fn claims(user: &str, extra: Value) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut c = json!({"sub": user, "iat": now, "exp": now + 3600});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

/// Sends `user` a marker and reads frames until it arrives: whatever came
/// before it (nothing, for these tests) is returned.
async fn frames_before_marker(
    cluster: &Cluster,
    client: &mut WsClient,
    user: &str,
) -> Result<Vec<Value>> {
    let marker = cluster.send(&[user], json!("marker")).await?;
    let mut before = Vec::new();
    loop {
        let frame = client.next_frame().await?;
        if frame["type"] == "msg" && frame["id"] == marker["id"] {
            return Ok(before);
        }
        before.push(frame);
    }
}

#[tokio::test]
async fn a_client_reads_no_other_users_stream_by_since_resume_ack_or_subscribe() -> Result<()> {
    let cluster = Cluster::start(
        "authz-streams",
        Topology {
            pushers: 1,
            ..Topology::default()
        },
    )
    .await?;
    for n in 0..3 {
        cluster.send(&["alice"], json!({"secret": n})).await?;
    }
    cluster
        .send_via(
            0,
            json!({"to": {"topic": "alice-only"}, "payload": "topic secret"}),
        )
        .await?;

    // `since` positions only the connecting user's own stream.
    let mut mallory = cluster.connect_with(0, "mallory", "since=0").await?;
    assert_eq!(mallory.welcome["user"], "mallory");

    // `resume` of streams the connection does not follow: refused whole.
    for streams in [
        json!({"user:alice": 0}),
        json!({"alice": 0}),
        json!({"user": 0, "user:alice": 0}),
        json!({"topic:alice-only": 0}),
    ] {
        mallory
            .send_json(json!({"type": "resume", "streams": streams}))
            .await?;
        let answer = mallory.next_frame().await?;
        assert_eq!(answer["code"], "unknown_stream", "{streams}: {answer}");
    }
    // `ack` of another stream: refused.
    mallory
        .send_json(json!({"type": "ack", "stream": "user:alice", "seq": 3}))
        .await?;
    assert_eq!(mallory.next_frame().await?["code"], "unknown_stream");

    // `subscribe` naming a stream: without a matching claim, forbidden.
    for topic in ["user:alice", "alice-only"] {
        mallory
            .send_json(json!({"type": "subscribe", "topic": topic, "since": 0}))
            .await?;
        assert_eq!(mallory.next_frame().await?["code"], "forbidden", "{topic}");
    }
    // Nothing of alice's arrived with any of the above.
    let leaked = frames_before_marker(&cluster, &mut mallory, "mallory").await?;
    assert!(leaked.is_empty(), "{leaked:?}");

    // With a claim for every topic, a stream name is only a topic name: it
    // reads the topic of that name, never the user's stream.
    let token = cluster
        .token_with(json!({"user_id": "mallory", "topics": ["*"]}))
        .await?;
    // since=1: she has her marker already, so nothing of hers is replayed
    // between the answers below.
    let mut wild = WsClient::connect(&cluster.ws_url(0, &format!("token={token}&since=1"))).await?;
    for topic in ["user:alice", "all", "user"] {
        wild.send_json(json!({"type": "subscribe", "topic": topic, "since": 0}))
            .await?;
        let answer = wild.next_frame().await?;
        assert_eq!(answer["type"], "subscribed", "{topic}: {answer}");
        assert_eq!(answer["stream"], format!("topic:{topic}"));
        assert_eq!(
            answer["head"], 0,
            "{topic}: an empty topic, not a user stream"
        );
    }
    let leaked = frames_before_marker(&cluster, &mut wild, "mallory").await?;
    assert!(leaked.is_empty(), "{leaked:?}");
    Ok(())
}

#[tokio::test]
async fn the_http_replay_and_status_endpoints_need_the_api_key() -> Result<()> {
    let cluster = Cluster::start("authz-http", Topology::default()).await?;
    let sent = cluster.send(&["alice"], json!({"secret": 1})).await?;
    let id = sent["id"].as_str().unwrap();
    let base = cluster.collectors[0].url();
    let http = reqwest::Client::new();
    let paths = [
        "/v1/streams/alice/messages?after=0".to_string(),
        format!("/v1/messages/{id}"),
    ];
    for path in &paths {
        let url = format!("{base}{path}");
        let longer = format!("{API_KEY}x");
        let wrong_keys = [
            "wrong-key-0123456789",
            "",
            // The key cut short, and with a character added.
            &API_KEY[..API_KEY.len() - 1],
            longer.as_str(),
        ];
        let no_key = http.get(&url).send().await?;
        assert_eq!(no_key.status(), 401, "{path} without a key");
        let body = no_key.text().await?;
        assert!(!body.contains("secret"), "{path}: {body}");
        for key in wrong_keys {
            let answer = http.get(&url).bearer_auth(key).send().await?;
            assert_eq!(answer.status(), 401, "{path} with key {key:?}");
            assert!(!answer.text().await?.contains("secret"));
        }
        // A token is not an API key.
        let token = cluster.token("alice").await?;
        let answer = http.get(&url).bearer_auth(&token).send().await?;
        assert_eq!(answer.status(), 401, "{path} with a user's token");
        let answer = http
            .get(&url)
            .header("authorization", format!("Basic {API_KEY}"))
            .send()
            .await?;
        assert_eq!(answer.status(), 401, "{path} with another scheme");
        // With the key, it is readable: the refusals above were about the key.
        let (status, _) = cluster.get(0, path).await?;
        assert_eq!(status, 200, "{path} with the key");
    }
    // Minting a token needs the key too.
    let answer = http
        .post(format!("{}/v1/tokens", cluster.authsvc.url()))
        .bearer_auth("wrong-key-0123456789")
        .json(&json!({"user_id": "alice"}))
        .send()
        .await?;
    assert_eq!(answer.status(), 401);
    Ok(())
}

#[tokio::test]
async fn forged_tokens_are_refused_at_the_handshake() -> Result<()> {
    let cluster = Cluster::start(
        "authz-tokens",
        Topology {
            pushers: 1,
            ..Topology::default()
        },
    )
    .await?;
    let status = |token: String| {
        let url = cluster.ws_url(0, &format!("token={token}"));
        async move { WsClient::refused_status(&url).await }
    };
    // Our signer agrees with Herald's: a token it makes with the real
    // secret is accepted, so the refusals below are about what was changed.
    let good = jwt(&hs256(), &claims("alice", json!({})), JWT_SECRET);
    let client = WsClient::connect(&cluster.ws_url(0, &format!("token={good}"))).await?;
    assert_eq!(client.welcome["user"], "alice");

    // Signed with another secret.
    let other = jwt(
        &hs256(),
        &claims("alice", json!({})),
        "another-secret-0123456789",
    );
    assert_eq!(status(other).await?, 401, "another secret");

    // A real token of mallory's with a claim altered, signature kept.
    let real = cluster.token("mallory").await?;
    let parts: Vec<&str> = real.split('.').collect();
    let body: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1])?)?;
    for (field, value) in [
        ("sub", json!("alice")),
        ("exp", json!(body["exp"].as_i64().unwrap() + 86_400)),
        ("topics", json!(["*"])),
        ("direct", json!(true)),
    ] {
        let mut altered = body.clone();
        altered[field] = value;
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(altered.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(status(forged).await?, 401, "altered {field}");
    }

    // `alg: none`, with and without a signature part; and other algorithms.
    let body = b64(claims("alice", json!({})).to_string().as_bytes());
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None"}),
        json!({"alg": "HS512"}),
        json!({"alg": "RS256"}),
        json!({}),
    ] {
        let header = b64(header.to_string().as_bytes());
        assert_eq!(status(format!("{header}.{body}.")).await?, 401, "{header}");
        assert_eq!(status(format!("{header}.{body}")).await?, 401, "{header}");
    }
    // `alg: none` signed anyway with the real secret: still not HS256.
    let none_signed = jwt(
        &json!({"alg": "none"}),
        &claims("alice", json!({})),
        JWT_SECRET,
    );
    assert_eq!(status(none_signed).await?, 401, "alg none, signed");

    // Expired, though well signed.
    let mut expired = claims("alice", json!({}));
    expired["exp"] = json!(expired["iat"].as_i64().unwrap() - 1);
    assert_eq!(status(jwt(&hs256(), &expired, JWT_SECRET)).await?, 401);
    // No `exp` at all.
    let mut forever = claims("alice", json!({}));
    forever.as_object_mut().unwrap().remove("exp");
    assert_eq!(status(jwt(&hs256(), &forever, JWT_SECRET)).await?, 401);
    Ok(())
}

#[tokio::test]
async fn a_hostile_claim_pattern_is_refused_at_minting_and_cannot_freeze_a_node() -> Result<()> {
    let cluster = Cluster::start(
        "authz-patterns",
        Topology {
            pushers: 1,
            ..Topology::default()
        },
    )
    .await?;
    let hostile = format!("{}b", "*a".repeat(14));
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/v1/tokens", cluster.authsvc.url()))
        .bearer_auth(API_KEY)
        .json(&json!({"user_id": "mallory", "topics": [hostile]}))
        .send()
        .await?;
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await?;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit is 8"),
        "{body}"
    );

    // A backend holding the secret can still mint such a token; matching it
    // against a long topic gets its answer (no match), and the node keeps
    // serving this connection and others.
    let token = jwt(
        &hs256(),
        &claims("mallory", json!({"topics": [hostile]})),
        JWT_SECRET,
    );
    let mut mallory = WsClient::connect(&cluster.ws_url(0, &format!("token={token}"))).await?;
    for _ in 0..3 {
        mallory
            .send_json(json!({"type": "subscribe", "topic": "a".repeat(120)}))
            .await?;
        assert_eq!(mallory.next_frame().await?["code"], "forbidden");
    }
    mallory
        .send_json(json!({"type": "subscribe", "topic": format!("{}b", "a".repeat(120))}))
        .await?;
    assert_eq!(mallory.next_frame().await?["type"], "subscribed");
    let mut other = cluster.connect(0, "bystander").await?;
    let sent = cluster.send(&["bystander"], json!("still served")).await?;
    assert_eq!(other.next_msg().await?["id"], sent["id"]);
    Ok(())
}
