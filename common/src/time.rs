//! Wall-clock helpers: message timestamps and route expiries are unix
//! milliseconds so that every service, whatever its language, reads them alike.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch, the unit of every `ts` Herald emits.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the unix epoch, the unit of token expiries (JWT `exp`).
pub fn now_secs() -> i64 {
    now_ms() / 1000
}
