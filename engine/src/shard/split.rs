//! Region splits in the shard: creating this node's replica of each region
//! a split made, and holding a new region back after a restart until its
//! parent has replayed the split.
//!
//! Owns the shell's side of a split (golem-core's `region::split` owns the
//! rules and the metadata). After `on_persisted`, the raft loop takes the
//! new regions a peer's applied splits made (`RegionPeer::take_split_regions`)
//! and calls `create_regions` in the same pass: the new replica is
//! bootstrapped on THIS shard (placement rule: a split region stays on its
//! parent's shard, where its data already is), its records appended to the
//! WAL before the parent's next metadata record (so a recovered parent that
//! holds the split always finds the new region's records), inserted, and
//! both ranges announced to every shard. The new replica on the store of the
//! parent's leader campaigns at once (TiKV does the same), so the new region
//! has a leader one election round after the split, not an election timeout.
//!
//! Invariants: a region this shard already hosts initialized is never
//! created again (recovery replays splits); an uninitialized replica of it
//! (made by a faster new-region leader's heartbeat) is replaced; a region
//! whose replica was removed from this shard (tombstoned) is not created
//! again by a replayed split; a gated region (`SplitBook::gate`) collects no
//! `Ready` until its parent's applied index reaches the split or the parent
//! is gone from this shard.

use super::region_handle::RegionHandle;
use super::Shard;
use golem_core::region::{RegionMeta, RegionPeer};
use golem_core::wal_record::WalSink;
use golem_wire::RegionId;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// The shard's split bookkeeping.
#[derive(Debug, Default)]
pub struct SplitBook {
    /// New region → (parent, split index): after a restart the new region
    /// applies nothing until its parent has applied the split again.
    gates: RefCell<HashMap<RegionId, (RegionId, u64)>>,
    /// Regions whose replica was removed from this shard (read at start).
    tombstoned: RefCell<HashSet<RegionId>>,
}

impl SplitBook {
    /// Notes regions removed from this shard before the restart.
    pub fn note_tombstoned(&self, regions: impl IntoIterator<Item = RegionId>) {
        self.tombstoned.borrow_mut().extend(regions);
    }

    /// Holds `child` back until `parent` has applied `index`.
    pub fn gate(&self, child: RegionId, parent: RegionId, index: u64) {
        tracing::info!(region = %child, %parent, index, "new region waits for its parent to replay its split");
        self.gates.borrow_mut().insert(child, (parent, index));
    }

    /// Whether `region` must not collect `Ready` yet. Lifts the gate once
    /// the parent has applied the split (or is not hosted here any more).
    pub fn is_gated(&self, shard: &Shard, region: RegionId) -> bool {
        let Some(&(parent, index)) = self.gates.borrow().get(&region) else {
            return false;
        };
        let replayed = shard
            .regions
            .borrow()
            .get(&parent)
            .is_none_or(|p| p.peer.borrow().applied_index().get() >= index);
        if replayed {
            self.gates.borrow_mut().remove(&region);
            tracing::info!(%region, %parent, "parent replayed the split; new region resumes");
        }
        !replayed
    }
}

/// Creates this shard's replica of each region in `created` (made by
/// splits the parent replica applied; `parent_leads`: the parent's replica
/// here leads, so the new one campaigns at once), appending its records to
/// `wal` (made durable by the raft loop's next sync, before the new replica
/// sends anything).
pub fn create_regions(
    shard: &Shard,
    wal: &mut dyn WalSink,
    created: Vec<RegionMeta>,
    parent_leads: bool,
) {
    for meta in created {
        let id = meta.id;
        let existing = shard.regions.borrow().get(&id).cloned();
        if existing.is_some_and(|r| r.peer.borrow().is_initialized()) {
            continue; // a replayed split: the region was recovered
        }
        if shard.split.tombstoned.borrow().contains(&id) {
            tracing::info!(region = %id, "a replayed split names a region removed from this shard; not created");
            continue;
        }
        // The parent's peer on this shard has its new peer beside it on
        // this shard (a store holds two peers of a region only while one
        // moves between its shards, each on its own shard).
        let Some(me) = meta.peer_at(shard.identity.store, shard.id).copied() else {
            tracing::error!(region = %id, shard = %shard.id, "a split's new region has no replica on this shard");
            continue;
        };
        let peer = match RegionPeer::bootstrap(shard.peer_config(id, me.id), meta, wal) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(region = %id, error = %e, "cannot create a split's new region");
                continue;
            }
        };
        if shard.regions.borrow().contains_key(&id) {
            // An uninitialized replica a leader's heartbeat made first.
            shard.remove_region(id);
        }
        let handle: Rc<RegionHandle> = shard.handle(peer);
        handle.allow_votes_now();
        if parent_leads || !handle.peer.borrow().meta().is_replicated() {
            handle.peer.borrow_mut().campaign();
        }
        tracing::info!(region = %id, peer = %me.id, "created the new region of a split");
        shard.insert_region(handle);
    }
}

/// After recovery: creates the new regions of splits that recovery applied
/// again (their records were lost), and gates new regions whose parent's
/// split the store does not hold durably. `tombstoned`: regions removed
/// from this shard.
pub fn after_recovery(shard: &Shard, wal: &mut dyn WalSink, tombstoned: &[RegionId]) {
    shard.split.note_tombstoned(tombstoned.iter().copied());
    let regions: Vec<Rc<RegionHandle>> = shard.regions.borrow().values().cloned().collect();
    for r in regions {
        let (id, created, gates) = {
            let mut p = r.peer.borrow_mut();
            (
                p.meta().id,
                p.take_split_regions(),
                p.take_split_replay_gates(),
            )
        };
        for (child, index) in gates {
            shard.split.gate(child, id, index);
        }
        create_regions(shard, wal, created, false);
    }
}
