//! `herald standalone --demo` hands its API key to the demo page only:
//! `GET /demo/config` answers loopback `Host` names and refuses every other
//! (a page on another name that resolves here, DNS rebinding, gets 403).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const API_KEY: &str = "demo-test-api-key-0123456789";

/// The standalone server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// `GET path` with exactly this `Host` header: (status, body). Raw HTTP/1.1,
/// so that the header is what a browser on another name would send.
fn get(port: u16, path: &str, host: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn start_demo() -> Server {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(HERALD)
        .args(["standalone", "--demo", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data.path())
        .env_clear()
        .env("HERALD_API_KEY", API_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running herald");
    let mut server = Server {
        child,
        port,
        _data: data,
    };
    // Ready when /readyz answers 200 (the readiness signal); give up after
    // a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = get(port, "/readyz", "127.0.0.1") {
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("herald standalone exited: {status}");
        }
        assert!(Instant::now() < deadline, "standalone not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn demo_config_answers_loopback_hosts_only() {
    let server = start_demo();
    let port = server.port;
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_string(),
    ] {
        let (status, body) = get(port, "/demo/config", &host).unwrap();
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains(API_KEY), "{host}: {body}");
    }
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("192.168.1.10:{port}"),
    ] {
        let (status, body) = get(port, "/demo/config", &host).unwrap();
        assert_eq!(status, 403, "{host}: {body}");
        assert!(!body.contains(API_KEY), "{host} got the key: {body}");
        assert!(body.contains("local machine"), "{body}");
    }
}
