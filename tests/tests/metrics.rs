//! `/metrics` as a Prometheus server reads it: parsed by a Prometheus text
//! parser, every metric typed, and a message sent end to end moving the
//! latency histogram of every hop it takes. Runs against the cluster and
//! against `herald standalone`, where the four services share one registry
//! and each metric appears once.

use anyhow::{Context, Result, bail};
use herald_tests::{Cluster, Topology, eventually, standalone_mode};
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

/// Every distinct `/metrics` address of the cluster (one in standalone).
fn metrics_urls(cluster: &Cluster) -> Vec<String> {
    let urls: BTreeSet<String> = cluster
        .collectors
        .iter()
        .chain(&cluster.dispatchers)
        .chain(&cluster.pushers)
        .map(|p| format!("{}/metrics", p.url()))
        .collect();
    urls.into_iter().collect()
}

/// One scrape of every address: each metric family's type, and each
/// sample's value by sample name (label-less samples only, plus histograms'
/// total counts under the family name).
struct Scraped {
    types: HashMap<String, String>,
    counts: HashMap<String, f64>,
    text: String,
}

async fn scrape(cluster: &Cluster) -> Result<Scraped> {
    let mut types = HashMap::new();
    let mut counts = HashMap::new();
    let mut all = String::new();
    for url in metrics_urls(cluster) {
        let response = reqwest::get(&url).await?;
        let content_type = response
            .headers()
            .get("content-type")
            .context("content type")?
            .to_str()?
            .to_string();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{url}: {content_type}"
        );
        let text = response.text().await?;
        // One family, one `# TYPE` line: services of one process share a
        // registry rather than each writing its own.
        let mut seen = BTreeSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(
                seen.insert(line.to_string()),
                "{url} repeats {line}:\n{text}"
            );
            let mut words = line["# TYPE ".len()..].split_whitespace();
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            types.insert(name.to_string(), kind.to_string());
        }
        let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .with_context(|| format!("parsing {url}:\n{text}"))?;
        for sample in parsed.samples {
            let value = match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
                Value::Summary(_) => continue,
            };
            counts.insert(sample.metric, value);
        }
        all.push_str(&text);
    }
    Ok(Scraped {
        types,
        counts,
        text: all,
    })
}

impl Scraped {
    /// The value of a family's one sample: a counter's total, a gauge's
    /// value, a histogram's count of observations (whichever sample name
    /// the parser filed it under).
    fn value(&self, family: &str) -> f64 {
        ["_count", "_total", "_bucket", ""]
            .iter()
            .find_map(|suffix| self.counts.get(&format!("{family}{suffix}")))
            .copied()
            .unwrap_or(0.0)
    }
}

/// The hops a user message takes, each a latency histogram.
const HOPS: [&str; 7] = [
    "herald_collector_store_append_seconds",
    "herald_collector_events_publish_seconds",
    "herald_dispatcher_consume_delay_seconds",
    "herald_dispatcher_route_lookup_seconds",
    "herald_dispatcher_node_publish_seconds",
    "herald_pusher_consume_delay_seconds",
    "herald_pusher_accept_to_handoff_seconds",
];

#[tokio::test]
async fn metrics_are_typed_and_a_message_moves_every_hop() -> Result<()> {
    let cluster = Cluster::start(
        "metrics",
        Topology {
            pushers: 1,
            ..Topology::default()
        },
    )
    .await?;
    let mut nia = cluster.connect(0, "nia").await?;
    let before = scrape(&cluster).await?;
    let expected_types = [
        ("herald_collector_accepted", "counter"),
        ("herald_collector_events_published", "counter"),
        ("herald_dispatcher_forwarded", "counter"),
        ("herald_pusher_connections", "gauge"),
        ("herald_pusher_streams", "gauge"),
    ]
    .into_iter()
    .chain(HOPS.iter().map(|h| (*h, "histogram")));
    for (name, kind) in expected_types {
        assert_eq!(
            before.types.get(name).map(String::as_str),
            Some(kind),
            "type of {name} in\n{}",
            before.text
        );
    }
    assert_eq!(before.value("herald_pusher_connections"), 1.0);

    let sent = cluster.send(&["nia"], json!("measured")).await?;
    assert_eq!(nia.next_msg().await?["id"], sent["id"]);

    // The hops record as they finish, some after the frame went out (the
    // publish acknowledgement, the commit): wait for each to show.
    let (cluster, before) = (&cluster, &before);
    eventually("every hop's histogram counts the message", || async move {
        let after = scrape(cluster).await?;
        let unmoved: Vec<&str> = HOPS
            .into_iter()
            .filter(|h| after.value(h) <= before.value(h))
            .collect();
        if !unmoved.is_empty() {
            eprintln!("not moved yet: {unmoved:?}");
            return Ok(false);
        }
        if after.value("herald_collector_accepted")
            != before.value("herald_collector_accepted") + 1.0
        {
            bail!("accepted did not count one message:\n{}", after.text);
        }
        Ok(true)
    })
    .await?;
    if standalone_mode() {
        // One process, one registry (checked above for repeated families).
        assert_eq!(metrics_urls(cluster).len(), 1);
    }
    Ok(())
}
