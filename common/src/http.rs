//! The HTTP conventions every Herald endpoint shares: one error shape, one way
//! to read a bearer credential, one readiness endpoint.

use crate::config::Secret;
use crate::metrics::{CONTENT_TYPE, Registry};
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
pub fn require_api_key(headers: &HeaderMap, api_key: &Secret) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(given) if constant_time_eq(given.as_bytes(), api_key.expose().as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("wrong API key")),
        None => Err(ApiError::unauthorized(
            "missing `Authorization: Bearer <api key>` header",
        )),
    }
}

/// A service as a router plus what operators ask of it. Every service builds
/// one; the cluster binaries serve each alone, the single-process mode merges
/// them on one port.
pub struct Service {
    /// The public endpoints (`/v1/...`, `/ws`...).
    pub api: axum::Router,
    /// Becomes true once the service does its work (has its partitions...).
    pub ready: tokio::sync::watch::Receiver<bool>,
    /// The process's metrics registry, which the service registered into.
    pub metrics: Registry,
}

impl Service {
    /// A service that is ready from the start and counts nothing.
    pub fn always_ready(api: axum::Router) -> Self {
        Self {
            api,
            ready: tokio::sync::watch::channel(true).1,
            metrics: Registry::default(),
        }
    }

    /// Several services as one: their APIs merged (paths must not clash),
    /// ready when all are. Services of one process share one metrics
    /// registry (the caller hands the same one to each), so every metric is
    /// served once.
    ///
    /// # Panics
    /// If two services counting something registered into different
    /// registries: a wiring mistake, whose metrics would be served twice or
    /// not at all.
    pub fn merge(services: Vec<Service>) -> Self {
        let mut api = axum::Router::new();
        let mut readies = Vec::new();
        let mut metrics: Option<Registry> = None;
        for s in services {
            api = api.merge(s.api);
            readies.push(s.ready);
            if s.metrics.is_empty() {
                continue;
            }
            if let Some(shared) = &metrics {
                assert!(
                    shared.same_as(&s.metrics),
                    "services merged into one process must share one metrics registry"
                );
            } else {
                metrics = Some(s.metrics);
            }
        }
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            for mut r in readies {
                if r.wait_for(|ready| *ready).await.is_err() {
                    return;
                }
            }
            ready_tx.send_replace(true);
        });
        Self {
            api,
            ready,
            metrics: metrics.unwrap_or_default(),
        }
    }

    /// The API plus `/healthz` (the process answers), `/readyz` (200 once
    /// ready, else 503) and `/metrics`.
    pub fn into_router(self) -> axum::Router {
        use axum::routing::get;
        let ready = self.ready;
        let metrics = self.metrics;
        self.api
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let ready = *ready.borrow();
                    async move {
                        if ready {
                            Ok("ready")
                        } else {
                            Err(ApiError::unavailable("not ready yet"))
                        }
                    }
                }),
            )
            .route(
                "/metrics",
                get(move || {
                    let text = metrics.render();
                    async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], text) }
                }),
            )
    }

    /// Serves the service on `addr` (with TLS when `tls` names a
    /// certificate) until the process is asked to stop.
    pub async fn serve(
        self,
        addr: std::net::SocketAddr,
        tls: &crate::config::Tls,
        name: &str,
    ) -> anyhow::Result<()> {
        let listener = crate::listener::Listener::bind(addr, tls).await?;
        tracing::info!(addr = %listener.local_addr()?, scheme = listener.scheme(), "{name} listening");
        listener.serve(self.into_router(), shutdown_signal()).await
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
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
            require_api_key(&h, &Secret::from("k"))
                .unwrap_err()
                .message
                .contains("missing")
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(
            require_api_key(&h, &Secret::from("k"))
                .unwrap_err()
                .message
                .contains("wrong")
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        assert!(require_api_key(&h, &Secret::from("k")).is_ok());
    }
}
