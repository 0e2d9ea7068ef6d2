//! The pusher's settings: the `[pusher]` section, `[infra]`, `[limits]` and `[tls]`.

use herald_common::config::{Infra, InfraFlags, LimitsFlags, Settings, Tls, TlsFlags, required};
use herald_common::envelope::Limits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// pusher's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the WebSocket endpoint (`/ws`) and health endpoints.
    pub addr: SocketAddr,
    /// This node's unique id: its topic is `<namespace>.node.<node_id>`.
    pub node_id: String,
    /// Base URL of authsvc.
    pub auth_url: String,
    /// Frames a connection may have queued before it counts as too slow and
    /// is closed (code 4001).
    pub send_queue: usize,
    /// Lease of routes and node liveness in the registry, seconds.
    pub route_ttl_secs: u64,
    /// Serve the demo page at `/`.
    pub demo_page: bool,
    /// Largest frame a client may send, bytes.
    pub max_client_frame: usize,
    /// Longest one write to a client's socket may take, ms: a client that
    /// stops reading is closed (4001) after it, and its connection freed.
    pub write_timeout_ms: u64,
    pub infra: Infra,
    /// What a client publish may be: the collector's limits, so that a
    /// publish the pusher acknowledges is one the collector stores.
    pub limits: Limits,
    /// TLS on `addr` (the shared `[tls]` section): HTTPS and wss://.
    pub tls: Tls,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 7010)),
            node_id: String::new(),
            auth_url: "http://127.0.0.1:7001".into(),
            send_queue: 256,
            route_ttl_secs: 30,
            demo_page: false,
            max_client_frame: 64 * 1024,
            write_timeout_ms: 10_000,
            infra: Infra::default(),
            limits: Limits::default(),
            tls: Tls::default(),
        }
    }
}

/// pusher's flags, each with its environment variable.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct Flags {
    /// Address of the WebSocket endpoint (`/ws`) and health endpoints.
    #[arg(long, env = "HERALD_PUSHER_ADDR")]
    pub addr: Option<SocketAddr>,

    /// This node's unique id: its topic is `<namespace>.node.<node_id>`.
    #[arg(long, env = "HERALD_NODE_ID")]
    pub node_id: Option<String>,

    /// Base URL of authsvc.
    #[arg(long, env = "HERALD_AUTH_URL")]
    pub auth_url: Option<String>,

    /// Frames a connection may have queued before it is closed (code 4001).
    #[arg(long, env = "HERALD_SEND_QUEUE")]
    pub send_queue: Option<usize>,

    /// Lease of routes and node liveness in the registry, seconds.
    #[arg(long, env = "HERALD_ROUTE_TTL_SECS")]
    pub route_ttl_secs: Option<u64>,

    /// Serve the demo page at `/`.
    #[arg(long, env = "HERALD_DEMO_PAGE", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo_page: Option<bool>,

    /// Largest frame a client may send, bytes.
    #[arg(long, env = "HERALD_MAX_CLIENT_FRAME")]
    pub max_client_frame: Option<usize>,

    /// Longest one write to a client's socket may take, ms (then close 4001).
    #[arg(long, env = "HERALD_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,

    #[command(flatten)]
    pub infra: InfraFlags,

    #[command(flatten)]
    pub limits: LimitsFlags,

    #[command(flatten)]
    pub tls: TlsFlags,
}

impl Settings for Config {
    const SECTION: &'static str = "pusher";
    const SHARED: &'static [&'static str] = &["infra", "limits", "tls"];
    type Flags = Flags;

    fn check(&self) -> Result<(), String> {
        self.tls.check()?;
        if self.node_id.is_empty() {
            return Err(required(
                Self::SECTION,
                "node_id",
                "--node-id or HERALD_NODE_ID",
            ));
        }
        if self.send_queue == 0 || self.route_ttl_secs == 0 || self.write_timeout_ms == 0 {
            return Err(
                "`send_queue`, `route_ttl_secs` and `write_timeout_ms` must be at least 1".into(),
            );
        }
        Ok(())
    }
}

impl Config {
    pub fn write_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.write_timeout_ms)
    }
}
