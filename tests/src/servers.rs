//! Private server instances for the tests that stop a server: each such test
//! gets its own Redis, Kafka-protocol broker or MongoDB-protocol server on a
//! free port, so stopping it disturbs no other test. They are the same
//! programs `infra/servers` runs, from the same cache.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{PATIENCE, free_port};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Kafka,
    Mongo,
}

fn cache() -> PathBuf {
    std::env::var_os("HERALD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/herald")
        })
}

/// A server this test owns; killed when dropped.
pub struct PrivateServer {
    pub kind: Kind,
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateServer {
    pub async fn start(kind: Kind) -> Result<Self> {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("herald-{kind:?}-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            kind,
            port,
            dir,
            child: None,
        };
        server.resume().await?;
        Ok(server)
    }

    /// The address services are configured with.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}/", self.port),
            Kind::Kafka => format!("127.0.0.1:{}", self.port),
            Kind::Mongo => format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port),
        }
    }

    /// Kills the server abruptly.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data (Redis keeps nothing: it
    /// comes back empty, as the machine's Redis does).
    pub async fn resume(&mut self) -> Result<()> {
        let port = self.port.to_string();
        let mut command = match self.kind {
            Kind::Redis => {
                let mut c = Command::new("redis-server");
                c.args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &port,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                c
            }
            Kind::Kafka => {
                let mut c = Command::new(cache().join("tansu/bin/tansu"));
                let listener = format!("tcp://127.0.0.1:{port}");
                // tansu resolves sqlite paths against its working directory.
                c.current_dir(&self.dir).args([
                    "broker",
                    "--listener-url",
                    &listener,
                    "--advertised-listener-url",
                    &listener,
                    "--storage-engine",
                    "sqlite://tansu.db",
                ]);
                c
            }
            Kind::Mongo => {
                let mut c = Command::new(cache().join("secantus/bin/secantusd-rs"));
                let storage = self.dir.join("mongo");
                std::fs::create_dir_all(&storage)?;
                c.args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port,
                    "--sync-on-commit",
                    "--storage-path",
                ])
                .arg(storage);
                c
            }
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(command.spawn().with_context(|| {
            format!(
                "starting {:?} (run infra/servers up once to build it)",
                self.kind
            )
        })?);
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("{:?} did not listen on {}", self.kind, self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
