//! Configuration: defaults, then one TOML file, then `HERALD_*` environment
//! variables, then flags, each layer overriding the one before.
//!
//! A file is divided into sections: one per program (`[authsvc]`,
//! `[collector]`, `[dispatcher]`, `[pusher]`, `[standalone]`) and two shared
//! ones, `[infra]`, `[limits]` and `[tls]`, for what services must agree on. A program
//! reads its own section and the shared sections it uses, so one file can
//! configure a whole deployment; the sections of other programs are left to
//! them. A key a program does not know is an error that names it.
//!
//! A program's settings are a serde struct with `Default` (the defaults are
//! written there, once) implementing [`Settings`]; its flags are a clap struct
//! of options, each with its environment variable, named after the setting it
//! overrides. clap already ranks a flag over its environment variable; what
//! either gave is merged over the file by [`load`].

mod api_key;
mod cli;
mod infra;
mod layers;
mod limits;
mod secret;
mod tls;

pub use api_key::ApiKeyFlag;
pub use cli::{Cli, environment};
pub use infra::{Infra, InfraFlags};
pub use layers::{file_layout, load};
pub use limits::LimitsFlags;
pub use secret::{MIN_SECRET_BYTES, Secret};
pub use tls::{Tls, TlsFlags};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every section a configuration file may have.
pub const SECTIONS: &[&str] = &[
    "infra",
    "limits",
    "tls",
    "authsvc",
    "collector",
    "dispatcher",
    "pusher",
    "standalone",
];

/// A program's settings.
///
/// The struct's fields are the keys of its own section, except the fields
/// named in [`Settings::SHARED`], which hold the shared sections of the same
/// names.
pub trait Settings: Serialize + DeserializeOwned + Default {
    /// The section of the program's own keys.
    const SECTION: &'static str;
    /// The shared sections the program reads (`infra`, `limits`, `tls`).
    const SHARED: &'static [&'static str];
    /// The program's flags. Their serialized form has the settings' shape:
    /// same names, `None` for a flag not given.
    type Flags: clap::Args + Serialize;

    /// What the types cannot say: settings without which the program cannot
    /// run (a missing API key...). Checked before running, not for
    /// `--print-config`.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The message for a required setting left empty, naming every way to set it.
pub fn required(section: &str, key: &str, flag_and_env: &str) -> String {
    format!(
        "`{key}` is not set: give {flag_and_env}, or `{key}` in the [{section}] section of the --config file"
    )
}
