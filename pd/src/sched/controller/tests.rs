//! Table-driven tests of the controller: step progress, timeout,
//! epoch-cancel, per-store limits, one operator per region.

use super::*;
use golem_wire::pd::{OperatorStep, Peer, PeerRole};
use golem_wire::{RegionEpoch, ShardId};

fn peer(id: u64, store: u64, role: PeerRole) -> Peer {
    Peer {
        id: PeerId(id),
        store: StoreId(store),
        shard: ShardId(0),
        role,
    }
}

fn epoch(conf_ver: u64, version: u64) -> RegionEpoch {
    RegionEpoch { conf_ver, version }
}

fn region(id: u64, peers: Vec<Peer>, e: RegionEpoch) -> Region {
    Region {
        id: RegionId(id),
        start: vec![],
        end: vec![],
        epoch: e,
        peers,
    }
}

fn cfg() -> SchedConfig {
    SchedConfig {
        store_limit_add_peer: 2,
        step_timeout_ms: 100,
        add_learner_timeout_ms: 1000,
        ..SchedConfig::default()
    }
}

/// A move of region `r` from store 1 to store 4: add learner 40, promote, remove 10.
fn move_op(r: u64) -> NewOp {
    NewOp {
        region: RegionId(r),
        epoch: epoch(1, 1),
        source: OpSource::BalanceRegion,
        steps: vec![
            OperatorStep::AddLearner {
                peer: peer(r * 100 + 40, 4, PeerRole::Learner),
            },
            OperatorStep::PromoteLearner {
                peer: PeerId(r * 100 + 40),
            },
            OperatorStep::RemovePeer {
                peer: PeerId(r * 100 + 10),
            },
        ],
        influence: vec![],
    }
}

fn voters(r: u64, stores: &[u64]) -> Vec<Peer> {
    stores
        .iter()
        .map(|s| peer(r * 100 + s * 10, *s, PeerRole::Voter))
        .collect()
}

#[test]
fn a_move_advances_step_by_step_and_finishes() {
    let c = cfg();
    let mut ctl = Controller::new(1);
    ctl.add(move_op(1), &c, 0).unwrap();
    let base = voters(1, &[1, 2, 3]);
    let mut learner = base.clone();
    learner.push(peer(140, 4, PeerRole::Learner));
    let mut promoted = base.clone();
    promoted.push(peer(140, 4, PeerRole::Voter));
    let removed: Vec<Peer> = promoted[1..].to_vec();
    // (peers, epoch, leader, expected step handed out; None: ended)
    let table: Vec<(Vec<Peer>, RegionEpoch, u64, Option<OperatorStep>)> = vec![
        (
            base.clone(),
            epoch(1, 1),
            110,
            Some(move_op(1).steps[0].clone()),
        ),
        // Re-sent until observed.
        (base, epoch(1, 1), 110, Some(move_op(1).steps[0].clone())),
        (learner, epoch(2, 1), 110, Some(move_op(1).steps[1].clone())),
        // The leader is the peer to remove: transfer first (to the newest voter).
        (
            promoted.clone(),
            epoch(3, 1),
            110,
            Some(OperatorStep::TransferLeader { to: PeerId(140) }),
        ),
        (
            promoted,
            epoch(3, 1),
            140,
            Some(move_op(1).steps[2].clone()),
        ),
        (removed, epoch(4, 1), 140, None),
    ];
    for (i, (peers, e, leader, want)) in table.into_iter().enumerate() {
        let got = ctl.on_heartbeat(&region(1, peers, e), PeerId(leader), 10, &c);
        assert_eq!(got.as_ref().map(|o| o.step.clone()), want, "row {i}");
        if let Some(o) = got {
            assert_eq!(
                o.epoch, e,
                "row {i}: the step is valid at the observed epoch"
            );
        }
    }
    assert!(ctl.get(RegionId(1)).is_none());
    assert_eq!(ctl.ended.get("finished"), Some(&1));
}

#[test]
fn several_steps_seen_at_once_are_skipped() {
    let c = cfg();
    let mut ctl = Controller::new(1);
    ctl.add(move_op(1), &c, 0).unwrap();
    let mut promoted = voters(1, &[1, 2, 3]);
    promoted.push(peer(140, 4, PeerRole::Voter));
    let got = ctl.on_heartbeat(&region(1, promoted, epoch(3, 1)), PeerId(120), 10, &c);
    assert_eq!(
        got.unwrap().step,
        OperatorStep::RemovePeer { peer: PeerId(110) }
    );
}

#[test]
fn foreign_epoch_change_cancels() {
    let c = cfg();
    let mut ctl = Controller::new(1);
    ctl.add(move_op(1), &c, 0).unwrap();
    // conf_ver moved, but the learner is not there: someone else's change.
    let got = ctl.on_heartbeat(
        &region(1, voters(1, &[1, 2]), epoch(2, 1)),
        PeerId(110),
        10,
        &c,
    );
    assert_eq!(got, None);
    assert!(ctl.get(RegionId(1)).is_none());
    assert_eq!(ctl.ended.get("epoch-changed"), Some(&1));
    // A split under a leader transfer cancels it too.
    let op = NewOp {
        region: RegionId(2),
        epoch: epoch(1, 1),
        source: OpSource::BalanceLeader,
        steps: vec![OperatorStep::TransferLeader { to: PeerId(220) }],
        influence: vec![],
    };
    ctl.add(op, &c, 0).unwrap();
    assert!(ctl
        .on_heartbeat(
            &region(2, voters(2, &[1, 2]), epoch(1, 2)),
            PeerId(210),
            10,
            &c
        )
        .is_none());
    assert_eq!(ctl.ended.get("epoch-changed"), Some(&2));
}

#[test]
fn steps_time_out_by_their_budget() {
    let c = cfg();
    let mut ctl = Controller::new(1);
    ctl.add(move_op(1), &c, 0).unwrap();
    // An AddLearner has the snapshot budget (1000), not the step budget (100).
    assert!(ctl.expire(500, &c).is_empty());
    let mut learner = voters(1, &[1, 2, 3]);
    learner.push(peer(140, 4, PeerRole::Learner));
    assert!(ctl
        .on_heartbeat(&region(1, learner, epoch(2, 1)), PeerId(110), 600, &c)
        .is_some());
    // The promote started at 600: due at 700.
    assert!(ctl.expire(699, &c).is_empty());
    assert_eq!(ctl.expire(700, &c), vec![RegionId(1)]);
    assert_eq!(ctl.ended.get("timeout"), Some(&1));
    // A heartbeat past the deadline ends it as well.
    ctl.add(move_op(2), &c, 0).unwrap();
    assert!(ctl
        .on_heartbeat(
            &region(2, voters(2, &[1, 2, 3]), epoch(1, 1)),
            PeerId(210),
            1000,
            &c
        )
        .is_none());
    assert_eq!(ctl.ended.get("timeout"), Some(&2));
}

#[test]
fn one_operator_per_region_and_store_limits() {
    let c = cfg(); // at most 2 pending adds per store
    let mut ctl = Controller::new(1);
    let first = ctl.add(move_op(1), &c, 0).unwrap().id;
    assert_eq!(
        ctl.add(move_op(1), &c, 0).unwrap_err(),
        AddError::RegionBusy { id: first }
    );
    ctl.add(move_op(2), &c, 0).unwrap();
    assert_eq!(
        ctl.add(move_op(3), &c, 0).unwrap_err(),
        AddError::StoreLimit { store: StoreId(4) }
    );
    // Once region 1's learner is in, its snapshot no longer counts.
    let mut learner = voters(1, &[1, 2, 3]);
    learner.push(peer(140, 4, PeerRole::Learner));
    ctl.on_heartbeat(&region(1, learner, epoch(2, 1)), PeerId(110), 10, &c);
    assert_eq!(ctl.adds_to(StoreId(4)), 1);
    ctl.add(move_op(3), &c, 10).unwrap();
    assert!(ctl.cancel(RegionId(3)));
    assert!(!ctl.cancel(RegionId(3)));
}

#[test]
fn repair_uses_the_slots_balance_cannot() {
    let c = SchedConfig {
        store_limit_repair_add_peer: 3,
        ..cfg() // balance: at most 2 pending adds per store
    };
    let repair = |r| NewOp {
        source: OpSource::Replica,
        ..move_op(r)
    };
    let mut ctl = Controller::new(1);
    ctl.add(move_op(1), &c, 0).unwrap();
    ctl.add(move_op(2), &c, 0).unwrap();
    // Balance is at its limit on store 4; repair is not.
    assert_eq!(
        ctl.add(move_op(3), &c, 0).unwrap_err(),
        AddError::StoreLimit { store: StoreId(4) }
    );
    ctl.add(repair(3), &c, 0).unwrap();
    assert_eq!(
        ctl.add(repair(4), &c, 0).unwrap_err(),
        AddError::StoreLimit { store: StoreId(4) }
    );
    assert_eq!(ctl.adds_to(StoreId(4)), 3);
}
