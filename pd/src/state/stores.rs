//! The store registry.
//!
//! Owns every registered store: its identity (id, address, shard count,
//! replicated through the Raft log), its administrative state (`Offline`,
//! `Tombstone`, replicated) and its last report (statistics and heartbeat
//! time: leader-local soft state, rebuilt by the next heartbeats after a
//! leader change).
//!
//! Invariants: a store id maps to one address for its whole life, and an
//! address to one live store (a second registration that breaks either is
//! `DuplicateStore`); a `Tombstone` never comes back; `Up`, `Disconnected`
//! and `Down` are derived from the heartbeat age, never stored.

use golem_wire::pd::{Store, StoreInfo, StoreState, StoreStats};
use golem_wire::{GolemError, StoreId};
use std::collections::BTreeMap;

/// Heartbeat ages after which a store counts as disconnected or down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreTimeouts {
    pub disconnected_after_ms: u64,
    pub down_after_ms: u64,
}

impl Default for StoreTimeouts {
    fn default() -> Self {
        StoreTimeouts {
            disconnected_after_ms: 20_000,
            down_after_ms: 30 * 60 * 1000,
        }
    }
}

/// Registered stores by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stores {
    stores: BTreeMap<StoreId, StoreInfo>,
}

impl Stores {
    /// A store by id.
    pub fn get(&self, id: StoreId) -> Option<&StoreInfo> {
        self.stores.get(&id)
    }

    /// Every store, by id.
    pub fn iter(&self) -> impl Iterator<Item = &StoreInfo> {
        self.stores.values()
    }

    /// Checks a registration without changing anything.
    pub fn check_put(&self, store: &Store) -> Result<(), GolemError> {
        if let Some(cur) = self.stores.get(&store.id) {
            if cur.state == StoreState::Tombstone {
                return Err(GolemError::StoreTombstone { store: store.id });
            }
            if cur.store.addr != store.addr {
                return Err(GolemError::DuplicateStore {
                    store: store.id,
                    existing: store.id,
                    existing_addr: cur.store.addr.clone(),
                });
            }
        }
        if let Some(other) = self.stores.values().find(|s| {
            s.store.addr == store.addr && s.store.id != store.id && s.state != StoreState::Tombstone
        }) {
            return Err(GolemError::DuplicateStore {
                store: store.id,
                existing: other.store.id,
                existing_addr: other.store.addr.clone(),
            });
        }
        Ok(())
    }

    /// Registers a store or updates its shard count (from the Raft log).
    pub fn put(&mut self, store: &Store) -> Result<(), GolemError> {
        self.check_put(store)?;
        match self.stores.get_mut(&store.id) {
            Some(cur) => cur.store = store.clone(),
            None => {
                self.stores.insert(
                    store.id,
                    StoreInfo {
                        store: store.clone(),
                        state: StoreState::Up,
                        stats: StoreStats::default(),
                        last_heartbeat_ms: 0,
                    },
                );
            }
        }
        Ok(())
    }

    /// Records a heartbeat (leader-local soft state).
    pub fn heartbeat(
        &mut self,
        id: StoreId,
        stats: StoreStats,
        now_ms: u64,
    ) -> Result<(), GolemError> {
        let cur = self
            .stores
            .get_mut(&id)
            .ok_or(GolemError::UnknownStore { store: id })?;
        if cur.state == StoreState::Tombstone {
            return Err(GolemError::StoreTombstone { store: id });
        }
        cur.stats = stats;
        cur.last_heartbeat_ms = now_ms;
        Ok(())
    }

    /// The store as reported to clients: its state derived at `now_ms`.
    pub fn view(&self, id: StoreId, now_ms: u64, t: StoreTimeouts) -> Option<StoreInfo> {
        let mut info = self.stores.get(&id)?.clone();
        info.state = derived_state(&info, now_ms, t);
        Some(info)
    }

    /// Inserts a store with no check (snapshot restore).
    pub fn insert_unchecked(&mut self, info: StoreInfo) {
        self.stores.insert(info.store.id, info);
    }
}

/// `Offline`/`Tombstone` as set; otherwise by heartbeat age (a store not
/// heard from since this leader started counts as disconnected).
fn derived_state(info: &StoreInfo, now_ms: u64, t: StoreTimeouts) -> StoreState {
    match info.state {
        StoreState::Offline | StoreState::Tombstone => info.state,
        _ if info.last_heartbeat_ms == 0 => StoreState::Disconnected,
        _ => {
            let age = now_ms.saturating_sub(info.last_heartbeat_ms);
            if age >= t.down_after_ms {
                StoreState::Down
            } else if age >= t.disconnected_after_ms {
                StoreState::Disconnected
            } else {
                StoreState::Up
            }
        }
    }
}
