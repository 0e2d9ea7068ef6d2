//! The parts both benchmarks share: readings from /proc (`measure`) and
//! histograms scraped from a service's `/metrics` (`prometheus`).
//!
//! `herald-bench` (src/main.rs) measures `herald standalone`;
//! `herald-cluster-bench` (src/cluster/) measures the cluster of services.

pub mod measure;
pub mod prometheus;
