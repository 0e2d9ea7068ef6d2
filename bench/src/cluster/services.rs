//! The cluster under test: authsvc, one collector, one dispatcher and two
//! pushers, started from `--bin-dir` on free loopback ports against the
//! shared servers, all in one fresh namespace.
//!
//! Each service inherits the benchmark's environment (so `bench/run-cluster`
//! passes the local settings of infra/dev.env, such as the Kafka fetch
//! window), with the namespace, servers and secrets of this run on top.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a service may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// One running service; killed when dropped.
pub struct Service {
    pub name: String,
    pub port: u16,
    pub pid: u32,
    log: PathBuf,
    child: Child,
    /// authsvc has no readiness of its own beyond being up.
    ready_path: &'static str,
}

impl Service {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> Result<()> {
        let url = format!("{}/{}", self.url(), self.ready_path);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}); log:\n{}", self.name, self.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {READY_WITHIN:?}; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settings every service of the run shares.
pub struct Setup<'a> {
    pub bin_dir: &'a Path,
    pub logs: &'a Path,
    pub namespace: &'a str,
    pub api_key: &'a str,
    pub jwt_secret: &'a str,
    pub kafka: &'a str,
    pub redis: &'a str,
    pub mongo: &'a str,
}

pub struct Cluster {
    pub authsvc: Service,
    pub collector: Service,
    pub dispatcher: Service,
    pub pushers: Vec<Service>,
}

impl Cluster {
    /// Starts every service, then waits for each to be ready (the collector
    /// and dispatcher: their consumers hold their partitions).
    pub async fn start(setup: &Setup<'_>) -> Result<Cluster> {
        let authsvc = spawn(setup, "herald-authsvc", "authsvc", &[], "healthz")?;
        let auth_url = authsvc.url();
        let collector = spawn(setup, "herald-collector", "collector", &[], "readyz")?;
        let dispatcher = spawn(setup, "herald-dispatcher", "dispatcher", &[], "readyz")?;
        let mut pushers = Vec::new();
        for node in ["node-a", "node-b"] {
            pushers.push(spawn(
                setup,
                "herald-pusher",
                &format!("pusher-{}", &node[5..]),
                &["--node-id", node, "--auth-url", &auth_url],
                "readyz",
            )?);
        }
        let mut cluster = Cluster {
            authsvc,
            collector,
            dispatcher,
            pushers,
        };
        let http = reqwest::Client::new();
        for service in cluster.services_mut() {
            service.wait_ready(&http).await?;
        }
        Ok(cluster)
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        [&self.authsvc, &self.collector, &self.dispatcher]
            .into_iter()
            .chain(self.pushers.iter())
    }

    fn services_mut(&mut self) -> impl Iterator<Item = &mut Service> {
        [&mut self.authsvc, &mut self.collector, &mut self.dispatcher]
            .into_iter()
            .chain(self.pushers.iter_mut())
    }

    /// Fails, with its log, if a service has died.
    pub fn check_alive(&mut self) -> Result<()> {
        for service in self.services_mut() {
            if !service.alive() {
                bail!("{} died; log:\n{}", service.name, service.log_tail());
            }
        }
        Ok(())
    }
}

fn spawn(
    setup: &Setup<'_>,
    binary: &str,
    name: &str,
    args: &[&str],
    ready_path: &'static str,
) -> Result<Service> {
    let port = free_port()?;
    let log = setup.logs.join(format!("{name}.log"));
    let out = File::create(&log)?;
    let program = setup.bin_dir.join(binary);
    let child = Command::new(&program)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .env("HERALD_NAMESPACE", setup.namespace)
        .env("HERALD_API_KEY", setup.api_key)
        .env("HERALD_JWT_SECRET", setup.jwt_secret)
        .env("HERALD_KAFKA_BROKERS", setup.kafka)
        .env("HERALD_REDIS_URL", setup.redis)
        .env("HERALD_MONGO_URI", setup.mongo)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {} (build it first)", program.display()))?;
    Ok(Service {
        name: name.to_string(),
        port,
        pid: child.id(),
        log,
        child,
        ready_path,
    })
}

/// A free TCP port on loopback (the kernel's pick; released at once, so
/// another process could take it first: then the service fails to start
/// and the run says so).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
