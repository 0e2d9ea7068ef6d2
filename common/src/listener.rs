//! Where a program listens: one TCP socket, speaking TLS when the `[tls]`
//! section names a certificate. Every Herald program serves through this,
//! so HTTPS, `wss://` and the certificate reload work the same everywhere.

use crate::config::Tls;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// How long requests in flight may finish after the program is asked to
/// stop, before their connections are cut (TLS listener; upgraded
/// WebSockets are no longer requests and end with the process).
const GRACE: Duration = Duration::from_secs(10);

/// A bound listening socket, plain or TLS.
pub struct Listener {
    tcp: std::net::TcpListener,
    /// The certificate in use and the files it came from (reloaded on SIGHUP).
    tls: Option<(RustlsConfig, Tls)>,
}

impl Listener {
    /// Binds `addr` and, with TLS, reads the certificate and key now, so a
    /// missing or malformed file stops the program at start with its name.
    pub async fn bind(addr: SocketAddr, tls: &Tls) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?
            .into_std()?;
        let tls = if tls.enabled() {
            let config = RustlsConfig::from_pem_file(&tls.cert_file, &tls.key_file)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "TLS certificate {} / key {}: {e}",
                        tls.cert_file.display(),
                        tls.key_file.display()
                    )
                })?;
            Some((config, tls.clone()))
        } else {
            None
        };
        Ok(Self { tcp, tls })
    }

    /// The address bound (port 0 asks the kernel for a free port).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// `https` or `http`, for the address a program prints.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves `router` until `shutdown` resolves, then lets requests in
    /// flight finish.
    pub async fn serve(
        self,
        router: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Some((config, files)) = self.tls else {
            let tcp = tokio::net::TcpListener::from_std(self.tcp)?;
            axum::serve(tcp, router)
                .with_graceful_shutdown(shutdown)
                .await?;
            return Ok(());
        };
        let handle = Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopper.graceful_shutdown(Some(GRACE));
        });
        let reloader = tokio::spawn(reload_on_hangup(config.clone(), files));
        let served = axum_server::from_tcp_rustls(self.tcp, config)?
            .handle(handle)
            .serve(router.into_make_service())
            .await;
        reloader.abort();
        Ok(served?)
    }
}

/// Rereads the certificate and key on every SIGHUP, the signal operators
/// (and certbot-style renewers) send after replacing the files. New
/// handshakes use the new pair; open connections keep theirs. A pair that
/// does not load is logged and the one in use stays, so a half-written
/// renewal never takes the listener down.
async fn reload_on_hangup(config: RustlsConfig, files: Tls) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: the TLS certificate will not be reloaded");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        match config
            .reload_from_pem_file(&files.cert_file, &files.key_file)
            .await
        {
            Ok(()) => tracing::info!(cert = %files.cert_file.display(), "TLS certificate reloaded"),
            Err(e) => tracing::error!(
                cert = %files.cert_file.display(),
                error = %e,
                "TLS certificate not reloaded; the previous one stays in use"
            ),
        }
    }
}
