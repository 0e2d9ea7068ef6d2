//! The demo page's configuration endpoint, `GET /demo/config`: it hands the
//! API key to the page served beside it, so it must answer that page only.
//!
//! A browser sends the name it used in `Host`. A site on the internet can
//! point its own name at 127.0.0.1 (DNS rebinding) and have its page read
//! from a local Herald as "same origin"; its requests still carry the
//! site's name. Answering only loopback names (`localhost`, `127.0.0.1`,
//! `[::1]`, any port) lets a page opened on this machine through one of them
//! work and refuses every other name with 403.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use herald_common::http::ApiError;
use herald_common::http::Service;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The `/demo/config` route, answering `api_key` to loopback hosts only.
pub fn service(api_key: String) -> Service {
    Service::always_ready(axum::Router::new().route(
        "/demo/config",
        axum::routing::get(move |headers: HeaderMap| {
            let key = api_key.clone();
            async move { config(&headers, &key) }
        }),
    ))
}

fn config(headers: &HeaderMap, api_key: &str) -> Result<Json<serde_json::Value>, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !is_loopback_host(host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the demo configuration is served only to http://localhost, \
             http://127.0.0.1 or http://[::1] (`--demo` is for a local machine)",
        ));
    }
    Ok(Json(serde_json::json!({"api_key": api_key})))
}

/// Whether a `Host` header names this machine by a loopback name: `localhost`
/// (any case), an IPv4 loopback address or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return false;
    }
    if host.starts_with('[') {
        return name.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_or_without_a_port_are_local() {
        for host in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn every_other_name_is_not() {
        for host in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "localhost:8080.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8080",
            "0.0.0.0:8080",
            "[::2]:8080",
            "[::1]x",
            "[::1",
            "::1",
            "localhost:",
            "localhost:99999",
            "localhost:80:80",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
