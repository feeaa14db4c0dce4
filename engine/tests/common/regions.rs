//! The PD's view of a cluster's regions for process tests: `golem ctl
//! region list --json` parsed, polled until a condition holds, and the
//! checks scheduling tests share (stores of a region, the key space tiled),
//! and the PD's stores (`store list --json`).

use super::cluster::Cluster;
use std::time::{Duration, Instant};

/// The PD's regions as `region list --json` shows them.
pub fn regions(cluster: &Cluster) -> Vec<serde_json::Value> {
    let (ok, out) = cluster.ctl(&["--json", "region", "list"]);
    assert!(ok, "region list: {out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    v["regions"].as_array().expect("regions").clone()
}

/// The PD's stores as `store list --json` shows them (with each shard's
/// last reported load).
pub fn stores(cluster: &Cluster) -> Vec<serde_json::Value> {
    let (ok, out) = cluster.ctl(&["--json", "store", "list"]);
    assert!(ok, "store list: {out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    v["stores"].as_array().expect("stores").clone()
}

/// Polls the PD's regions every `poll` until `want` holds; returns them
/// and how long it took. Panics after `limit`.
pub fn wait_regions(
    cluster: &Cluster,
    limit: Duration,
    poll: Duration,
    what: &str,
    want: impl Fn(&[serde_json::Value]) -> bool,
) -> (Vec<serde_json::Value>, Duration) {
    let started = Instant::now();
    loop {
        let rs = regions(cluster);
        if want(&rs) {
            return (rs, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}: {rs:#?}"
        );
        std::thread::sleep(poll);
    }
}

/// The stores holding a replica of `r`.
pub fn stores_of(r: &serde_json::Value) -> Vec<u64> {
    r["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["store"].as_u64().unwrap())
        .collect()
}

/// Whether the regions tile the key space (sorted by start: the first
/// starts at the beginning, each ends where the next starts, the last runs
/// to the end).
pub fn tile(rs: &[serde_json::Value]) -> bool {
    let mut ranges: Vec<(String, String)> = rs
        .iter()
        .map(|r| {
            (
                r["start"].as_str().unwrap().to_string(),
                r["end"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    ranges.sort();
    ranges.first().is_some_and(|f| f.0.is_empty())
        && ranges.last().is_some_and(|l| l.1.is_empty())
        && ranges.windows(2).all(|w| w[0].1 == w[1].0)
}
