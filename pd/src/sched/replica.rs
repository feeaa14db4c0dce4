//! The replica checker: every region keeps `max_replicas` voters on live
//! stores.
//!
//! Owns the repair decision for one region (from its leader's heartbeat):
//! 1. a learner on a live store while voters are missing is promoted;
//! 2. a peer on a store that must be evacuated (down beyond
//!    `max_store_down_time_ms`, offline, tombstone, unknown) is replaced —
//!    a learner on the best live store, promoted, then the bad peer removed —
//!    or just removed if enough live voters remain;
//! 3. missing voters are added (learner, then promote) on the best store;
//! 4. excess replicas go (left by a failed move, or an operator cancelled
//!    between its add and its remove): a learner while enough voters are
//!    live, then voters beyond `max_replicas` one at a time — the one on a
//!    store that is not up first, then on the store with the most regions.
//!
//! Guards: only `Up` stores receive replicas; with no target the region is
//! left as it is (never removes a peer it cannot replace while voters are
//! short); an excess voter removed is never the leader (a region always
//! has another voter to keep: it has more than `max_replicas`).

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

/// What `region`, led by `leader`, needs, if anything.
pub fn check(
    region: &Region,
    leader: PeerId,
    view: &ClusterView,
    cfg: &SchedConfig,
) -> Option<ReplicaPlan> {
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
    excess(region, leader, view, cfg).map(ReplicaPlan::Remove)
}

/// A replica beyond what the region needs (every peer is on a live store
/// and `max_replicas` voters are there): a learner, else a voter past
/// `max_replicas` — not the leader; on a store that is not up, then on the
/// store with the most regions, then the highest store id.
fn excess(region: &Region, leader: PeerId, view: &ClusterView, cfg: &SchedConfig) -> Option<Peer> {
    if let Some(l) = region.peers.iter().find(|p| p.role == PeerRole::Learner) {
        return Some(*l);
    }
    let voters = region.peers.iter().filter(|p| p.role == PeerRole::Voter);
    if voters.clone().count() <= cfg.max_replicas {
        return None;
    }
    voters
        .filter(|p| p.id != leader)
        .max_by_key(|p| {
            let s = view.stores.get(&p.store);
            let not_up = s.is_none_or(|s| s.health != Health::Up);
            (not_up, s.map_or(0, |s| s.regions), p.store)
        })
        .copied()
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
                    // Every replica on shard 0: shard 1 is the least loaded.
                    shards: vec![
                        crate::sched::cluster::ShardView {
                            regions,
                            leaders: 0,
                        },
                        Default::default(),
                    ],
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
        let store4_disconnected = view(&[(1, Up, 5), (2, Up, 5), (3, Up, 5), (4, Disconnected, 1)]);
        let remove = |s: u64, role| {
            Some(ReplicaPlan::Remove(Peer {
                id: PeerId(s * 10),
                store: StoreId(s),
                shard: ShardId(0),
                role,
            }))
        };
        let add = |store, replace: Option<(u64, PeerRole)>| {
            Some(ReplicaPlan::Add {
                store: StoreId(store),
                shard: ShardId(1), // the target's least-loaded shard
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
            // A learner with enough voters (an operator cancelled after
            // its add): removed.
            (
                &healthy,
                vec![(1, Voter), (2, Voter), (3, Voter), (4, Learner)],
                remove(4, Learner),
            ),
            // Four voters (a move cancelled between its promote and its
            // remove): the one on the store with the most regions goes,
            // never the leader (store 1 leads, ties: highest store id).
            (
                &healthy,
                vec![(1, Voter), (2, Voter), (4, Voter), (5, Voter)],
                remove(2, Voter),
            ),
            (
                &healthy,
                vec![(1, Voter), (3, Voter), (4, Voter), (5, Voter)],
                remove(3, Voter),
            ),
            // Store 3 leads: it would go (fullest, highest id) if it
            // did not lead; the next one goes.
            (
                &healthy,
                vec![(3, Voter), (1, Voter), (2, Voter), (5, Voter)],
                remove(2, Voter),
            ),
            // A voter on a store that is not up goes first.
            (
                &store4_disconnected,
                vec![(1, Voter), (2, Voter), (3, Voter), (4, Voter)],
                remove(4, Voter),
            ),
            // Five voters: one at a time.
            (
                &healthy,
                vec![(1, Voter), (2, Voter), (3, Voter), (4, Voter), (5, Voter)],
                remove(3, Voter),
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
            // The first peer leads.
            let leader = PeerId(peers[0].0 * 10);
            assert_eq!(check(&region(&peers), leader, v, &cfg), want, "row {i}");
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
