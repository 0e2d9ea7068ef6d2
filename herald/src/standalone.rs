//! The single-process wiring: every service on one port, on the embedded
//! implementations of the log, the route registry and the store.

use anyhow::Context;
use axum::Json;
use axum::routing::get;
use clap::Parser;
use herald_common::http::Service;
use herald_common::log::Log;
use herald_common::routes::RouteRegistry;
use herald_common::store::MessageStore;
use herald_embedded::{MemoryLog, MemoryRoutes, SqliteStore};
use pusher::auth::{AuthError, Identity, Verifier};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The one address every endpoint is served on.
    #[arg(long, env = "HERALD_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,

    /// Where messages (SQLite), the API key and the token secret are kept.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    data_dir: PathBuf,

    /// Let the demo page fetch the API key (`GET /demo/config`), so anyone
    /// who can reach the address can mint tokens and send. Local use only.
    #[arg(long)]
    demo: bool,
}

/// A secret from the environment, else the data directory, else made now and
/// kept there: stable across restarts, so tokens and clients keep working.
fn secret(data_dir: &Path, env: &str, file: &str) -> anyhow::Result<String> {
    if let Ok(value) = std::env::var(env)
        && !value.is_empty()
    {
        return Ok(value);
    }
    let path = data_dir.join(file);
    if let Ok(value) = std::fs::read_to_string(&path) {
        let value = value.trim().to_string();
        if !value.is_empty() {
            return Ok(value);
        }
    }
    let value: String = (0..32)
        .map(|_| format!("{:x}", rand::random::<u8>() % 16))
        .collect();
    // Readable by the owner only: whoever reads it can mint tokens.
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(value)
}

/// Parses a service's configuration from its defaults (and `HERALD_*`
/// environment) plus the given flags, as its own binary would.
fn config<C: clap::Args>(flags: &[&str]) -> anyhow::Result<C> {
    #[derive(Parser)]
    struct Wrapper<C: clap::Args> {
        #[command(flatten)]
        config: C,
    }
    let argv = std::iter::once("herald").chain(flags.iter().copied());
    Ok(Wrapper::<C>::try_parse_from(argv)?.config)
}

/// Checks tokens in process with authsvc's own verification: the pusher's
/// question, without the HTTP round trip.
struct LocalVerifier {
    secret: String,
}

#[async_trait::async_trait]
impl Verifier for LocalVerifier {
    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = authsvc::jwt::verify(
            token,
            self.secret.as_bytes(),
            herald_common::time::now_secs(),
        )
        .map_err(|e| AuthError::Rejected(e.to_string()))?;
        Ok(Identity {
            user_id: claims.sub,
            expires_at: claims.exp,
            topics: claims.topics,
            publish: claims.publish,
            direct: claims.direct,
        })
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let api_key = secret(&args.data_dir, "HERALD_API_KEY", "api_key")?;
    let jwt_secret = secret(&args.data_dir, "HERALD_JWT_SECRET", "jwt_secret")?;

    let store: Arc<dyn MessageStore> = Arc::new(SqliteStore::open(&args.data_dir).await?);
    let log: Arc<dyn Log> = Arc::new(MemoryLog::dropping_consumed());
    let routes: Arc<dyn RouteRegistry> = Arc::new(MemoryRoutes::new());

    let addr = args.addr.to_string();
    let auth: authsvc::Config = config(&[
        "--addr",
        &addr,
        "--api-key",
        &api_key,
        "--jwt-secret",
        &jwt_secret,
    ])?;
    let collector: collector::Config = config(&["--addr", &addr, "--api-key", &api_key])?;
    let dispatcher: dispatcher::Config = config(&["--addr", &addr])?;
    let pusher: pusher::Config =
        config(&["--addr", &addr, "--node-id", "standalone", "--demo-page"])?;
    let verifier = Arc::new(LocalVerifier { secret: jwt_secret });

    let mut services = vec![
        authsvc::start(auth),
        collector::start(collector, store.clone(), log.clone()),
        dispatcher::start(dispatcher, log.clone(), routes.clone()),
        pusher::start(pusher, log, routes, store, verifier).await?,
    ];
    if args.demo {
        let key = api_key.clone();
        services.push(Service::always_ready(axum::Router::new().route(
            "/demo/config",
            get(move || {
                let key = key.clone();
                async move { Json(serde_json::json!({"api_key": key})) }
            }),
        )));
    }
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let bound = listener.local_addr()?;
    println!("Herald standalone listening on http://{bound}/");
    println!("  data directory: {}", args.data_dir.display());
    println!("  API key: {api_key}");
    if args.demo {
        println!("  demo mode: the page at http://{bound}/ can mint tokens (local use only)");
    }
    axum::serve(listener, Service::merge(services).into_router())
        .with_graceful_shutdown(herald_common::http::shutdown_signal())
        .await?;
    Ok(())
}
