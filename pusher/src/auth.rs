//! Asking authsvc who a token belongs to. Every handshake does; authsvc's
//! answer is the only identity the pusher trusts.

use reqwest::StatusCode;
use std::time::Duration;

/// authsvc's answer, in the shared vocabulary (connections name it here).
pub use herald_common::identity::Identity;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is bad: the handshake is refused with 401.
    #[error("{0}")]
    Rejected(String),
    /// authsvc could not answer: the handshake is refused with 503, and the
    /// client retries (its token may well be good).
    #[error("authsvc unavailable: {0}")]
    Unavailable(String),
}

/// Turns a token into an identity. The cluster asks authsvc over HTTP; the
/// single-process mode checks the signature in process.
#[async_trait::async_trait]
pub trait Verifier: Send + Sync + 'static {
    async fn verify(&self, token: &str) -> Result<Identity, AuthError>;
}

pub struct AuthClient {
    verify_url: String,
    http: reqwest::Client,
}

impl AuthClient {
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client without TLS always builds");
        Self {
            verify_url: format!("{}/v1/verify", base_url.trim_end_matches('/')),
            http,
        }
    }
}

#[async_trait::async_trait]
impl Verifier for AuthClient {
    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let response = self
            .http
            .post(&self.verify_url)
            .json(&serde_json::json!({"token": token}))
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        match response.status() {
            StatusCode::OK => response
                .json::<Identity>()
                .await
                .map_err(|e| AuthError::Unavailable(format!("unreadable answer: {e}"))),
            StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                let reason = body["message"].as_str().unwrap_or("invalid token");
                Err(AuthError::Rejected(reason.to_string()))
            }
            other => Err(AuthError::Unavailable(format!("authsvc answered {other}"))),
        }
    }
}
