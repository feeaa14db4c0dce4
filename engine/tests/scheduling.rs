//! The PD's schedulers driving real nodes through operator steps.
//!
//! Three nodes and a PD on loopback with a small split threshold and small
//! memtables (data reaches segments, so leaders report sizes and split
//! keys from their LSM indexes): written past the threshold, the one
//! region splits by itself, again and again, at the keys its leaders
//! report (`Split` steps); every key stays readable and the regions tile
//! the key space. Then a fourth node joins and balance-region moves
//! replicas to it (`AddLearner`, `PromoteLearner`, `RemovePeer` steps, and
//! `TransferLeader` when the leader's own replica goes), each region
//! settling back to three voters.

mod common;

use common::cluster::Cluster;
use common::regions::{stores_of, tile, wait_regions};
use golem_client::{Client, ClientConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const KEYS: u32 = 3000;

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

fn all_voters(r: &serde_json::Value) -> bool {
    r["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .all(|p| p["role"] == "voter")
}

#[test]
fn the_pd_splits_and_moves_regions_through_operator_steps() {
    let mut cluster = Cluster::start_scheduling(
        &[
            "--split-region-bytes",
            "32768",
            "--schedule-interval-ms",
            "500",
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

    // ~330 KiB of keys and values: about ten times the threshold.
    let written = Instant::now();
    rt.block_on(async {
        for i in 0..KEYS {
            c.put(key(i), value(i))
                .await
                .unwrap_or_else(|e| panic!("put {i}: {e}"));
        }
    });
    let write_time = written.elapsed();
    let (rs, split_wait) = wait_regions(
        &cluster,
        Duration::from_secs(60),
        Duration::from_millis(250),
        "splitting into 4 regions",
        |rs| rs.len() >= 4 && tile(rs),
    );
    println!(
        "wrote {KEYS} keys in {write_time:?}; {} regions {split_wait:?} later",
        rs.len()
    );
    rt.block_on(async {
        for i in (0..KEYS).step_by(7) {
            let got = c
                .get(key(i))
                .await
                .unwrap_or_else(|e| panic!("get {i}: {e}"));
            assert_eq!(got, Some(value(i)), "key {i} after the splits");
        }
    });

    // A fourth, empty store: balance-region moves replicas to it.
    let fresh = cluster.add_node();
    let fresh_store = cluster.store_of(fresh);
    let (rs, move_wait) = wait_regions(
        &cluster,
        Duration::from_secs(90),
        Duration::from_millis(250),
        "a replica moving to the new store",
        |rs| {
            rs.iter()
                .any(|r| stores_of(r).contains(&fresh_store) && all_voters(r))
                && rs.iter().all(|r| stores_of(r).len() <= 4)
        },
    );
    let on_fresh = rs
        .iter()
        .filter(|r| stores_of(r).contains(&fresh_store))
        .count();
    println!(
        "{on_fresh} of {} regions have a replica on the new store {move_wait:?} after it joined",
        rs.len()
    );
    // Every region settles back to three voters (the moved ones lose their
    // old replica).
    wait_regions(
        &cluster,
        Duration::from_secs(60),
        Duration::from_millis(250),
        "every region back to three voters",
        |rs| rs.iter().all(|r| stores_of(r).len() == 3 && all_voters(r)) && tile(rs),
    );
    // Every key still reads back after the moves: a removed follower that
    // missed its removal is told so by a current member (`gc` notice) and
    // destroys itself, so no client route can loop on it.
    let read_back = Instant::now();
    rt.block_on(async {
        for i in (0..KEYS).step_by(7) {
            let got = c
                .get(key(i))
                .await
                .unwrap_or_else(|e| panic!("get {i} after the moves: {e}"));
            assert_eq!(got, Some(value(i)), "key {i} after the moves");
        }
    });
    println!("read back after the moves in {:?}", read_back.elapsed());
}
