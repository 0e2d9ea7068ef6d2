//! A secret setting (the API key, the token secret): kept out of logs and
//! printed configurations.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// What a secret looks like wherever it is shown.
const MASK: &str = "********";

/// The fewest bytes a secret setting may have. A token is an HMAC anyone
/// holding it can test guesses of the secret against, offline and at
/// billions a second, and an API key is tried online: 16 bytes of a random
/// string is out of reach of both; an empty or word-sized one is not.
pub const MIN_SECRET_BYTES: usize = 16;

/// A secret string. `Debug` and `Serialize` show only whether it is set
/// (`********`, or `""` when empty), so a configuration can be logged or
/// printed whole; the service reads the value with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that checks or signs with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Refuses this secret, the setting `key` of `section`, when it is unset
    /// or shorter than [`MIN_SECRET_BYTES`]: the message names the setting
    /// and every way to set it (`flag_and_env`), never the value.
    pub fn require(&self, section: &str, key: &str, flag_and_env: &str) -> Result<(), String> {
        if self.0.is_empty() {
            return Err(super::required(section, key, flag_and_env));
        }
        if self.0.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "`{key}` is {} bytes, too short to be secret: give at least {MIN_SECRET_BYTES} \
                 (a random string), with {flag_and_env}, or `{key}` in the [{section}] section \
                 of the --config file",
                self.0.len()
            ));
        }
        Ok(())
    }

    fn shown(&self) -> &'static str {
        if self.0.is_empty() { "" } else { MASK }
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_only_whether_it_is_set() {
        let key = Secret::from("hunter2");
        assert_eq!(key.expose(), "hunter2");
        assert_eq!(format!("{key:?}"), "\"********\"");
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"********\"");
        assert_eq!(serde_json::to_string(&Secret::default()).unwrap(), "\"\"");
        let read: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(read, key);
    }

    #[test]
    fn a_required_secret_must_be_set_and_long_enough() {
        let how = "--api-key or HERALD_API_KEY";
        let unset = Secret::default().require("collector", "api_key", how);
        assert!(unset.unwrap_err().contains("is not set"));
        let short = Secret::from("fifteen-bytes!!").require("collector", "api_key", how);
        let message = short.unwrap_err();
        assert!(message.contains("15 bytes") && message.contains("at least 16"));
        assert!(message.contains(how) && message.contains("[collector]"));
        assert!(!message.contains("fifteen"), "the value is not shown");
        let long = Secret::from("sixteen-bytes!!!");
        assert_eq!(long.require("collector", "api_key", how), Ok(()));
    }
}
