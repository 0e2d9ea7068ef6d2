//! authsvc: issues and verifies the tokens WebSocket clients present.
//!
//! Tokens are HS256 JWTs signed with a secret the operator sets, so a business
//! backend holding that secret can mint tokens itself without calling here.
//! Pushers call `POST /v1/verify` for every handshake.

mod config;
pub mod jwt;

pub use config::{Config, Flags};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use herald_common::config::Secret;
use herald_common::envelope::{pattern_stars, valid_user_id};
use herald_common::http::{ApiError, Service, require_api_key};
use herald_common::identity::Identity;
use herald_common::time::now_secs;
use jwt::{Claims, TokenError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

struct AuthState {
    config: Config,
}

/// authsvc as a service: its endpoints, ready at once (it needs nothing).
pub fn start(config: Config) -> Service {
    Service::always_ready(
        Router::new()
            .route("/v1/tokens", post(issue))
            .route("/v1/verify", post(verify))
            .with_state(Arc::new(AuthState { config })),
    )
}

/// Serves authsvc until the process is asked to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (addr, tls) = (config.addr, config.tls.clone());
    start(config).serve(addr, &tls, "authsvc").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    user_id: String,
    #[serde(default)]
    ttl_secs: Option<i64>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    direct: bool,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed request: {e}")))
}

async fn issue(
    State(state): State<Arc<AuthState>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_api_key(&headers, &state.config.api_key)?;
    let request: IssueRequest = parse_json(&body)?;
    if !valid_user_id(&request.user_id, &state.config.limits) {
        return Err(ApiError::bad_request(format!(
            "`user_id` must be 1 to {} bytes without whitespace or control characters",
            state.config.limits.max_id_bytes
        )));
    }
    let ttl = request.ttl_secs.unwrap_or(state.config.default_ttl_secs);
    if ttl <= 0 || ttl > state.config.max_ttl_secs {
        return Err(ApiError::bad_request(format!(
            "`ttl_secs` must be 1 to {}",
            state.config.max_ttl_secs
        )));
    }
    for (field, patterns) in [("topics", &request.topics), ("publish", &request.publish)] {
        check_patterns(field, patterns, state.config.max_pattern_stars)?;
    }
    let now = now_secs();
    let claims = Claims {
        sub: request.user_id,
        iat: now,
        exp: now + ttl,
        topics: request.topics,
        publish: request.publish,
        direct: request.direct,
    };
    let token = jwt::sign(&claims, state.config.jwt_secret.expose().as_bytes());
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": claims.exp})),
    ))
}

/// Refuses a claim pattern with more `*` than `max_stars`. The matcher is
/// linear whatever the pattern holds, so this is a second line: no honest
/// claim needs many wildcards, and a pattern full of them is a mistake or
/// a probe, better refused where the token is made.
fn check_patterns(field: &str, patterns: &[String], max_stars: usize) -> Result<(), ApiError> {
    for pattern in patterns {
        let stars = pattern_stars(pattern);
        if stars > max_stars {
            return Err(ApiError::bad_request(format!(
                "`{field}` pattern {pattern:?} has {stars} `*`; the limit is {max_stars}"
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct VerifyRequest {
    token: String,
}

async fn verify(
    State(state): State<Arc<AuthState>>,
    body: bytes::Bytes,
) -> Result<Json<Identity>, ApiError> {
    let request: VerifyRequest = parse_json(&body)?;
    let identity = verify_token(&request.token, &state.config.jwt_secret, now_secs())
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    Ok(Json(identity))
}

/// Who `token` says its holder is, if it is signed with `secret` and unexpired
/// at `now` (unix seconds): the answer of `POST /v1/verify`, and of the
/// in-process check `herald standalone` makes instead.
pub fn verify_token(token: &str, secret: &Secret, now: i64) -> Result<Identity, TokenError> {
    let claims = jwt::verify(token, secret.expose().as_bytes(), now)?;
    Ok(Identity {
        user_id: claims.sub,
        expires_at: claims.exp,
        topics: claims.topics,
        publish: claims.publish,
        direct: claims.direct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_to_the_identity_its_claims_name() {
        let secret = Secret::from("s");
        let claims = Claims {
            sub: "u1".into(),
            iat: 100,
            exp: 200,
            topics: vec!["match-*".into()],
            publish: vec!["chat".into()],
            direct: true,
        };
        let token = jwt::sign(&claims, b"s");
        assert_eq!(
            verify_token(&token, &secret, 150),
            Ok(Identity {
                user_id: "u1".into(),
                expires_at: 200,
                topics: vec!["match-*".into()],
                publish: vec!["chat".into()],
                direct: true,
            })
        );
        assert_eq!(
            verify_token(&token, &Secret::from("other"), 150),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_pattern_with_too_many_stars_is_refused_by_name() {
        let patterns = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_patterns("topics", &patterns(&["room-*", "a*b*c"]), 2).is_ok());
        assert!(check_patterns("topics", &patterns(&[]), 0).is_ok());
        let hostile = format!("{}b", "*a".repeat(14));
        let err = check_patterns("publish", &patterns(&["ok", &hostile]), 8).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("`publish`"), "{}", err.message);
        assert!(err.message.contains("14 `*`"), "{}", err.message);
        assert!(err.message.contains("limit is 8"), "{}", err.message);
    }
}
