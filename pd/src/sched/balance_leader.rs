//! The balance-leader scheduler: even leader counts across live stores.
//!
//! Owns the choice of one leader transfer: from the live store with the
//! most leaders (counting running operators as done) to one with the
//! fewest that holds a voter of one of the source's regions. Guards: the
//! hysteresis of `balance::worth_moving` (one leader: w = 1); only regions
//! with no operator and every peer on a live store; at most
//! `leader_schedule_limit` running balance-leader operators (the caller).
//! Among the regions that qualify, the one whose leader sits on the
//! source's shard leading the most and whose target voter on the target's
//! shard leading the fewest (leaders across a node's shards: balance-shard
//! evens replicas only).

use super::balance::{candidates, tolerance, worth_moving};
use super::cluster::ClusterView;
use super::config::SchedConfig;
use super::controller::Controller;
use super::operator::{Influence, NewOp, OpSource};
use golem_wire::pd::{OperatorStep, PeerRole, RegionRoute};

/// Source and target stores tried per run, at most.
const PAIRS_TRIED_MAX: usize = 3;

/// One leader transfer that narrows the leader spread, if any.
pub fn schedule(
    routes: &[&RegionRoute],
    view: &ClusterView,
    ctl: &Controller,
    cfg: &SchedConfig,
) -> Option<NewOp> {
    let score = |s: &super::cluster::StoreView| s.leaders;
    let tol = tolerance(view, score, cfg);
    let (sources, targets) = candidates(view, score);
    for src in sources.iter().take(PAIRS_TRIED_MAX) {
        for dst in targets.iter().take(PAIRS_TRIED_MAX) {
            if !worth_moving(src.leaders, dst.leaders, 1, tol) {
                continue;
            }
            let candidates = routes.iter().filter_map(|r| {
                let leader = r.leader?;
                if leader.store != src.id || ctl.get(r.region.id).is_some() {
                    return None;
                }
                if r.region
                    .peers
                    .iter()
                    .any(|p| view.health(p.store).evacuate())
                {
                    return None;
                }
                r.region
                    .peers
                    .iter()
                    .find(|p| p.store == dst.id && p.role == PeerRole::Voter)
                    .map(|to| (r, leader, *to))
            });
            // Among them, the transfer that best evens leaders across the
            // shards of both stores: from the source's shard leading the
            // most to the target's shard leading the fewest (the first such
            // region; with one shard per store, simply the first).
            let shard_leaders = |store, shard: golem_wire::ShardId| {
                view.stores
                    .get(&store)
                    .and_then(|s| s.shards.get(usize::from(shard.0)))
                    .map_or(0, |v| v.leaders)
            };
            let found = candidates
                .enumerate()
                .min_by_key(|(i, (_, from, to))| {
                    let gain =
                        shard_leaders(from.store, from.shard) - shard_leaders(to.store, to.shard);
                    (std::cmp::Reverse(gain), *i)
                })
                .map(|(_, (r, _, to))| (r, to.id));
            if let Some((r, to)) = found {
                return Some(NewOp {
                    region: r.region.id,
                    epoch: r.region.epoch,
                    source: OpSource::BalanceLeader,
                    steps: vec![OperatorStep::TransferLeader { to }],
                    influence: vec![
                        Influence {
                            store: src.id,
                            regions: 0,
                            leaders: -1,
                        },
                        Influence {
                            store: dst.id,
                            regions: 0,
                            leaders: 1,
                        },
                    ],
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::cluster::{Health, ShardView, StoreView};
    use golem_wire::pd::{Peer, Region, RegionStats};
    use golem_wire::{PeerId, RegionEpoch, RegionId, ShardId, StoreId};

    /// Region `id` led from store 1 (shard `from`), with a voter on store 2
    /// shard `to` and store 3 shard 0.
    fn route(id: u64, from: u16, to: u16) -> RegionRoute {
        let peer = |k: u64, store: u64, shard: u16| Peer {
            id: PeerId(id * 10 + k),
            store: StoreId(store),
            shard: ShardId(shard),
            role: PeerRole::Voter,
        };
        let peers = vec![peer(0, 1, from), peer(1, 2, to), peer(2, 3, 0)];
        RegionRoute {
            leader: Some(peers[0]),
            region: Region {
                id: RegionId(id),
                start: id.to_be_bytes().to_vec(),
                end: (id + 1).to_be_bytes().to_vec(),
                epoch: RegionEpoch::default(),
                peers,
            },
            term: 1,
            stats: RegionStats::default(),
        }
    }

    /// (leaders per shard of store 1, of store 2) with store 1 leading 6
    /// and stores 2 and 3 none: the transfer goes from store 1's busiest
    /// leader shard to store 2's idlest.
    #[test]
    fn a_transfer_evens_leaders_across_shards_too() {
        let routes: Vec<RegionRoute> = vec![
            route(1, 0, 0),
            route(2, 1, 0),
            route(3, 1, 1),
            route(4, 0, 1),
        ];
        let refs: Vec<&RegionRoute> = routes.iter().collect();
        // (store 1 leaders per shard, store 2 leaders per shard, region moved)
        let table = [
            ([1, 5], [0, 0], 2),
            ([5, 1], [0, 0], 1),
            ([5, 1], [3, 0], 4),
            ([3, 3], [0, 0], 1),
        ];
        for (i, (s1, s2, want)) in table.into_iter().enumerate() {
            let mut view = ClusterView::default();
            for (id, leaders, shards) in [(1, 6, s1), (2, 0, s2), (3, 0, [0, 0])] {
                view.stores.insert(
                    StoreId(id),
                    StoreView {
                        id: StoreId(id),
                        health: Health::Up,
                        shard_count: 2,
                        regions: 4,
                        leaders,
                        weight: 4,
                        shards: shards
                            .iter()
                            .map(|&l| ShardView {
                                regions: 2,
                                leaders: l,
                            })
                            .collect(),
                    },
                );
            }
            let op = schedule(&refs, &view, &Controller::new(1), &SchedConfig::default())
                .expect("a transfer");
            assert_eq!(op.region, RegionId(want), "row {i}");
        }
    }
}
