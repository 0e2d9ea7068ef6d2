//! The parts of Herald's HTTP API the benchmark calls: readiness, tokens,
//! messages.

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::time::{Duration, Instant};

pub struct HeraldApi {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

impl HeraldApi {
    /// The API of the server at `addr` (host:port).
    pub fn new(addr: &str, api_key: &str) -> Self {
        HeraldApi {
            client: reqwest::Client::new(),
            base: format!("http://{addr}"),
            api_key: api_key.to_string(),
        }
    }

    /// Waits until `/readyz` answers with success, at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> Result<()> {
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

    /// A day-long token for `user`, allowed `topic`.
    pub async fn token(&self, user: &str, topic: &str) -> Result<String> {
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

    /// `POST /v1/messages` to `topic`; returns on its 202, which comes once
    /// the message is stored.
    pub async fn send(&self, topic: &str, payload: &serde_json::Value) -> Result<()> {
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
