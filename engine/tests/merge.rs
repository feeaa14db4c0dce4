//! Region merges on real processes.
//!
//! Three nodes and a PD on loopback: a region is split in two with
//! `golem ctl region split`, keys are written on both sides, and `golem ctl
//! region merge` merges the right half back into the left. A client whose
//! routes predate the merge reads every key back and writes on both sides
//! (it learns the merged route from the nodes' routing errors); the PD
//! lists one region at a larger version. A node killed with -9 and
//! restarted still holds the merged region and every key (with another
//! node down, the restarted node is in the region's quorum).
//!
//! A node killed with -9 before a merge: the prepare commits on the other
//! two, the commit waits for the killed replica, and once it restarts the
//! merge finishes and the restarted node serves every key.
//!
//! With the PD's merge checker on (split-merge interval 2 s), a region
//! split in two with `ctl` is merged back by the PD on its own, and every
//! key reads back.

mod common;

use common::cluster::Cluster;
use golem_client::Client;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn key(side: char, i: u32) -> Vec<u8> {
    format!("{side}-{i:04}").into_bytes()
}

fn value(side: char, i: u32, round: u32) -> Vec<u8> {
    format!("{side}{i}/{round}").into_bytes()
}

async fn client(addrs: &[SocketAddr]) -> Client {
    common::cluster::client(addrs, 30_000).await
}

const KEYS: u32 = 50;

/// Puts every key. A put whose outcome is unknown (its connection died
/// with a killed node) is put again: the same value, and no other writer.
async fn write_all(c: &Client, round: u32) {
    for side in ['a', 'z'] {
        for i in 0..KEYS {
            let mut tries = 0;
            loop {
                match c.put(key(side, i), value(side, i, round)).await {
                    Ok(()) => break,
                    Err(e) if e.is_outcome_unknown() && tries < 3 => tries += 1,
                    Err(e) => panic!("put {side}-{i} round {round}: {e}"),
                }
            }
        }
    }
}

async fn check_all(c: &Client, round: u32) {
    for side in ['a', 'z'] {
        for i in 0..KEYS {
            let got = c
                .get(key(side, i))
                .await
                .unwrap_or_else(|e| panic!("get {side}-{i}: {e}"));
            assert_eq!(got, Some(value(side, i, round)), "{side}-{i} round {round}");
        }
    }
}

type Listed = (u64, String, String, u64);

/// The PD's regions (id, start, end, version), polled until `want` holds
/// (at most 30 s).
fn wait_regions(cluster: &Cluster, want: impl Fn(&[Listed]) -> bool) -> Vec<Listed> {
    wait_regions_for(cluster, Duration::from_secs(30), want)
}

fn wait_regions_for(
    cluster: &Cluster,
    limit: Duration,
    want: impl Fn(&[Listed]) -> bool,
) -> Vec<Listed> {
    let deadline = Instant::now() + limit;
    loop {
        let (ok, out) = cluster.ctl(&["--json", "region", "list"]);
        assert!(ok, "region list: {out}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        let regions: Vec<Listed> = v["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .map(|r| {
                (
                    r["id"].as_u64().unwrap(),
                    r["start"].as_str().unwrap().to_string(),
                    r["end"].as_str().unwrap().to_string(),
                    r["epoch"]["version"].as_u64().unwrap(),
                )
            })
            .collect();
        if want(&regions) {
            return regions;
        }
        assert!(
            Instant::now() < deadline,
            "the PD never listed the wanted regions: {regions:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Splits the cluster's only region at "m"; returns (left, right) ids.
fn split_in_two(cluster: &Cluster) -> (u64, u64) {
    let (ok, out) = cluster.ctl(&["--json", "region", "key", "a-0000"]);
    assert!(ok, "region key: {out}");
    let parent: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let parent_id = parent["id"].as_u64().unwrap();
    let (ok, out) = cluster.ctl(&["--json", "region", "split", &parent_id.to_string(), "m"]);
    assert!(ok, "region split: {out}");
    let answer: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let right = answer["regions"][1]["id"].as_u64().expect("new region");
    (parent_id, right)
}

#[test]
fn merge_two_regions_with_ctl_and_keep_every_key_across_a_kill() {
    let mut cluster = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cluster.wait_leader(&[], Duration::from_secs(30));
    let stale = rt.block_on(client(&cluster.addrs));
    rt.block_on(write_all(&stale, 0));
    let (left, right) = split_in_two(&cluster);
    rt.block_on(write_all(&stale, 1));
    wait_regions(&cluster, |rs| rs.len() == 2);

    // Merging a region into itself, or an unknown region: refused.
    let (ok, out) = cluster.ctl(&["region", "merge", &left.to_string(), &left.to_string()]);
    assert!(!ok, "a self-merge succeeded: {out}");
    let (ok, out) = cluster.ctl(&["region", "merge", &right.to_string(), "999999"]);
    assert!(!ok, "a merge into an unknown region succeeded: {out}");

    let started = Instant::now();
    let (ok, out) = cluster.ctl(&[
        "--json",
        "region",
        "merge",
        &right.to_string(),
        &left.to_string(),
    ]);
    assert!(ok, "region merge: {out}");
    let merged: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(merged["id"].as_u64(), Some(left), "{merged}");
    assert_eq!(
        (merged["start"].as_str(), merged["end"].as_str()),
        (Some(""), Some("")),
        "{merged}"
    );
    let merge_s = started.elapsed();
    // The client's routes predate the merge: every key is still found, and
    // both sides take writes.
    rt.block_on(check_all(&stale, 1));
    let serving = started.elapsed();
    rt.block_on(write_all(&stale, 2));
    rt.block_on(check_all(&stale, 2));
    eprintln!("merge: ctl answered after {merge_s:?}; every key read back after {serving:?}");
    let one = |rs: &[Listed]| rs.len() == 1 && rs[0].0 == left && rs[0].3 >= 4;
    wait_regions(&cluster, one);

    // kill -9 and restart one node: the merged region comes back on it
    // with every key; with another node down, the region's quorum needs it.
    cluster.nodes[0].restart();
    common::cluster::wait_listening(cluster.addrs[0], Duration::from_secs(60));
    rt.block_on(write_all(&stale, 3));
    cluster.nodes[1].kill9();
    let fresh = rt.block_on(client(&[cluster.addrs[0], cluster.addrs[2]]));
    rt.block_on(check_all(&fresh, 3));
    rt.block_on(write_all(&fresh, 4));
    rt.block_on(check_all(&fresh, 4));
    cluster.nodes[1].restart();
    wait_regions(&cluster, one);
}

#[test]
fn the_pd_merges_two_small_cold_regions_on_its_own() {
    // Merges after 2 s of no version change; the split checker's
    // thresholds stay far above this data.
    let cluster = Cluster::start_scheduling(&["--split-merge-interval-ms", "2000"], &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cluster.wait_leader(&[], Duration::from_secs(30));
    let c = rt.block_on(client(&cluster.addrs));
    rt.block_on(write_all(&c, 0));
    let (left, right) = split_in_two(&cluster);
    rt.block_on(write_all(&c, 1));
    let started = Instant::now();
    wait_regions(&cluster, |rs| rs.len() == 2);
    // The operator waits for the source's next heartbeat (up to 10 s for
    // an idle region), then the target's report of its grown range.
    let merged = wait_regions_for(&cluster, Duration::from_secs(60), |rs| {
        rs.len() == 1 && rs[0].3 >= 4
    });
    eprintln!(
        "PD merge: one region {:?} {:?} after the split",
        merged[0],
        started.elapsed()
    );
    assert!(merged[0].0 == left || merged[0].0 == right, "{merged:?}");
    assert_eq!((merged[0].1.as_str(), merged[0].2.as_str()), ("", ""));
    rt.block_on(check_all(&c, 1));
    rt.block_on(write_all(&c, 2));
    rt.block_on(check_all(&c, 2));
}

#[test]
fn a_merge_waits_for_a_killed_replica_and_finishes_after_its_restart() {
    let mut cluster = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cluster.wait_leader(&[], Duration::from_secs(30));
    let c = rt.block_on(client(&cluster.addrs));
    rt.block_on(write_all(&c, 0));
    let (left, right) = split_in_two(&cluster);
    rt.block_on(write_all(&c, 1));
    wait_regions(&cluster, |rs| rs.len() == 2);

    // kill -9 of a node: the prepare commits on the other two, but the
    // commit waits until every source replica holds the prepare.
    cluster.nodes[2].kill9();
    let pd = cluster.pd_addr.clone();
    let merging = std::thread::spawn(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_golem"))
            .args(["ctl", "--pd", &pd, "region", "merge"])
            .args([right.to_string(), left.to_string()])
            .output()
            .expect("run golem ctl")
    });
    // Prepared (the source's version grew: the PD's step is done) ...
    let prepared = |rs: &[Listed]| rs.iter().any(|r| r.0 == right && r.3 >= 3);
    wait_regions(&cluster, |rs| prepared(rs) || rs.len() == 1);
    // ... and still not committed a while later.
    std::thread::sleep(Duration::from_secs(2));
    let rs = wait_regions(&cluster, |_| true);
    assert!(
        rs.len() == 2 && prepared(&rs),
        "merged without the killed replica: {rs:?}"
    );
    cluster.nodes[2].restart();
    let out = merging.join().expect("ctl thread");
    assert!(
        out.status.success(),
        "region merge: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_regions(&cluster, |rs| rs.len() == 1 && rs[0].0 == left);
    rt.block_on(check_all(&c, 1));
    // The restarted node has the merged region with every key: with
    // another node down, the region's quorum needs it.
    cluster.nodes[0].kill9();
    let fresh = rt.block_on(client(&[cluster.addrs[1], cluster.addrs[2]]));
    rt.block_on(check_all(&fresh, 1));
    rt.block_on(write_all(&fresh, 2));
    rt.block_on(check_all(&fresh, 2));
    cluster.nodes[0].restart();
}
