//! The balance-shard scheduler: even replicas across the shards (cores) of
//! each store.
//!
//! Owns the choice of one replica move inside one store: from its shard
//! with the most replicas to its shard with the fewest (ties: more, resp.
//! fewer, leaders; then shard id), running operators counted as done
//! (`ClusterView::apply_steps`). Score = replica count per shard: exact
//! (the PD knows every peer's shard from its leader's heartbeats), stable
//! (unlike busy time or leadership, it does not change under load or
//! elections, so it cannot flap), and moved by exactly one per move, so
//! the hysteresis of `balance::worth_moving` applies as is (a move only if
//! `src - dst >= max(2, tolerance)`: the source never ends below the
//! target, and a balanced store gets no operator). Leader counts break ties.
//!
//! The move (docs/scheduling.md): `AddLearner` of a new peer on the target
//! shard of the same store (it catches up by snapshot, streamed by the
//! leader), then `ReplacePeer { add, remove }`: one joint change promoting
//! it and removing the old peer, so losing the store during the move never
//! costs more than one vote in either configuration. A leader being
//! replaced hands its leadership over first (`PendingOp::wire`). Followers
//! are moved first (no leadership transfer needed).
//!
//! Guards: stores that are `Up` with at least 2 shards; at most
//! `shard_moves_per_store_max` running moves per store and the store's
//! add-peer limit; only regions with no operator, a leader, exactly
//! `max_replicas` voters, every peer on an `Up` store, and exactly one peer
//! (a voter) on the store. `leftover` removes the learner an interrupted
//! move left beside its region's voter on the same store.
//!
//! Where it runs: `Scheduler::on_region_heartbeat`, for the reporting
//! region alone, so the move's first step is in that heartbeat's answer (a
//! move made at a schedule tick would wait for the region's next heartbeat,
//! up to 10 s when idle); `schedule` takes any set of routes (the tests
//! run it over whole clusters).

use super::balance::worth_moving;
use super::cluster::{ClusterView, Health, StoreView};
use super::config::SchedConfig;
use super::controller::Controller;
use super::operator::{NewOp, OpSource};
use golem_wire::pd::{OperatorStep, Peer, PeerRole, Region, RegionRoute};
use golem_wire::{PeerId, ShardId, StoreId};

/// Running balance-shard moves into `store`.
pub fn moves_on(ctl: &Controller, store: StoreId) -> usize {
    ctl.iter()
        .filter(|o| o.source == OpSource::BalanceShard)
        .filter(|o| {
            o.steps
                .iter()
                .any(|s| matches!(s, OperatorStep::AddLearner { peer } if peer.store == store))
        })
        .count()
}

/// The fullest and the emptiest shard of `store` (see the module doc).
fn extremes(store: &StoreView) -> Option<(ShardId, i64, ShardId, i64)> {
    let shards = &store.shards;
    let src = (0..shards.len())
        .max_by_key(|&i| (shards[i].regions, shards[i].leaders, std::cmp::Reverse(i)))?;
    let dst = (0..shards.len()).min_by_key(|&i| (shards[i].regions, shards[i].leaders, i))?;
    Some((
        ShardId(src as u16),
        shards[src].regions,
        ShardId(dst as u16),
        shards[dst].regions,
    ))
}

/// The spread below which a store's shards count as balanced:
/// `balance_tolerance_pct` of its mean replicas per shard.
fn tolerance(store: &StoreView, cfg: &SchedConfig) -> i64 {
    let total: i64 = store.shards.iter().map(|s| s.regions).sum();
    let mean = total / store.shards.len().max(1) as i64;
    mean * cfg.balance_tolerance_pct as i64 / 100
}

/// One move that narrows the spread of some store's shards, if any;
/// `new_peer` is the id of the replica to create. A follower replica is
/// moved in preference to a leader (in any store): a leader's move needs a
/// leadership transfer first.
pub fn schedule(
    routes: &[&RegionRoute],
    view: &ClusterView,
    ctl: &Controller,
    cfg: &SchedConfig,
    new_peer: u64,
) -> Option<NewOp> {
    let imbalanced: Vec<(StoreId, ShardId, ShardId)> = view
        .stores
        .values()
        .filter(|s| s.health == Health::Up && s.shards.len() >= 2)
        .filter(|s| {
            moves_on(ctl, s.id) < cfg.shard_moves_per_store_max
                && ctl.adds_to(s.id) < cfg.store_limit_add_peer
        })
        .filter_map(|s| {
            let (src, src_n, dst, dst_n) = extremes(s)?;
            (src != dst && worth_moving(src_n, dst_n, 1, tolerance(s, cfg)))
                .then_some((s.id, src, dst))
        })
        .collect();
    for leaders_too in [false, true] {
        for &(store, src, dst) in &imbalanced {
            if let Some(op) = pick(
                routes,
                view,
                ctl,
                cfg,
                (store, src, dst),
                leaders_too,
                new_peer,
            ) {
                return Some(op);
            }
        }
    }
    None
}

/// A region with a voter on `store`'s shard `src` that may move, as a
/// move to `dst`: a follower replica, or, if `leaders_too`, any.
fn pick(
    routes: &[&RegionRoute],
    view: &ClusterView,
    ctl: &Controller,
    cfg: &SchedConfig,
    (store, src, dst): (StoreId, ShardId, ShardId),
    leaders_too: bool,
    new_peer: u64,
) -> Option<NewOp> {
    let movable = |r: &RegionRoute| -> Option<Peer> {
        let region = &r.region;
        let leader = r.leader?;
        let mut on_store = region.peers.iter().filter(|p| p.store == store);
        let from = *on_store.next()?;
        if on_store.next().is_some()
            || from.shard != src
            || from.role != PeerRole::Voter
            || (from.id == leader.id && !leaders_too)
            || ctl.get(region.id).is_some()
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
        Some(from)
    };
    let (r, from) = routes
        .iter()
        .find_map(|r| movable(r).map(|from| (*r, from)))?;
    let peer = Peer {
        id: PeerId(new_peer),
        store,
        shard: dst,
        role: PeerRole::Learner,
    };
    Some(NewOp {
        region: r.region.id,
        epoch: r.region.epoch,
        source: OpSource::BalanceShard,
        steps: vec![
            OperatorStep::AddLearner { peer },
            OperatorStep::ReplacePeer {
                add: peer.id,
                remove: from.id,
            },
        ],
        // The store keeps its replica count: only its shards change
        // (`ClusterView::apply_steps`).
        influence: vec![],
    })
}

/// The removal of a learner that an interrupted move (its operator timed
/// out or was cancelled) left beside its region's voter on the same
/// store, if `region` (led by `leader`) has one and no operator. Nothing
/// else adds a second peer of a region to a store, so such a learner is
/// always a leftover.
pub fn leftover(region: &Region, leader: PeerId, ctl: &Controller) -> Option<NewOp> {
    if ctl.get(region.id).is_some() {
        return None;
    }
    let stray = region.peers.iter().find(|p| {
        p.role == PeerRole::Learner
            && p.id != leader
            && region
                .peers
                .iter()
                .any(|q| q.store == p.store && q.id != p.id && q.role == PeerRole::Voter)
    })?;
    Some(NewOp {
        region: region.id,
        epoch: region.epoch,
        source: OpSource::BalanceShard,
        steps: vec![OperatorStep::RemovePeer { peer: stray.id }],
        influence: vec![],
    })
}

#[cfg(test)]
mod tests;
