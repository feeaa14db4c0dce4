//! `ClusterView`: per-store health and counts, as the schedulers score them.
//!
//! Owns the derivation of each store's scheduling health (from its
//! administrative state and heartbeat age, with a store this leader never
//! heard from counted from the leader's start) and its region, leader and
//! size-weight counts, and each of its shards' region and leader counts
//! (from the shard each peer's metadata names), with the influence of
//! running operators added as if they had finished. Rebuilt from the PD
//! state every schedule interval and updated in place as operators are
//! created in between. New replicas go to the target store's least-loaded
//! shard (`best_target`, `least_loaded_shard`).

use super::config::SchedConfig;
use super::controller::Controller;
use super::operator::Influence;
use crate::state::PdState;
use golem_wire::pd::{OperatorStep, Region, RegionRoute, StoreState};
use golem_wire::{ShardId, StoreId};
use std::collections::BTreeMap;

/// A store's fitness for scheduling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Heard from recently: may take replicas and leaders.
    Up,
    /// Silent for a while: keeps its replicas, gets nothing new.
    Disconnected,
    /// Silent beyond `max_store_down_time_ms`: its replicas are recreated elsewhere.
    Down,
    /// Being deleted: its replicas move elsewhere.
    Offline,
    Tombstone,
}

impl Health {
    /// Its replicas must be moved away.
    pub fn evacuate(self) -> bool {
        matches!(self, Health::Down | Health::Offline | Health::Tombstone)
    }
}

/// One store as the schedulers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreView {
    pub id: StoreId,
    pub health: Health,
    pub shard_count: u16,
    pub regions: i64,
    pub leaders: i64,
    /// Sum of the region weights (`region_weight`) of its replicas.
    pub weight: i64,
    /// Per shard (index = shard id, `shard_count` of them): replicas and
    /// leaders there, running operators counted as done.
    pub shards: Vec<ShardView>,
}

/// One shard (core) of a store as balance-shard and placement see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardView {
    pub regions: i64,
    pub leaders: i64,
}

/// Every store, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub stores: BTreeMap<StoreId, StoreView>,
}

/// A region's weight in the balance-region score: 1, plus one per quarter
/// of the split size it holds (sizes unknown: every region weighs 1).
pub fn region_weight(size_bytes: u64, cfg: &SchedConfig) -> i64 {
    let unit = (cfg.split_region_bytes / 4).max(1);
    1 + (size_bytes / unit) as i64
}

impl ClusterView {
    /// The view of `state` at `now_ms`; `leader_since_ms`: when this PD
    /// member became leader (a store it never heard from counts as last
    /// heard then).
    pub fn build(
        state: &PdState,
        ctl: &Controller,
        now_ms: u64,
        leader_since_ms: u64,
        cfg: &SchedConfig,
    ) -> ClusterView {
        let mut stores = BTreeMap::new();
        for s in state.stores().iter() {
            let last = if s.last_heartbeat_ms == 0 {
                leader_since_ms
            } else {
                s.last_heartbeat_ms
            };
            let age = now_ms.saturating_sub(last);
            let health = match s.state {
                StoreState::Offline => Health::Offline,
                StoreState::Tombstone => Health::Tombstone,
                _ if age >= cfg.max_store_down_time_ms => Health::Down,
                _ if age >= cfg.store_disconnected_after_ms || s.last_heartbeat_ms == 0 => {
                    Health::Disconnected
                }
                _ => Health::Up,
            };
            let shard_count = s.store.shard_count.max(1);
            stores.insert(
                s.store.id,
                StoreView {
                    id: s.store.id,
                    health,
                    shard_count,
                    regions: 0,
                    leaders: 0,
                    weight: 0,
                    shards: vec![ShardView::default(); usize::from(shard_count)],
                },
            );
        }
        let mut view = ClusterView { stores };
        view.count(state.routing().iter(), ctl, cfg);
        view
    }

    /// Adds the replicas, leaders and weights of `routes`, and the
    /// influence of the running operators, to the stores' counts.
    pub fn count<'a>(
        &mut self,
        routes: impl Iterator<Item = &'a RegionRoute>,
        ctl: &Controller,
        cfg: &SchedConfig,
    ) {
        let view = self;
        for r in routes {
            let w = region_weight(r.stats.approximate_size_bytes, cfg);
            for p in &r.region.peers {
                if let Some(s) = view.stores.get_mut(&p.store) {
                    s.regions += 1;
                    s.weight += w;
                }
                view.add_on_shard(p.store, p.shard, 1, 0);
            }
            if let Some(l) = r.leader {
                if let Some(s) = view.stores.get_mut(&l.store) {
                    s.leaders += 1;
                }
                view.add_on_shard(l.store, l.shard, 0, 1);
            }
            if let Some(op) = ctl.get(r.region.id) {
                view.apply_steps(&r.region, &op.steps[op.current.min(op.steps.len())..]);
            }
        }
        for op in ctl.iter() {
            view.apply(&op.influence, 1);
        }
    }

    /// Adds an operator's influence (the weight of a moved region is in
    /// `regions` units times `weight_per_region`).
    pub fn apply(&mut self, influence: &[Influence], weight_per_region: i64) {
        for i in influence {
            if let Some(s) = self.stores.get_mut(&i.store) {
                s.regions += i.regions;
                s.leaders += i.leaders;
                s.weight += i.regions * weight_per_region;
            }
        }
    }

    fn add_on_shard(&mut self, store: StoreId, shard: ShardId, regions: i64, leaders: i64) {
        let Some(s) = self.stores.get_mut(&store) else {
            return;
        };
        // A shard beyond the store's registered count (a report racing a
        // re-registration) is not counted.
        if let Some(v) = s.shards.get_mut(usize::from(shard.0)) {
            v.regions += regions;
            v.leaders += leaders;
        }
    }

    /// Counts the per-shard effect of an operator's remaining `steps` on
    /// `region` as done: an added peer not there yet on its shard, a removed
    /// peer still there off its shard. (Store-level counts take the
    /// operator's `Influence` instead.)
    pub fn apply_steps(&mut self, region: &Region, steps: &[OperatorStep]) {
        let here = |id| region.peers.iter().find(|p| p.id == id);
        for step in steps {
            match step {
                OperatorStep::AddLearner { peer } if here(peer.id).is_none() => {
                    self.add_on_shard(peer.store, peer.shard, 1, 0);
                }
                OperatorStep::RemovePeer { peer: id }
                | OperatorStep::ReplacePeer { remove: id, .. } => {
                    if let Some(p) = here(*id) {
                        self.add_on_shard(p.store, p.shard, -1, 0);
                    }
                }
                _ => {}
            }
        }
    }

    /// The shard of `store` with the fewest replicas (then leaders, then
    /// the lowest id), running operators counted as done; shard 0 for a
    /// store this view does not know.
    pub fn least_loaded_shard(&self, store: StoreId) -> ShardId {
        self.stores
            .get(&store)
            .and_then(|s| {
                (0..s.shards.len()).min_by_key(|&i| (s.shards[i].regions, s.shards[i].leaders, i))
            })
            .map_or(ShardId(0), |i| ShardId(i as u16))
    }

    /// The store's health (unknown stores are tombstones).
    pub fn health(&self, store: StoreId) -> Health {
        self.stores
            .get(&store)
            .map_or(Health::Tombstone, |s| s.health)
    }

    /// The best `Up` store for a new replica of `region`: not holding it
    /// already, fewest replicas (then lowest id); with its least-loaded
    /// shard (`least_loaded_shard`).
    pub fn best_target(&self, region: &Region) -> Option<(StoreId, ShardId)> {
        self.stores
            .values()
            .filter(|s| s.health == Health::Up)
            .filter(|s| !region.peers.iter().any(|p| p.store == s.id))
            .min_by_key(|s| (s.regions, s.id))
            .map(|s| (s.id, self.least_loaded_shard(s.id)))
    }
}
