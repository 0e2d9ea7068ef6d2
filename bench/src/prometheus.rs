//! Histograms read from a service's `/metrics` (Prometheus text format), and
//! their quantiles over a window: scrape before and after, subtract, then
//! estimate p50/p99 from the buckets as Prometheus's `histogram_quantile`
//! does.
//!
//! Written against the text format, not against Herald's metric names, so
//! that the cluster benchmark reports whatever per-hop histograms the
//! services expose (none before the metrics work lands: then nothing is
//! printed).

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::time::Duration;

/// One histogram series: a metric name and one set of labels (without `le`).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// The name without the `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// The other labels as written, sorted, `a="x",b="y"`; empty for none.
    pub labels: String,
    /// (upper bound, cumulative count), ascending; the last bound is +Inf.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// What was observed between `earlier` (the same series scraped
    /// before) and `self`. A series that restarted (counts went down) is
    /// taken whole.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let restarted = earlier.count > self.count
            || earlier.buckets.len() != self.buckets.len()
            || earlier
                .buckets
                .iter()
                .zip(&self.buckets)
                .any(|(e, s)| e.0 != s.0 || e.1 > s.1);
        if restarted {
            return self.clone();
        }
        Histogram {
            name: self.name.clone(),
            labels: self.labels.clone(),
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(s, e)| (s.0, s.1 - e.1))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The `q` (0..=1) quantile, interpolated linearly inside the bucket
    /// that holds it (as `histogram_quantile`); the highest finite bound if
    /// it falls in the +Inf bucket; `None` with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, cumulative) in &self.buckets {
            if cumulative as f64 >= rank && cumulative > lower.1 {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = (cumulative - lower.1) as f64;
                let into = (rank - lower.1 as f64) / in_bucket;
                return Some(lower.0 + (bound - lower.0) * into);
            }
            lower = (bound, cumulative);
        }
        Some(lower.0)
    }

    /// The name and labels, for a report line.
    pub fn series(&self) -> String {
        if self.labels.is_empty() {
            self.name.clone()
        } else {
            format!("{}{{{}}}", self.name, self.labels)
        }
    }
}

/// GETs `url` (a `/metrics` endpoint) and parses the histograms in it.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Result<Vec<Histogram>> {
    let answer = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("scraping {url}"))?;
    if !answer.status().is_success() {
        bail!("scraping {url}: {}", answer.status());
    }
    Ok(parse(&answer.text().await?))
}

/// Each series of `after` minus the same series in `before` (whole when
/// `before` lacks it), keeping only those with observations in between.
pub fn between(before: &[Histogram], after: &[Histogram]) -> Vec<Histogram> {
    after
        .iter()
        .map(|a| {
            before
                .iter()
                .find(|b| b.name == a.name && b.labels == a.labels)
                .map_or_else(|| a.clone(), |b| a.since(b))
        })
        .filter(|h| h.count > 0)
        .collect()
}

/// The histograms of a text-format exposition. Lines that are not a
/// histogram's `_bucket`, `_sum` or `_count` sample are skipped; a series
/// without buckets is dropped. Buckets need not be in order.
pub fn parse(text: &str) -> Vec<Histogram> {
    let mut series: BTreeMap<(String, String), Histogram> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(sample) = Sample::parse(line) else {
            continue;
        };
        let (base, part) = if let Some(b) = sample.name.strip_suffix("_bucket") {
            (b, Part::Bucket)
        } else if let Some(b) = sample.name.strip_suffix("_sum") {
            (b, Part::Sum)
        } else if let Some(b) = sample.name.strip_suffix("_count") {
            (b, Part::Count)
        } else {
            continue;
        };
        let mut le = None;
        let mut others: Vec<&str> = Vec::new();
        for (key, pair) in &sample.labels {
            if *key == "le" {
                le = Some(pair.split_once('=').map(|(_, v)| v.trim_matches('"')));
            } else {
                others.push(pair);
            }
        }
        others.sort_unstable();
        let labels = others.join(",");
        let entry = series
            .entry((base.to_string(), labels.clone()))
            .or_insert_with(|| Histogram {
                name: base.to_string(),
                labels,
                buckets: Vec::new(),
                sum: 0.0,
                count: 0,
            });
        match part {
            Part::Bucket => {
                let Some(Some(bound)) = le else { continue };
                let Some(bound) = parse_float(bound) else {
                    continue;
                };
                entry.buckets.push((bound, sample.value as u64));
            }
            Part::Sum => entry.sum = sample.value,
            Part::Count => entry.count = sample.value as u64,
        }
    }
    series
        .into_values()
        .filter(|h| !h.buckets.is_empty())
        .map(|mut h| {
            h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            h
        })
        .collect()
}

enum Part {
    Bucket,
    Sum,
    Count,
}

/// `name{k="v",...} value [timestamp]`.
struct Sample<'a> {
    name: &'a str,
    /// (key, `key="value"` as written).
    labels: Vec<(&'a str, &'a str)>,
    value: f64,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Sample<'a>> {
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').filter(|&c| c > open)?;
                (
                    &line[..open],
                    split_labels(&line[open + 1..close])?,
                    &line[close + 1..],
                )
            }
            None => {
                let (name, rest) = line.split_once(char::is_whitespace)?;
                (name, Vec::new(), rest)
            }
        };
        let value = parse_float(rest.split_whitespace().next()?)?;
        Some(Sample {
            name: name.trim(),
            labels,
            value,
        })
    }
}

/// `a="x",b="y,z"` into its pairs; commas inside quotes do not split.
fn split_labels(inner: &str) -> Option<Vec<(&str, &str)>> {
    let mut pairs = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                push_pair(&mut pairs, &inner[start..i])?;
                start = i + 1;
            }
            _ => {}
        }
    }
    push_pair(&mut pairs, &inner[start..])?;
    Some(pairs)
}

fn push_pair<'a>(pairs: &mut Vec<(&'a str, &'a str)>, pair: &'a str) -> Option<()> {
    let pair = pair.trim();
    if pair.is_empty() {
        return Some(());
    }
    let (key, _) = pair.split_once('=')?;
    pairs.push((key.trim(), pair));
    Some(())
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
# HELP herald_hop_seconds Time spent in one hop.
# TYPE herald_hop_seconds histogram
herald_hop_seconds_bucket{hop="store",le="0.001"} 10
herald_hop_seconds_bucket{hop="store",le="0.01"} 90
herald_hop_seconds_bucket{hop="store",le="0.1"} 100
herald_hop_seconds_bucket{hop="store",le="+Inf"} 100
herald_hop_seconds_sum{hop="store"} 0.5
herald_hop_seconds_count{hop="store"} 100
herald_hop_seconds_bucket{le="+Inf",hop="route, lookup"} 4
herald_hop_seconds_bucket{hop="route, lookup",le="0.5"} 4
herald_hop_seconds_count{hop="route, lookup"} 4
herald_messages_accepted_total 100
herald_lonely_count 3
"#;

    #[test]
    fn parses_histograms_and_nothing_else() {
        let all = parse(TEXT);
        assert_eq!(all.len(), 2, "{all:?}");
        let store = all.iter().find(|h| h.labels == r#"hop="store""#).unwrap();
        assert_eq!(store.name, "herald_hop_seconds");
        assert_eq!(
            store.buckets,
            vec![(0.001, 10), (0.01, 90), (0.1, 100), (f64::INFINITY, 100)]
        );
        assert_eq!((store.sum, store.count), (0.5, 100));
        // Buckets out of order and a comma inside a label value.
        let route = all
            .iter()
            .find(|h| h.labels == r#"hop="route, lookup""#)
            .unwrap();
        assert_eq!(route.buckets, vec![(0.5, 4), (f64::INFINITY, 4)]);
        assert_eq!(route.series(), r#"herald_hop_seconds{hop="route, lookup"}"#);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let store = parse(TEXT).remove(1);
        assert_eq!(store.labels, r#"hop="store""#);
        // Rank 50 of 100 lies in (0.001, 0.01], 40 of its 80 in: halfway.
        let p50 = store.quantile(0.5).unwrap();
        assert!((p50 - 0.0055).abs() < 1e-9, "{p50}");
        // Rank 5 in the first bucket, from 0.
        let p5 = store.quantile(0.05).unwrap();
        assert!((p5 - 0.0005).abs() < 1e-9, "{p5}");
        assert!((store.quantile(1.0).unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn a_quantile_in_the_infinite_bucket_is_the_highest_bound() {
        let h = Histogram {
            name: "h".into(),
            labels: String::new(),
            buckets: vec![(0.1, 1), (f64::INFINITY, 10)],
            sum: 0.0,
            count: 10,
        };
        assert_eq!(h.quantile(0.99), Some(0.1));
        let empty = Histogram {
            buckets: vec![(0.1, 0), (f64::INFINITY, 0)],
            ..h
        };
        assert_eq!(empty.quantile(0.5), None);
    }

    #[test]
    fn a_window_is_the_difference_of_two_scrapes() {
        let before = parse(TEXT);
        let after = parse(
            &TEXT
                .replace("} 100\n", "} 150\n")
                .replace("} 90\n", "} 130\n"),
        );
        let window = between(&before, &after);
        // The route series did not move: not in the window.
        assert_eq!(window.len(), 1);
        let store = &window[0];
        assert_eq!(store.count, 50);
        assert_eq!(
            store.buckets,
            vec![(0.001, 0), (0.01, 40), (0.1, 50), (f64::INFINITY, 50)]
        );
        // A restarted service (counts went down) counts from zero.
        let restarted = between(&after, &before);
        assert_eq!(restarted.len(), 1);
        assert_eq!(restarted[0].count, 100);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "x_bucket{le=\"0.1\" 3\nx_bucket{le=\"oops\"} 3\ny_bucket 4\nz_bucket{le=\"1\"} nan-ish\n";
        assert!(parse(text).is_empty());
    }
}
