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
//!
//! Where it runs: `Scheduler::on_region_heartbeat`, for the reporting
//! region alone (`schedule_region`), so the move's first step is in that
//! heartbeat's answer; `schedule` takes any set of routes (the tests run
//! it over whole clusters). Both apply the same guards (`pair`).

use super::balance::{candidates, tolerance, worth_moving};
use super::cluster::{region_weight, ClusterView, Health, StoreView};
use super::config::SchedConfig;
use super::controller::Controller;
use super::operator::{Influence, NewOp, OpSource};
use golem_wire::pd::{OperatorStep, Peer, PeerRole, RegionRoute};
use golem_wire::PeerId;

/// Source and target stores tried per run, at most.
const PAIRS_TRIED_MAX: usize = 3;

/// One replica move that narrows the spread, if any; `new_peer` is the id
/// of the replica to create. The tick's form: over any set of routes, from
/// the fullest stores.
pub fn schedule(
    routes: &[&RegionRoute],
    view: &ClusterView,
    ctl: &Controller,
    cfg: &SchedConfig,
    new_peer: u64,
) -> Option<NewOp> {
    let tol = tolerance(view, score, cfg);
    let (sources, targets) = candidates(view, score);
    for src in sources.iter().take(PAIRS_TRIED_MAX) {
        for dst in targets.iter().take(PAIRS_TRIED_MAX) {
            if let Some(op) = routes
                .iter()
                .find_map(|r| pair(r, src, dst, view, ctl, cfg, tol, new_peer))
            {
                return Some(op);
            }
        }
    }
    None
}

/// The heartbeat's form: one move of `route`'s own replica, if any — from
/// the fullest store holding it to the emptiest store that does not (the
/// first `PAIRS_TRIED_MAX` of each that qualify). O(stores + peers): no
/// other region is looked at.
pub fn schedule_region(
    route: &RegionRoute,
    view: &ClusterView,
    ctl: &Controller,
    cfg: &SchedConfig,
    new_peer: u64,
) -> Option<NewOp> {
    let tol = tolerance(view, score, cfg);
    let (sources, targets) = candidates(view, score);
    let holds = |s: &StoreView| route.region.peers.iter().any(|p| p.store == s.id);
    let sources = sources
        .into_iter()
        .filter(|s| holds(s))
        .take(PAIRS_TRIED_MAX);
    let targets: Vec<&StoreView> = targets
        .into_iter()
        .filter(|s| !holds(s))
        .take(PAIRS_TRIED_MAX)
        .collect();
    for src in sources {
        for dst in &targets {
            if let Some(op) = pair(route, src, dst, view, ctl, cfg, tol, new_peer) {
                return Some(op);
            }
        }
    }
    None
}

/// The balance-region score: the store's replica weight.
fn score(s: &StoreView) -> i64 {
    s.weight
}

/// The move of `r`'s replica from `src` to `dst`, if every guard of the
/// module doc holds.
#[allow(clippy::too_many_arguments)]
fn pair(
    r: &RegionRoute,
    src: &StoreView,
    dst: &StoreView,
    view: &ClusterView,
    ctl: &Controller,
    cfg: &SchedConfig,
    tol: i64,
    new_peer: u64,
) -> Option<NewOp> {
    if src.id == dst.id || src.weight <= dst.weight {
        return None;
    }
    if ctl.adds_to(dst.id) >= cfg.store_limit_add_peer {
        return None;
    }
    let region = &r.region;
    r.leader?;
    let from = region.peers.iter().find(|p| p.store == src.id)?;
    if region.peers.iter().any(|p| p.store == dst.id)
        || ctl.get(region.id).is_some()
        // A learner is a pending peer (catching up): not before it is
        // promoted or removed.
        || region.peers.iter().any(|p| p.role != PeerRole::Voter)
        // Every peer's store must be up: moving a replica while
        // another voter's store is silent can leave the region
        // without a quorum (golem-sim FINDINGS.md #9).
        || region
            .peers
            .iter()
            .any(|p| view.health(p.store) != Health::Up)
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
    if !worth_moving(src.weight, dst.weight, w, tol) {
        return None;
    }
    // A leader's replica hands its leadership to the newest voter first
    // (`PendingOp::wire`): the new one, on the target. Counted, or
    // balance-leader would see the source leading more than it does and
    // later move a leadership back to it.
    let led = i64::from(r.leader.is_some_and(|l| l.id == from.id));
    let peer = Peer {
        id: PeerId(new_peer),
        store: dst.id,
        shard: view.least_loaded_shard(dst.id),
        role: PeerRole::Learner,
    };
    Some(NewOp {
        region: region.id,
        epoch: region.epoch,
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
                leaders: led,
            },
            Influence {
                store: from.store,
                regions: -1,
                leaders: -led,
            },
        ],
    })
}
