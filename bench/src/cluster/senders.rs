//! Sending unicast messages into the cluster at a fixed offered rate, over
//! HTTP or the ingest topic.
//!
//! Sends are scheduled open-loop (message k at start + k / rate) and run on
//! their own tasks, at most `--senders` in flight. When they are all busy
//! the schedule slips; the report shows the rate actually sent, so a sender
//! that became the limit is visible rather than hidden in the latency.

use super::args::Via;
use super::ledger::Ledger;
use super::users::user_id;
use anyhow::Result;
use rand::Rng;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::json;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Longest one send may wait for its answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// One way into the cluster.
#[derive(Clone)]
pub enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
        api_key: String,
    },
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
}

impl Sender {
    pub fn http(collector_url: &str, api_key: &str, senders: usize) -> Result<Sender> {
        Ok(Sender::Http {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(senders)
                .timeout(SEND_TIMEOUT)
                .build()?,
            url: format!("{collector_url}/v1/messages"),
            api_key: api_key.to_string(),
        })
    }

    /// A producer as a business system would configure one (idempotent,
    /// acks=all), lingering `linger_ms`.
    pub fn kafka(brokers: &str, topic: &str, linger_ms: u64) -> Result<Sender> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", linger_ms.to_string())
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string())
            .create()?;
        Ok(Sender::Kafka {
            producer,
            topic: topic.to_string(),
        })
    }

    pub fn via(&self) -> Via {
        match self {
            Sender::Http { .. } => Via::Http,
            Sender::Kafka { .. } => Via::Kafka,
        }
    }

    /// Sends one submission for `user`; whether the server accepted it.
    async fn send(&self, user: &str, body: String) -> bool {
        match self {
            Sender::Http {
                client,
                url,
                api_key,
            } => {
                let answer = client
                    .post(url)
                    .bearer_auth(api_key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => true,
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        tracing_warn(&format!("POST answered {status}: {text}"));
                        false
                    }
                    Err(e) => {
                        tracing_warn(&format!("POST failed: {e}"));
                        false
                    }
                }
            }
            Sender::Kafka { producer, topic } => {
                let record = FutureRecord::to(topic).key(user).payload(body.as_str());
                match producer.send(record, Timeout::After(SEND_TIMEOUT)).await {
                    Ok(_) => true,
                    Err((e, _)) => {
                        tracing_warn(&format!("produce failed: {e}"));
                        false
                    }
                }
            }
        }
    }
}

/// The benchmark has no logger; a refused send is rare and worth a line.
fn tracing_warn(line: &str) {
    eprintln!("herald-cluster-bench: {line}");
}

/// The submission of message `i` for user `user`, its payload padded to
/// about `payload_bytes`.
pub fn submission(i: usize, user: u32, payload_bytes: usize) -> String {
    let pad = "x".repeat(payload_bytes.saturating_sub(30));
    json!({
        "to": {"users": [user_id(user)]},
        "payload": {"i": i, "u": user, "pad": pad},
    })
    .to_string()
}

/// Sends the messages of `slots` through `sender` at `rate` per second, each
/// to a random one of `users`, at most `in_flight` at once; returns once
/// every send has been answered.
pub async fn offer(
    sender: &Sender,
    ledger: &Arc<Ledger>,
    slots: Range<usize>,
    rate: u32,
    users: usize,
    in_flight: usize,
    payload_bytes: usize,
) {
    let permits = Arc::new(Semaphore::new(in_flight));
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    for (k, i) in slots.enumerate() {
        tokio::time::sleep_until(start + interval * k as u32).await;
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let user = rand::rng().random_range(0..users as u32);
        let body = submission(i, user, payload_bytes);
        let sender = sender.clone();
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger.sending(i, user);
            let accepted = sender.send(&user_id(user), body).await;
            ledger.answered(i, accepted);
            drop(permit);
        });
    }
    // Every permit back: every send answered.
    let _ = permits.acquire_many(in_flight as u32).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submission_is_for_one_user_and_carries_its_index() {
        let s: serde_json::Value = serde_json::from_str(&submission(42, 7, 100)).unwrap();
        assert_eq!(s["to"], json!({"users": ["u-7"]}));
        assert_eq!(
            (s["payload"]["i"].as_u64(), s["payload"]["u"].as_u64()),
            (Some(42), Some(7))
        );
        let len = s["payload"].to_string().len();
        assert!((90..=120).contains(&len), "payload of {len} bytes");
    }
}
