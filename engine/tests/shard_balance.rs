//! Balance across the shards of each node (#6), on real processes.
//!
//! Three nodes with two shards each and a PD on loopback, with small
//! memtables (data reaches segments): the first region lives on shard 0 of
//! every node, and the regions split off it (`ctl region split`, at known
//! keys: no wait for size reports) stay there (a split keeps its parent's
//! shard). Balance-shard then moves replicas to shard 1
//! of each node (`AddLearner` on the other shard of the same store, a
//! snapshot streamed by the leader — to its own node when it leads from
//! that store — then one joint `ReplacePeer`), until both shards of every
//! node hold regions, as the PD's region list and every node's own
//! per-shard report say; every key reads back. Then one node is killed
//! with -9 and every key still reads back from the other two; it restarts
//! (recovering the replicas of both its shards) and another node is
//! killed: every key still reads back, now through the restarted node.

mod common;

use common::cluster::{wait_listening, Cluster};
use common::regions::{regions, stores, tile, wait_regions};
use golem_client::Client;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const KEYS: u32 = 1500;

fn key(i: u32) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    let mut v = format!("v{i}-").into_bytes();
    v.resize(100, b'x');
    v
}

async fn client(addrs: &[SocketAddr]) -> Client {
    common::cluster::client(addrs, 20_000).await
}

/// Per store, the replicas on each of its 2 shards, from the PD's regions.
fn per_shard(rs: &[serde_json::Value]) -> BTreeMap<u64, [u64; 2]> {
    let mut out: BTreeMap<u64, [u64; 2]> = BTreeMap::new();
    for r in rs {
        for p in r["peers"].as_array().expect("peers") {
            let store = p["store"].as_u64().unwrap();
            let shard = p["shard"].as_u64().unwrap() as usize;
            out.entry(store).or_default()[shard] += 1;
        }
    }
    out
}

/// Every region has 3 voters on 3 stores, and every store's two shards
/// differ by at most one replica (balance-shard at rest) with both used.
fn spread_evenly(rs: &[serde_json::Value]) -> bool {
    let settled = rs.iter().all(|r| {
        let peers = r["peers"].as_array().expect("peers");
        let mut stores: Vec<u64> = peers.iter().map(|p| p["store"].as_u64().unwrap()).collect();
        stores.sort_unstable();
        stores.dedup();
        peers.len() == 3 && stores.len() == 3 && peers.iter().all(|p| p["role"] == "voter")
    });
    let counts = per_shard(rs);
    settled
        && tile(rs)
        && counts.len() == 3
        && counts
            .values()
            .all(|[a, b]| *a > 0 && *b > 0 && a.abs_diff(*b) <= 1)
}

fn read_all(rt: &tokio::runtime::Runtime, c: &Client, when: &str) {
    rt.block_on(async {
        for i in 0..KEYS {
            let got = c
                .get(key(i))
                .await
                .unwrap_or_else(|e| panic!("get {i} {when}: {e}"));
            assert_eq!(got, Some(value(i)), "key {i} {when}");
        }
    });
}

/// Splits region `id` at `at` with `ctl region split`, again if it
/// failed without splitting (a leadership change under the request: the
/// balance schedulers run meanwhile); panics after 5 tries.
fn split(cluster: &Cluster, id: u64, at: &str) {
    for attempt in 1..=5 {
        let (ok, out) = cluster.ctl(&["region", "split", &id.to_string(), at]);
        let applied = || {
            regions(cluster)
                .iter()
                .any(|r| r["id"].as_u64() == Some(id) && r["end"].as_str() == Some(at))
        };
        if ok || applied() {
            return;
        }
        println!("split of region {id} at {at}, try {attempt}: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("region {id} did not split at {at} in 5 tries");
}

/// Split points: `SPLITS` regions of `KEYS / SPLITS` keys each.
const SPLITS: u32 = 6;

#[test]
fn regions_split_on_shard_0_spread_over_both_shards_of_every_node() {
    let started = Instant::now();
    let mut cluster = Cluster::start_scheduling(
        &[
            // No size-based split: the test splits at known keys.
            "--split-region-bytes",
            "1073741824",
            "--schedule-interval-ms",
            "250",
            "--shard-schedule-limit",
            "16",
            "--shard-moves-per-store-max",
            "4",
        ],
        &["--memtable-kib", "16", "--shards", "2"],
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

    // Split the first region (on shard 0 of every node) from the top
    // down, so each split is of that region: every new one stays on shard 0.
    let first = regions(&cluster)[0]["id"].as_u64().expect("region id");
    for k in (1..SPLITS).rev() {
        let at = String::from_utf8(key(k * KEYS / SPLITS)).unwrap();
        split(&cluster, first, &at);
    }
    let split_done = Instant::now();

    // Balance-shard spreads them over both shards of every node.
    let (rs, waited) = wait_regions(
        &cluster,
        Duration::from_secs(30),
        Duration::from_millis(200),
        "regions spread over both shards of every node",
        |rs| rs.len() == SPLITS as usize && spread_evenly(rs),
    );
    println!(
        "{} regions, replicas per store's shards {:?}, {waited:?} after the splits",
        rs.len(),
        per_shard(&rs)
    );
    read_all(&rt, &c, "after the moves");

    // The nodes agree: each reports regions on both of its shards (store
    // heartbeats come every few seconds).
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let reported: Vec<Vec<u64>> = stores(&cluster)
            .iter()
            .map(|s| {
                s["shards"]
                    .as_array()
                    .expect("shards")
                    .iter()
                    .map(|l| l["region_count"].as_u64().unwrap())
                    .collect()
            })
            .collect();
        if reported.len() == 3
            && reported
                .iter()
                .all(|s| s.len() == 2 && s.iter().all(|&n| n > 0))
        {
            println!(
                "nodes report regions per shard {reported:?} {:?} after the splits",
                split_done.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes do not report regions on both shards: {reported:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // A node dies after the moves: every key still reads back.
    cluster.nodes[0].kill9();
    let killed = Instant::now();
    read_all(&rt, &c, "after kill -9 of a node");
    println!("every key read back {:?} after kill -9", killed.elapsed());

    // It restarts and recovers the replicas on both of its shards (each
    // shard finds its own peer of a region in its WAL); then another node
    // dies, so every region needs the restarted node's replica for a
    // quorum: every key still reads back.
    cluster.nodes[0].restart();
    wait_listening(cluster.addrs[0], Duration::from_secs(30));
    cluster.nodes[1].kill9();
    let killed = Instant::now();
    read_all(&rt, &c, "after node 0 restarted and node 1 was killed");
    println!(
        "every key read back {:?} after node 0 restarted and node 1 was killed; test took {:?}",
        killed.elapsed(),
        started.elapsed()
    );
}
