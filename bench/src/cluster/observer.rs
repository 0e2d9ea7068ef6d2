//! Timing the hops from outside: a consumer of its own reads the events
//! topic and the node topics of the run and notes when each message first
//! shows on each. With the send time and the arrival at the socket, that
//! splits a message's way into collector (send -> events topic: store,
//! publish), dispatcher (events -> node topic: its fetch, the route lookup,
//! its publish) and pusher (node topic -> socket: its fetch, the write).
//!
//! The observer fetches with a 1 ms window, so on tansu (which sits out a
//! fetch's whole window) it sees a record within about a millisecond of
//! its arrival; it is one more consumer of the broker, and its CPU is in
//! the benchmark's own figure.

use super::ledger::{Ledger, Topic};
use anyhow::Result;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde::Deserialize;
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Deserialize)]
struct Event {
    payload: Payload,
}

#[derive(Deserialize)]
struct Payload {
    i: u64,
}

/// Reads `events` and `nodes` in its own group until dropped.
pub struct Observer {
    task: JoinHandle<()>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Observer {
    pub fn start(
        brokers: &str,
        group: &str,
        events: &str,
        nodes: &[String],
        ledger: Arc<Ledger>,
    ) -> Result<Observer> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            // The topics are the run's own and new: nothing old to skip,
            // and nothing missed while the group forms.
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "1")
            .set("enable.partition.eof", "false")
            .create()?;
        let mut topics = vec![events];
        topics.extend(nodes.iter().map(String::as_str));
        consumer.subscribe(&topics)?;
        let events = events.to_string();
        let task = tokio::spawn(async move {
            loop {
                let m = match consumer.recv().await {
                    Ok(m) => m,
                    Err(_) => {
                        // A broker error: the client retries by itself;
                        // do not spin meanwhile.
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let topic = if m.topic() == events {
                    Topic::Events
                } else {
                    Topic::Node
                };
                if let Some(event) = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<Event>(p).ok())
                {
                    ledger.seen(topic, event.payload.i);
                }
            }
        });
        Ok(Observer { task })
    }
}
