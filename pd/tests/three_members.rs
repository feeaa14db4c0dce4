//! Three PD members: kill -9 of the leader under load, then a restart of
//! every member. Checks: a new leader within a few election timeouts; no id
//! or timestamp handed out twice or backwards; no acknowledged update lost.

mod common;

use common::*;
use golem_pd::client::PdClient;
use golem_wire::pd::{Peer, PeerRole, Region, RegionHeartbeat, RegionStats, Store};
use golem_wire::{PeerId, RegionEpoch, RegionId, ShardId, StoreId};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn region(conf_ver: u64) -> Region {
    Region {
        id: RegionId(2),
        start: vec![],
        end: vec![],
        epoch: RegionEpoch {
            conf_ver,
            version: 1,
        },
        peers: vec![Peer {
            id: PeerId(3),
            store: StoreId(1),
            shard: ShardId(0),
            role: PeerRole::Voter,
        }],
    }
}

async fn leader_of(g: &Group) -> u64 {
    let c = g.client();
    let start = Instant::now();
    loop {
        if let Ok((_, Some(l))) = c.get_members().await {
            return l.0;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no leader within 10 s\n{}",
            g.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Default)]
struct History {
    id_ranges: Mutex<Vec<(u64, u64)>>,
    timestamps: Mutex<Vec<u64>>,
    acked_conf_ver: AtomicU64,
    acked_stores: Mutex<Vec<u64>>,
    /// Longest time between two successes of any worker, in ms.
    longest_gap_ms: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_loses_nothing_and_restart_keeps_state() {
    let mut g = Group::start(3, &["--snapshot-entries", "300", "--tso-window-ms", "200"]);
    let c = g.client();
    let ids = c.alloc_ids(3).await.unwrap();
    assert!(ids.start >= 1);
    c.bootstrap(
        Store {
            id: StoreId(1),
            addr: "127.0.0.1:7000".into(),
            shard_count: 1,
        },
        region(1),
    )
    .await
    .unwrap();

    let h = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let h = h.clone();
        let stop = stop.clone();
        let c: PdClient = g.client();
        workers.push(tokio::spawn(async move {
            let mut last_ok = Instant::now();
            let mut last_ts = 0u64;
            let mut conf_ver = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let ok = match w {
                    0 => match c.alloc_ids(7).await {
                        Ok(r) => {
                            h.id_ranges.lock().unwrap().push((r.start, r.end));
                            true
                        }
                        Err(_) => false,
                    },
                    1 => match c.tso(3).await {
                        Ok(t) => {
                            assert!(
                                t.0 > last_ts,
                                "timestamp went back: {} after {last_ts}",
                                t.0
                            );
                            last_ts = t.0;
                            let mut ts = h.timestamps.lock().unwrap();
                            ts.extend([t.0 - 2, t.0 - 1, t.0]);
                            true
                        }
                        Err(_) => false,
                    },
                    3 => {
                        // Store ids from a range no allocator hands out here.
                        let id = 1_000_000 + conf_ver;
                        conf_ver += 1;
                        let store = Store {
                            id: StoreId(id),
                            addr: format!("127.0.0.{}:{}", 2 + id % 200, 1000 + id % 60_000),
                            shard_count: 1,
                        };
                        match c.put_store(store).await {
                            Ok(()) => {
                                h.acked_stores.lock().unwrap().push(id);
                                true
                            }
                            Err(_) => false,
                        }
                    }
                    _ => {
                        conf_ver += 1;
                        let hb = RegionHeartbeat {
                            region: region(conf_ver),
                            leader: PeerId(3),
                            term: 1,
                            stats: RegionStats::default(),
                        };
                        match c.region_heartbeat(hb).await {
                            Ok(_) => {
                                h.acked_conf_ver.fetch_max(conf_ver, Ordering::Relaxed);
                                true
                            }
                            Err(_) => false,
                        }
                    }
                };
                if ok {
                    let gap = last_ok.elapsed().as_millis() as u64;
                    h.longest_gap_ms.fetch_max(gap, Ordering::Relaxed);
                    last_ok = Instant::now();
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(800)).await;
    let leader = leader_of(&g).await;
    let before_kill = h.id_ranges.lock().unwrap().len();
    assert!(
        before_kill > 10,
        "too little throughput before the fault: {before_kill}"
    );
    g.members[(leader - 1) as usize].kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let new_leader = leader_of(&g).await;
    assert_ne!(new_leader, leader);
    // The restarted member catches up; load goes on.
    g.members[(leader - 1) as usize].start();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    // Elections take 200-400 ms here (10 ticks of 20 ms, randomized);
    // allow a few of them plus the client's backoff.
    let gap = h.longest_gap_ms.load(Ordering::Relaxed);
    eprintln!("longest pause of any worker around the leader kill: {gap} ms");
    assert!(
        gap < 2500,
        "no progress for {gap} ms after the leader died\n{}",
        g.logs()
    );
    let after_kill = h.id_ranges.lock().unwrap().len();
    assert!(after_kill > before_kill + 10, "no progress after the kill");

    // No id twice.
    let mut ranges = h.id_ranges.lock().unwrap().clone();
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "id ranges overlap: {:?} {:?}", w[0], w[1]);
    }
    // No timestamp twice.
    let mut ts = h.timestamps.lock().unwrap().clone();
    let n = ts.len();
    ts.sort();
    ts.dedup();
    assert_eq!(ts.len(), n, "a timestamp was handed out twice");
    let max_id = ranges.last().unwrap().1;
    let max_ts = *ts.last().unwrap();
    let acked = h.acked_conf_ver.load(Ordering::Relaxed);
    let stores = h.acked_stores.lock().unwrap().clone();
    assert!(stores.len() > 10, "too few store registrations");

    let stores = &stores;
    let check = |c: PdClient| async move {
        let r = c.get_region_by_id(RegionId(2)).await.unwrap();
        assert!(
            r.region.epoch.conf_ver >= acked,
            "acknowledged heartbeat lost"
        );
        assert!(c.alloc_ids(1).await.unwrap().start >= max_id, "id reused");
        assert!(c.tso(1).await.unwrap().0 > max_ts, "timestamp went back");
        let known: Vec<u64> = c
            .get_stores(true)
            .await
            .unwrap()
            .iter()
            .map(|s| s.store.id.0)
            .collect();
        for id in stores {
            assert!(known.contains(id), "acknowledged store {id} lost");
        }
    };
    check(g.client()).await;
    for m in g.members.iter_mut() {
        assert!(m.is_running(), "member {} died\n{}", m.id, m.log());
    }

    // Restart every member: the whole state survives.
    for m in g.members.iter_mut() {
        m.kill();
    }
    for m in g.members.iter_mut() {
        m.start();
    }
    check(g.client()).await;
    for m in g.members.iter_mut() {
        assert!(m.is_running(), "member {} died\n{}", m.id, m.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_redirect_to_the_leader() {
    let mut g = Group::start(3, &[]);
    let leader = leader_of(&g).await;
    let follower = g.members.iter().find(|m| m.id != leader).unwrap();
    // A client that knows only a follower still gets served (redirected).
    let c = client(vec![follower.addr]);
    assert!(!c.is_bootstrapped().await.unwrap());
    let (members, l) = c.get_members().await.unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(l.unwrap().0, leader);
    // Kill one follower: the two others keep serving writes.
    let other = g.members.iter_mut().find(|m| m.id != leader).unwrap();
    other.kill();
    let c = g.client();
    assert!(c.alloc_ids(1).await.unwrap().start >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_member_catches_up_by_snapshot() {
    let mut g = Group::start(3, &["--snapshot-entries", "50"]);
    let leader = leader_of(&g).await;
    let lagging = g.members.iter().position(|m| m.id != leader).unwrap();
    g.members[lagging].kill();
    let c = g.client();
    let mut last = 0;
    for _ in 0..200 {
        last = c.alloc_ids(1).await.unwrap().start;
    }
    // The leader has compacted its log past what the lagging member has.
    g.members[lagging].start();
    let other = g
        .members
        .iter()
        .position(|m| m.id != leader && m.id != g.members[lagging].id)
        .unwrap();
    let lag_id = g.members[lagging].id;
    // Wait until the lagging member has the snapshot, then take the other
    // follower away: progress now needs the caught-up member.
    eventually(Duration::from_secs(10), || async {
        g.members[lagging]
            .log()
            .contains("installed a snapshot from the leader")
            .then_some(())
    })
    .await;
    g.members[other].kill();
    let next = c.alloc_ids(1).await.unwrap().start;
    assert!(next > last);
    // The caught-up member serves (by redirect) once the other is back.
    drop(c);
    g.members[other].start();
    let c = client(vec![g.members[lagging].addr]);
    assert!(c.alloc_ids(1).await.unwrap().start > next);
    assert!(
        g.members[lagging].is_running(),
        "member {lag_id} died\n{}",
        g.logs()
    );
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// SIGSTOP of the leader (a pause, like a long GC or a partition): the
/// others elect a new leader; after SIGCONT the old one steps down. Clients
/// pinned to the old leader and clients of the whole group see timestamps
/// that only grow, and none is handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_never_hands_out_old_timestamps() {
    let mut g = Group::start(3, &["--tso-window-ms", "200"]);
    let leader = leader_of(&g).await;
    let old = &g.members[(leader - 1) as usize];
    let (old_addr, old_pid) = (old.addr, old.pid().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for endpoints in [vec![old_addr], g.endpoints()] {
        let c = client(endpoints);
        let stop = stop.clone();
        let all = all.clone();
        workers.push(tokio::spawn(async move {
            let mut last = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(t) = c.tso(1).await {
                    assert!(t.0 > last, "timestamp went back");
                    last = t.0;
                    all.lock().unwrap().push(t.0);
                    n += 1;
                }
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(old_pid, "-STOP");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let new_leader = leader_of(&g).await;
    assert_ne!(
        new_leader, leader,
        "no new leader while the old one is paused"
    );
    signal(old_pid, "-CONT");
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.await.unwrap() > 10, "a worker made no progress");
    }
    let mut ts = all.lock().unwrap().clone();
    let n = ts.len();
    ts.sort();
    ts.dedup();
    assert_eq!(ts.len(), n, "a timestamp was handed out twice");
    for m in g.members.iter_mut() {
        assert!(m.is_running(), "member {} died\n{}", m.id, m.log());
    }
}
