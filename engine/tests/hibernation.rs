//! Idle regions hibernate (no ticks, no heartbeats) and wake on traffic:
//! three nodes and a PD on loopback with a 20 ms tick (a quiet leader
//! sleeps after 20 ticks). After the cluster has been idle long enough for
//! every replica to sleep, writes and reads still work at once; and when
//! the sleeping leader's node is killed, a request that reaches a sleeping
//! follower wakes it, the followers elect a new leader, and writes resume
//! with every acknowledged key intact. Every process is stopped by its pid.

mod common;

use common::cluster::Cluster;
use golem_client::{Client, ClientConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

async fn client(addrs: &[SocketAddr]) -> Client {
    let mut cfg = ClientConfig::new(addrs.to_vec());
    cfg.request_timeout_ms = 30_000;
    cfg.attempt_timeout_ms = 1_000;
    Client::connect(cfg).await.expect("connect")
}

#[test]
fn sleeping_regions_wake_on_traffic_and_survive_their_leader() {
    let mut cluster = Cluster::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let leader = cluster.wait_leader(&[], Duration::from_secs(30));
    rt.block_on(async {
        let c = client(&cluster.addrs).await;
        for i in 0..20u32 {
            c.put(format!("h-{i}"), format!("v-{i}"))
                .await
                .expect("put");
        }
    });
    // Idle for many election timeouts: every replica goes to sleep.
    std::thread::sleep(Duration::from_secs(3));
    rt.block_on(async {
        let c = client(&cluster.addrs).await;
        let started = Instant::now();
        c.put("h-after-sleep", "awake")
            .await
            .expect("put after sleeping");
        println!("first write after hibernation: {:?}", started.elapsed());
        assert_eq!(
            c.get("h-3").await.expect("get").as_deref(),
            Some(&b"v-3"[..])
        );
    });
    // Sleep again, then lose the (sleeping) leader.
    std::thread::sleep(Duration::from_secs(3));
    cluster.nodes[leader].kill9();
    let rest: Vec<SocketAddr> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.addrs[i])
        .collect();
    rt.block_on(async {
        let c = client(&rest).await;
        let started = Instant::now();
        c.put("h-after-leader-loss", "new leader")
            .await
            .expect("a sleeping follower wakes and a new leader is elected");
        println!(
            "first write after the sleeping leader died: {:?}",
            started.elapsed()
        );
        for i in 0..20u32 {
            let v = c.get(format!("h-{i}")).await.expect("get");
            assert_eq!(v, Some(format!("v-{i}").into_bytes()), "key h-{i}");
        }
        assert_eq!(
            c.get("h-after-sleep").await.expect("get").as_deref(),
            Some(&b"awake"[..])
        );
    });
}
