//! The replica checker: every region keeps `max_replicas` voters on live
//! stores.
//!
//! Owns the repair decision for one region (from its leader's heartbeat):
//! 1. a learner on a live store while voters are missing is promoted;
//! 2. a peer on a store that must be evacuated (down beyond
//!    `max_store_down_time_ms`, offline, tombstone, unknown) is replaced —
//!    a learner on the best live store, promoted, then the bad peer removed —
//!    or just removed if enough live voters remain;
//! 3. missing voters are added (learner, then promote) on the best store.
//!
//! Guards: only `Up` stores receive replicas; with no target the region is
//! left as it is (never removes a peer it cannot replace while voters are
//! short); excess replicas on healthy stores are left alone (not done yet).

use super::cluster::{ClusterView, Health};
use super::config::SchedConfig;
use super::operator::{Influence, NewOp, OpSource};
use golem_wire::pd::{OperatorStep, Peer, PeerRole, Region};
use golem_wire::{PeerId, ShardId, StoreId};

/// What the region needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaPlan {
    Promote(PeerId),
    /// Add a replica on `(store, shard)`; if `replace` is set, remove it after.
    Add {
        store: StoreId,
        shard: ShardId,
        replace: Option<Peer>,
    },
    Remove(Peer),
}

/// What `region` needs, if anything.
pub fn check(region: &Region, view: &ClusterView, cfg: &SchedConfig) -> Option<ReplicaPlan> {
    let live = |p: &Peer| !view.health(p.store).evacuate();
    let live_voters = region
        .peers
        .iter()
        .filter(|p| p.role == PeerRole::Voter && live(p))
        .count();
    if live_voters < cfg.max_replicas {
        if let Some(l) = region
            .peers
            .iter()
            .find(|p| p.role == PeerRole::Learner && view.health(p.store) == Health::Up)
        {
            return Some(ReplicaPlan::Promote(l.id));
        }
    }
    // Bad learners first: removing them never costs a vote.
    let mut bad: Vec<&Peer> = region.peers.iter().filter(|p| !live(p)).collect();
    bad.sort_by_key(|p| (p.role == PeerRole::Voter, p.id));
    if let Some(b) = bad.first() {
        if b.role == PeerRole::Learner || live_voters >= cfg.max_replicas {
            return Some(ReplicaPlan::Remove(**b));
        }
        let (store, shard) = view.best_target(region)?;
        return Some(ReplicaPlan::Add {
            store,
            shard,
            replace: Some(**b),
        });
    }
    if live_voters < cfg.max_replicas {
        let (store, shard) = view.best_target(region)?;
        return Some(ReplicaPlan::Add {
            store,
            shard,
            replace: None,
        });
    }
    None
}

/// The operator for `plan`; `new_peer` is a fresh id (used by `Add` only).
pub fn operator(region: &Region, plan: &ReplicaPlan, new_peer: Option<u64>) -> Option<NewOp> {
    let (steps, influence) = match plan {
        ReplicaPlan::Promote(id) => (vec![OperatorStep::PromoteLearner { peer: *id }], vec![]),
        ReplicaPlan::Remove(p) => (
            vec![OperatorStep::RemovePeer { peer: p.id }],
            vec![Influence {
                store: p.store,
                regions: -1,
                leaders: 0,
            }],
        ),
        ReplicaPlan::Add {
            store,
            shard,
            replace,
        } => {
            let peer = Peer {
                id: PeerId(new_peer?),
                store: *store,
                shard: *shard,
                role: PeerRole::Learner,
            };
            let mut steps = vec![
                OperatorStep::AddLearner { peer },
                OperatorStep::PromoteLearner { peer: peer.id },
            ];
            let mut influence = vec![Influence {
                store: *store,
                regions: 1,
                leaders: 0,
            }];
            if let Some(old) = replace {
                steps.push(OperatorStep::RemovePeer { peer: old.id });
                influence.push(Influence {
                    store: old.store,
                    regions: -1,
                    leaders: 0,
                });
            }
            (steps, influence)
        }
    };
    Some(NewOp {
        region: region.id,
        epoch: region.epoch,
        source: OpSource::Replica,
        steps,
        influence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::cluster::StoreView;
    use golem_wire::{RegionEpoch, RegionId};

    fn view(stores: &[(u64, Health, i64)]) -> ClusterView {
        let mut v = ClusterView::default();
        for &(id, health, regions) in stores {
            v.stores.insert(
                StoreId(id),
                StoreView {
                    id: StoreId(id),
                    health,
                    shard_count: 2,
                    regions,
                    leaders: 0,
                    weight: regions,
                },
            );
        }
        v
    }

    fn region(peers: &[(u64, PeerRole)]) -> Region {
        Region {
            id: RegionId(7),
            start: vec![],
            end: vec![],
            epoch: RegionEpoch::default(),
            peers: peers
                .iter()
                .map(|&(s, role)| Peer {
                    id: PeerId(s * 10),
                    store: StoreId(s),
                    shard: ShardId(0),
                    role,
                })
                .collect(),
        }
    }

    #[test]
    fn repairs_replicas() {
        use Health::*;
        use PeerRole::*;
        let cfg = SchedConfig::default(); // 3 replicas
        let healthy = view(&[(1, Up, 5), (2, Up, 5), (3, Up, 5), (4, Up, 2), (5, Up, 1)]);
        let store3_down = view(&[(1, Up, 5), (2, Up, 5), (3, Down, 5), (4, Up, 2), (5, Up, 9)]);
        let store3_offline = view(&[
            (1, Up, 5),
            (2, Up, 5),
            (3, Offline, 5),
            (4, Disconnected, 0),
            (5, Up, 9),
        ]);
        let only_three = view(&[(1, Up, 5), (2, Up, 5), (3, Down, 5)]);
        let add = |store, replace: Option<(u64, PeerRole)>| {
            Some(ReplicaPlan::Add {
                store: StoreId(store),
                shard: ShardId(1), // region 7 mod 2 shards
                replace: replace.map(|(s, role)| Peer {
                    id: PeerId(s * 10),
                    store: StoreId(s),
                    shard: ShardId(0),
                    role,
                }),
            })
        };
        // (view, peers, plan)
        type Row<'a> = (&'a ClusterView, Vec<(u64, PeerRole)>, Option<ReplicaPlan>);
        let table: Vec<Row> = vec![
            (&healthy, vec![(1, Voter), (2, Voter), (3, Voter)], None),
            // Missing a voter: on the store with the fewest regions.
            (&healthy, vec![(1, Voter), (2, Voter)], add(5, None)),
            (&healthy, vec![(1, Voter)], add(5, None)),
            // A learner while short of voters: promote it.
            (
                &healthy,
                vec![(1, Voter), (2, Voter), (4, Learner)],
                Some(ReplicaPlan::Promote(PeerId(40))),
            ),
            // A learner with enough voters: left alone.
            (
                &healthy,
                vec![(1, Voter), (2, Voter), (3, Voter), (4, Learner)],
                None,
            ),
            // A voter on a down store: replaced (store 4 has fewer regions than 5).
            (
                &store3_down,
                vec![(1, Voter), (2, Voter), (3, Voter)],
                add(4, Some((3, Voter))),
            ),
            // Replaced already: the dead voter goes.
            (
                &store3_down,
                vec![(1, Voter), (2, Voter), (3, Voter), (4, Voter)],
                Some(ReplicaPlan::Remove(Peer {
                    id: PeerId(30),
                    store: StoreId(3),
                    shard: ShardId(0),
                    role: Voter,
                })),
            ),
            // Offline drains like down; disconnected stores take nothing.
            (
                &store3_offline,
                vec![(1, Voter), (2, Voter), (3, Voter)],
                add(5, Some((3, Voter))),
            ),
            // No target: nothing (never drop below what we have).
            (&only_three, vec![(1, Voter), (2, Voter), (3, Voter)], None),
        ];
        for (i, (v, peers, want)) in table.into_iter().enumerate() {
            assert_eq!(check(&region(&peers), v, &cfg), want, "row {i}");
        }
    }

    #[test]
    fn replacement_operator_adds_promotes_then_removes() {
        let r = region(&[
            (1, PeerRole::Voter),
            (2, PeerRole::Voter),
            (3, PeerRole::Voter),
        ]);
        let plan = ReplicaPlan::Add {
            store: StoreId(4),
            shard: ShardId(1),
            replace: Some(r.peers[2]),
        };
        let op = operator(&r, &plan, Some(99)).unwrap();
        assert_eq!(op.steps.len(), 3);
        assert!(
            matches!(op.steps[0], OperatorStep::AddLearner { peer } if peer.id == PeerId(99) && peer.role == PeerRole::Learner)
        );
        assert_eq!(
            op.steps[1],
            OperatorStep::PromoteLearner { peer: PeerId(99) }
        );
        assert_eq!(op.steps[2], OperatorStep::RemovePeer { peer: PeerId(30) });
        assert!(operator(&r, &plan, None).is_none(), "no id, no operator");
    }
}
