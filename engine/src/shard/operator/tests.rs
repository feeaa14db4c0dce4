//! The translation of operator steps into leader actions (`plan`), one
//! table row per step kind and guard.

use super::*;
use golem_core::region::PeerMeta;
use golem_wire::pd::{Peer, PeerRole as PdRole};
use golem_wire::{RegionEpoch, ShardId};

const EPOCH: RegionEpoch = RegionEpoch {
    conf_ver: 3,
    version: 2,
};

/// Region 7 `[b, m)`: voters 11 (store 1, the leader) and 12 (store 2),
/// learner 13 (store 3, shard 1).
fn meta() -> RegionMeta {
    RegionMeta {
        id: RegionId(7),
        start: b"b".to_vec(),
        end: b"m".to_vec(),
        epoch: EPOCH,
        peers: vec![
            PeerMeta::new(PeerId(11), StoreId(1), ShardId(0)),
            PeerMeta::new(PeerId(12), StoreId(2), ShardId(0)),
            PeerMeta {
                role: PeerRole::Learner,
                ..PeerMeta::new(PeerId(13), StoreId(3), ShardId(1))
            },
        ],
    }
}

fn op(step: OperatorStep) -> Operator {
    Operator {
        id: 99,
        region: RegionId(7),
        epoch: EPOCH,
        step,
    }
}

fn changes(kind: PeerChangeKind, peer: u64, store: u64, shard: u16) -> Result<Action, Skip> {
    Ok(Action::Propose(RequestBody::ChangePeers {
        key: b"b".to_vec(),
        changes: vec![PeerChange {
            kind,
            peer: PeerId(peer),
            store: StoreId(store),
            shard: ShardId(shard),
        }],
    }))
}

const ME: PeerId = PeerId(11);

#[test]
fn each_step_becomes_the_ctls_request() {
    let split = OperatorStep::Split {
        key: b"f".to_vec(),
        new_region: RegionId(40),
        new_peers: vec![PeerId(41), PeerId(42), PeerId(43)],
    };
    let table: Vec<(OperatorStep, Result<Action, Skip>)> = vec![
        (
            OperatorStep::AddLearner {
                peer: Peer {
                    id: PeerId(14),
                    store: StoreId(4),
                    shard: ShardId(2),
                    role: PdRole::Learner,
                },
            },
            changes(PeerChangeKind::AddLearner, 14, 4, 2),
        ),
        (
            OperatorStep::PromoteLearner { peer: PeerId(13) },
            changes(PeerChangeKind::AddVoter, 13, 3, 1),
        ),
        (
            OperatorStep::RemovePeer { peer: PeerId(12) },
            changes(PeerChangeKind::Remove, 12, 2, 0),
        ),
        (
            OperatorStep::TransferLeader { to: PeerId(12) },
            Ok(Action::TransferLeader {
                to: PeerId(12),
                store: StoreId(2),
            }),
        ),
        (
            split,
            Ok(Action::Propose(RequestBody::Split {
                key: b"f".to_vec(),
                split_key: b"f".to_vec(),
                new_region: RegionId(40),
                new_peers: vec![PeerId(41), PeerId(42), PeerId(43)],
            })),
        ),
        (
            OperatorStep::Merge {
                target: RegionId(8),
            },
            Ok(Action::Merge {
                target: RegionId(8),
            }),
        ),
        (
            OperatorStep::Merge { target: meta().id },
            Err(Skip::Invalid("a region cannot merge into itself".into())),
        ),
    ];
    for (step, want) in table {
        assert_eq!(plan(&op(step.clone()), &meta(), ME), want, "{step:?}");
    }
}

#[test]
fn removing_the_leader_itself_hands_over_to_a_voter_first() {
    let got = plan(&op(OperatorStep::RemovePeer { peer: ME }), &meta(), ME);
    // 13 is a learner: the only other voter is 12.
    assert_eq!(
        got,
        Ok(Action::TransferLeader {
            to: PeerId(12),
            store: StoreId(2),
        })
    );
    let mut alone = meta();
    alone.peers.retain(|p| p.id != PeerId(12));
    let got = plan(&op(OperatorStep::RemovePeer { peer: ME }), &alone, ME);
    assert!(matches!(got, Err(Skip::Invalid(_))), "{got:?}");
}

#[test]
fn a_stale_epoch_or_another_region_is_ignored() {
    for epoch in [
        RegionEpoch {
            conf_ver: 2,
            version: 2,
        },
        RegionEpoch {
            conf_ver: 3,
            version: 3,
        },
    ] {
        let o = Operator {
            epoch,
            ..op(OperatorStep::TransferLeader { to: PeerId(12) })
        };
        assert_eq!(plan(&o, &meta(), ME), Err(Skip::Stale));
    }
    let o = Operator {
        region: RegionId(8),
        ..op(OperatorStep::TransferLeader { to: PeerId(12) })
    };
    assert_eq!(plan(&o, &meta(), ME), Err(Skip::Stale));
}

#[test]
fn steps_already_in_effect_are_done() {
    let table = [
        OperatorStep::AddLearner {
            peer: Peer {
                id: PeerId(13),
                store: StoreId(3),
                shard: ShardId(1),
                role: PdRole::Learner,
            },
        },
        OperatorStep::PromoteLearner { peer: PeerId(12) },
        OperatorStep::RemovePeer { peer: PeerId(20) },
        OperatorStep::TransferLeader { to: ME },
    ];
    for step in table {
        assert_eq!(
            plan(&op(step.clone()), &meta(), ME),
            Err(Skip::Done),
            "{step:?}"
        );
    }
}

#[test]
fn impossible_steps_are_refused() {
    let split = |key: &[u8]| OperatorStep::Split {
        key: key.to_vec(),
        new_region: RegionId(40),
        new_peers: vec![PeerId(41), PeerId(42), PeerId(43)],
    };
    let table = [
        // A learner cannot lead; an unknown peer cannot be promoted or lead.
        OperatorStep::TransferLeader { to: PeerId(13) },
        OperatorStep::TransferLeader { to: PeerId(20) },
        OperatorStep::PromoteLearner { peer: PeerId(20) },
        // Split keys on the boundaries or outside.
        split(b"b"),
        split(b"a"),
        split(b"m"),
        split(b"z"),
    ];
    for step in table {
        let got = plan(&op(step.clone()), &meta(), ME);
        assert!(matches!(got, Err(Skip::Invalid(_))), "{step:?}: {got:?}");
    }
}

#[test]
fn the_first_region_routes_by_a_nonempty_key() {
    let mut m = meta();
    m.start = Vec::new();
    let got = plan(&op(OperatorStep::RemovePeer { peer: PeerId(12) }), &m, ME);
    let Ok(Action::Propose(RequestBody::ChangePeers { key, .. })) = got else {
        panic!("{got:?}")
    };
    assert_eq!(key, vec![0]);
}

/// Balance-shard's move of a replica to another shard of its store: peer
/// 14 (store 2, shard 1) replaces 12 (store 2, shard 0).
#[test]
fn a_replace_is_one_joint_change_and_the_leader_hands_over_first() {
    let mut m = meta();
    m.peers.push(PeerMeta {
        role: PeerRole::Learner,
        ..PeerMeta::new(PeerId(14), StoreId(2), ShardId(1))
    });
    let replace = |add: u64, remove: u64| {
        op(OperatorStep::ReplacePeer {
            add: PeerId(add),
            remove: PeerId(remove),
        })
    };
    let joint = |pairs: &[(PeerChangeKind, u64, u64, u16)]| {
        Ok(Action::Propose(RequestBody::ChangePeers {
            key: b"b".to_vec(),
            changes: pairs
                .iter()
                .map(|&(kind, peer, store, shard)| PeerChange {
                    kind,
                    peer: PeerId(peer),
                    store: StoreId(store),
                    shard: ShardId(shard),
                })
                .collect(),
        }))
    };
    assert_eq!(
        plan(&replace(14, 12), &m, ME),
        joint(&[
            (PeerChangeKind::AddVoter, 14, 2, 1),
            (PeerChangeKind::Remove, 12, 2, 0)
        ])
    );
    // The old peer leads: it hands over to another voter (never to the
    // learner replacing it).
    assert_eq!(
        plan(&replace(14, 12), &m, PeerId(12)),
        Ok(Action::TransferLeader {
            to: ME,
            store: StoreId(1)
        })
    );
    // Unknown new peer: refused; one being removed: refused.
    assert!(matches!(
        plan(&replace(15, 12), &m, ME),
        Err(Skip::Invalid(_))
    ));
    // Joint (14 incoming, 12 demoting): in flight, nothing to do.
    let mut joint_meta = m.clone();
    joint_meta.peers[1].role = PeerRole::DemotingVoter;
    joint_meta.peers[3].role = PeerRole::IncomingVoter;
    assert_eq!(plan(&replace(14, 12), &joint_meta, ME), Err(Skip::Done));
    assert!(matches!(
        plan(&replace(12, 14), &joint_meta, ME),
        Err(Skip::Invalid(_))
    ));
    // Left: 14 votes, 12 is gone.
    let mut done = m.clone();
    done.peers.remove(1);
    done.peers[2].role = PeerRole::Voter;
    assert_eq!(plan(&replace(14, 12), &done, ME), Err(Skip::Done));
    // Promoted but the old one still there (an admin's change between):
    // the removal alone.
    let mut half = m.clone();
    half.peers[3].role = PeerRole::Voter;
    assert_eq!(
        plan(&replace(14, 12), &half, ME),
        joint(&[(PeerChangeKind::Remove, 12, 2, 0)])
    );
}
