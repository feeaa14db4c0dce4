//! The PD state machine: no I/O, no clock, no randomness.
//!
//! Owns `PdState` — cluster id, stores, regions (the routing table), the id
//! allocator's high-water mark and the committed TSO window — and the
//! deterministic `apply` of `PdCommand`s from the Raft log. Every member
//! applies the same commands in the same order and reaches the same state;
//! time and ids enter only as command fields or call arguments, so a
//! simulator can drive it.
//!
//! Invariants (each owned by a submodule and restated in docs/pd.md):
//! ids are never handed out twice (`ids`); region epochs only grow and
//! routing ranges never overlap (`routing`); the committed TSO window end
//! never goes back (`apply`, below); a store id keeps its address and a
//! tombstone stays a tombstone (`stores`).
//!
//! Soft state — region and store statistics, heartbeat times — is updated
//! leader-locally without the log (`store_heartbeat`, `region_stats`) and is
//! rebuilt by the next heartbeats after a leader change.

pub mod bootstrap;
pub mod command;
pub mod ids;
pub mod routing;
pub mod snapshot;
pub mod stores;
pub mod tso;

#[cfg(test)]
mod tests;

pub use bootstrap::{JoinStep, INITIAL_REPLICAS_MAX};
pub use command::{CommandError, LoggedHeartbeat, LoggedStats, PdCommand};
pub use ids::IdAllocator;
pub use routing::{HeartbeatEffect, RoutingTable};
pub use snapshot::SnapshotError;
pub use stores::{StoreTimeouts, Stores};
pub use tso::{TsoError, TsoOracle};

use golem_wire::pd::{
    PdResponseBody, RegionHeartbeat, RegionRoute, StoreInfo, StoreState, StoreStats,
    PD_SCAN_REGIONS_MAX,
};
use golem_wire::{ClusterId, GolemError, RegionId, StoreId};

/// Bytes of routes one `ScanRegions` answer holds, about (half a frame, so
/// the response always fits `FRAME_PAYLOAD_BYTES_MAX`); the caller continues
/// from the last region's end.
pub const SCAN_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The replicated state of the Placement Driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdState {
    /// Set once, by `Bootstrap`.
    cluster: Option<ClusterId>,
    ids: IdAllocator,
    /// Committed TSO window end, ms: no timestamp at or above it was served.
    tso_window_end_ms: u64,
    stores: Stores,
    routing: RoutingTable,
    /// How store states are derived from heartbeat ages (not replicated).
    timeouts: StoreTimeouts,
}

impl PdState {
    /// An empty, not bootstrapped state.
    pub fn new(timeouts: StoreTimeouts) -> PdState {
        PdState {
            cluster: None,
            ids: IdAllocator::default(),
            tso_window_end_ms: 0,
            stores: Stores::default(),
            routing: RoutingTable::default(),
            timeouts,
        }
    }

    /// The cluster id, once bootstrapped.
    pub fn cluster(&self) -> Option<ClusterId> {
        self.cluster
    }

    /// The next id the allocator would hand out.
    pub fn id_next(&self) -> u64 {
        self.ids.next()
    }

    /// The committed TSO window end, ms.
    pub fn tso_window_end_ms(&self) -> u64 {
        self.tso_window_end_ms
    }

    /// The routing table.
    pub fn routing(&self) -> &RoutingTable {
        &self.routing
    }

    /// The store registry.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The cluster id, or `NotBootstrapped`.
    pub fn require_cluster(&self) -> Result<ClusterId, GolemError> {
        self.require_bootstrapped()
    }

    fn require_bootstrapped(&self) -> Result<ClusterId, GolemError> {
        self.cluster.ok_or(GolemError::NotBootstrapped)
    }

    /// Checks a command against the current state without applying it, so
    /// that the leader can refuse obviously bad requests before logging
    /// them. `apply` checks again: the state may change in between.
    pub fn precheck(&self, cmd: &PdCommand) -> Result<(), GolemError> {
        match cmd {
            PdCommand::Bootstrap { store, .. } => {
                if let Some(cluster) = self.cluster {
                    return Err(GolemError::AlreadyBootstrapped { cluster });
                }
                self.stores.check_put(store)
            }
            PdCommand::PutStore { store } => {
                self.require_bootstrapped()?;
                self.stores.check_put(store)
            }
            PdCommand::SetStoreState { store, .. } => {
                self.require_bootstrapped()?;
                let cur = self
                    .stores
                    .get(*store)
                    .ok_or(GolemError::UnknownStore { store: *store })?;
                if cur.state == StoreState::Tombstone {
                    return Err(GolemError::StoreTombstone { store: *store });
                }
                Ok(())
            }
            PdCommand::RegionHeartbeat { heartbeat } => {
                self.require_bootstrapped()?;
                self.routing
                    .check_heartbeat(&heartbeat.to_wire())
                    .map(|_| ())
            }
            PdCommand::JoinCluster {
                store,
                cluster,
                initial_replicas,
            } => {
                bootstrap::check_initial_replicas(*initial_replicas)?;
                if cluster.0 == 0 {
                    return Err(GolemError::invalid("cluster id 0"));
                }
                self.stores.check_put(store)
            }
            PdCommand::AllocIds { .. } | PdCommand::TsoWindow { .. } => Ok(()),
        }
    }

    /// Applies one command from the Raft log. `Ok(None)` for commands with
    /// no client answer (`TsoWindow`). Deterministic: same state and command,
    /// same result.
    pub fn apply(&mut self, cmd: &PdCommand) -> Result<Option<PdResponseBody>, GolemError> {
        match cmd {
            PdCommand::Bootstrap {
                cluster,
                store,
                region,
            } => {
                if let Some(cluster) = self.cluster {
                    return Err(GolemError::AlreadyBootstrapped { cluster });
                }
                if cluster.0 == 0 {
                    return Err(GolemError::invalid("cluster id 0"));
                }
                self.stores.put(store)?;
                self.ids.observe(store.id.get());
                self.ids.observe(region.id.get());
                for p in &region.peers {
                    self.ids.observe(p.id.get());
                    self.ids.observe(p.store.get());
                }
                let leader = region.peers.iter().copied().find(|p| p.store == store.id);
                self.routing.insert_unchecked(RegionRoute {
                    region: region.clone(),
                    leader,
                    term: 0,
                    stats: Default::default(),
                });
                self.cluster = Some(*cluster);
                Ok(Some(PdResponseBody::Bootstrap { cluster: *cluster }))
            }
            PdCommand::PutStore { store } => {
                self.require_bootstrapped()?;
                self.stores.put(store)?;
                self.ids.observe(store.id.get());
                Ok(Some(PdResponseBody::PutStore))
            }
            PdCommand::SetStoreState { store, state } => {
                self.require_bootstrapped()?;
                let cur = self
                    .stores
                    .get(*store)
                    .ok_or(GolemError::UnknownStore { store: *store })?;
                if cur.state == StoreState::Tombstone {
                    return Err(GolemError::StoreTombstone { store: *store });
                }
                let mut info = cur.clone();
                info.state = *state;
                self.stores.insert_unchecked(info);
                Ok(Some(PdResponseBody::StoreDeleted { state: *state }))
            }
            PdCommand::RegionHeartbeat { heartbeat } => {
                self.require_bootstrapped()?;
                self.routing.apply_heartbeat(&heartbeat.to_wire())?;
                self.ids.observe(heartbeat.region.id.get());
                for p in &heartbeat.region.peers {
                    self.ids.observe(p.id.get());
                }
                Ok(Some(PdResponseBody::RegionHeartbeat { operator: None }))
            }
            PdCommand::AllocIds { count } => {
                let first = self.ids.alloc(*count);
                Ok(Some(PdResponseBody::AllocIds {
                    first,
                    count: *count,
                }))
            }
            PdCommand::TsoWindow { end_ms } => {
                self.tso_window_end_ms = self.tso_window_end_ms.max(*end_ms);
                Ok(None)
            }
            PdCommand::JoinCluster {
                store,
                cluster,
                initial_replicas,
            } => self
                .apply_join(store, *cluster, *initial_replicas)
                .map(Some),
        }
    }

    // --- leader-local soft state -------------------------------------------

    /// Records a store heartbeat (not replicated).
    pub fn store_heartbeat(
        &mut self,
        store: StoreId,
        stats: StoreStats,
        now_ms: u64,
    ) -> Result<(), GolemError> {
        self.require_bootstrapped()?;
        self.stores.heartbeat(store, stats, now_ms)
    }

    /// Classifies a region heartbeat: stale (`Err`), statistics only (then
    /// already recorded, not replicated), or a metadata change the caller
    /// must propose as a `RegionHeartbeat` command.
    pub fn region_heartbeat_local(
        &mut self,
        hb: &RegionHeartbeat,
    ) -> Result<HeartbeatEffect, GolemError> {
        self.require_bootstrapped()?;
        let effect = self.routing.check_heartbeat(hb)?;
        if effect == HeartbeatEffect::StatsOnly {
            self.routing.update_stats(hb)?;
        }
        Ok(effect)
    }

    // --- queries --------------------------------------------------------------

    /// The region containing `key`.
    pub fn get_region(&self, key: &[u8]) -> Result<Option<RegionRoute>, GolemError> {
        self.require_bootstrapped()?;
        Ok(self.routing.find(key).cloned())
    }

    /// A region by id.
    pub fn get_region_by_id(&self, id: RegionId) -> Result<RegionRoute, GolemError> {
        self.require_bootstrapped()?;
        self.routing
            .get(id)
            .cloned()
            .ok_or(GolemError::UnknownRegion { region: id })
    }

    /// Regions overlapping `[start, end)`, at most `min(limit,
    /// PD_SCAN_REGIONS_MAX)` and about `SCAN_RESPONSE_BYTES_MAX` bytes.
    pub fn scan_regions(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<Vec<RegionRoute>, GolemError> {
        self.require_bootstrapped()?;
        Ok(self.routing.scan(
            start,
            end,
            limit.min(PD_SCAN_REGIONS_MAX) as usize,
            SCAN_RESPONSE_BYTES_MAX,
        ))
    }

    /// A store, with its state derived at `now_ms`.
    pub fn get_store(&self, id: StoreId, now_ms: u64) -> Result<StoreInfo, GolemError> {
        self.require_bootstrapped()?;
        self.stores
            .view(id, now_ms, self.timeouts)
            .ok_or(GolemError::UnknownStore { store: id })
    }

    /// Every store (tombstones only if asked), states derived at `now_ms`.
    pub fn get_stores(
        &self,
        include_tombstones: bool,
        now_ms: u64,
    ) -> Result<Vec<StoreInfo>, GolemError> {
        self.require_bootstrapped()?;
        Ok(self
            .stores
            .iter()
            .filter_map(|s| self.stores.view(s.store.id, now_ms, self.timeouts))
            .filter(|s| include_tombstones || s.state != StoreState::Tombstone)
            .collect())
    }
}
