//! authsvc: issues and verifies the tokens WebSocket clients present.
//!
//! Tokens are HS256 JWTs signed with a secret the operator sets, so a business
//! backend holding that secret can mint tokens itself without calling here.
//! Pushers call `POST /v1/verify` for every handshake.

pub mod jwt;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use clap::Args;
use herald_common::envelope::{Limits, valid_user_id};
use herald_common::http::{ApiError, Service, require_api_key};
use herald_common::time::now_secs;
use jwt::Claims;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// authsvc's configuration.
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HERALD_AUTH_ADDR", default_value = "127.0.0.1:7001")]
    pub addr: SocketAddr,

    /// API key required to mint tokens.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: String,

    /// HMAC secret that signs tokens (share it with backends that mint their own).
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,

    /// Lifetime of a token when the request names none.
    #[arg(long, env = "HERALD_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub default_ttl_secs: i64,

    /// Longest lifetime a token may be given.
    #[arg(long, env = "HERALD_TOKEN_MAX_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub max_ttl_secs: i64,
}

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
    let addr = config.addr;
    start(config).serve(addr, "authsvc").await
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
    if !valid_user_id(&request.user_id, &Limits::default()) {
        return Err(ApiError::bad_request(
            "`user_id` must be 1 to 256 bytes without whitespace or control characters",
        ));
    }
    let ttl = request.ttl_secs.unwrap_or(state.config.default_ttl_secs);
    if ttl <= 0 || ttl > state.config.max_ttl_secs {
        return Err(ApiError::bad_request(format!(
            "`ttl_secs` must be 1 to {}",
            state.config.max_ttl_secs
        )));
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
    let token = jwt::sign(&claims, state.config.jwt_secret.as_bytes());
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": claims.exp})),
    ))
}

#[derive(Deserialize)]
struct VerifyRequest {
    token: String,
}

async fn verify(
    State(state): State<Arc<AuthState>>,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: VerifyRequest = parse_json(&body)?;
    let claims = jwt::verify(
        &request.token,
        state.config.jwt_secret.as_bytes(),
        now_secs(),
    )
    .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    Ok(Json(json!({
        "user_id": claims.sub,
        "expires_at": claims.exp,
        "topics": claims.topics,
        "publish": claims.publish,
        "direct": claims.direct,
    })))
}
