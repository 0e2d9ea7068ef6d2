//! `herald-bench`: a load generator for `herald standalone`, run as a separate
//! process from the server (see `bench/run` and `bench/README.md`).
//!
//! It measures, from outside, what the server process costs:
//!
//! - memory: the server's resident set (`/proc/<pid>/status` VmRSS) before and
//!   after opening N WebSocket connections, then after subscribing each of
//!   them to one topic: KiB per idle connection;
//! - CPU: the server's user + system time (`/proc/<pid>/stat`) while M topic
//!   messages fan out to the N subscribers: CPU microseconds per delivered
//!   message, raw and with the idle background rate subtracted.
//!
//! Deliveries are counted in the generator (every connection checks that the
//! topic's seqs arrive in order, once each), so a run that loses or repeats a
//! message fails instead of reporting a number.

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Parser, Debug)]
#[command(
    name = "herald-bench",
    about = "Memory per idle connection and CPU per delivered message of a running `herald standalone`"
)]
struct Args {
    /// Process id of the running `herald standalone` (its /proc is read).
    #[arg(long)]
    pid: u32,

    /// host:port the server listens on.
    #[arg(long)]
    addr: String,

    /// The server's API key.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    api_key: String,

    /// WebSocket connections to open (N).
    #[arg(long, short = 'n', default_value_t = 10_000)]
    connections: usize,

    /// Topic messages to fan out to every connection (M).
    #[arg(long, short = 'm', default_value_t = 50)]
    messages: usize,

    /// Handshakes (and subscribes) in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,

    /// Distinct user ids the connections are spread over (one token each).
    #[arg(long, default_value_t = 1)]
    users: usize,

    /// Topic every connection subscribes to.
    #[arg(long, default_value = "bench")]
    topic: String,

    /// Approximate size of each message's JSON payload, bytes.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,

    /// How the M messages are sent: `lockstep` sends message i+1 once every
    /// connection has message i; `pipelined` sends all M back to back and
    /// waits for the N x M deliveries; `both` runs the two fan-outs in turn
    /// on the same subscribers (M messages each).
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,

    /// Times the fan-out(s) are repeated; the report shows the median round
    /// of each kind, and every round's figure (the machine is shared).
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Seconds of quiet before each memory reading: longer than the 10 s
    /// after which tokio ends idle blocking-pool threads, so that threads
    /// spawned by the burst of handshakes are gone and the reading is steady.
    #[arg(long, default_value_t = 12)]
    settle_secs: u64,

    /// Seconds over which the server's idle CPU (N connections, no messages)
    /// is measured, to separate the fan-out from background work.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,

    /// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,

    /// How the server was built, for the report (e.g. `release`).
    #[arg(long, default_value = "unknown")]
    profile: String,

    /// Longest wait for one message to reach every connection, seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

/// One reading of a process from /proc.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rss_kib: u64,
    rss_anon_kib: u64,
    threads: u64,
    /// utime + stime, clock ticks.
    cpu_ticks: u64,
    /// stime alone (kernel: syscalls, and on loopback much of TCP), ticks.
    sys_ticks: u64,
    at: Instant,
}

fn status_field(status: &str, name: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))
        .with_context(|| format!("no {name} in status"))?;
    let value = line[name.len() + 1..]
        .split_whitespace()
        .next()
        .with_context(|| format!("empty {name}"))?;
    Ok(value.parse()?)
}

/// utime and stime of a process, in clock ticks (fields 14 and 15 of stat).
fn cpu_ticks(proc_dir: &str) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("{proc_dir}/stat"))?;
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime, stime))
}

fn sample(pid: u32) -> Result<Sample> {
    let dir = format!("/proc/{pid}");
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("reading {dir}/status (is the server running?)"))?;
    let cpu = cpu_ticks(&dir)?;
    Ok(Sample {
        rss_kib: status_field(&status, "VmRSS")?,
        rss_anon_kib: status_field(&status, "RssAnon")?,
        threads: status_field(&status, "Threads")?,
        cpu_ticks: cpu.0 + cpu.1,
        sys_ticks: cpu.1,
        at: Instant::now(),
    })
}

/// CPU time the whole machine spent busy (all CPUs, all processes), ticks.
fn machine_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Ok(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

fn own_cpu_ticks() -> Result<u64> {
    let (user, sys) = cpu_ticks("/proc/self")?;
    Ok(user + sys)
}

/// The parts of a server frame the generator looks at.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    stream: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    head: Option<u64>,
}

/// What the connections are told to do next.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    /// Stay connected, unsubscribed.
    Hold,
    /// Subscribe to the topic, then count its messages.
    Subscribe,
}

/// State shared by the generator's connections and its main task.
struct Shared {
    topic: String,
    stream: String,
    config: WebSocketConfig,
    gate: Semaphore,
    connected: AtomicUsize,
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
    /// Topic messages received, over all connections.
    delivered: AtomicU64,
    /// Messages that were not the next seq of their connection.
    out_of_order: AtomicU64,
    /// `delivered` the main task waits for.
    target: AtomicU64,
    progress: Notify,
}

impl Shared {
    fn fail(&self, e: anyhow::Error) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
        drop(first);
        self.progress.notify_one();
    }

    fn check(&self) -> Result<()> {
        let failed = self.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let first = self.first_error.lock().unwrap().clone().unwrap_or_default();
            bail!("{failed} connection(s) failed; first error: {first}");
        }
        Ok(())
    }

    /// Waits until `count()` reaches `want`, failing on a broken connection
    /// or after `limit`.
    async fn wait_for(
        &self,
        what: &str,
        want: u64,
        limit: Duration,
        count: impl Fn() -> u64,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.check()?;
            let have = count();
            if have >= want {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out waiting for {what}: {have} of {want}");
            }
            let _ = tokio::time::timeout(
                (deadline - now).min(Duration::from_millis(250)),
                self.progress.notified(),
            )
            .await;
        }
    }
}

/// The next text frame (pings are answered by tungstenite while reading).
async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            Some(Ok(Message::Binary(_))) => bail!("unexpected binary frame"),
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// Opens a connection and reads its welcome.
async fn open(url: &str, config: WebSocketConfig) -> Result<Ws> {
    let (mut ws, _) = connect_async_with_config(url, Some(config), true)
        .await
        .context("handshake")?;
    let first = next_text(&mut ws).await?;
    let frame: Frame = serde_json::from_str(&first)?;
    if frame.kind != "welcome" {
        bail!("first frame is not welcome: {first}");
    }
    Ok(ws)
}

/// Subscribes to the topic; returns its head (the last seq before us).
async fn subscribe(ws: &mut Ws, topic: &str) -> Result<u64> {
    let frame = json!({"type": "subscribe", "topic": topic}).to_string();
    ws.send(Message::Text(frame.into())).await?;
    let text = next_text(ws).await?;
    let frame: Frame = serde_json::from_str(&text)?;
    if frame.kind != "subscribed" {
        bail!("expected subscribed, got {text}");
    }
    frame.head.context("subscribed without head")
}

/// Counts the topic's messages on `ws` for ever, checking their order.
async fn receive(ws: &mut Ws, shared: &Shared, mut last: u64) -> Result<()> {
    loop {
        let text = next_text(ws).await?;
        let frame: Frame = serde_json::from_str(&text)?;
        if frame.kind != "msg" || frame.stream != Some(shared.stream.as_str()) {
            bail!("unexpected frame: {text}");
        }
        let seq = frame.seq.context("msg without seq")?;
        if seq != last + 1 {
            shared.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        last = seq;
        let n = shared.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= shared.target.load(Ordering::Relaxed) {
            shared.progress.notify_one();
        }
    }
}

/// One connection: handshake, hold, subscribe, count messages.
async fn connection(url: String, shared: Arc<Shared>, mut phase: watch::Receiver<Phase>) {
    let run = async {
        let permit = shared.gate.acquire().await?;
        let mut ws = open(&url, shared.config).await?;
        drop(permit);
        shared.connected.fetch_add(1, Ordering::SeqCst);
        shared.progress.notify_one();
        // Idle until told to subscribe, still reading so pings are answered.
        tokio::select! {
            changed = phase.wait_for(|p| *p >= Phase::Subscribe) => {
                changed?;
            }
            text = next_text(&mut ws) => {
                bail!("unexpected frame while idle: {}", text?);
            }
        }
        let permit = shared.gate.acquire().await?;
        let head = subscribe(&mut ws, &shared.topic).await?;
        drop(permit);
        shared.subscribed.fetch_add(1, Ordering::SeqCst);
        shared.progress.notify_one();
        receive(&mut ws, &shared, head).await
    };
    if let Err(e) = run.await {
        shared.fail(e);
    }
}

struct Http {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

impl Http {
    async fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let answer = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await;
            if let Ok(r) = &answer
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("server not ready after {limit:?}: {answer:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn token(&self, user: &str, topic: &str) -> Result<String> {
        let answer = self
            .client
            .post(format!("{}/v1/tokens", self.base))
            .bearer_auth(&self.api_key)
            .json(&json!({"user_id": user, "topics": [topic], "ttl_secs": 86400}))
            .send()
            .await?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await?;
        if !status.is_success() {
            bail!("minting a token: {status} {body}");
        }
        Ok(body["token"].as_str().context("no token")?.to_string())
    }

    async fn send(&self, topic: &str, payload: &serde_json::Value) -> Result<()> {
        let answer = self
            .client
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(&self.api_key)
            .json(&json!({"to": {"topic": topic}, "payload": payload}))
            .send()
            .await?;
        let status = answer.status();
        if status != reqwest::StatusCode::ACCEPTED {
            bail!(
                "sending: {status} {}",
                answer.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}

fn payload(i: usize, bytes: usize) -> serde_json::Value {
    let base = json!({"i": i, "pad": ""}).to_string().len();
    json!({"i": i, "pad": "x".repeat(bytes.saturating_sub(base))})
}

fn kib_per(delta_kib: u64, n: usize) -> f64 {
    delta_kib as f64 / n as f64
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn settle(args: &Args) {
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.connections < 2 || args.messages == 0 || args.users == 0 {
        bail!("need at least 2 connections, 1 message and 1 user");
    }
    let n = args.connections;
    let m = args.messages;
    let ticks = |t: u64| t as f64 / args.clk_tck as f64; // seconds
    let http = Http {
        client: reqwest::Client::new(),
        base: format!("http://{}", args.addr),
        api_key: args.api_key.clone(),
    };
    http.wait_ready(Duration::from_secs(60)).await?;
    let load_start = loadavg();

    // Tokens: one per user id; connection i uses user i % users.
    let mut tokens = Vec::with_capacity(args.users);
    for u in 0..args.users {
        tokens.push(http.token(&format!("bench-{u}"), &args.topic).await?);
    }
    let url = |i: usize| format!("ws://{}/ws?token={}", args.addr, tokens[i % tokens.len()]);

    // Small client buffers: the generator holds as many connections as the
    // server, within the same file and memory limits.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);

    // Warm-up: one connection through the whole path (handshake, subscribe,
    // one message stored, dispatched and delivered), then closed.
    {
        let mut ws = open(&url(0), config).await.context("warm-up connection")?;
        let head = subscribe(&mut ws, &args.topic).await?;
        http.send(&args.topic, &payload(0, args.payload_bytes))
            .await?;
        let text = tokio::time::timeout(Duration::from_secs(10), next_text(&mut ws))
            .await
            .context("warm-up message not delivered")??;
        let frame: Frame = serde_json::from_str(&text)?;
        if frame.kind != "msg" || frame.seq != Some(head + 1) {
            bail!("warm-up: unexpected frame {text}");
        }
        ws.close(None).await?;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
    }
    settle(&args).await;
    let base = sample(args.pid)?;
    eprintln!("baseline: RSS {} KiB", base.rss_kib);

    let shared = Arc::new(Shared {
        stream: format!("topic:{}", args.topic),
        topic: args.topic.clone(),
        config,
        gate: Semaphore::new(args.concurrency),
        connected: AtomicUsize::new(0),
        subscribed: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        delivered: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        target: AtomicU64::new(u64::MAX),
        progress: Notify::new(),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Hold);
    let connect_limit = Duration::from_secs(120 + n as u64 / 50);

    // Connections in two waves, to see the marginal cost as well as the mean.
    let half = n / 2;
    let mut waves = Vec::new();
    let mut tasks = Vec::with_capacity(n);
    for (from, to) in [(0, half), (half, n)] {
        let started = Instant::now();
        for i in from..to {
            tasks.push(tokio::spawn(connection(
                url(i),
                shared.clone(),
                phase_rx.clone(),
            )));
        }
        shared
            .wait_for("connections", to as u64, connect_limit, || {
                shared.connected.load(Ordering::SeqCst) as u64
            })
            .await?;
        let took = started.elapsed();
        eprintln!("{to} connections open ({:.1} s)", took.as_secs_f64());
        settle(&args).await;
        shared.check()?;
        waves.push((to, sample(args.pid)?, took));
    }

    let started = Instant::now();
    phase_tx.send(Phase::Subscribe)?;
    shared
        .wait_for("subscriptions", n as u64, connect_limit, || {
            shared.subscribed.load(Ordering::SeqCst) as u64
        })
        .await?;
    let subscribe_took = started.elapsed();
    eprintln!(
        "{n} connections subscribed ({:.1} s)",
        subscribe_took.as_secs_f64()
    );
    settle(&args).await;
    shared.check()?;
    let subscribed = sample(args.pid)?;

    // The server's background CPU with N idle subscribers (pings, heartbeats,
    // progress flushes), over the same kind of window as the fan-out.
    let idle_start = sample(args.pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle_end = sample(args.pid)?;
    shared.check()?;
    let idle_rate = ticks(idle_end.cpu_ticks - idle_start.cpu_ticks)
        / (idle_end.at - idle_start.at).as_secs_f64(); // CPU s per s

    // Fan-out, in each requested way, on the same subscribers: the topic's
    // seqs continue from one to the next.
    let limit = Duration::from_secs(args.timeout_secs);
    let mut runs = Vec::new();
    let mut next_payload = 1;
    for round in 1..=args.rounds.max(1) {
        for mode in args.mode.modes() {
            eprintln!(
                "fan-out {round}/{}: {m} messages to {n} subscribers, {}",
                args.rounds.max(1),
                mode.describe()
            );
            let payloads: Vec<_> = (next_payload..next_payload + m)
                .map(|i| payload(i, args.payload_bytes))
                .collect();
            next_payload += m;
            let mut run = fan_out(&args, &http, &shared, mode, &payloads, limit).await?;
            run.round = round;
            runs.push(run);
        }
    }
    // Anything more than the expected deliveries would be a repeat.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.check()?;
    let delivered = shared.delivered.load(Ordering::SeqCst);
    let out_of_order = shared.out_of_order.load(Ordering::SeqCst);
    let expected = (n * m * runs.len()) as u64;
    settle(&args).await;
    let end = sample(args.pid)?;
    let load_end = loadavg();

    // The report.
    let (w1n, w1, w1took) = waves[0];
    let (w2n, w2, w2took) = waves[1];
    let mut r = String::new();
    let _ = writeln!(
        r,
        "herald standalone ({} build), pid {}, on {}",
        args.profile, args.pid, args.addr
    );
    let _ = writeln!(
        r,
        "N = {n} WebSocket connections ({} user id(s), handshakes {} at a time), \
         M = {m} topic messages of ~{} B payload per fan-out",
        args.users, args.concurrency, args.payload_bytes,
    );
    let _ = writeln!(r, "load average at start {load_start}, at end {load_end}");
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "MEMORY  server VmRSS (RssAnon), read {} s after each step",
        args.settle_secs
    );
    let row = |r: &mut String, label: &str, s: &Sample| {
        let _ = writeln!(
            r,
            "  {label:<46} {:>9.1} MiB ({:.1} MiB), {} threads",
            mib(s.rss_kib),
            mib(s.rss_anon_kib),
            s.threads
        );
    };
    row(&mut r, "baseline (after one warm-up connection)", &base);
    row(
        &mut r,
        &format!("{w1n} connections open, not subscribed"),
        &w1,
    );
    row(
        &mut r,
        &format!("{w2n} connections open, not subscribed"),
        &w2,
    );
    row(
        &mut r,
        &format!("{n} connections subscribed to `{}`", args.topic),
        &subscribed,
    );
    row(&mut r, "after the fan-outs", &end);
    let _ = writeln!(
        r,
        "  {:<46} {:>9.2} KiB   (marginal, {w1n}->{w2n}: {:.2} KiB)",
        "per connection, open (welcome), idle",
        kib_per(w2.rss_kib.saturating_sub(base.rss_kib), n),
        kib_per(w2.rss_kib.saturating_sub(w1.rss_kib), w2n - w1n),
    );
    let _ = writeln!(
        r,
        "  {:<46} {:>9.2} KiB   (target 4 KiB; Nchan ~10-12 KiB)",
        "per connection, subscribed, idle",
        kib_per(subscribed.rss_kib.saturating_sub(base.rss_kib), n),
    );
    let _ = writeln!(
        r,
        "  {:<46} {:>9.2} KiB",
        "per connection, subscribed, after the fan-outs",
        kib_per(end.rss_kib.saturating_sub(base.rss_kib), n),
    );
    let _ = writeln!(
        r,
        "  connect {w1n}: {:.1} s, {w2n}: {:.1} s; subscribe {n}: {:.1} s",
        w1took.as_secs_f64(),
        w2took.as_secs_f64(),
        subscribe_took.as_secs_f64()
    );
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "CPU  server utime+stime (whole process), {} ticks/s; idle background {:.1} ms/s \
         (measured over {} s with N idle subscribers)",
        args.clk_tck,
        idle_rate * 1e3,
        args.idle_secs
    );
    let _ = writeln!(
        r,
        "  deliveries counted by the generator: {delivered} (expected {expected}), \
         out of order {out_of_order}"
    );
    // Per kind of fan-out, the round with the median server CPU per delivery.
    let per = |cpu: f64, run: &FanOut| cpu * 1e6 / run.deliveries as f64;
    let modes = args.mode.modes();
    let rounds_of = |mode: Pace| -> Vec<&FanOut> {
        let mut of: Vec<&FanOut> = runs.iter().filter(|f| f.mode == mode).collect();
        of.sort_by(|a, b| per(a.cpu, a).total_cmp(&per(b.cpu, b)));
        of
    };
    let shown: Vec<&FanOut> = modes
        .iter()
        .map(|&mode| {
            let of = rounds_of(mode);
            of[(of.len() - 1) / 2]
        })
        .collect();
    let _ = writeln!(
        r,
        "  median of {} round(s) of each kind, M = {m} messages per round:",
        args.rounds.max(1)
    );
    let _ = write!(r, "  {:<46}", "");
    for run in &shown {
        let _ = write!(r, " {:>15}", run.mode.column());
    }
    let _ = writeln!(r);
    let line = |r: &mut String, label: &str, unit: &str, f: &dyn Fn(&FanOut) -> String| {
        let _ = write!(r, "  {label:<46}");
        for run in &shown {
            let value = f(run);
            let cell = if value == "-" {
                value
            } else {
                format!("{value} {unit}")
            };
            let _ = write!(r, " {cell:>15}");
        }
        let _ = writeln!(r);
    };
    line(&mut r, "server CPU per delivered message", "us", &|f| {
        format!("{:.2}", per(f.cpu, f))
    });
    line(&mut r, "  idle background subtracted", "us", &|f| {
        format!(
            "{:.2}",
            per((f.cpu - idle_rate * f.wall.as_secs_f64()).max(0.0), f)
        )
    });
    line(&mut r, "  of which user", "us", &|f| {
        format!("{:.2}", per(f.cpu - f.sys, f))
    });
    line(&mut r, "  of which system", "us", &|f| {
        format!("{:.2}", per(f.sys, f))
    });
    line(&mut r, "server CPU during the fan-out", "s", &|f| {
        format!("{:.2}", f.cpu)
    });
    line(
        &mut r,
        "wall time (first POST -> last delivery)",
        "s",
        &|f| format!("{:.2}", f.wall.as_secs_f64()),
    );
    line(&mut r, "deliveries per second", "/s", &|f| {
        format!("{:.0}", f.deliveries as f64 / f.wall.as_secs_f64())
    });
    line(&mut r, "POST -> all N received, median", "ms", &|f| {
        if f.fanout_times.is_empty() {
            "-".into()
        } else {
            format!("{:.1}", ms(percentile(&f.fanout_times, 0.5)))
        }
    });
    line(&mut r, "POST -> all N received, p90", "ms", &|f| {
        if f.fanout_times.is_empty() {
            "-".into()
        } else {
            format!("{:.1}", ms(percentile(&f.fanout_times, 0.9)))
        }
    });
    line(&mut r, "POST /v1/messages answered, median", "ms", &|f| {
        format!("{:.1}", ms(percentile(&f.post_times, 0.5)))
    });
    line(
        &mut r,
        "generator CPU per delivery (same cores)",
        "us",
        &|f| format!("{:.2}", per(f.own_cpu, f)),
    );
    line(
        &mut r,
        "other processes' CPU meanwhile (machine)",
        "cores",
        &|f| format!("{:.2}", f.others_cores),
    );
    let _ = writeln!(
        r,
        "  every round, server CPU us per delivery (other processes' load, cores):"
    );
    for &mode in &modes {
        let mut all: Vec<&FanOut> = runs.iter().filter(|f| f.mode == mode).collect();
        all.sort_by_key(|f| f.round);
        let list: Vec<String> = all
            .iter()
            .map(|f| format!("{:.2} ({:.2})", per(f.cpu, f), f.others_cores))
            .collect();
        let _ = writeln!(r, "    {:<16} {}", mode.column(), list.join(", "));
    }
    let _ = writeln!(
        r,
        "  targets: server CPU per delivery <= 4.2 us (half of Nchan's ~8.4 us at 10,000 subscribers)"
    );
    print!("{r}");

    if delivered != expected || out_of_order != 0 {
        bail!("deliveries wrong: {delivered} of {expected}, {out_of_order} out of order");
    }
    drop(tasks);
    Ok(())
}

/// How the M messages of one fan-out are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    /// Message i+1 is sent once every connection has message i.
    Lockstep,
    /// All M are sent back to back (each POST awaited), then all N x M awaited.
    Pipelined,
}

impl Pace {
    fn describe(self) -> &'static str {
        match self {
            Pace::Lockstep => "each sent once every connection has the previous one",
            Pace::Pipelined => "sent back to back",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Pace::Lockstep => "one at a time",
            Pace::Pipelined => "back to back",
        }
    }
}

/// Which fan-outs to run.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Mode {
    /// One at a time, then back to back.
    Both,
    /// Each message sent once every connection has the previous one.
    Lockstep,
    /// All messages sent back to back.
    Pipelined,
}

impl Mode {
    fn modes(self) -> Vec<Pace> {
        match self {
            Mode::Both => vec![Pace::Lockstep, Pace::Pipelined],
            Mode::Lockstep => vec![Pace::Lockstep],
            Mode::Pipelined => vec![Pace::Pipelined],
        }
    }
}

/// What one fan-out cost.
struct FanOut {
    mode: Pace,
    /// Which repetition (1-based).
    round: usize,
    /// CPU used by everything else on the machine during the fan-out,
    /// in cores (busy time / wall time).
    others_cores: f64,
    deliveries: u64,
    wall: Duration,
    /// Server CPU (user + system) and system alone, seconds.
    cpu: f64,
    sys: f64,
    /// The generator's own CPU, seconds.
    own_cpu: f64,
    /// Per message, POST sent -> every connection has it (lockstep only).
    fanout_times: Vec<Duration>,
    post_times: Vec<Duration>,
}

async fn fan_out(
    args: &Args,
    http: &Http,
    shared: &Shared,
    mode: Pace,
    payloads: &[serde_json::Value],
    limit: Duration,
) -> Result<FanOut> {
    let n = args.connections as u64;
    let m = payloads.len() as u64;
    let ticks = |t: u64| t as f64 / args.clk_tck as f64;
    let start = shared.delivered.load(Ordering::SeqCst);
    let mut fanout_times = Vec::new();
    let mut post_times = Vec::new();
    let own_before = own_cpu_ticks()?;
    let machine_before = machine_busy_ticks()?;
    let before = sample(args.pid)?;
    match mode {
        Pace::Pipelined => {
            let want = start + n * m;
            shared.target.store(want, Ordering::SeqCst);
            for p in payloads {
                let t = Instant::now();
                http.send(&args.topic, p).await?;
                post_times.push(t.elapsed());
            }
            shared
                .wait_for("deliveries", want, limit * m as u32, || {
                    shared.delivered.load(Ordering::Relaxed)
                })
                .await?;
        }
        Pace::Lockstep => {
            for (i, p) in payloads.iter().enumerate() {
                let want = start + n * (i as u64 + 1);
                shared.target.store(want, Ordering::SeqCst);
                let t = Instant::now();
                http.send(&args.topic, p).await?;
                post_times.push(t.elapsed());
                shared
                    .wait_for("deliveries", want, limit, || {
                        shared.delivered.load(Ordering::Relaxed)
                    })
                    .await
                    .with_context(|| format!("message {} of {m}", i + 1))?;
                fanout_times.push(t.elapsed());
            }
        }
    }
    let after = sample(args.pid)?;
    let own_after = own_cpu_ticks()?;
    let machine_after = machine_busy_ticks()?;
    let wall = after.at - before.at;
    let others = (machine_after - machine_before)
        .saturating_sub(after.cpu_ticks - before.cpu_ticks)
        .saturating_sub(own_after - own_before);
    fanout_times.sort();
    post_times.sort();
    Ok(FanOut {
        mode,
        round: 0,
        others_cores: ticks(others) / wall.as_secs_f64(),
        deliveries: n * m,
        wall,
        cpu: ticks(after.cpu_ticks - before.cpu_ticks),
        sys: ticks(after.sys_ticks - before.sys_ticks),
        own_cpu: ticks(own_after - own_before),
        fanout_times,
        post_times,
    })
}
