//! Balance-shard, table-driven: cluster state in, operators out; a run to
//! rest that spreads regions made by splits on shard 0 over both shards of
//! every store with no move undone; placement of new replicas on the
//! least-loaded shard; the leftover of an interrupted move.

use super::*;
use crate::sched::cluster::{ShardView, StoreView};
use crate::sched::operator::PendingOp;
use golem_wire::pd::{Region, RegionStats};
use golem_wire::{RegionEpoch, RegionId};

fn cfg() -> SchedConfig {
    SchedConfig {
        store_limit_add_peer: 100,
        shard_moves_per_store_max: 100,
        ..SchedConfig::default()
    }
}

/// Region `id` with a voter on each store of `stores` (peer `id*10+k` on
/// shard `shards[k]`), led by the first.
fn route(id: u64, stores: &[u64], shards: &[u16]) -> RegionRoute {
    let peers: Vec<Peer> = stores
        .iter()
        .zip(shards)
        .enumerate()
        .map(|(k, (&store, &shard))| Peer {
            id: PeerId(id * 10 + k as u64),
            store: StoreId(store),
            shard: ShardId(shard),
            role: PeerRole::Voter,
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
}

/// Stores 1..=`stores`, `Up` unless listed in `down`, with `shards` shards
/// each, counting `routes` and `ctl`'s operators.
fn view(
    stores: u64,
    shards: u16,
    down: &[u64],
    routes: &[RegionRoute],
    ctl: &Controller,
) -> ClusterView {
    let mut v = ClusterView::default();
    for id in 1..=stores {
        v.stores.insert(
            StoreId(id),
            StoreView {
                id: StoreId(id),
                health: if down.contains(&id) {
                    Health::Down
                } else {
                    Health::Up
                },
                shard_count: shards,
                regions: 0,
                leaders: 0,
                weight: 0,
                shards: vec![ShardView::default(); usize::from(shards)],
            },
        );
    }
    v.count(routes.iter(), ctl, &cfg());
    v
}

/// `n` regions on stores 1-3, each replica on the shard `shard_of(i)`.
fn regions(n: u64, shard_of: impl Fn(u64) -> u16) -> Vec<RegionRoute> {
    (0..n)
        .map(|i| {
            let s = shard_of(i);
            route(100 + i, &[1, 2, 3], &[s, s, s])
        })
        .collect()
}

fn plan(routes: &[RegionRoute], v: &ClusterView, ctl: &Controller) -> Option<NewOp> {
    let refs: Vec<&RegionRoute> = routes.iter().collect();
    schedule(&refs, v, ctl, &cfg(), 9_999)
}

/// The (store, from shard, to shard) of a move.
fn summary(routes: &[RegionRoute], op: &NewOp) -> (u64, u16, u16) {
    let r = routes.iter().find(|r| r.region.id == op.region).unwrap();
    match op.steps.as_slice() {
        [OperatorStep::AddLearner { peer }, OperatorStep::ReplacePeer { add, remove }] => {
            assert_eq!(*add, peer.id);
            assert_eq!(peer.role, PeerRole::Learner);
            let old = r.region.peers.iter().find(|p| p.id == *remove).unwrap();
            assert_eq!(old.store, peer.store, "a move stays on its store");
            (peer.store.0, old.shard.0, peer.shard.0)
        }
        other => panic!("unexpected steps {other:?}"),
    }
}

#[test]
fn the_fullest_shard_gives_to_the_emptiest_beyond_the_hysteresis() {
    // (replicas per store on shard 0, on shard 1, shards per store, down
    // stores, expected (store, from, to) of the first move: store 1 leads
    // every region, so a follower on store 2 moves first)
    type Row = (u64, u64, u16, Vec<u64>, Option<(u64, u16, u16)>);
    let table: Vec<Row> = vec![
        (5, 5, 2, vec![], None),            // balanced: no operator
        (5, 4, 2, vec![], None),            // spread 1: balanced
        (6, 4, 2, vec![], Some((2, 0, 1))), // spread 2: 5/5 after
        (10, 0, 2, vec![], Some((2, 0, 1))),
        (0, 10, 2, vec![], Some((2, 1, 0))),
        (10, 0, 1, vec![], None), // one shard per store: nothing to balance
        (10, 0, 3, vec![], Some((2, 0, 1))), // to the emptiest (lowest id)
        (10, 0, 2, vec![2], None), // a peer's store is down: nothing moves
    ];
    for (i, (on0, on1, shards, down, want)) in table.into_iter().enumerate() {
        let routes = regions(on0 + on1, |k| if k < on0 { 0 } else { 1 });
        let ctl = Controller::new(1);
        let v = view(3, shards, &down, &routes, &ctl);
        let got = plan(&routes, &v, &ctl).map(|op| summary(&routes, &op));
        assert_eq!(got, want, "row {i}");
    }
}

#[test]
fn a_store_down_or_a_busy_region_is_skipped_on_the_others_it_moves() {
    let routes = regions(10, |_| 0);
    let ctl = Controller::new(1);
    // Store 1 is down: the regions all have a peer there, none moves.
    let v = view(3, 2, &[1], &routes, &ctl);
    assert_eq!(plan(&routes, &v, &ctl), None);
    // Every region but the last has an operator: the last one moves.
    let mut busy = Controller::new(1);
    for r in &routes[..9] {
        busy.add(
            NewOp {
                region: r.region.id,
                epoch: r.region.epoch,
                source: OpSource::Admin,
                steps: vec![OperatorStep::TransferLeader {
                    to: r.region.peers[1].id,
                }],
                influence: vec![],
            },
            &cfg(),
            0,
        )
        .unwrap();
    }
    let v = view(3, 2, &[], &routes, &busy);
    let op = plan(&routes, &v, &busy).expect("a move");
    assert_eq!(op.region, routes[9].region.id);
}

#[test]
fn followers_move_before_leaders() {
    // Store 1 leads region 100 and follows region 101, both on shard 0.
    let mut routes = vec![
        route(100, &[1, 2, 3], &[0, 0, 0]),
        route(101, &[2, 1, 3], &[0, 0, 0]),
    ];
    routes.extend(regions(2, |_| 0).into_iter().map(|mut r| {
        r.region.id = RegionId(r.region.id.0 + 100);
        r
    }));
    let ctl = Controller::new(1);
    let v = view(3, 2, &[], &routes, &ctl);
    let op = plan(&routes, &v, &ctl).unwrap();
    assert_eq!(summary(&routes, &op), (1, 0, 1));
    assert_eq!(op.region, RegionId(101), "the follower replica moves first");
}

/// Executes a move's steps on a route as the nodes would.
fn execute(r: &mut RegionRoute, steps: &[OperatorStep]) {
    for s in steps {
        match s {
            OperatorStep::AddLearner { peer } => r.region.peers.push(*peer),
            OperatorStep::ReplacePeer { add, remove } => {
                let new = r.region.peers.iter().position(|p| p.id == *add).unwrap();
                r.region.peers[new].role = PeerRole::Voter;
                if r.leader.is_some_and(|l| l.id == *remove) {
                    // The leader hands over first (to another voter).
                    r.leader = r
                        .region
                        .peers
                        .iter()
                        .copied()
                        .find(|p| p.id != *remove && p.id != *add && p.role == PeerRole::Voter);
                }
                r.region.peers.retain(|p| p.id != *remove);
            }
            OperatorStep::RemovePeer { peer } => r.region.peers.retain(|p| p.id != *peer),
            other => panic!("unexpected step {other:?}"),
        }
        r.region.epoch.conf_ver += 1;
    }
    // A peer must not be listed twice on one shard of a store.
    assert!(r.region.validate().is_ok(), "{:?}", r.region);
}

/// Per store, the replicas on each shard.
fn per_shard(routes: &[RegionRoute], stores: u64, shards: u16) -> Vec<Vec<i64>> {
    let v = view(stores, shards, &[], routes, &Controller::new(1));
    v.stores
        .values()
        .map(|s| s.shards.iter().map(|x| x.regions).collect())
        .collect()
}

/// Schedules up to the limits with the moves running (counted as done),
/// executes them all, repeats; returns the rounds with moves and each
/// move's (region, store, from shard, to shard).
fn run_to_rest(
    routes: &mut [RegionRoute],
    shards: u16,
    cfg: &SchedConfig,
    rounds_max: usize,
) -> (usize, Vec<(RegionId, u64, u16, u16)>) {
    let mut moves = Vec::new();
    for round in 0..rounds_max {
        let mut ctl = Controller::new(1);
        let mut v = view(3, shards, &[], routes, &ctl);
        let refs: Vec<&RegionRoute> = routes.iter().collect();
        let mut made = Vec::new();
        let mut id = 50_000 + round as u64 * 100;
        while ctl.count(OpSource::BalanceShard) < cfg.shard_schedule_limit {
            let Some(op) = schedule(&refs, &v, &ctl, cfg, id) else {
                break;
            };
            id += 1;
            let r = routes.iter().find(|r| r.region.id == op.region).unwrap();
            v.apply_steps(&r.region, &op.steps);
            made.push(op.clone());
            ctl.add(op, cfg, 0).unwrap();
        }
        if made.is_empty() {
            return (round, moves);
        }
        for op in made {
            let (store, from, to) = summary(routes, &op);
            moves.push((op.region, store, from, to));
            let r = routes
                .iter_mut()
                .find(|r| r.region.id == op.region)
                .unwrap();
            execute(r, &op.steps);
        }
    }
    panic!("no rest after {rounds_max} rounds");
}

#[test]
fn regions_split_on_shard_0_spread_over_every_shard_and_come_to_rest() {
    for (n, shards, limit_per_store) in [(20, 2, 2), (21, 2, 1), (30, 3, 2), (7, 2, 4)] {
        let mut routes = regions(n, |_| 0);
        let cfg = SchedConfig {
            shard_moves_per_store_max: limit_per_store,
            ..cfg()
        };
        let (rounds, moves) = run_to_rest(&mut routes, shards, &cfg, 100);
        assert!(rounds > 0);
        for (store, counts) in per_shard(&routes, 3, shards).iter().enumerate() {
            let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
            assert!(spread <= 1, "store {}: {counts:?} ({n} regions)", store + 1);
        }
        // Exactly the moves needed (every replica moved at most once, and
        // never back to a shard it left): no ping-pong.
        let mut left = std::collections::BTreeSet::new();
        for &(region, store, from, to) in &moves {
            assert!(
                !left.contains(&(region, store, to)),
                "region {region} moved back to shard {to} of store {store}"
            );
            left.insert((region, store, from));
        }
        let ideal: u64 = 3 * (n - n.div_ceil(u64::from(shards)));
        assert_eq!(moves.len() as u64, ideal, "{n} regions on {shards} shards");
        // At rest: one more round makes nothing.
        assert_eq!(run_to_rest(&mut routes, shards, &cfg, 1), (0, vec![]));
    }
}

#[test]
fn moves_into_one_store_respect_the_per_store_limit() {
    let routes = regions(20, |_| 0);
    let cfg = SchedConfig {
        shard_moves_per_store_max: 1,
        ..cfg()
    };
    let mut ctl = Controller::new(1);
    let mut v = view(3, 2, &[], &routes, &ctl);
    let refs: Vec<&RegionRoute> = routes.iter().collect();
    let mut per_store = std::collections::BTreeMap::new();
    for id in 0..10 {
        let Some(op) = schedule(&refs, &v, &ctl, &cfg, 70_000 + id) else {
            break;
        };
        let r = routes.iter().find(|r| r.region.id == op.region).unwrap();
        *per_store.entry(summary(&routes, &op).0).or_insert(0) += 1;
        v.apply_steps(&r.region, &op.steps);
        ctl.add(op, &cfg, 0).unwrap();
    }
    assert_eq!(
        per_store.into_iter().collect::<Vec<_>>(),
        vec![(1, 1), (2, 1), (3, 1)]
    );
    assert_eq!(moves_on(&ctl, StoreId(1)), 1);
}

#[test]
fn new_replicas_go_to_the_least_loaded_shard() {
    // Store 4 (2 shards) holds 3 regions on shard 0 and 1 on shard 1;
    // region 500 lives on stores 1-3 only.
    let mut routes = regions(3, |_| 0);
    for r in &mut routes {
        r.region.peers[2].store = StoreId(4);
    }
    routes.push(route(400, &[1, 2, 4], &[0, 0, 1]));
    routes.push(route(500, &[1, 2, 3], &[0, 0, 0]));
    let ctl = Controller::new(1);
    let v = view(4, 2, &[], &routes, &ctl);
    assert_eq!(v.least_loaded_shard(StoreId(4)), ShardId(1));
    assert_eq!(v.least_loaded_shard(StoreId(99)), ShardId(0));
    // Store 3 holds only region 500: fewest replicas; its shard 1 is empty.
    let (store, shard) = v.best_target(&routes[0].region).unwrap();
    assert_eq!((store, shard), (StoreId(3), ShardId(1)));
    // A running add to a shard counts as done.
    let mut adding = Controller::new(1);
    adding
        .add(
            NewOp {
                region: RegionId(500),
                epoch: routes[4].region.epoch,
                source: OpSource::Replica,
                steps: vec![OperatorStep::AddLearner {
                    peer: Peer {
                        id: PeerId(7777),
                        store: StoreId(4),
                        shard: ShardId(1),
                        role: PeerRole::Learner,
                    },
                }],
                influence: vec![],
            },
            &cfg(),
            0,
        )
        .unwrap();
    let v = view(4, 2, &[], &routes, &adding);
    let s4: Vec<i64> = v.stores[&StoreId(4)]
        .shards
        .iter()
        .map(|s| s.regions)
        .collect();
    assert_eq!(s4, vec![3, 2]);
}

#[test]
fn a_learner_left_beside_its_voter_by_an_interrupted_move_is_removed() {
    let mut r = route(100, &[1, 2, 3], &[0, 0, 0]);
    let ctl = Controller::new(1);
    assert_eq!(leftover(&r.region, PeerId(1000), &ctl), None);
    r.region.peers.push(Peer {
        id: PeerId(77),
        store: StoreId(2),
        shard: ShardId(1),
        role: PeerRole::Learner,
    });
    let op = leftover(&r.region, PeerId(1000), &ctl).unwrap();
    assert_eq!(
        op.steps,
        vec![OperatorStep::RemovePeer { peer: PeerId(77) }]
    );
    // A learner on a store of its own is the replica checker's business.
    r.region.peers[3].store = StoreId(4);
    assert_eq!(leftover(&r.region, PeerId(1000), &ctl), None);
    // A region with an operator is left alone.
    r.region.peers[3].store = StoreId(2);
    let mut busy = Controller::new(1);
    let pending: &PendingOp = busy
        .add(
            NewOp {
                region: r.region.id,
                epoch: r.region.epoch,
                source: OpSource::BalanceShard,
                steps: vec![OperatorStep::ReplacePeer {
                    add: PeerId(77),
                    remove: PeerId(1001),
                }],
                influence: vec![],
            },
            &cfg(),
            0,
        )
        .unwrap();
    assert_eq!(pending.current, 0);
    assert_eq!(leftover(&r.region, PeerId(1000), &busy), None);
}

/// A heartbeat of a region worth moving gets the move's first step in its
/// answer at once; in a balanced store, and once the limit is reached,
/// heartbeats get nothing.
#[test]
fn a_heartbeat_gets_its_move_at_once() {
    use crate::sched::Scheduler;
    use golem_wire::pd::RegionHeartbeat;
    let cfg = SchedConfig {
        shard_schedule_limit: 2,
        ..cfg()
    };
    let hb = |r: &RegionRoute| RegionHeartbeat {
        region: r.region.clone(),
        leader: r.leader.unwrap().id,
        term: 1,
        stats: RegionStats::default(),
    };
    // (regions on shard 0, on shard 1, heartbeats answered with a move)
    for (on0, on1, moves) in [(10, 0, 2), (5, 5, 0), (6, 5, 0)] {
        let routes = regions(on0 + on1, |k| if k < on0 { 0 } else { 1 });
        let mut s = Scheduler::new(cfg.clone(), 1);
        s.on_ids(500_000, 10);
        s.view = view(3, 2, &[], &routes, &s.ctl);
        let mut got = 0;
        for r in &routes {
            if let Some(op) = s.on_region_heartbeat(&hb(r), 1) {
                assert!(matches!(
                    op.step,
                    OperatorStep::AddLearner { peer } if peer.shard == ShardId(1)
                ));
                got += 1;
            }
        }
        assert_eq!(got, moves, "{on0}/{on1}");
        // Only the ids of the moves were spent.
        assert_eq!(s.ids.available(), 10 - moves as u64);
    }
}

/// Balance-shard leaves neighbours on different shards of a store; the
/// merge checker then aligns the source's replica there with one joint
/// `ReplacePeer` (a learner on the target's shard first), not with a
/// promotion and a removal.
#[test]
fn a_merge_aligns_a_replica_on_another_shard_of_the_store_with_one_joint_change() {
    use crate::sched::Scheduler;
    let cfg = SchedConfig {
        split_merge_interval_ms: 1,
        ..cfg()
    };
    let mut source = route(100, &[1, 2, 3], &[0, 0, 1]);
    source.region.start = b"".to_vec();
    source.region.end = b"f".to_vec();
    let mut target = route(101, &[1, 2, 3], &[0, 0, 0]);
    target.region.start = b"f".to_vec();
    target.region.end = b"".to_vec();
    for r in [&mut source, &mut target] {
        r.stats = RegionStats {
            approximate_size_bytes: 1024,
            approximate_keys: 10,
            interval_ms: 10_000,
            ..RegionStats::default()
        };
    }
    let routes = [source.clone(), target];
    let refs: Vec<&RegionRoute> = routes.iter().collect();
    let mut s = Scheduler::new(cfg, 1);
    s.on_ids(900_000, 10);
    s.view = view(3, 2, &[], &routes, &s.ctl);
    s.merge(&refs, 10);
    s.merge(&refs, 100);
    let op = s.ctl.get(RegionId(100)).expect("an alignment");
    let old = source.region.peers[2].id;
    match op.steps.as_slice() {
        [OperatorStep::AddLearner { peer }, OperatorStep::ReplacePeer { add, remove }] => {
            assert_eq!((peer.store, peer.shard), (StoreId(3), ShardId(0)));
            assert_eq!((*add, *remove), (peer.id, old));
        }
        other => panic!("unexpected steps {other:?}"),
    }
}
