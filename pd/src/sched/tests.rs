//! Whole-scheduler tests on small clusters: balance converges and then
//! stays still (no ping-pong), repair after a store goes down, drain of an
//! offline store, splits with pool ids, excess voters removed (never the
//! leader), hot regions left to balance-hot-region.

use super::*;
use crate::sched::cluster::StoreView;
use golem_wire::pd::{Region, RegionStats};
use golem_wire::{RegionEpoch, ShardId};

fn cfg() -> SchedConfig {
    SchedConfig {
        store_limit_add_peer: 100,
        leader_schedule_limit: 100,
        region_schedule_limit: 100,
        ..SchedConfig::default()
    }
}

fn up_view(stores: u64) -> ClusterView {
    let mut v = ClusterView::default();
    for id in 1..=stores {
        v.stores.insert(
            StoreId(id),
            StoreView {
                id: StoreId(id),
                health: Health::Up,
                shard_count: 1,
                regions: 0,
                leaders: 0,
                weight: 0,
                shards: vec![Default::default()],
            },
        );
    }
    v
}

/// `n` regions with 3 replicas on `stores` (cyclic from `first`), the
/// first replica leading.
fn routes(n: u64, stores: &[u64]) -> Vec<RegionRoute> {
    (0..n)
        .map(|i| {
            let id = 1000 + i;
            let peers: Vec<Peer> = (0..3)
                .map(|k| {
                    let store = stores[(i as usize + k) % stores.len()];
                    Peer {
                        id: PeerId(id * 10 + k as u64),
                        store: StoreId(store),
                        shard: ShardId(0),
                        role: PeerRole::Voter,
                    }
                })
                .collect();
            RegionRoute {
                leader: Some(peers[0]),
                region: Region {
                    id: RegionId(id),
                    start: id.to_be_bytes().to_vec(),
                    end: (id + 1).to_be_bytes().to_vec(),
                    epoch: RegionEpoch {
                        conf_ver: 1,
                        version: 1,
                    },
                    peers,
                },
                term: 1,
                stats: RegionStats::default(),
            }
        })
        .collect()
}

/// Executes an operator's steps on a route, as a node would.
fn execute(r: &mut RegionRoute, steps: &[OperatorStep]) {
    for s in steps {
        match s {
            OperatorStep::AddLearner { peer } => r.region.peers.push(*peer),
            OperatorStep::PromoteLearner { peer } => {
                for p in &mut r.region.peers {
                    if p.id == *peer {
                        p.role = PeerRole::Voter;
                    }
                }
            }
            OperatorStep::RemovePeer { peer } => {
                if r.leader.is_some_and(|l| l.id == *peer) {
                    r.leader = r.region.peers.iter().copied().find(|p| p.id != *peer);
                }
                r.region.peers.retain(|p| p.id != *peer);
            }
            OperatorStep::TransferLeader { to } => {
                r.leader = r.region.peers.iter().copied().find(|p| p.id == *to);
                continue; // a leader change leaves the epoch alone
            }
            other => panic!("unexpected step {other:?}"),
        }
        r.region.epoch.conf_ver += 1;
    }
}

fn counts(routes: &[RegionRoute], stores: u64) -> (Vec<i64>, Vec<i64>) {
    let mut v = up_view(stores);
    v.count(routes.iter(), &Controller::new(1), &cfg());
    (
        v.stores.values().map(|s| s.regions).collect(),
        v.stores.values().map(|s| s.leaders).collect(),
    )
}

/// Runs the balance schedulers, executes every operator they made and
/// repeats; returns the rounds that made operators and the moves made.
type Move = (RegionId, Vec<StoreId>, Vec<StoreId>);

fn stores_of(r: &RegionRoute) -> Vec<StoreId> {
    r.region.peers.iter().map(|p| p.store).collect()
}

fn run_to_rest(routes: &mut [RegionRoute], stores: u64, rounds_max: usize) -> (usize, Vec<Move>) {
    let mut moves = Vec::new();
    for round in 0..rounds_max {
        let mut s = Scheduler::new(cfg(), 1);
        s.on_ids(1_000_000 + round as u64 * 1000, 1000);
        s.view = up_view(stores);
        s.view.count(routes.iter(), &s.ctl, &s.cfg);
        let refs: Vec<&RegionRoute> = routes.iter().collect();
        s.balance(&refs, 1);
        let ops: Vec<_> = s.ctl.iter().cloned().collect();
        if ops.is_empty() {
            return (round, moves);
        }
        for op in ops {
            let r = routes
                .iter_mut()
                .find(|r| r.region.id == op.region)
                .unwrap();
            let before = stores_of(r);
            execute(r, &op.steps);
            moves.push((op.region, before, stores_of(r)));
        }
    }
    panic!("no rest after {rounds_max} rounds");
}

#[test]
fn balanced_cluster_gets_no_operators() {
    // 30 regions over 3 stores: 30 replicas and 10 leaders each.
    let mut rs = routes(30, &[1, 2, 3]);
    let (rounds, moves) = run_to_rest(&mut rs, 3, 1);
    assert_eq!((rounds, moves.len()), (0, 0));
}

#[test]
fn adding_a_store_rebalances_then_stays_still() {
    let mut rs = routes(40, &[1, 2, 3]);
    let (rounds, moves) = run_to_rest(&mut rs, 4, 50);
    assert!(rounds > 0 && !moves.is_empty());
    let (regions, leaders) = counts(&rs, 4);
    let spread = |v: &[i64]| v.iter().max().unwrap() - v.iter().min().unwrap();
    assert!(spread(&regions) <= 1, "regions {regions:?}");
    assert!(spread(&leaders) <= 1, "leaders {leaders:?}");
    // No ping-pong: no region ever got a replica back on a store it
    // left, and the state after the schedulers' own operators is at rest.
    let mut left: std::collections::BTreeSet<(RegionId, StoreId)> = Default::default();
    for (region, before, after) in &moves {
        for s in after.iter().filter(|s| !before.contains(s)) {
            assert!(
                !left.contains(&(*region, *s)),
                "region {region} moved back to {s}"
            );
        }
        for s in before.iter().filter(|s| !after.contains(s)) {
            left.insert((*region, *s));
        }
    }
    let (again, more) = run_to_rest(&mut rs, 4, 1);
    assert_eq!((again, more.len()), (0, 0));
}

#[test]
fn leaders_rebalance_without_flapping() {
    // Every region led from store 1.
    let mut rs = routes(30, &[1, 2, 3]);
    for r in &mut rs {
        let on1 = r
            .region
            .peers
            .iter()
            .copied()
            .find(|p| p.store == StoreId(1))
            .unwrap();
        r.leader = Some(on1);
    }
    let (_, moves) = run_to_rest(&mut rs, 3, 20);
    let (_, leaders) = counts(&rs, 3);
    assert_eq!(leaders, vec![10, 10, 10]);
    assert_eq!(moves.len(), 20, "exactly the transfers needed, none undone");
}

fn heartbeat(r: &RegionRoute, stats: RegionStats) -> RegionHeartbeat {
    RegionHeartbeat {
        region: r.region.clone(),
        leader: r.leader.unwrap().id,
        term: 1,
        stats,
    }
}

#[test]
fn a_down_store_is_repaired_through_heartbeats() {
    let mut rs = routes(6, &[1, 2, 3]);
    let mut s = Scheduler::new(cfg(), 1);
    s.on_ids(500, 100);
    s.view = up_view(4);
    s.view.stores.get_mut(&StoreId(3)).unwrap().health = Health::Down;
    s.view.count(rs.iter(), &s.ctl, &s.cfg);
    for r in &mut rs {
        // Heartbeat, execute the handed-out step, heartbeat again, until quiet.
        for _ in 0..10 {
            let Some(op) = s.on_region_heartbeat(&heartbeat(r, RegionStats::default()), 10) else {
                break;
            };
            execute(r, &[op.step]);
        }
        let stores: Vec<u64> = r.region.peers.iter().map(|p| p.store.0).collect();
        assert!(
            !stores.contains(&3),
            "region {} still on store 3: {stores:?}",
            r.region.id
        );
        assert_eq!(stores.len(), 3);
        assert!(r.region.peers.iter().all(|p| p.role == PeerRole::Voter));
    }
    assert_eq!(s.ctl.ended.get("finished"), Some(&6));
}

#[test]
fn oversized_region_splits_with_pool_ids_or_waits_for_them() {
    let rs = routes(1, &[1, 2, 3]);
    let mut s = Scheduler::new(
        SchedConfig {
            split_region_keys: 100,
            ..cfg()
        },
        1,
    );
    s.view = up_view(3);
    s.view.count(rs.iter(), &s.ctl, &s.cfg);
    let mut mid = rs[0].region.start.clone();
    mid.push(0x80);
    let stats = RegionStats {
        approximate_keys: 101,
        split_key: Some(mid.clone()),
        ..RegionStats::default()
    };
    // No ids yet: no operator, and the pool asks for some.
    assert_eq!(
        s.on_region_heartbeat(&heartbeat(&rs[0], stats.clone()), 10),
        None
    );
    assert!(s.ids.want(10).is_some());
    s.on_ids(700, 10);
    let op = s
        .on_region_heartbeat(&heartbeat(&rs[0], stats.clone()), 10)
        .unwrap();
    assert_eq!(
        op.step,
        OperatorStep::Split {
            key: mid.clone(),
            new_region: RegionId(700),
            new_peers: vec![PeerId(701), PeerId(702), PeerId(703)],
        }
    );
    // Done once the region ends at the key with a newer version.
    let mut left = rs[0].clone();
    left.region.end = mid;
    left.region.epoch.version += 1;
    assert_eq!(
        s.on_region_heartbeat(&heartbeat(&left, RegionStats::default()), 20),
        None
    );
    assert_eq!(s.ctl.ended.get("finished"), Some(&1));
}

#[test]
fn excess_voters_are_removed_through_heartbeats_never_the_leader() {
    // A move cancelled between its promote and its remove: 4 voters.
    let mut rs = routes(1, &[1, 2, 3]);
    let extra = Peer {
        id: PeerId(99),
        store: StoreId(4),
        shard: ShardId(0),
        role: PeerRole::Voter,
    };
    rs[0].region.peers.push(extra);
    let leader = rs[0].leader.unwrap();
    let mut s = Scheduler::new(cfg(), 1);
    s.view = up_view(4);
    s.view.count(rs.iter(), &s.ctl, &s.cfg);
    let mut steps = Vec::new();
    for _ in 0..5 {
        let Some(op) = s.on_region_heartbeat(&heartbeat(&rs[0], RegionStats::default()), 10) else {
            break;
        };
        steps.push(op.step.clone());
        execute(&mut rs[0], &[op.step]);
    }
    assert_eq!(steps.len(), 1, "one removal, then at rest: {steps:?}");
    assert!(matches!(steps[0], OperatorStep::RemovePeer { peer } if peer != leader.id));
    assert_eq!(rs[0].region.peers.len(), 3);
    assert_eq!(rs[0].leader, Some(leader));
}

#[test]
fn balance_schedulers_leave_hot_regions_to_balance_hot() {
    // 30 regions, leaders 10/10/10; the 4 first regions led by store 1
    // carry heavy writes.
    let rs = routes(30, &[1, 2, 3]);
    let mut s = Scheduler::new(cfg(), 1);
    s.view = up_view(3);
    s.view.count(rs.iter(), &s.ctl, &s.cfg);
    let hot: Vec<RegionId> = rs
        .iter()
        .filter(|r| r.leader.unwrap().store == StoreId(1))
        .take(4)
        .map(|r| r.region.id)
        .collect();
    let load = RegionStats {
        written_bytes: 1 << 20,
        written_keys: 100,
        interval_ms: 1000,
        ..RegionStats::default()
    };
    for t in 1..=3u64 {
        for r in rs.iter().filter(|r| hot.contains(&r.region.id)) {
            assert_eq!(
                s.on_region_heartbeat(&heartbeat(r, load.clone()), t * 1000),
                None
            );
        }
    }
    for r in &rs {
        assert_eq!(
            s.hot_cache().is_hot(r.region.id, &s.cfg),
            hot.contains(&r.region.id)
        );
    }
    let refs: Vec<&RegionRoute> = rs.iter().collect();
    s.balance(&refs, 4000);
    let ops: Vec<(RegionId, OpSource)> = s.ctl.iter().map(|o| (o.region, o.source)).collect();
    // Hot leaders spread (4 → 2 stay, one to each other store)…
    let hot_moves: Vec<RegionId> = ops
        .iter()
        .filter(|(_, src)| *src == OpSource::BalanceHotLeader)
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(hot_moves, hot[..2].to_vec(), "{ops:?}");
    // …and no other scheduler touches a hot region.
    for (r, src) in &ops {
        assert!(
            !hot.contains(r) || *src == OpSource::BalanceHotLeader,
            "{src:?} on hot region {r}"
        );
    }
}

#[test]
fn an_operator_moving_to_a_down_store_ends_and_repair_starts_at_once() {
    // A leader transfer to store 3 is made, then store 3 stops: once it is
    // down, the next heartbeat ends the transfer (it could only time out,
    // 30 s) and the replica checker replaces store 3's replica in the same
    // answer.
    let rs = routes(1, &[1, 2, 3]);
    let mut s = Scheduler::new(cfg(), 1);
    s.on_ids(500, 100);
    s.view = up_view(4);
    s.view.count(rs.iter(), &s.ctl, &s.cfg);
    let on3 = rs[0].region.peers[2];
    assert_eq!(on3.store, StoreId(3));
    let region = rs[0].region.id;
    s.admin_add_op(
        region,
        vec![OperatorStep::TransferLeader { to: on3.id }],
        &rs[0],
    );
    let hb = heartbeat(&rs[0], RegionStats::default());
    assert_eq!(
        s.on_region_heartbeat(&hb, 10).map(|o| o.step),
        Some(OperatorStep::TransferLeader { to: on3.id }),
        "store 3 up: the transfer runs"
    );
    // Disconnected (silent a while): the transfer goes on.
    s.view.stores.get_mut(&StoreId(3)).unwrap().health = Health::Disconnected;
    assert_eq!(
        s.on_region_heartbeat(&hb, 20).map(|o| o.step),
        Some(OperatorStep::TransferLeader { to: on3.id })
    );
    // Down: the transfer ends and repair starts in the same answer (a
    // learner on store 4 first).
    s.view.stores.get_mut(&StoreId(3)).unwrap().health = Health::Down;
    let step = s.on_region_heartbeat(&hb, 30).map(|o| o.step);
    assert_eq!(s.ctl.ended.get("target-down"), Some(&1));
    assert!(
        matches!(step, Some(OperatorStep::AddLearner { peer }) if peer.store == StoreId(4)),
        "{step:?}"
    );
}

impl Scheduler {
    /// Test helper: admits an operator of `steps` on `route`'s region.
    fn admin_add_op(&mut self, region: RegionId, steps: Vec<OperatorStep>, route: &RegionRoute) {
        let op = NewOp {
            region,
            epoch: route.region.epoch,
            source: OpSource::BalanceLeader,
            steps,
            influence: vec![],
        };
        self.admit(op, &route.region, 1).unwrap();
    }
}
