//! One PD member: every RPC, restart with state kept.

mod common;

use common::*;
use golem_pd::client::PdClientError;
use golem_wire::pd::{
    Peer, PeerRole, Region, RegionHeartbeat, RegionStats, Store, StoreState, StoreStats,
};
use golem_wire::{PeerId, RegionEpoch, RegionId, ShardId, StoreId};

fn first_region(store: StoreId, region: RegionId, peer: PeerId) -> Region {
    Region {
        id: region,
        start: vec![],
        end: vec![],
        epoch: RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
        peers: vec![Peer {
            id: peer,
            store,
            shard: ShardId(0),
            role: PeerRole::Voter,
        }],
    }
}

fn code(e: PdClientError) -> u16 {
    match e {
        PdClientError::Server(e) => e.code(),
        other => panic!("expected a server error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_serves_every_rpc_and_keeps_state_across_restart() {
    let mut g = Group::start(1, &["--snapshot-entries", "50"]);
    let c = g.client();
    assert!(!c.is_bootstrapped().await.unwrap());
    assert_eq!(code(c.get_region(b"a").await.unwrap_err()), 301);

    // The first node: ids, then bootstrap.
    let ids = c.alloc_ids(3).await.unwrap();
    let (store, region, peer) = (
        StoreId(ids.start),
        RegionId(ids.start + 1),
        PeerId(ids.start + 2),
    );
    let store_meta = Store {
        id: store,
        addr: "127.0.0.1:7000".into(),
        shard_count: 2,
    };
    let cluster = c
        .bootstrap(store_meta.clone(), first_region(store, region, peer))
        .await
        .unwrap();
    assert_ne!(cluster.0, 0);
    assert_eq!(
        code(
            c.bootstrap(store_meta.clone(), first_region(store, region, peer))
                .await
                .unwrap_err()
        ),
        302
    );
    assert!(c.is_bootstrapped().await.unwrap());

    // Stores.
    c.put_store(store_meta.clone()).await.unwrap(); // idempotent
    let dup = Store {
        addr: "127.0.0.1:9999".into(),
        ..store_meta.clone()
    };
    assert_eq!(code(c.put_store(dup).await.unwrap_err()), 305);
    c.store_heartbeat(store, StoreStats::default())
        .await
        .unwrap();
    assert_eq!(c.get_store(store).await.unwrap().state, StoreState::Up);
    assert_eq!(code(c.get_store(StoreId(999_999)).await.unwrap_err()), 303);
    assert_eq!(
        code(
            c.store_heartbeat(StoreId(999_999), StoreStats::default())
                .await
                .unwrap_err()
        ),
        303
    );
    assert_eq!(c.get_stores(false).await.unwrap().len(), 1);

    // Regions: split into [,m) and [m,).
    let right_id = RegionId(c.alloc_ids(2).await.unwrap().start);
    let mut left = first_region(store, region, peer);
    left.end = b"m".to_vec();
    left.epoch.version = 2;
    let mut right = first_region(store, right_id, PeerId(right_id.0 + 1));
    right.start = b"m".to_vec();
    right.epoch.version = 2;
    for r in [&left, &right] {
        c.region_heartbeat(RegionHeartbeat {
            leader: r.peers[0].id,
            region: r.clone(),
            term: 1,
            stats: RegionStats::default(),
        })
        .await
        .unwrap();
    }
    assert_eq!(c.get_region(b"a").await.unwrap().unwrap().region.id, region);
    assert_eq!(
        c.get_region(b"x").await.unwrap().unwrap().region.id,
        right_id
    );
    assert_eq!(c.get_region_by_id(right_id).await.unwrap().region, right);
    assert_eq!(
        code(c.get_region_by_id(RegionId(777_777)).await.unwrap_err()),
        304
    );
    assert_eq!(c.scan_regions(b"", b"", 10).await.unwrap().len(), 2);
    // A stale report is refused with the current epoch.
    let stale = c
        .region_heartbeat(RegionHeartbeat {
            leader: peer,
            region: first_region(store, region, peer),
            term: 1,
            stats: RegionStats::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(stale), 306);

    // Ids and timestamps only grow; many requests cross snapshot boundaries.
    let mut last_id = 0;
    let mut last_ts = 0;
    for _ in 0..120 {
        let r = c.alloc_ids(5).await.unwrap();
        assert!(r.start > last_id);
        last_id = r.end - 1;
        let t = c.tso(3).await.unwrap();
        assert!(t.0 > last_ts);
        last_ts = t.0;
    }
    let (members, leader) = c.get_members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(leader.map(|l| l.0), Some(1));

    // Restart: everything is still there, and nothing goes back.
    g.members[0].kill();
    g.members[0].start();
    let c = g.client();
    assert!(c.is_bootstrapped().await.unwrap());
    assert_eq!(c.get_region(b"x").await.unwrap().unwrap().region, right);
    assert_eq!(c.get_store(store).await.unwrap().store, store_meta);
    assert!(c.alloc_ids(1).await.unwrap().start > last_id);
    assert!(c.tso(1).await.unwrap().0 > last_ts);
    assert_eq!(c.cluster().await, cluster);
    assert!(
        g.members[0].log().contains("snapshot taken"),
        "{}",
        g.logs()
    );
}

fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_second_instance_and_sigterm() {
    let g = Group::start(1, &[]);
    g.client().get_members().await.unwrap();
    let bin = env!("CARGO_BIN_EXE_golem-pd");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let dir = g.dir.path().join("m1");
    let dir = dir.to_str().unwrap();
    // Election timeout not above the heartbeat: refused before starting.
    let mut c = run(&[
        "--data-dir",
        dir,
        "--election-ticks",
        "2",
        "--heartbeat-ticks",
        "2",
    ]);
    assert_eq!(wait_exit(&mut c), Some(2));
    // An id that is not among the peers.
    let mut c = run(&["--data-dir", dir, "--id", "4", "--peers", "1=127.0.0.1:1"]);
    assert_eq!(wait_exit(&mut c), Some(2));
    // A second member on a data directory in use: refused, the first unharmed.
    let other = free_port().to_string();
    let mut c = run(&["--data-dir", dir, "--listen", &other]);
    assert_eq!(wait_exit(&mut c), Some(1));
    g.client().alloc_ids(1).await.unwrap();
    // SIGTERM stops a member cleanly.
    let pid = g.members[0].pid().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let mut g = g;
    let start = std::time::Instant::now();
    while g.members[0].is_running() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "no exit on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_joining_at_once_bootstrap_exactly_once() {
    use golem_pd::client::Joined;
    let g = Group::start(1, &[]);
    let mut joins = Vec::new();
    for i in 0..4u64 {
        let c = g.client();
        joins.push(tokio::spawn(async move {
            let store = Store {
                id: StoreId(c.alloc_ids(1).await.unwrap().start),
                addr: format!("127.0.0.1:{}", 7000 + i * 10),
                shard_count: 2,
            };
            (store.id, c.join(store).await.unwrap())
        }));
    }
    let mut bootstrapped = Vec::new();
    let mut cluster = None;
    for j in joins {
        let (store, joined) = j.await.unwrap();
        let c = match &joined {
            Joined::Bootstrapped { cluster, region } => {
                bootstrapped.push((store, region.clone()));
                *cluster
            }
            Joined::Registered { cluster } => *cluster,
        };
        assert_ne!(c.0, 0);
        assert!(cluster.is_none() || cluster == Some(c), "two cluster ids");
        cluster = Some(c);
    }
    assert_eq!(bootstrapped.len(), 1, "{bootstrapped:?}");
    let c = g.client();
    let (store, region) = &bootstrapped[0];
    let first = c.get_region(b"any").await.unwrap().unwrap();
    assert_eq!(&first.region, region);
    assert_eq!(first.leader.unwrap().store, *store);
    assert_eq!(c.get_stores(false).await.unwrap().len(), 4);
}
