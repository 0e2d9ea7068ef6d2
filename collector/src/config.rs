//! The collector's settings: the `[collector]` section, `[infra]`,
//! `[limits]` and `[tls]`.

use herald_common::config::{
    ApiKeyFlag, Infra, InfraFlags, LimitsFlags, Secret, Settings, Tls, TlsFlags,
};
use herald_common::envelope::Limits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// collector's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API.
    pub addr: SocketAddr,
    /// API key business systems present.
    pub api_key: Secret,
    /// Largest accepted request body (a batch), bytes.
    pub max_body_bytes: usize,
    /// How long an unpublished message waits before the outbox publishes it.
    pub outbox_grace_ms: u64,
    /// Do not consume the ingest topic (HTTP only).
    pub no_ingest: bool,
    /// Test hook: exit abruptly after storing a message and before publishing
    /// it, as a crash at the worst moment would.
    pub fault_crash_after_store: bool,
    pub infra: Infra,
    /// What a submission may be, over HTTP or the ingest topic alike.
    pub limits: Limits,
    /// TLS on `addr` (the shared `[tls]` section): HTTPS and wss://.
    pub tls: Tls,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 7002)),
            api_key: Secret::default(),
            max_body_bytes: 8 * 1024 * 1024,
            outbox_grace_ms: 3000,
            no_ingest: false,
            fault_crash_after_store: false,
            infra: Infra::default(),
            limits: Limits::default(),
            tls: Tls::default(),
        }
    }
}

/// collector's flags, each with its environment variable.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct Flags {
    /// Address of the HTTP API.
    #[arg(long, env = "HERALD_COLLECTOR_ADDR")]
    pub addr: Option<SocketAddr>,

    #[command(flatten)]
    #[serde(flatten)]
    pub api_key: ApiKeyFlag,

    /// Largest accepted request body (a batch), bytes.
    #[arg(long, env = "HERALD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,

    /// How long an unpublished message waits before the outbox publishes it, ms.
    #[arg(long, env = "HERALD_OUTBOX_GRACE_MS")]
    pub outbox_grace_ms: Option<u64>,

    /// Do not consume the ingest topic (HTTP only).
    #[arg(long, env = "HERALD_NO_INGEST", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_ingest: Option<bool>,

    /// Test hook: exit abruptly after storing a message and before publishing it.
    #[arg(long, env = "HERALD_FAULT_CRASH_AFTER_STORE", hide = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub fault_crash_after_store: Option<bool>,

    #[command(flatten)]
    pub infra: InfraFlags,

    #[command(flatten)]
    pub limits: LimitsFlags,

    #[command(flatten)]
    pub tls: TlsFlags,
}

impl Settings for Config {
    const SECTION: &'static str = "collector";
    const SHARED: &'static [&'static str] = &["infra", "limits", "tls"];
    type Flags = Flags;

    fn check(&self) -> Result<(), String> {
        self.tls.check()?;
        ApiKeyFlag::require(Self::SECTION, &self.api_key)
    }
}
