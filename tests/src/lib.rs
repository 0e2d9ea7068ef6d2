//! A harness for end-to-end tests: it starts Herald's real binaries against
//! the real Redis, Kafka-protocol and MongoDB-protocol servers that
//! `infra/servers up` runs, each test in its own namespace (topics, keys and
//! database), and gives the tests clients that speak the public protocols.
//!
//! Synchronisation is by readiness signals only: `/readyz` of each service,
//! the `welcome` frame of each connection, and the frames themselves.

pub mod client;
pub mod servers;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use client::WsClient;

pub const API_KEY: &str = "test-api-key-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789";
pub const KAFKA: &str = "127.0.0.1:9092";
pub const REDIS: &str = "redis://127.0.0.1:6379/";
pub const MONGO: &str = "mongodb://127.0.0.1:27017/?directConnection=true";

/// Longest a test waits for something that should happen: a guard against a
/// hang, never a synchronisation.
pub const PATIENCE: Duration = Duration::from_secs(60);

fn target_dir() -> PathBuf {
    // Test binaries live in target/<profile>/deps; services in target/<profile>.
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf()
}

/// The path of a built program (`herald-collector`...) beside the tests.
pub fn program(name: &str) -> PathBuf {
    target_dir().join(name)
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A namespace no other test (or earlier run) uses.
pub fn unique_namespace(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u16>(),
        test.replace('_', "-")
    )
}

/// Which service a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Authsvc,
    Collector,
    Dispatcher,
    Pusher,
    /// `herald standalone`: every service in one process.
    Standalone,
}

impl Service {
    fn binary(self) -> &'static str {
        match self {
            Service::Authsvc => "herald-authsvc",
            Service::Collector => "herald-collector",
            Service::Dispatcher => "herald-dispatcher",
            Service::Pusher => "herald-pusher",
            Service::Standalone => "herald",
        }
    }
}

/// One running service process; killed with SIGKILL when dropped.
pub struct Process {
    pub service: Service,
    pub port: u16,
    pub name: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process as `kill -9` would: no clean-up, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets (or, with `None`, removes) an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.envs.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.envs.push((key.to_string(), v.to_string()));
        }
    }

    /// Starts the process again with the same arguments and port.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_ready().await
    }

    fn spawn(&mut self) -> Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(program(self.service.binary()));
        command
            .args(&self.args)
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &self.envs {
            command.env(k, v);
        }
        let child = command.spawn().with_context(|| {
            format!(
                "starting {} (run `cargo build --workspace --bins` first)",
                self.service.binary()
            )
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the service answers its readiness endpoint.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let path = if self.service == Service::Authsvc {
            "healthz"
        } else {
            "readyz"
        };
        let url = format!("{}/{path}", self.url());
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("{} exited ({status}); log:\n{}", self.name, self.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {PATIENCE:?}; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a test cluster runs.
#[derive(Clone, Debug)]
pub struct Topology {
    pub collectors: usize,
    pub dispatchers: usize,
    pub pushers: usize,
    /// Route lease of the pushers, seconds (short in tests of dead nodes).
    pub route_ttl_secs: u64,
    /// Extra `KEY=VALUE` environment of the collectors.
    pub collector_env: Vec<(String, String)>,
    /// Extra `KEY=VALUE` environment of every service (of `herald
    /// standalone` too).
    pub env: Vec<(String, String)>,
    pub send_queue: usize,
    /// Server addresses, when a test runs its own (see [`servers`]).
    pub kafka: String,
    pub redis: String,
    pub mongo: String,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            collectors: 1,
            dispatchers: 1,
            pushers: 2,
            route_ttl_secs: 30,
            collector_env: Vec::new(),
            env: Vec::new(),
            send_queue: 256,
            kafka: KAFKA.to_string(),
            redis: REDIS.to_string(),
            mongo: MONGO.to_string(),
        }
    }
}

/// A whole Herald cluster in one namespace.
pub struct Cluster {
    pub namespace: String,
    pub authsvc: Process,
    pub collectors: Vec<Process>,
    pub dispatchers: Vec<Process>,
    pub pushers: Vec<Process>,
    /// In standalone mode, the one process; the service lists above then all
    /// name its port.
    pub standalone: Option<Process>,
    pub topology: Topology,
    http: reqwest::Client,
}

/// Whether the end-to-end tests target `herald standalone` (environment
/// `HERALD_E2E_TARGET=standalone`) instead of a cluster of services.
pub fn standalone_mode() -> bool {
    std::env::var("HERALD_E2E_TARGET").as_deref() == Ok("standalone")
}

/// For a test of something only a cluster has (Kafka ingest, several nodes,
/// Redis routes): true, after saying so, when the target is standalone.
pub fn skip_in_standalone(needs: &str) -> bool {
    let skip = standalone_mode();
    if skip {
        eprintln!("skipped in standalone mode: needs {needs}");
    }
    skip
}

impl Cluster {
    pub async fn start(test: &str, topology: Topology) -> Result<Self> {
        let namespace = unique_namespace(test);
        let logs = target_dir().join("e2e-logs").join(&namespace);
        std::fs::create_dir_all(&logs)?;
        if standalone_mode() {
            return Self::start_standalone(namespace, logs, topology).await;
        }
        let mut common_env = vec![
            ("HERALD_NAMESPACE".to_string(), namespace.clone()),
            ("HERALD_API_KEY".to_string(), API_KEY.to_string()),
            ("HERALD_JWT_SECRET".to_string(), JWT_SECRET.to_string()),
            ("HERALD_KAFKA_BROKERS".to_string(), topology.kafka.clone()),
            ("HERALD_REDIS_URL".to_string(), topology.redis.clone()),
            ("HERALD_MONGO_URI".to_string(), topology.mongo.clone()),
            // Kafka outages in tests last seconds, not the default 10.
            ("HERALD_KAFKA_TIMEOUT_MS".to_string(), "5000".to_string()),
            ("HERALD_PARTITIONS".to_string(), "4".to_string()),
            ("HERALD_OUTBOX_GRACE_MS".to_string(), "1000".to_string()),
        ];
        common_env.extend(topology.env.clone());
        let make = |service: Service,
                    name: String,
                    extra_args: Vec<String>,
                    extra_env: Vec<(String, String)>| {
            let port = free_port();
            let mut args = vec!["--addr".to_string(), format!("127.0.0.1:{port}")];
            args.extend(extra_args);
            let mut envs = common_env.clone();
            envs.extend(extra_env);
            Process {
                service,
                port,
                log: logs.join(format!("{name}.log")),
                name,
                args,
                envs,
                child: None,
            }
        };

        let authsvc = make(Service::Authsvc, "authsvc".into(), vec![], vec![]);
        let auth_url = authsvc.url();
        let collectors: Vec<Process> = (0..topology.collectors)
            .map(|i| {
                make(
                    Service::Collector,
                    format!("collector-{i}"),
                    vec![],
                    topology.collector_env.clone(),
                )
            })
            .collect();
        let dispatchers: Vec<Process> = (0..topology.dispatchers)
            .map(|i| {
                make(
                    Service::Dispatcher,
                    format!("dispatcher-{i}"),
                    vec![],
                    vec![],
                )
            })
            .collect();
        let pushers: Vec<Process> = (0..topology.pushers)
            .map(|i| {
                let node = format!("node-{}", (b'a' + i as u8) as char);
                make(
                    Service::Pusher,
                    format!("pusher-{node}"),
                    vec![
                        "--node-id".into(),
                        node,
                        "--auth-url".into(),
                        auth_url.clone(),
                        "--route-ttl-secs".into(),
                        topology.route_ttl_secs.to_string(),
                        "--send-queue".into(),
                        topology.send_queue.to_string(),
                    ],
                    vec![],
                )
            })
            .collect();

        let mut cluster = Cluster {
            namespace,
            authsvc,
            collectors,
            dispatchers,
            pushers,
            standalone: None,
            topology,
            http: reqwest::Client::new(),
        };
        for p in cluster.processes_mut() {
            p.spawn()?;
        }
        for p in cluster.processes_mut() {
            p.wait_ready().await?;
        }
        Ok(cluster)
    }

    /// One `herald standalone` process with a fresh data directory; every
    /// service of the topology is that process.
    async fn start_standalone(
        namespace: String,
        logs: PathBuf,
        topology: Topology,
    ) -> Result<Self> {
        let port = free_port();
        let data = logs.join("data");
        let mut process = Process {
            service: Service::Standalone,
            port,
            name: "standalone".into(),
            args: vec![
                "standalone".into(),
                "--addr".into(),
                format!("127.0.0.1:{port}"),
                "--data-dir".into(),
                data.display().to_string(),
            ],
            envs: [
                ("HERALD_API_KEY".into(), API_KEY.into()),
                ("HERALD_JWT_SECRET".into(), JWT_SECRET.into()),
            ]
            .into_iter()
            .chain(topology.env.clone())
            .collect(),
            log: logs.join("standalone.log"),
            child: None,
        };
        process.spawn()?;
        process.wait_ready().await?;
        let alias = |name: &str| Process {
            service: Service::Standalone,
            port,
            name: name.into(),
            args: Vec::new(),
            envs: Vec::new(),
            log: logs.join("standalone.log"),
            child: None,
        };
        Ok(Cluster {
            namespace,
            authsvc: alias("authsvc"),
            collectors: (0..topology.collectors)
                .map(|_| alias("collector"))
                .collect(),
            dispatchers: Vec::new(),
            pushers: (0..topology.pushers).map(|_| alias("pusher")).collect(),
            standalone: Some(process),
            topology,
            http: reqwest::Client::new(),
        })
    }

    fn processes_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        std::iter::once(&mut self.authsvc)
            .chain(self.collectors.iter_mut())
            .chain(self.dispatchers.iter_mut())
            .chain(self.pushers.iter_mut())
    }

    /// Mints a token for `user` through authsvc.
    pub async fn token(&self, user: &str) -> Result<String> {
        self.token_with(json!({"user_id": user})).await
    }

    pub async fn token_with(&self, request: Value) -> Result<String> {
        let r = self
            .http
            .post(format!("{}/v1/tokens", self.authsvc.url()))
            .bearer_auth(API_KEY)
            .json(&request)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() {
            bail!("token request failed: {status} {body}");
        }
        Ok(body["token"]
            .as_str()
            .context("token in answer")?
            .to_string())
    }

    /// Connects `user` to pusher `node` and waits for the welcome frame.
    pub async fn connect(&self, node: usize, user: &str) -> Result<WsClient> {
        let token = self.token(user).await?;
        let client = WsClient::connect(&self.ws_url(node, &format!("token={token}"))).await?;
        Ok(client)
    }

    /// The node id pusher `node` announces in its welcome frame.
    pub fn node_id(&self, node: usize) -> String {
        if self.standalone.is_some() {
            "standalone".into()
        } else {
            format!("node-{}", (b'a' + node as u8) as char)
        }
    }

    pub fn ws_url(&self, node: usize, query: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?{query}", self.pushers[node].port)
    }

    /// POSTs a raw body to collector `i`'s `path` with the API key.
    pub async fn post_raw(
        &self,
        collector: usize,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.collectors[collector].url()))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Sends a message over HTTP and insists on 202.
    pub async fn send(&self, users: &[&str], payload: Value) -> Result<Value> {
        self.send_via(0, json!({"to": {"users": users}, "payload": payload}))
            .await
    }

    pub async fn send_via(&self, collector: usize, message: Value) -> Result<Value> {
        let (status, body) = self
            .post_raw(collector, "/v1/messages", message.to_string())
            .await?;
        if status != 202 {
            bail!("send answered {status}: {body}");
        }
        Ok(body)
    }

    pub async fn get(&self, collector: usize, path: &str) -> Result<(u16, Value)> {
        let r = self
            .http
            .get(format!("{}{path}", self.collectors[collector].url()))
            .bearer_auth(API_KEY)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }

    /// A Redis connection, to look at the registry as the services see it.
    pub async fn redis(&self) -> Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.topology.redis.as_str())?
            .get_multiplexed_async_connection()
            .await?)
    }

    /// Waits until `node`'s route for the stream stored at `key` is gone.
    pub async fn route_removed(&self, key: &str, node: &str) -> Result<()> {
        let redis = self.redis().await?;
        eventually(&format!("{node} left {key}"), || {
            let mut redis = redis.clone();
            async move {
                use redis::AsyncCommands;
                Ok(!redis.hexists::<_, _, bool>(key, node).await?)
            }
        })
        .await
    }

    pub fn route_key(&self, user: &str) -> String {
        format!("{}:routes:user:{user}", self.namespace)
    }

    /// Connects `user` with a query of its own (`since`, `epoch`...) added to the token.
    pub async fn connect_with(&self, node: usize, user: &str, query: &str) -> Result<WsClient> {
        let token = self.token(user).await?;
        WsClient::connect(&self.ws_url(node, &format!("token={token}&{query}"))).await
    }

    pub fn ingest_topic(&self) -> String {
        format!("{}.ingest", self.namespace)
    }
}

/// What a reader that reconnects and resumes (as a real client would)
/// received.
impl Cluster {
    /// Reads `n` messages of `user`'s stream, starting from `since=0` on
    /// `nodes[0]`. Whenever the connection drops it reconnects, trying the
    /// nodes in turn, with `since` = the last seq it has, as a client library
    /// does. Returns every msg frame, duplicates included, so callers can
    /// assert there are none.
    pub async fn receive_resuming(
        &self,
        user: &str,
        nodes: &[usize],
        n: usize,
    ) -> Result<Vec<Value>> {
        let token = self.token(user).await?;
        let mut got: Vec<Value> = Vec::with_capacity(n);
        let mut attempt = 0usize;
        let deadline = Instant::now() + PATIENCE * 2;
        'connect: loop {
            let last = got.last().map_or(0, |f| f["seq"].as_u64().unwrap_or(0));
            let node = nodes[attempt % nodes.len()];
            attempt += 1;
            if Instant::now() > deadline {
                bail!(
                    "{user}: gave up reconnecting with {} of {n} messages",
                    got.len()
                );
            }
            let mut client =
                match WsClient::connect(&self.ws_url(node, &format!("token={token}&since={last}")))
                    .await
                {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(
                            100 + rand::random::<u64>() % 200,
                        ))
                        .await;
                        continue 'connect;
                    }
                };
            while got.len() < n {
                match client.next_frame().await {
                    Ok(frame) if frame["type"] == "msg" => got.push(frame),
                    Ok(frame) if frame["type"] == "reset" => {
                        bail!("{user}: unexpected reset {frame}")
                    }
                    Ok(_) => {}
                    Err(_) => continue 'connect,
                }
            }
            return Ok(got);
        }
    }
}

/// The seqs of msg frames, in arrival order.
pub fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| f["seq"].as_u64().unwrap_or(0))
        .collect()
}

/// Polls `check` until it holds: for state another process changes with no
/// event to wait on (a Redis key expiring). Fails after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not true after {PATIENCE:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Kafka producer as a business system would use one.
pub fn kafka_producer() -> Result<rdkafka::producer::FutureProducer> {
    kafka_producer_at(KAFKA)
}

pub fn kafka_producer_at(brokers: &str) -> Result<rdkafka::producer::FutureProducer> {
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?)
}

/// Writes `value` to `topic` and waits for the broker's acknowledgement.
pub async fn produce(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    key: &str,
    value: &str,
) -> Result<()> {
    producer
        .send(
            rdkafka::producer::FutureRecord::to(topic)
                .key(key)
                .payload(value),
            rdkafka::util::Timeout::After(Duration::from_secs(30)),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
    Ok(())
}
