//! Who a verified token says its holder is: authsvc's answer to
//! `POST /v1/verify`, and the only identity a pusher trusts.

use serde::{Deserialize, Serialize};

/// Who a verified token says the client is, and what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user_id: String,
    /// When the token expires, unix seconds.
    pub expires_at: i64,
    /// Topic names or `*` patterns the holder may subscribe to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Topic names or patterns the holder may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Whether the holder may message other users directly.
    #[serde(default)]
    pub direct: bool,
}
