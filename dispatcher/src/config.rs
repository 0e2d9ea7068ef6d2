//! The dispatcher's settings: the `[dispatcher]` section, `[infra]` and `[tls]`.

use herald_common::config::{Infra, InfraFlags, Settings, Tls, TlsFlags};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// dispatcher's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the health and metrics endpoints.
    pub addr: SocketAddr,
    /// Most events routed per batch (one registry round trip each).
    pub batch: usize,
    pub infra: Infra,
    /// TLS on `addr` (the shared `[tls]` section): HTTPS and wss://.
    pub tls: Tls,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 7003)),
            batch: 500,
            infra: Infra::default(),
            tls: Tls::default(),
        }
    }
}

/// dispatcher's flags, each with its environment variable.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct Flags {
    /// Address of the health and metrics endpoints.
    #[arg(long, env = "HERALD_DISPATCHER_ADDR")]
    pub addr: Option<SocketAddr>,

    /// Most events routed per batch (one registry round trip each).
    #[arg(long, env = "HERALD_DISPATCH_BATCH")]
    pub batch: Option<usize>,

    #[command(flatten)]
    pub infra: InfraFlags,

    #[command(flatten)]
    pub tls: TlsFlags,
}

impl Settings for Config {
    const SECTION: &'static str = "dispatcher";
    const SHARED: &'static [&'static str] = &["infra", "tls"];
    type Flags = Flags;

    fn check(&self) -> Result<(), String> {
        self.tls.check()?;
        if self.batch == 0 {
            return Err("`batch` must be at least 1".into());
        }
        Ok(())
    }
}
