//! Cluster formation with `--initial-replicas 3` on a three-member PD:
//! joining stores wait until the third arrives, the PD bootstraps the first
//! region with one voter on each, every one of them is told so — even when
//! the PD leader is killed in the middle — and a later store only registers.

mod common;

use common::*;
use golem_pd::client::{JoinProgress, Joined, PdClient};
use golem_wire::pd::Store;
use golem_wire::{ClusterId, RegionId, StoreId};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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

async fn new_store(c: &PdClient, i: u64) -> Store {
    Store {
        id: StoreId(c.alloc_ids(1).await.unwrap().start),
        addr: format!("127.0.0.1:{}", 7400 + i * 10),
        shard_count: 2,
    }
}

fn spawn_join(g: &Group, store: Store) -> tokio::task::JoinHandle<Joined> {
    let c = g.client();
    tokio::spawn(async move { c.join(store).await.unwrap() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_form_the_cluster_across_a_leader_kill() {
    let mut g = Group::start(3, &["--initial-replicas", "3"]);
    let c = g.client();
    let a = new_store(&c, 0).await;
    let b = new_store(&c, 1).await;
    let first = spawn_join(&g, a.clone());
    let second = spawn_join(&g, b.clone());
    // Two candidates: no cluster yet, both still waiting.
    let waiting = eventually(Duration::from_secs(10), || async {
        match c.join_once(b.clone()).await.unwrap() {
            JoinProgress::Waiting {
                stores: 2,
                initial_replicas: 3,
            } => Some(()),
            JoinProgress::Waiting { .. } => None,
            JoinProgress::Joined(j) => panic!("joined with two stores: {j:?}"),
        }
    });
    waiting.await;
    assert!(!c.is_bootstrapped().await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished() && !second.is_finished());

    // The leader dies; the candidates are in the replicated state.
    let leader = leader_of(&g).await;
    g.members[(leader - 1) as usize].kill();

    let third_store = new_store(&c, 2).await;
    let third = spawn_join(&g, third_store.clone());
    let mut told = Vec::new();
    for (store, task) in [(&a, first), (&b, second), (&third_store, third)] {
        let joined = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .unwrap_or_else(|_| panic!("join of {} hangs\n{}", store.id, g.logs()))
            .unwrap();
        told.push((store.id, joined));
    }
    let mut cluster: Option<ClusterId> = None;
    let mut region_id: Option<RegionId> = None;
    for (store, joined) in &told {
        let Joined::Bootstrapped { cluster: c, region } = joined else {
            panic!("store {store} was not given its peer: {joined:?}");
        };
        assert!(cluster.is_none_or(|x| x == *c), "two cluster ids");
        assert!(region_id.is_none_or(|x| x == region.id), "two regions");
        cluster = Some(*c);
        region_id = Some(region.id);
        assert_eq!(region.peers.len(), 3);
        let stores: BTreeSet<StoreId> = region.peers.iter().map(|p| p.store).collect();
        assert_eq!(stores, [a.id, b.id, third_store.id].into_iter().collect());
        assert!(region.start.is_empty() && region.end.is_empty());
        assert_eq!((region.epoch.conf_ver, region.epoch.version), (1, 1));
    }
    let route = c.get_region(b"any").await.unwrap().unwrap();
    assert_eq!(Some(route.region.id), region_id);
    assert_eq!(route.leader, None, "no leader reported yet");

    // Asking again (a node restarting its join) gives the same answer.
    assert_eq!(c.join(a.clone()).await.unwrap(), told[0].1);
    // A fourth store registers and hosts nothing.
    let d = new_store(&c, 3).await;
    assert_eq!(
        c.join(d.clone()).await.unwrap(),
        Joined::Registered {
            cluster: cluster.unwrap()
        }
    );
    assert_eq!(c.get_stores(false).await.unwrap().len(), 4);
    assert_eq!(c.cluster().await, cluster.unwrap());
}
