//! The API key: the shared secret business systems present to the collector
//! and authsvc as `Authorization: Bearer <api key>`.

use super::Secret;
use serde::Serialize;

/// The `--api-key` flag (`HERALD_API_KEY`) of every program that checks the
/// key. Flattened into a program's flags (`#[command(flatten)]` and
/// `#[serde(flatten)]`), it sets that program's `api_key`.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct ApiKeyFlag {
    /// The API key business systems present (`Authorization: Bearer <key>`).
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl ApiKeyFlag {
    /// Refuses a program's unset or short `api_key` (see
    /// [`Secret::require`]), naming every way to set it.
    pub fn require(section: &str, key: &Secret) -> Result<(), String> {
        key.require(section, "api_key", "--api-key or HERALD_API_KEY")
    }
}
