//! Logging set-up shared by every binary, so that `RUST_LOG` means the same
//! thing everywhere.

/// Installs a stderr subscriber filtered by `RUST_LOG` (default `info`).
/// Calling it twice is harmless: the second call is ignored, which lets the
/// single-process mode and tests start several services in one process.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
