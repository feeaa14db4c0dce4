//! `ClusterView`: per-store health and counts, as the schedulers score them.
//!
//! Owns the derivation of each store's scheduling health (from its
//! administrative state and heartbeat age, with a store this leader never
//! heard from counted from the leader's start) and its region, leader and
//! size-weight counts, with the influence of running operators added as if
//! they had finished. Rebuilt from the PD state every schedule interval and
//! updated in place as operators are created in between.

use super::config::SchedConfig;
use super::controller::Controller;
use super::operator::Influence;
use crate::state::PdState;
use golem_wire::pd::{Region, RegionRoute, StoreState};
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
            stores.insert(
                s.store.id,
                StoreView {
                    id: s.store.id,
                    health,
                    shard_count: s.store.shard_count.max(1),
                    regions: 0,
                    leaders: 0,
                    weight: 0,
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
            }
            if let Some(l) = r.leader {
                if let Some(s) = view.stores.get_mut(&l.store) {
                    s.leaders += 1;
                }
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

    /// The store's health (unknown stores are tombstones).
    pub fn health(&self, store: StoreId) -> Health {
        self.stores
            .get(&store)
            .map_or(Health::Tombstone, |s| s.health)
    }

    /// The best `Up` store for a new replica of `region`: not holding it
    /// already, fewest replicas (then lowest id); with its placement shard
    /// (region id mod the store's shard count).
    pub fn best_target(&self, region: &Region) -> Option<(StoreId, ShardId)> {
        self.stores
            .values()
            .filter(|s| s.health == Health::Up)
            .filter(|s| !region.peers.iter().any(|p| p.store == s.id))
            .min_by_key(|s| (s.regions, s.id))
            .map(|s| (s.id, placement_shard(region, s.shard_count)))
    }
}

/// The shard of a store that owns a region's replica there.
pub fn placement_shard(region: &Region, shard_count: u16) -> ShardId {
    ShardId((region.id.0 % u64::from(shard_count.max(1))) as u16)
}
