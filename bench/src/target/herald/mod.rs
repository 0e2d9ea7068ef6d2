//! `herald standalone`, started by `bench/run`: one process, reached at
//! `--addr`, publishing over its HTTP API with `--api-key`.

mod api;
mod protocol;

pub use api::HeraldApi;
pub use protocol::HeraldProtocol;

use super::Target;
use crate::args::Args;
use anyhow::Result;
use serde_json::Value;
use std::sync::Arc;

pub struct HeraldStandalone {
    api: HeraldApi,
    protocol: Arc<HeraldProtocol>,
    topic: String,
    pid: u32,
    addr: String,
    profile: String,
}

impl HeraldStandalone {
    /// Mints one token per user id (`bench-0`, `bench-1`, ...) allowed
    /// `--topic`; connection i uses user i % `--users`.
    pub async fn sign_in(api: HeraldApi, args: &Args) -> Result<Self> {
        let mut tokens = Vec::with_capacity(args.users);
        for u in 0..args.users {
            tokens.push(api.token(&format!("bench-{u}"), &args.topic).await?);
        }
        Ok(HeraldStandalone {
            api,
            protocol: Arc::new(HeraldProtocol::new(&args.addr, tokens, &args.topic)),
            topic: args.topic.clone(),
            pid: args.pid,
            addr: args.addr.clone(),
            profile: args.profile.clone(),
        })
    }
}

impl Target for HeraldStandalone {
    type Protocol = HeraldProtocol;

    fn protocol(&self) -> Arc<HeraldProtocol> {
        self.protocol.clone()
    }

    async fn publish(&self, payload: &Value) -> Result<()> {
        self.api.send(&self.topic, payload).await
    }

    fn server_pid(&self) -> u32 {
        self.pid
    }

    fn describe(&self) -> String {
        format!(
            "herald standalone ({} build), pid {}, on {}",
            self.profile, self.pid, self.addr
        )
    }
}
