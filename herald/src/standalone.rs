//! The single-process wiring: every service on one port, on the embedded
//! implementations of the log, the route registry and the store.

use anyhow::Context;
use herald_common::config::{
    ApiKeyFlag, Cli, Secret, Settings, Tls, TlsFlags, environment, file_layout, load,
};
use herald_common::http::Service;
use herald_common::listener::Listener;
use herald_common::log::Log;
use herald_common::metrics::Registry;
use herald_common::routes::RouteRegistry;
use herald_common::store::MessageStore;
use herald_embedded::{MemoryLog, MemoryRoutes, SqliteStore};
use pusher::auth::{AuthError, Identity, Verifier};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `herald standalone`'s own settings: the `[standalone]` section. The
/// services inside read their own sections and the environment as their
/// programs would (see [`Services`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The one address every endpoint is served on.
    pub addr: SocketAddr,
    /// Where messages (SQLite), the API key and the token secret are kept.
    pub data_dir: PathBuf,
    /// Let the demo page fetch the API key (`GET /demo/config`, answered
    /// only to a loopback `Host`), so any page opened on this machine can
    /// mint tokens and send. For a local machine only.
    pub demo: bool,
    /// The API key; when empty, the one kept in the data directory.
    pub api_key: Secret,
    /// The token secret; when empty, the one kept in the data directory.
    pub jwt_secret: Secret,
    /// TLS on `addr` (the shared `[tls]` section): HTTPS and wss://.
    pub tls: Tls,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./herald-data"),
            demo: false,
            api_key: Secret::default(),
            jwt_secret: Secret::default(),
            tls: Tls::default(),
        }
    }
}

/// `herald standalone`'s flags, each with its environment variable.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct Flags {
    /// The one address every endpoint is served on.
    #[arg(long, env = "HERALD_ADDR")]
    addr: Option<SocketAddr>,

    /// Where messages (SQLite), the API key and the token secret are kept.
    #[arg(long, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Let the demo page fetch the API key (`GET /demo/config`, answered
    /// only to a loopback `Host`), so any page opened on this machine can
    /// mint tokens and send. For a local machine only.
    #[arg(long, env = "HERALD_DEMO", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    demo: Option<bool>,

    // Unset, the key kept in the data directory.
    #[command(flatten)]
    #[serde(flatten)]
    api_key: ApiKeyFlag,

    /// The token secret (else the one kept in the data directory).
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,

    #[command(flatten)]
    tls: TlsFlags,
}

impl Settings for Config {
    const SECTION: &'static str = "standalone";
    const SHARED: &'static [&'static str] = &["tls"];
    type Flags = Flags;

    fn check(&self) -> Result<(), String> {
        self.tls.check()
    }
}

/// A secret kept in the data directory, else made now and kept there: stable
/// across restarts, so tokens and clients keep working.
fn kept_secret(data_dir: &Path, file: &str) -> anyhow::Result<Secret> {
    let path = data_dir.join(file);
    if let Ok(value) = std::fs::read_to_string(&path) {
        let value = value.trim().to_string();
        if !value.is_empty() {
            return Ok(Secret::from(value));
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
    Ok(Secret::from(value))
}

/// The services inside, each configured from the file's sections and the
/// environment as its own program would be (their flags are not on this
/// command line), except for what standalone decides: one address, its
/// secrets, the node id `standalone` and the demo page.
struct Services {
    auth: authsvc::Config,
    collector: collector::Config,
    dispatcher: dispatcher::Config,
    pusher: pusher::Config,
}

/// A service's settings from the file and the environment alone.
fn without_flags<C: Settings>(file: Option<&Path>) -> anyhow::Result<C> {
    load::<C>(file, &environment::<C::Flags>()?)
}

impl Services {
    fn configure(
        file: Option<&Path>,
        own: &Config,
        api_key: &Secret,
        jwt_secret: &Secret,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            auth: authsvc::Config {
                addr: own.addr,
                api_key: api_key.clone(),
                jwt_secret: jwt_secret.clone(),
                ..without_flags(file)?
            },
            collector: collector::Config {
                addr: own.addr,
                api_key: api_key.clone(),
                ..without_flags(file)?
            },
            dispatcher: dispatcher::Config {
                addr: own.addr,
                ..without_flags(file)?
            },
            pusher: pusher::Config {
                addr: own.addr,
                node_id: "standalone".into(),
                demo_page: true,
                ..without_flags(file)?
            },
        })
    }

    /// Every setting in effect, as one configuration file.
    fn file_layout(&self, own: &Config) -> anyhow::Result<toml::Table> {
        let mut file = file_layout(own)?;
        file.extend(file_layout(&self.auth)?);
        file.extend(file_layout(&self.collector)?);
        file.extend(file_layout(&self.dispatcher)?);
        file.extend(file_layout(&self.pusher)?);
        Ok(file)
    }

    fn check(&self) -> anyhow::Result<()> {
        fn checked<C: Settings>(config: &C) -> anyhow::Result<()> {
            config
                .check()
                .map_err(|e| anyhow::anyhow!("{} configuration: {e}", C::SECTION))
        }
        checked(&self.auth)?;
        checked(&self.collector)?;
        checked(&self.dispatcher)?;
        checked(&self.pusher)
    }
}

/// Checks tokens in process with authsvc's own verification: the pusher's
/// question, without the HTTP round trip.
struct LocalVerifier {
    secret: Secret,
}

#[async_trait::async_trait]
impl Verifier for LocalVerifier {
    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        authsvc::verify_token(token, &self.secret, herald_common::time::now_secs())
            .map_err(|e| AuthError::Rejected(e.to_string()))
    }
}

pub async fn run(cli: Cli<Config>) -> anyhow::Result<()> {
    let file = cli.config_file.as_deref();
    let own = cli.load()?;
    if cli.print_config {
        // Secrets the data directory would supply are shown as unset: printing
        // reads and writes nothing there.
        let services = Services::configure(file, &own, &own.api_key, &own.jwt_secret)?;
        print!("{}", toml::to_string(&services.file_layout(&own)?)?);
        return Ok(());
    }
    own.check()
        .map_err(|e| anyhow::anyhow!("standalone configuration: {e}"))?;
    std::fs::create_dir_all(&own.data_dir)
        .with_context(|| format!("creating {}", own.data_dir.display()))?;
    let api_key = match &own.api_key {
        key if key.is_empty() => kept_secret(&own.data_dir, "api_key")?,
        key => key.clone(),
    };
    let jwt_secret = match &own.jwt_secret {
        secret if secret.is_empty() => kept_secret(&own.data_dir, "jwt_secret")?,
        secret => secret.clone(),
    };
    let Services {
        auth,
        collector,
        dispatcher,
        pusher,
    } = {
        let services = Services::configure(file, &own, &api_key, &jwt_secret)?;
        services.check()?;
        services
    };

    let store: Arc<dyn MessageStore> = Arc::new(SqliteStore::open(&own.data_dir).await?);
    let log: Arc<dyn Log> = Arc::new(MemoryLog::dropping_consumed());
    let routes: Arc<dyn RouteRegistry> = Arc::new(MemoryRoutes::new());
    let verifier = Arc::new(LocalVerifier { secret: jwt_secret });
    // One registry for the process: `/metrics` shows every service's once.
    let metrics = Registry::default();

    let mut services = vec![
        authsvc::start(auth),
        collector::start(collector, store.clone(), log.clone(), &metrics),
        dispatcher::start(dispatcher, log.clone(), routes.clone(), &metrics),
        pusher::start(pusher, log, routes, store, verifier, &metrics).await?,
    ];
    if own.demo {
        services.push(crate::demo::service(api_key.expose().to_string()));
    }
    let listener = Listener::bind(own.addr, &own.tls).await?;
    let bound = listener.local_addr()?;
    let scheme = listener.scheme();
    println!("Herald standalone listening on {scheme}://{bound}/");
    println!("  data directory: {}", own.data_dir.display());
    println!("  API key: {}", api_key.expose());
    if own.demo {
        println!("  demo mode: the page at {scheme}://{bound}/ can mint tokens (local use only)");
    }
    listener
        .serve(
            Service::merge(services).into_router(),
            herald_common::http::shutdown_signal(),
        )
        .await
}
