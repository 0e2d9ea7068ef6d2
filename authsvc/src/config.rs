//! authsvc's settings: the `[authsvc]` section, `[limits]` and `[tls]`.

use herald_common::config::{ApiKeyFlag, LimitsFlags, Secret, Settings, Tls, TlsFlags};
use herald_common::envelope::Limits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// authsvc's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// API key required to mint tokens.
    pub api_key: Secret,
    /// HMAC secret that signs tokens (share it with backends that mint their own).
    pub jwt_secret: Secret,
    /// Lifetime of a token when the request names none, seconds.
    pub default_ttl_secs: i64,
    /// Longest lifetime a token may be given, seconds.
    pub max_ttl_secs: i64,
    /// Most `*` wildcards one `topics` or `publish` pattern of a minted
    /// token may hold.
    pub max_pattern_stars: usize,
    /// The shared limits (the longest user id).
    pub limits: Limits,
    /// TLS on `addr` (the shared `[tls]` section): HTTPS and wss://.
    pub tls: Tls,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 7001)),
            api_key: Secret::default(),
            jwt_secret: Secret::default(),
            default_ttl_secs: 3600,
            max_ttl_secs: 30 * 24 * 3600,
            max_pattern_stars: 8,
            limits: Limits::default(),
            tls: Tls::default(),
        }
    }
}

/// authsvc's flags, each with its environment variable.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct Flags {
    /// Address to listen on.
    #[arg(long, env = "HERALD_AUTH_ADDR")]
    pub addr: Option<SocketAddr>,

    #[command(flatten)]
    #[serde(flatten)]
    pub api_key: ApiKeyFlag,

    /// HMAC secret that signs tokens (share it with backends that mint their own).
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of a token when the request names none, seconds.
    #[arg(long, env = "HERALD_TOKEN_TTL_SECS")]
    pub default_ttl_secs: Option<i64>,

    /// Longest lifetime a token may be given, seconds.
    #[arg(long, env = "HERALD_TOKEN_MAX_TTL_SECS")]
    pub max_ttl_secs: Option<i64>,

    /// Most `*` wildcards one `topics` or `publish` pattern of a minted
    /// token may hold.
    #[arg(long, env = "HERALD_MAX_PATTERN_STARS")]
    pub max_pattern_stars: Option<usize>,

    #[command(flatten)]
    pub limits: LimitsFlags,

    #[command(flatten)]
    pub tls: TlsFlags,
}

impl Settings for Config {
    const SECTION: &'static str = "authsvc";
    const SHARED: &'static [&'static str] = &["limits", "tls"];
    type Flags = Flags;

    fn check(&self) -> Result<(), String> {
        self.tls.check()?;
        ApiKeyFlag::require(Self::SECTION, &self.api_key)?;
        self.jwt_secret.require(
            Self::SECTION,
            "jwt_secret",
            "--jwt-secret or HERALD_JWT_SECRET",
        )?;
        if self.default_ttl_secs <= 0 || self.default_ttl_secs > self.max_ttl_secs {
            return Err(format!(
                "`default_ttl_secs` must be 1 to `max_ttl_secs` ({}), not {}",
                self.max_ttl_secs, self.default_ttl_secs
            ));
        }
        Ok(())
    }
}
