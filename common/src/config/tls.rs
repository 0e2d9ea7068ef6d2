//! The `[tls]` section: HTTPS and `wss://` on a program's listener. Shared,
//! so one file gives every program of a deployment the same certificate.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A certificate chain and its private key, PEM files. Both empty: plain
/// HTTP (TLS terminated in front, or none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Tls {
    /// Whether the listener speaks TLS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    /// Both files or neither: half a pair is a mistake, not plain HTTP.
    pub fn check(&self) -> Result<(), String> {
        match (
            self.cert_file.as_os_str().is_empty(),
            self.key_file.as_os_str().is_empty(),
        ) {
            (true, false) | (false, true) => Err(
                "[tls] needs both `cert_file` and `key_file` (--tls-cert-file, --tls-key-file), or neither"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

/// The `[tls]` flags, each with its environment variable.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct TlsFlags {
    /// PEM certificate chain: serve HTTPS and wss:// (reloaded on SIGHUP).
    #[arg(
        long = "tls-cert-file",
        env = "HERALD_TLS_CERT_FILE",
        value_name = "PATH"
    )]
    pub cert_file: Option<PathBuf>,

    /// PEM private key of the certificate (reloaded on SIGHUP).
    #[arg(
        long = "tls-key-file",
        env = "HERALD_TLS_KEY_FILE",
        value_name = "PATH"
    )]
    pub key_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_pair_is_refused() {
        assert!(Tls::default().check().is_ok());
        assert!(!Tls::default().enabled());
        let cert_only = Tls {
            cert_file: "c.pem".into(),
            ..Tls::default()
        };
        assert!(cert_only.check().unwrap_err().contains("key_file"));
        let key_only = Tls {
            key_file: "k.pem".into(),
            ..Tls::default()
        };
        assert!(key_only.check().is_err());
        let both = Tls {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
        };
        assert!(both.check().is_ok() && both.enabled());
    }
}
