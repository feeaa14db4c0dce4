//! The PD's balance-hot-region scheduler on real nodes: read load
//! concentrated on the regions one store leads makes the PD move hot
//! leaders away from it.
//!
//! Three nodes and a PD on loopback. Written past a small split threshold,
//! the one region splits into several; balance-leader spreads their
//! leaders, and the test waits (bounded) until no operator has run for a
//! while (the leader counts are at rest: balance-leader alone would move
//! nothing).
//! Then clients read, in a loop, only keys of the regions led by the store
//! leading the most (at least two regions: four or more regions over three
//! stores). The PD sees those regions hot after a few reports and
//! transfers leaders of some of them to other stores. Asserted: the hot
//! regions' leaders end up on at least two stores, a balance-hot-leader
//! operator was seen running (polled every 100 ms: a transfer lives until
//! the region's next report, about 2 s under load), and every key read
//! back is the one written. Load-based split is off (it would split the
//! hot regions instead), thresholds are low (a test client's load).

mod common;

use common::cluster::Cluster;
use common::regions::{regions, tile, wait_regions};
use golem_client::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: u32 = 800;
/// Concurrent readers of the hot regions.
const READERS: usize = 4;

fn key(i: u32) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    let mut v = format!("v{i}-").into_bytes();
    v.resize(100, b'x');
    v
}

async fn client(addrs: &[SocketAddr]) -> Client {
    common::cluster::client(addrs, 30_000).await
}

fn leader_store(r: &serde_json::Value) -> Option<u64> {
    r["leader"]["store"].as_u64()
}

/// Running operators, by source.
fn operator_sources(cluster: &Cluster) -> Vec<String> {
    let (ok, out) = cluster.ctl(&["--json", "operator", "list"]);
    assert!(ok, "operator list: {out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    v["operators"]
        .as_array()
        .expect("operators")
        .iter()
        .map(|o| o["source"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn hot_leaders_concentrated_on_one_store_are_spread() {
    let cluster = Cluster::start_scheduling(
        &[
            "--split-region-bytes",
            "32768",
            "--schedule-interval-ms",
            "500",
            "--split-region-qps",
            "0",
            "--split-region-bytes-per-sec",
            "0",
            "--hot-region-keys-per-sec",
            "20",
            "--hot-region-bytes-per-sec",
            "2048",
            "--hot-region-cache-hits-threshold",
            "2",
        ],
        &["--memtable-kib", "16"],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cluster.wait_leader(&[], Duration::from_secs(30));
    let c = rt.block_on(client(&cluster.addrs));
    rt.block_on(async {
        for i in 0..KEYS {
            c.put(key(i), value(i))
                .await
                .unwrap_or_else(|e| panic!("put {i}: {e}"));
        }
    });
    wait_regions(
        &cluster,
        Duration::from_secs(60),
        Duration::from_millis(250),
        "splitting into 4 regions",
        |rs| rs.len() >= 4 && tile(rs) && rs.iter().all(|r| leader_store(r).is_some()),
    );
    // Mostly at rest: no operator for 2 s in a row (splits and
    // balance-leader done), or 8 s passed (the outcome below does not
    // depend on it: a hot-leader operator must be seen).
    let settle = Instant::now();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2)
        && settle.elapsed() < Duration::from_secs(8)
    {
        if !operator_sources(&cluster).is_empty() {
            quiet_since = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    // The store leading the most regions; its regions become hot.
    let rs = regions(&cluster);
    let mut led: BTreeMap<u64, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in &rs {
        led.entry(leader_store(r).expect("a leader"))
            .or_default()
            .push(r);
    }
    let (hot_store, hot) = led.iter().max_by_key(|(s, v)| (v.len(), **s)).unwrap();
    assert!(
        hot.len() >= 2,
        "{} regions over 3 stores: {led:?}",
        rs.len()
    );
    let hot_ids: BTreeSet<u64> = hot.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    let in_hot = |k: &[u8]| {
        hot.iter().any(|r| {
            let (start, end) = (r["start"].as_str().unwrap(), r["end"].as_str().unwrap());
            k >= start.as_bytes() && (end.is_empty() || k < end.as_bytes())
        })
    };
    let hot_keys: Arc<Vec<u32>> = Arc::new((0..KEYS).filter(|&i| in_hot(&key(i))).collect());
    assert!(!hot_keys.is_empty());
    println!(
        "{} regions; store {hot_store} leads {:?} ({} keys): reading them",
        rs.len(),
        hot_ids,
        hot_keys.len()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|n| {
            let (stop, reads, keys) = (stop.clone(), reads.clone(), hot_keys.clone());
            let addrs = cluster.addrs.clone();
            rt.spawn(async move {
                let c = client(&addrs).await;
                let mut i = n;
                while !stop.load(Ordering::Relaxed) {
                    let k = keys[i % keys.len()];
                    let got = c
                        .get(key(k))
                        .await
                        .unwrap_or_else(|e| panic!("get {k}: {e}"));
                    assert_eq!(got, Some(value(k)), "key {k}");
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += READERS;
                }
            })
        })
        .collect();

    // Until the hot regions' leaders are on two stores or more.
    let started = Instant::now();
    let mut sources: BTreeSet<String> = BTreeSet::new();
    let spread = loop {
        sources.extend(operator_sources(&cluster));
        let now = regions(&cluster);
        let stores: BTreeSet<u64> = now
            .iter()
            .filter(|r| hot_ids.contains(&r["id"].as_u64().unwrap()))
            .filter_map(leader_store)
            .collect();
        let moved = sources.contains("balance-hot-leader");
        if (stores.len() >= 2 && moved) || started.elapsed() > Duration::from_secs(25) {
            break stores;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for r in readers {
            r.await.expect("reader");
        }
    });
    println!(
        "hot leaders on stores {spread:?} {:?} after the reads began ({} reads); operators seen: {sources:?}",
        started.elapsed(),
        reads.load(Ordering::Relaxed)
    );
    assert!(
        spread.len() >= 2,
        "the hot regions {hot_ids:?} are still all led from one store: {spread:?}"
    );
    assert!(
        sources.contains("balance-hot-leader"),
        "no hot-leader operator seen (the spread came from elsewhere): {sources:?}"
    );
}
