//! Membership changes on a real cluster: three nodes and a PD on loopback.
//! A node is killed and its replica removed (`golem ctl region
//! remove-peer`); a fresh node joins the cluster and gets a replica
//! (`golem ctl region add-peer`): it is created empty by its leader's
//! heartbeat, receives a snapshot of the region's data (several chunks),
//! catches up and is promoted to voter. Then it serves: it leads on request
//! and answers every acknowledged key, and the region keeps accepting
//! writes after another original node is killed (the new node is in the
//! quorum). Every process is real and stopped by its pid.

mod common;

use common::cluster::Cluster;
use golem_client::{Client, ClientConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn key(i: u32) -> Vec<u8> {
    format!("mem-{i:06}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    // ~1 KiB values: a few MiB in all, so the snapshot takes several chunks.
    let mut v = format!("value-{i}-").into_bytes();
    v.resize(1024, b'x' + (i % 3) as u8);
    v
}

async fn client(addrs: &[SocketAddr]) -> Client {
    let mut cfg = ClientConfig::new(addrs.to_vec());
    cfg.request_timeout_ms = 30_000;
    cfg.attempt_timeout_ms = 2_000;
    Client::connect(cfg).await.expect("connect")
}

/// The store id of node `i`, once it has joined (its identity is written).
fn store_of(cluster: &Cluster, i: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cluster.store_of(i)));
        match r {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

#[test]
fn replace_a_dead_node_with_a_fresh_one_through_a_snapshot() {
    let mut cluster = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let leader = cluster.wait_leader(&[], Duration::from_secs(30));
    let keys = 4000u32;
    rt.block_on(async {
        let c = client(&cluster.addrs).await;
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = t;
                while i < keys {
                    c.put(key(i), value(i)).await.expect("put");
                    i += 8;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });

    let (ok, out) = cluster.ctl(&["--json", "region", "key", "mem-000000"]);
    assert!(ok, "region key failed: {out}");
    let region: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let region_id = region["id"].as_u64().expect("region id").to_string();

    // Kill a follower's node and take its replica out of the region.
    let dead = (0..3).find(|&i| i != leader).unwrap();
    let dead_store = cluster.store_of(dead);
    cluster.nodes[dead].kill9();
    let (ok, out) = cluster.ctl(&["region", "remove-peer", &region_id, &dead_store.to_string()]);
    assert!(ok, "remove-peer failed: {out}");

    // A fresh node joins and gets a replica: learner, snapshot, voter.
    let fresh = cluster.add_node();
    let fresh_store = store_of(&cluster, fresh);
    let started = Instant::now();
    let (ok, out) = cluster.ctl(&[
        "region",
        "add-peer",
        &region_id,
        &fresh_store.to_string(),
        "--wait-s",
        "60",
    ]);
    assert!(ok, "add-peer failed: {out}");
    println!(
        "add-peer (learner, snapshot, promotion) took {:?}: {out}",
        started.elapsed()
    );
    // The PD learns the new membership from the leader's next heartbeat.
    let deadline = Instant::now() + Duration::from_secs(20);
    let region = loop {
        let (ok, out) = cluster.ctl(&["--json", "region", "get", &region_id]);
        assert!(ok, "region get failed: {out}");
        let region: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        let stores: Vec<u64> = region["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p["store"].as_u64().unwrap())
            .collect();
        let all_voters = region["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .all(|p| p["role"] == "voter");
        if stores.contains(&fresh_store) && !stores.contains(&dead_store) && all_voters {
            break region;
        }
        assert!(
            Instant::now() < deadline,
            "the PD never saw the new membership: {region}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let peers = region["peers"].as_array().expect("peers");
    let stores: Vec<u64> = peers.iter().map(|p| p["store"].as_u64().unwrap()).collect();
    assert_eq!(peers.len(), 3, "three replicas after the swap: {region}");
    assert!(
        stores.contains(&fresh_store) && !stores.contains(&dead_store),
        "{region}"
    );
    assert!(
        peers.iter().all(|p| p["role"] == "voter"),
        "all voters: {region}"
    );

    // The fresh node serves: it leads on request and holds every key.
    let live: Vec<SocketAddr> = (0..cluster.nodes.len())
        .filter(|&i| i != dead)
        .map(|i| cluster.addrs[i])
        .collect();
    rt.block_on(async {
        let c = client(&live).await;
        c.execute(
            golem_wire::RequestBody::TransferLeader {
                key: key(0),
                to_store: golem_wire::StoreId(fresh_store),
            },
            Duration::from_secs(20),
        )
        .await
        .expect("leadership moves to the fresh node");
    });
    assert!(
        common::cluster::answers_reads(cluster.addrs[fresh]),
        "the fresh node leads and serves reads"
    );
    rt.block_on(async {
        let c = client(&[cluster.addrs[fresh]]).await;
        for i in 0..keys {
            let v = c.get(key(i)).await.expect("get");
            assert_eq!(v.as_deref(), Some(value(i).as_slice()), "key {i}");
        }
    });

    // Kill another original node: the fresh node is in the quorum.
    let other = (0..3).find(|&i| i != dead).unwrap();
    cluster.nodes[other].kill9();
    let remaining: Vec<SocketAddr> = (0..cluster.nodes.len())
        .filter(|&i| i != dead && i != other)
        .map(|i| cluster.addrs[i])
        .collect();
    rt.block_on(async {
        let c = client(&remaining).await;
        for i in keys..keys + 50 {
            c.put(key(i), value(i))
                .await
                .expect("put with the fresh node in the quorum");
        }
        for i in (0..keys + 50).step_by(97) {
            let v = c.get(key(i)).await.expect("get");
            assert_eq!(v.as_deref(), Some(value(i).as_slice()), "key {i}");
        }
    });
}
