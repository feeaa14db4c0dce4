//! Replica repair after a node loss, on real processes.
//!
//! A PD with its schedulers on and a short `--max-store-down-time-ms`, and
//! four nodes: three hold the first region, the fourth joins empty. Keys
//! are written past a small split threshold, so the one region splits into
//! several. Then one of the original three nodes is killed with SIGKILL:
//! once the PD counts its store `Down`, the replica checker recreates each
//! of its replicas on a live store (add learner, promote, remove the dead
//! peer). The test waits until every region is back to three voters, all on
//! live stores, the regions still tiling the key space, and reads every key
//! back through a client that knows only live nodes. It prints the time from
//! the kill to full repair.

mod common;

use common::cluster::Cluster;
use common::regions::{regions, stores, stores_of, tile, wait_regions};
use golem_client::{Client, ClientConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const KEYS: u32 = 1500;
/// The PD's `--max-store-down-time-ms`: repair starts this long after the
/// kill at the earliest.
/// Above two store-heartbeat periods (`pd_link::STORE_HEARTBEAT_MS`, 5 s):
/// a shorter one makes live stores look down between their heartbeats
/// and the PD moves replicas off them.
const DOWN_MS: u64 = 11_000;

fn key(i: u32) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    let mut v = format!("v{i}-").into_bytes();
    v.resize(100, b'x');
    v
}

async fn client(addrs: &[SocketAddr]) -> Client {
    let mut cfg = ClientConfig::new(addrs.to_vec());
    cfg.request_timeout_ms = 30_000;
    cfg.attempt_timeout_ms = 2_000;
    Client::connect(cfg).await.expect("connect")
}

fn voters_on_live_stores(r: &serde_json::Value, dead: u64) -> usize {
    r["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter(|p| p["role"] == "voter" && p["store"].as_u64() != Some(dead))
        .count()
}

/// Whether every region is exactly three voters, none on `dead`.
fn repaired(rs: &[serde_json::Value], dead: u64) -> bool {
    tile(rs)
        && rs.iter().all(|r| {
            let stores = stores_of(r);
            stores.len() == 3 && !stores.contains(&dead) && voters_on_live_stores(r, dead) == 3
        })
}

#[test]
fn every_region_gets_back_to_three_voters_after_a_node_is_killed() {
    let down = DOWN_MS.to_string();
    let mut cluster = Cluster::start_scheduling(
        &[
            "--split-region-bytes",
            "32768",
            "--schedule-interval-ms",
            "500",
            "--max-store-down-time-ms",
            &down,
        ],
        &["--memtable-kib", "16"],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cluster.wait_leader(&[], Duration::from_secs(30));
    let fourth = cluster.add_node();

    // ~150 KiB of keys and values: about five times the split threshold.
    let c = rt.block_on(client(&cluster.addrs));
    rt.block_on(async {
        for i in 0..KEYS {
            c.put(key(i), value(i))
                .await
                .unwrap_or_else(|e| panic!("put {i}: {e}"));
        }
    });
    drop(c);
    let (rs, split_wait) = wait_regions(
        &cluster,
        Duration::from_secs(30),
        Duration::from_millis(100),
        "splitting into at least 2 regions",
        |rs| rs.len() >= 2 && tile(rs),
    );
    println!("{} regions {split_wait:?} after the writes", rs.len());

    // Let every region go idle (hibernate: no ticks, no heartbeats), then
    // kill the node of the original three that leads the most regions: its
    // regions' sleeping followers must be woken (the PD reports the store
    // silent) to elect new leaders before the PD can repair them.
    std::thread::sleep(Duration::from_secs(3));
    let leaders_on = |store: u64| {
        regions(&cluster)
            .iter()
            .filter(|r| r["leader"]["store"].as_u64() == Some(store))
            .count()
    };
    let victim = (0..3)
        .max_by_key(|&i| leaders_on(cluster.store_of(i)))
        .expect("three nodes");
    println!(
        "killing node {victim}, which leads {} regions",
        leaders_on(cluster.store_of(victim))
    );
    let dead = cluster.store_of(victim);
    assert_ne!(cluster.store_of(fourth), dead);
    let before = regions(&cluster);
    let on_dead = before
        .iter()
        .filter(|r| stores_of(r).contains(&dead))
        .count();
    assert!(on_dead > 0, "store {dead} holds no replica: {before:#?}");
    let killed = Instant::now();
    cluster.nodes[victim].kill9();

    let (rs, repair) = wait_regions(
        &cluster,
        Duration::from_secs(60),
        Duration::from_millis(100),
        "every region back to three live voters",
        |rs| repaired(rs, dead),
    );
    // Balance moves in flight at the kill (towards the fourth node, after
    // the splits) may take replicas off the victim before it counts as
    // down, so the repair may end before the threshold; the end state is
    // what must hold: the PD lists the store down and, once it does, every
    // region still has three live voters and none on it.
    let down_deadline = killed + Duration::from_millis(DOWN_MS) + Duration::from_secs(30);
    loop {
        let state = stores(&cluster)
            .iter()
            .find(|s| s["id"].as_u64() == Some(dead))
            .map(|s| s["state"].as_str().unwrap_or("?").to_string());
        if state.as_deref() == Some("Down") {
            break;
        }
        assert!(
            Instant::now() < down_deadline,
            "store {dead} is {state:?}, not Down, {:?} after the kill",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = regions(&cluster);
    assert!(
        repaired(&after, dead),
        "after the store was down: {after:#?}"
    );
    println!(
        "{on_dead} of {} regions had a replica on the killed store {dead}; \
         all {} regions at three live voters {:?} after the kill \
         (down-time threshold {DOWN_MS} ms)",
        before.len(),
        rs.len(),
        repair,
    );

    // Every key reads back through the live nodes only.
    let live: Vec<SocketAddr> = cluster
        .addrs
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != victim)
        .map(|(_, &a)| a)
        .collect();
    let c = rt.block_on(client(&live));
    let read_back = Instant::now();
    rt.block_on(async {
        for i in 0..KEYS {
            let got = c
                .get(key(i))
                .await
                .unwrap_or_else(|e| panic!("get {i} after the repair: {e}"));
            assert_eq!(got, Some(value(i)), "key {i} after the repair");
        }
    });
    println!("read all {KEYS} keys back in {:?}", read_back.elapsed());
}
