//! PD throughput: GetRegion, region heartbeats (stats only and epoch
//! changes), store heartbeats, Tso and AllocIds against a running PD.
//!
//! ```text
//! golem-pd --data-dir /tmp/pd1 --listen 127.0.0.1:7300 &
//! cargo run --release -p golem-pd --example pd_bench -- 127.0.0.1:7300 [clients] [seconds] [regions]
//! ```
//! It bootstraps the cluster if needed, reports `regions` regions, then runs
//! each operation for `seconds` with `clients` concurrent connections
//! (one request in flight per connection) and prints operations per second.

use golem_pd::client::{PdClient, PdClientConfig};
use golem_wire::pd::{Peer, PeerRole, Region, RegionHeartbeat, RegionStats, Store, StoreStats};
use golem_wire::{PeerId, RegionEpoch, RegionId, ShardId, StoreId};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn region(id: u64, start: Vec<u8>, end: Vec<u8>, conf_ver: u64) -> Region {
    Region {
        id: RegionId(id),
        start,
        end,
        epoch: RegionEpoch {
            conf_ver,
            version: 2,
        },
        peers: vec![Peer {
            id: PeerId(id + 1_000_000),
            store: StoreId(1),
            shard: ShardId(0),
            role: PeerRole::Voter,
        }],
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("k{i:08}").into_bytes()
}

/// The i-th of n regions splitting the key space at `key(i)`.
fn nth(i: u64, n: u64, conf_ver: u64) -> Region {
    let start = if i == 0 { vec![] } else { key(i) };
    let end = if i + 1 == n { vec![] } else { key(i + 1) };
    region(10 + i, start, end, conf_ver)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args.get(1).map_or("127.0.0.1:7300", |s| s).parse().unwrap();
    let clients: usize = args.get(2).map_or(8, |s| s.parse().unwrap());
    let secs: u64 = args.get(3).map_or(3, |s| s.parse().unwrap());
    let regions: u64 = args.get(4).map_or(1000, |s| s.parse().unwrap());
    let mk = || Arc::new(PdClient::new(vec![addr], PdClientConfig::default()));
    let c = mk();
    if !c.is_bootstrapped().await.unwrap() {
        let store = Store {
            id: StoreId(1),
            addr: "127.0.0.1:7000".into(),
            shard_count: 1,
        };
        c.bootstrap(store, region(10, vec![], vec![], 1))
            .await
            .unwrap();
    }
    let base_conf = 2 + Instant::now().elapsed().as_nanos() as u64 % 2;
    for i in 0..regions {
        let r = nth(i, regions, base_conf);
        let hb = RegionHeartbeat {
            leader: r.peers[0].id,
            region: r,
            term: 1,
            stats: RegionStats::default(),
        };
        let _ = c.region_heartbeat(hb).await;
    }
    println!("pd_bench: {addr}, {clients} clients, {secs} s per operation, {regions} regions");
    let conf = Arc::new(AtomicU64::new(base_conf + 1_000));
    for op in [
        "get_region",
        "region_heartbeat_stats",
        "region_heartbeat_epoch",
        "store_heartbeat",
        "tso",
        "alloc_ids",
    ] {
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let end = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for w in 0..clients as u64 {
            let c = mk();
            let done = done.clone();
            let errors = errors.clone();
            let conf = conf.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < end {
                    i = (i * 6364136223846793005 + 1442695040888963407) % regions.max(1);
                    let ok = match op {
                        "get_region" => c.get_region(&key(i)).await.is_ok(),
                        "region_heartbeat_stats" => {
                            let r = nth(i, regions, base_conf);
                            let hb = RegionHeartbeat {
                                leader: r.peers[0].id,
                                region: r,
                                term: 1,
                                stats: RegionStats {
                                    approximate_keys: i,
                                    ..Default::default()
                                },
                            };
                            c.region_heartbeat(hb).await.is_ok()
                        }
                        "region_heartbeat_epoch" => {
                            // Each report raises conf_ver: one Raft entry each.
                            let v = conf.fetch_add(1, Ordering::Relaxed);
                            let r = nth(w % regions.max(1), regions, v);
                            let hb = RegionHeartbeat {
                                leader: r.peers[0].id,
                                region: r,
                                term: 1,
                                stats: RegionStats::default(),
                            };
                            c.region_heartbeat(hb).await.is_ok()
                        }
                        "store_heartbeat" => c
                            .store_heartbeat(StoreId(1), StoreStats::default())
                            .await
                            .is_ok(),
                        "tso" => c.tso(1).await.is_ok(),
                        _ => c.alloc_ids(1).await.is_ok(),
                    };
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let n = done.load(Ordering::Relaxed);
        println!(
            "{op:>24}: {:>9.0} ops/s ({n} ok, {} errors)",
            n as f64 / secs as f64,
            errors.load(Ordering::Relaxed)
        );
    }
}
