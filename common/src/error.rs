//! What the ports' errors keep of the failure that caused them.
//!
//! [`LogError`](crate::log::LogError), [`RouteError`](crate::routes::RouteError)
//! and [`StoreError`](crate::store::StoreError) each carry a message and,
//! when an adapter's client failed, that client's error itself as their
//! `source()`: a report that walks the chain (anyhow's `{:#}` or `{:?}`,
//! tracing's `error = &e as &dyn Error`) reaches the driver's own error and
//! its causes, and code can downcast to it. The message repeats the cause's
//! text, so the one-line logs (`error = %e`) and error answers that show only
//! `Display` stay as informative as they were.

use std::error::Error;
use std::sync::Arc;

/// An adapter's underlying error, shared so that errors holding it stay
/// `Clone` (the store's errors are handed to every waiter of a batch).
pub type Cause = Arc<dyn Error + Send + Sync + 'static>;

/// `cause` as a [`Cause`], with its text for the error's message, prefixed
/// by `context` (what was being done) when there is one.
pub fn described(context: &str, cause: impl Error + Send + Sync + 'static) -> (String, Cause) {
    let message = if context.is_empty() {
        cause.to_string()
    } else {
        format!("{context}: {cause}")
    };
    (message, Arc::new(cause))
}
