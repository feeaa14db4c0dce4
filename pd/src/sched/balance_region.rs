//! The balance-region scheduler: even replica weight across live stores.
//!
//! Owns the choice of one replica move: from the live store with the
//! highest score (sum of region weights, `cluster::region_weight`: region
//! count when sizes are unknown; running operators counted as done) to the
//! live store with the lowest that does not hold the region. The move is
//! add learner on the target (its least-loaded shard), promote, remove the
//! source replica (a leader hands its leadership over first). Guards: the
//! hysteresis of `balance::worth_moving` with the region's weight; only
//! regions with no operator, a leader, exactly `max_replicas` voters and
//! every peer on a store that is up — not even disconnected (anything else
//! is the replica checker's; golem-sim FINDINGS.md #9);
//! the target's add-peer limit; `region_schedule_limit` (the caller).

use super::balance::{candidates, tolerance, worth_moving};
use super::cluster::{region_weight, ClusterView};
use super::config::SchedConfig;
use super::controller::Controller;
use super::operator::{Influence, NewOp, OpSource};
use golem_wire::pd::{OperatorStep, Peer, PeerRole, RegionRoute};
use golem_wire::PeerId;

/// Source and target stores tried per run, at most.
const PAIRS_TRIED_MAX: usize = 3;

/// One replica move that narrows the spread, if any; `new_peer` is the id
/// of the replica to create.
pub fn schedule(
    routes: &[&RegionRoute],
    view: &ClusterView,
    ctl: &Controller,
    cfg: &SchedConfig,
    new_peer: u64,
) -> Option<NewOp> {
    let score = |s: &super::cluster::StoreView| s.weight;
    let tol = tolerance(view, score, cfg);
    let (sources, targets) = candidates(view, score);
    for src in sources.iter().take(PAIRS_TRIED_MAX) {
        for dst in targets.iter().take(PAIRS_TRIED_MAX) {
            if src.id == dst.id || src.weight <= dst.weight {
                continue;
            }
            if ctl.adds_to(dst.id) >= cfg.store_limit_add_peer {
                continue;
            }
            let found = routes.iter().find_map(|r| {
                let region = &r.region;
                r.leader?;
                let from = region.peers.iter().find(|p| p.store == src.id)?;
                if region.peers.iter().any(|p| p.store == dst.id)
                    || ctl.get(region.id).is_some()
                    // Every peer's store must be up: moving a replica while
                    // another voter's store is silent can leave the region
                    // without a quorum (golem-sim FINDINGS.md #9).
                    || region
                        .peers
                        .iter()
                        .any(|p| view.health(p.store) != super::cluster::Health::Up)
                    || region
                        .peers
                        .iter()
                        .filter(|p| p.role == PeerRole::Voter)
                        .count()
                        != cfg.max_replicas
                {
                    return None;
                }
                let w = region_weight(r.stats.approximate_size_bytes, cfg);
                worth_moving(src.weight, dst.weight, w, tol).then_some((r, *from, w))
            });
            if let Some((r, from, _w)) = found {
                let peer = Peer {
                    id: PeerId(new_peer),
                    store: dst.id,
                    shard: view.least_loaded_shard(dst.id),
                    role: PeerRole::Learner,
                };
                return Some(NewOp {
                    region: r.region.id,
                    epoch: r.region.epoch,
                    source: OpSource::BalanceRegion,
                    steps: vec![
                        OperatorStep::AddLearner { peer },
                        OperatorStep::PromoteLearner { peer: peer.id },
                        OperatorStep::RemovePeer { peer: from.id },
                    ],
                    influence: vec![
                        Influence {
                            store: dst.id,
                            regions: 1,
                            leaders: 0,
                        },
                        Influence {
                            store: from.store,
                            regions: -1,
                            leaders: 0,
                        },
                    ],
                });
            }
        }
    }
    None
}
