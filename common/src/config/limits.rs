//! The `[limits]` flags. The section itself is [`crate::envelope::Limits`]:
//! one set of limits, with one set of defaults, for every service that checks
//! a submission, so the pusher never accepts a client publish the collector
//! would refuse.

use serde::Serialize;

/// The `[limits]` flags, each with its environment variable. Unset ones
/// leave the file's (or the default) value.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct LimitsFlags {
    /// Largest accepted message payload, bytes of JSON text.
    #[arg(long, env = "HERALD_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,

    /// Most recipients one message may name.
    #[arg(long, env = "HERALD_MAX_RECIPIENTS")]
    pub max_recipients: Option<usize>,

    /// Longest accepted user id or idempotency key, bytes.
    #[arg(long, env = "HERALD_MAX_ID_BYTES")]
    pub max_id_bytes: Option<usize>,

    /// Longest retention a message may ask for, seconds.
    #[arg(long, env = "HERALD_MAX_MESSAGE_TTL_SECS")]
    pub max_message_ttl_secs: Option<u64>,

    /// Retention of a message that names none, seconds.
    #[arg(long, env = "HERALD_DEFAULT_MESSAGE_TTL_SECS")]
    pub default_message_ttl_secs: Option<u64>,
}
