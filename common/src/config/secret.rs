//! A secret setting (the API key, the token secret): kept out of logs and
//! printed configurations.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// What a secret looks like wherever it is shown.
const MASK: &str = "********";

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
}
