//! TLS on the listeners (`[tls]`): HTTPS and `wss://` with a self-signed
//! certificate, the certificate reloaded on SIGHUP (new handshakes get the
//! new one, open connections carry on, a broken pair is refused and the old
//! one kept), and a half-configured or unreadable pair stopping the program
//! at start. Needs no server: `herald standalone` and authsvc run alone.

use anyhow::{Context, Result, bail};
use herald_tests::{API_KEY, PATIENCE, WsClient, free_port, program};
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A self-signed certificate for `localhost` and its key, as PEM, and the
/// certificate again for a client to trust.
struct Pair {
    cert_pem: String,
    key_pem: String,
}

impl Pair {
    fn new() -> Pair {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .expect("a self-signed certificate");
        Pair {
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
        }
    }

    fn write(&self, files: &Files) {
        std::fs::write(&files.cert, &self.cert_pem).unwrap();
        std::fs::write(&files.key, &self.key_pem).unwrap();
    }

    /// A rustls client configuration that trusts this certificate only.
    fn trusted_by(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .expect("PEM certificate");
        roots.add(der).expect("a trust anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// An HTTPS client that trusts this certificate only and finds
    /// `localhost` at `port` on loopback.
    fn https(&self, port: u16) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls((*self.trusted_by()).clone())
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .timeout(PATIENCE)
            .build()
            .expect("an HTTPS client")
    }
}

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    data: PathBuf,
    log: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        Files {
            cert: path.join("cert.pem"),
            key: path.join("key.pem"),
            data: path.join("data"),
            log: path.join("server.log"),
            _dir: dir,
        }
    }
}

/// A Herald program, killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(program_name: &str, args: &[&str], log: &Path, envs: &[(&str, &str)]) -> Server {
        let out = std::fs::File::create(log).unwrap();
        let mut command = Command::new(program(program_name));
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in envs {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .expect("the program starts (run `cargo build --workspace --bins` first)");
        Server {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the program's output holds `line` `times` times (its own
    /// signal that it listens, or that it reloaded).
    async fn said(&mut self, line: &str, times: usize) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while self.log().matches(line).count() < times {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited ({status}) before saying {line:?}:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("did not say {line:?} in time:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits for the program to exit and returns whether it failed.
    async fn failed(&mut self) -> Result<bool> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(!status.success());
            }
            if Instant::now() > deadline {
                bail!("still running:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `herald standalone` on `port` with both TLS files.
fn standalone(files: &Files, port: u16) -> Server {
    standalone_with(
        files,
        port,
        &["--tls-key-file", files.key.to_str().unwrap()],
    )
}

/// `herald standalone` on `port` with the certificate file and `more` flags.
fn standalone_with(files: &Files, port: u16, more: &[&str]) -> Server {
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec![
        "standalone",
        "--addr",
        &addr,
        "--data-dir",
        files.data.to_str().unwrap(),
        "--tls-cert-file",
        files.cert.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    Server::spawn("herald", &args, &files.log, &[("HERALD_API_KEY", API_KEY)])
}

async fn token(https: &reqwest::Client, port: u16, user: &str) -> Result<String> {
    let answer: Value = https
        .post(format!("https://localhost:{port}/v1/tokens"))
        .bearer_auth(API_KEY)
        .json(&json!({"user_id": user}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["token"]
        .as_str()
        .map(str::to_string)
        .context("a token")
}

async fn send(https: &reqwest::Client, port: u16, user: &str, n: u64) -> Result<()> {
    https
        .post(format!("https://localhost:{port}/v1/messages"))
        .bearer_auth(API_KEY)
        .json(&json!({"to": {"users": [user]}, "payload": {"n": n}}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

#[tokio::test]
async fn standalone_serves_https_and_wss_and_reloads_its_certificate_on_sighup() -> Result<()> {
    let files = Files::new();
    let first = Pair::new();
    first.write(&files);
    let port = free_port();
    let mut server = standalone(&files, port);
    server
        .said(&format!("listening on https://127.0.0.1:{port}/"), 1)
        .await?;

    // HTTPS and wss:// with the first certificate.
    let https = first.https(port);
    let token = token(&https, port, "tls-user").await?;
    let url = format!("wss://localhost:{port}/ws?token={token}");
    let mut socket = WsClient::connect_tls(&url, first.trusted_by()).await?;
    send(&https, port, "tls-user", 1).await?;
    assert_eq!(socket.next_msg().await?["payload"], json!({"n": 1}));

    // Plain HTTP on the TLS port gets no answer a client could take for one.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP answered on the TLS port"
    );

    // Renewal: the files replaced, then SIGHUP.
    let second = Pair::new();
    second.write(&files);
    server.hangup();
    server.said("TLS certificate reloaded", 1).await?;

    // New handshakes get the new certificate...
    let renewed = second.https(port);
    assert_eq!(
        renewed
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await?
            .status(),
        200
    );
    assert!(
        first
            .https(port)
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .is_err(),
        "a client trusting only the old certificate still connected"
    );
    // ...and the connection opened before the reload carries on.
    send(&renewed, port, "tls-user", 2).await?;
    assert_eq!(socket.next_msg().await?["payload"], json!({"n": 2}));

    // A broken pair (a half-written renewal) is refused; the one in use stays.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    server.hangup();
    server.said("TLS certificate not reloaded", 1).await?;
    assert_eq!(
        renewed
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await?
            .status(),
        200
    );
    Ok(())
}

#[tokio::test]
async fn a_service_serves_https_with_the_shared_tls_section_of_its_config_file() -> Result<()> {
    let files = Files::new();
    let pair = Pair::new();
    pair.write(&files);
    let config = files.data.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            files.cert.to_str().unwrap(),
            files.key.to_str().unwrap()
        ),
    )?;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut authsvc = Server::spawn(
        "herald-authsvc",
        &["--addr", &addr, "--config", config.to_str().unwrap()],
        &files.log,
        &[
            ("HERALD_API_KEY", API_KEY),
            ("HERALD_JWT_SECRET", "tls-test-jwt-secret"),
        ],
    );
    authsvc.said("authsvc listening", 1).await?;
    assert!(authsvc.log().contains("https"), "{}", authsvc.log());
    let https = pair.https(port);
    let minted = https
        .post(format!("https://localhost:{port}/v1/tokens"))
        .bearer_auth(API_KEY)
        .json(&json!({"user_id": "u"}))
        .send()
        .await?;
    assert_eq!(minted.status(), 201);
    Ok(())
}

#[tokio::test]
async fn half_a_pair_or_an_unreadable_certificate_stops_the_program_at_start() -> Result<()> {
    // A certificate without its key.
    let files = Files::new();
    Pair::new().write(&files);
    let mut half = standalone_with(&files, free_port(), &[]);
    assert!(half.failed().await?);
    assert!(half.log().contains("key_file"), "{}", half.log());
    assert!(
        !files.data.exists(),
        "the data directory was made for a configuration that cannot run"
    );

    // A certificate file that does not exist: the error names it.
    let files = Files::new();
    let port = free_port();
    let mut missing = standalone(&files, port);
    assert!(missing.failed().await?);
    assert!(
        missing.log().contains(files.cert.to_str().unwrap()),
        "{}",
        missing.log()
    );
    Ok(())
}
