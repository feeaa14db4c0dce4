//! Region splits on real processes.
//!
//! Three nodes and a PD on loopback: keys are written on both sides of a
//! split key, `golem ctl region split` splits the region, and a client
//! whose route predates the split reads every key and writes on both sides
//! (it learns the new route from `EpochNotMatch`); the PD lists both
//! regions at version 2; a node killed with -9 and restarted still holds
//! both regions (with another node down, both still take writes, so the
//! restarted node is in each one's quorum).
//!
//! A stand-alone node (no PD): ids are the caller's to choose, so there is
//! no `ctl region split` for it (the ctl allocates ids from the PD); the
//! raw `Split` request splits its region, and both halves survive a
//! restart.

mod common;

use common::cluster::Cluster;
use common::{NodeProcess, RawConn, FIRST_EPOCH};
use golem_client::{Client, ClientConfig};
use golem_wire::codec::encode_request;
use golem_wire::{
    GolemError, PeerId, RegionEpoch, RegionId, Request, RequestBody, RequestId, Response,
    ResponseBody,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn key(side: char, i: u32) -> Vec<u8> {
    format!("{side}-{i:04}").into_bytes()
}

fn value(side: char, i: u32, round: u32) -> Vec<u8> {
    format!("{side}{i}/{round}").into_bytes()
}

async fn client(addrs: &[SocketAddr]) -> Client {
    let mut cfg = ClientConfig::new(addrs.to_vec());
    cfg.request_timeout_ms = 30_000;
    cfg.attempt_timeout_ms = 2_000;
    Client::connect(cfg).await.expect("connect")
}

const KEYS: u32 = 100;

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

/// Forward and reverse scans over both sides of the split, whole and in
/// order; a batch get with a key on each side.
async fn check_scans(c: &Client, round: u32) {
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = ['a', 'z']
        .iter()
        .flat_map(|&side| (0..KEYS).map(move |i| (key(side, i), value(side, i, round))))
        .collect();
    let pairs = |r: golem_client::ScanResult| -> Vec<(Vec<u8>, Vec<u8>)> {
        r.pairs.into_iter().map(|p| (p.key, p.value)).collect()
    };
    let fwd = c
        .scan(Vec::new(), Vec::new(), 1000, false)
        .await
        .expect("scan");
    assert!(!fwd.more);
    assert_eq!(pairs(fwd), want, "forward scan round {round}");
    let rev = c
        .scan(Vec::new(), Vec::new(), 1000, true)
        .await
        .expect("reverse scan");
    want.reverse();
    assert_eq!(pairs(rev), want, "reverse scan round {round}");
    let values = c
        .batch_get([key('z', 1), key('a', 2)])
        .await
        .expect("batch get");
    assert_eq!(
        values,
        vec![Some(value('z', 1, round)), Some(value('a', 2, round))]
    );
}

/// The PD's regions (id, start, end, version), polled until `want` holds.
fn wait_regions(
    cluster: &Cluster,
    want: impl Fn(&[(u64, String, String, u64)]) -> bool,
) -> Vec<(u64, String, String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = cluster.ctl(&["--json", "region", "list"]);
        assert!(ok, "region list: {out}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        let regions: Vec<(u64, String, String, u64)> = v["regions"]
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

#[test]
fn split_a_replicated_region_and_keep_it_across_a_restart() {
    let mut cluster = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cluster.wait_leader(&[], Duration::from_secs(30));
    let stale = rt.block_on(client(&cluster.addrs));
    rt.block_on(write_all(&stale, 0));

    let (ok, out) = cluster.ctl(&["--json", "region", "key", "a-0000"]);
    assert!(ok, "region key: {out}");
    let parent: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let parent_id = parent["id"].as_u64().unwrap();
    assert_eq!(parent["epoch"]["version"].as_u64(), Some(1));

    let started = Instant::now();
    let (ok, out) = cluster.ctl(&["--json", "region", "split", &parent_id.to_string(), "m"]);
    assert!(ok, "region split: {out}");
    let answer: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let halves = answer["regions"].as_array().expect("regions").clone();
    assert_eq!(halves.len(), 2, "{answer}");
    assert_eq!(halves[0]["id"].as_u64(), Some(parent_id));
    assert_eq!(
        (halves[0]["start"].as_str(), halves[0]["end"].as_str()),
        (Some(""), Some("m"))
    );
    assert_eq!(
        (halves[1]["start"].as_str(), halves[1]["end"].as_str()),
        (Some("m"), Some(""))
    );
    for h in &halves {
        assert_eq!(h["epoch"]["version"].as_u64(), Some(2), "{h}");
    }
    let new_id = halves[1]["id"].as_u64().unwrap();
    let split_s = started.elapsed();

    // The client's route predates the split: every key is still found.
    rt.block_on(check_all(&stale, 0));
    let both_serving = started.elapsed();
    rt.block_on(write_all(&stale, 1));
    rt.block_on(check_all(&stale, 1));
    // Scans across the split come back whole and in order, both ways.
    rt.block_on(check_scans(&stale, 1));
    let (ok, out) = cluster.ctl(&["scan", "--limit", "1000"]);
    assert!(ok, "ctl scan: {out}");
    assert_eq!(
        out.lines().filter(|l| !l.is_empty()).count(),
        2 * KEYS as usize,
        "{out}"
    );
    let (ok, out) = cluster.ctl(&["scan", "--limit", "150", "--reverse"]);
    assert!(ok, "ctl scan --reverse: {out}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("z-0099"),
        "reverse from the last key: {out}"
    );
    assert!(
        out.contains("a-0050") && !out.contains("a-0049"),
        "150 pairs: {out}"
    );
    eprintln!(
        "split: ctl answered after {split_s:?}; both regions served every key after {both_serving:?}"
    );

    let want_two = |rs: &[(u64, String, String, u64)]| {
        rs.len() == 2
            && rs[0] == (parent_id, String::new(), "m".into(), 2)
            && rs[1] == (new_id, "m".into(), String::new(), 2)
    };
    wait_regions(&cluster, want_two);

    // A second split of the same key is refused (nothing is inside).
    let (ok, out) = cluster.ctl(&["region", "split", &parent_id.to_string(), "m"]);
    assert!(!ok, "a second split at the same key succeeded: {out}");

    // kill -9 and restart one node: both regions come back on it.
    let victim = 0;
    cluster.nodes[victim].restart();
    common::cluster::wait_listening(cluster.addrs[victim], Duration::from_secs(60));
    rt.block_on(write_all(&stale, 2));
    // With another node down, each region's quorum needs the restarted one.
    cluster.nodes[1].kill9();
    let fresh = rt.block_on(client(&[cluster.addrs[0], cluster.addrs[2]]));
    rt.block_on(write_all(&fresh, 3));
    rt.block_on(check_all(&fresh, 3));
    cluster.nodes[1].restart();
    wait_regions(&cluster, want_two);
}

/// One raw request to a stand-alone node.
fn request(
    conn: &mut RawConn,
    id: u32,
    region: u64,
    epoch: RegionEpoch,
    body: RequestBody,
) -> Response {
    let req = Request {
        region: RegionId(region),
        epoch,
        timeout_ms: 10_000,
        body,
    };
    conn.send(&encode_request(RequestId(id), &req).unwrap());
    match conn.recv() {
        common::Reply::Response(_, resp) => resp,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn split_a_stand_alone_node_with_a_raw_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 1, &[]);
    let addr = node.shard_addr(0);
    let mut c = RawConn::handshake(addr);
    for k in [&b"apple"[..], b"zebra"] {
        assert_eq!(
            c.call(1, common::put(k, b"1")),
            Response::Ok(ResponseBody::Put)
        );
    }
    let split = RequestBody::Split {
        key: b"apple".to_vec(),
        split_key: b"m".to_vec(),
        new_region: RegionId(100),
        new_peers: vec![PeerId(101)],
    };
    let v2 = RegionEpoch {
        conf_ver: 1,
        version: 2,
    };
    match request(&mut c, 2, 1, FIRST_EPOCH, split.clone()) {
        Response::Ok(ResponseBody::Split { regions }) => {
            let ranges: Vec<_> = regions
                .iter()
                .map(|r| (r.id.get(), r.start.clone(), r.end.clone(), r.epoch))
                .collect();
            assert_eq!(
                ranges,
                vec![
                    (1, Vec::new(), b"m".to_vec(), v2),
                    (100, b"m".to_vec(), Vec::new(), v2)
                ]
            );
        }
        other => panic!("split: {other:?}"),
    }
    // The old route: EpochNotMatch naming both halves.
    match request(&mut c, 3, 1, FIRST_EPOCH, common::get(b"zebra")) {
        Response::Err(GolemError::EpochNotMatch { current_regions }) => {
            let ids: Vec<u64> = current_regions.iter().map(|r| r.id.get()).collect();
            assert_eq!(ids, vec![1, 100]);
        }
        other => panic!("{other:?}"),
    }
    // The same split again: its key is now the left half's end.
    match request(&mut c, 4, 1, v2, split) {
        Response::Err(e) => assert_eq!(e.code(), 105, "{e:?}"),
        other => panic!("{other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The new single-voter region leads at once (one sync away).
        match request(&mut c, 5, 100, v2, common::put(b"zebra", b"2")) {
            Response::Ok(ResponseBody::Put) => break,
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    node.kill9();
    node.restart();
    let mut c = RawConn::handshake(addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    let expect = |r: Response, v: &[u8]| {
        r == Response::Ok(ResponseBody::Get {
            value: Some(v.to_vec()),
        })
    };
    loop {
        let right = request(&mut c, 6, 100, v2, common::get(b"zebra"));
        let left = request(&mut c, 7, 1, v2, common::get(b"apple"));
        if expect(right.clone(), b"2") && expect(left.clone(), b"1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after restart: {right:?} {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
