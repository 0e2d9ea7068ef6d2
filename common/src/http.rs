//! The HTTP conventions every Herald endpoint shares: one error shape, one way
//! to read a bearer credential, one readiness endpoint.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: `{"error": "<code>", "message": "<what is wrong>"}` with
/// its HTTP status. `code` is stable for programs; `message` is for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// The credential of an `Authorization: Bearer <credential>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
        .filter(|c| !c.is_empty())
}

/// Compares secrets in time independent of where they first differ, so an
/// attacker cannot find the API key a byte at a time by timing refusals.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a request whose bearer credential is not the API key.
pub fn require_api_key(headers: &HeaderMap, api_key: &str) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(given) if constant_time_eq(given.as_bytes(), api_key.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("wrong API key")),
        None => Err(ApiError::unauthorized(
            "missing `Authorization: Bearer <api key>` header",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn reads_bearer_credentials_case_insensitively() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn api_key_check_distinguishes_missing_from_wrong() {
        let mut h = HeaderMap::new();
        assert!(
            require_api_key(&h, "k")
                .unwrap_err()
                .message
                .contains("missing")
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(
            require_api_key(&h, "k")
                .unwrap_err()
                .message
                .contains("wrong")
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        assert!(require_api_key(&h, "k").is_ok());
    }
}
