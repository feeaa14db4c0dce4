//! Region merges in the shard: the PD's `Merge { target }` step, the
//! driver that commits or rolls back a prepared merge, the target's wait
//! for its local source, and the destruction of a merged source.
//!
//! Owns the shell's side of a merge (golem-core's `region::merge` owns the
//! rules, the commands and the metadata). A source and its target have
//! replicas on the same (store, shard) pairs, so on every node both live on
//! one shard and share its store: everything here is local to the shard.
//!
//! - **Step** (`start_step`, on the source leader): if the local target
//!   replica does not lead the target, move the source's leadership to the
//!   target leader's store first (the PD re-sends the step to the new
//!   leader); then propose `PrepareMerge` at the local target's epoch.
//! - **Driver** (`drive`, every `DRIVE_INTERVAL` from the raft loop): for
//!   each prepared source this shard leads, with the target leader beside
//!   it: once every source replica holds the prepare (`all_matched`),
//!   propose `CommitMerge` on the local target; if the local target left
//!   the prepare's target epoch without covering the source's range,
//!   propose `RollbackMerge` on the source. A target led elsewhere gets the
//!   source's leadership moved there. A restart between the steps just
//!   resumes here: the merge state is durable.
//! - **Wait** (`report_sources`, before each pass collects `Ready`): a
//!   target whose `CommitMerge` waits is told how far its local source
//!   applied, after helping the source apply up to the prepare.
//! - **Destroy** (`on_merged`, `destroy_merged`): a source its local target
//!   took leaves the directory at once (the target's grown range is
//!   announced) and serves nothing; its `Tombstone` is written, and the
//!   replica dropped, only once the store durably holds its applied index
//!   (a flush is requested), because after the tombstone recovery no
//!   longer replays its log. Its data is never deleted: it is the
//!   target's now.
//!
//! Invariants: at most one driver task per source at a time; a rollback
//! is proposed only when the local target's epoch shows a commit can never
//! apply (`region::merge`); recovery marks a prepared source whose local
//! target already covers its range as merged (`after_recovery`).

use super::region_handle::RegionHandle;
use super::Shard;
use crate::runtime::spawn_local;
use golem_core::region::{RegionMeta, RegionPeer};
use golem_core::wal_record::{RecordKind, WalSink};
use golem_wire::{GolemError, RegionId};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the raft loop runs the merge driver.
pub const DRIVE_INTERVAL: Duration = Duration::from_millis(100);
/// Least time between two leadership moves of one source by the driver.
const TRANSFER_INTERVAL: Duration = Duration::from_secs(2);

/// The shard's merge bookkeeping.
#[derive(Debug, Default)]
pub struct MergeBook {
    /// Merged sources still hosted: tombstoned once their data is durable.
    merged: RefCell<HashSet<RegionId>>,
    /// Sources with a driver task in flight.
    running: RefCell<HashSet<RegionId>>,
    /// When the driver last moved a source's leadership.
    transferred: RefCell<HashMap<RegionId, Instant>>,
    /// Regions seen prepared (after a `Ready`, or at recovery): the only
    /// ones the driver looks at, so that idle regions cost it nothing.
    prepared: RefCell<HashSet<RegionId>>,
}

impl MergeBook {
    /// Whether `region` is a merged source awaiting its tombstone.
    pub fn is_merged(&self, region: RegionId) -> bool {
        self.merged.borrow().contains(&region)
    }

    /// Notes a region whose replica here has a merge prepared.
    pub fn note_prepared(&self, region: RegionId) {
        self.prepared.borrow_mut().insert(region);
    }
}

/// The PD's `Merge { target }` step on the leader of the source `handle`.
pub async fn run_step(
    shard: &Shard,
    handle: &RegionHandle,
    target: RegionId,
) -> Result<(), GolemError> {
    let Some(t) = shard.regions.borrow().get(&target).cloned() else {
        return Err(GolemError::invalid(format!(
            "merge target {target} has no replica on this shard"
        )));
    };
    if handle.peer.borrow().merge_state().is_some() {
        return Ok(()); // prepared: the driver finishes it
    }
    let (leads, leader_store, target_meta) = {
        let p = t.peer.borrow();
        let store = p
            .leader_id()
            .and_then(|id| p.meta().peer(id))
            .map(|q| q.store);
        (p.is_leader(), store, p.meta().clone())
    };
    if !leads {
        // The commit is proposed beside the source's leader: move it to
        // the target's leader (the PD re-sends the step there).
        let Some(store) = leader_store else {
            return Err(GolemError::ServerBusy {
                retry_after_ms: 100,
            });
        };
        handle.transfer_leader(store).await?;
        return Err(GolemError::ServerBusy {
            retry_after_ms: 100,
        });
    }
    handle
        .propose_with(|p, token| p.propose_prepare_merge(&target_meta, token))
        .await
        .map(|_| ())
}

/// Tells each visited target whose commit waits how far its local source
/// has applied (helping the source apply up to the prepare first).
pub fn report_sources(shard: &Shard, visit: &[Rc<RegionHandle>]) {
    for r in visit {
        let Some(wait) = r.peer.borrow().merge_wait() else {
            continue;
        };
        let source = shard.regions.borrow().get(&wait.source).cloned();
        let applied = match source {
            Some(s) => {
                let mut p = s.peer.borrow_mut();
                p.catch_up_for_merge(wait.prepare_index, wait.prepare_term);
                let applied = p.applied_index().get();
                drop(p);
                s.poke();
                applied
            }
            // Tombstoned here: its data was durable first.
            None => u64::MAX,
        };
        r.peer
            .borrow_mut()
            .on_merge_source_applied(wait.source, applied);
    }
}

/// After `target`'s `on_persisted`: the sources it took stop and leave
/// the directory; the target's grown range is announced.
pub fn on_merged(shard: &Shard, target: RegionId, sources: Vec<RegionId>) {
    for source in sources {
        mark_merged(shard, source);
    }
    shard.announce(target);
}

fn mark_merged(shard: &Shard, source: RegionId) {
    let Some(h) = shard.regions.borrow().get(&source).cloned() else {
        return;
    };
    if !h.peer.borrow().is_merged() {
        h.peer.borrow_mut().mark_merged();
    }
    if shard.merge.merged.borrow_mut().insert(source) {
        shard.unannounce(source);
        tracing::info!(region = %source, "merged source leaves the directory; tombstone once its data is durable");
    }
}

/// Writes the tombstone of each merged source whose applied index the
/// store holds durably, and drops the replica; asks for a flush otherwise.
pub fn destroy_merged(shard: &Shard, wal: &mut dyn WalSink) {
    let merged: Vec<RegionId> = shard.merge.merged.borrow().iter().copied().collect();
    let mut flush = false;
    for source in merged {
        let Some(h) = shard.regions.borrow().get(&source).cloned() else {
            shard.merge.merged.borrow_mut().remove(&source);
            continue;
        };
        let (applied, peer) = {
            let p = h.peer.borrow();
            (p.applied_index(), p.config().peer)
        };
        let durable = shard.store.borrow_mut().persisted_applied(source) >= applied;
        if !durable {
            flush = true;
            continue;
        }
        // Merged, not removed by a membership change: no removal entry to
        // answer with.
        let tombstone = golem_core::region::records::Tombstone {
            peer,
            removed_by: None,
        };
        wal.append(
            RecordKind::Tombstone,
            source,
            &golem_core::region::records::encode_tombstone(&tombstone),
        );
        shard.tombstones.borrow_mut().insert(source, tombstone);
        shard.merge.merged.borrow_mut().remove(&source);
        shard.merge.transferred.borrow_mut().remove(&source);
        shard.remove_region(source);
        tracing::info!(region = %source, "merged source destroyed (its data stays with the target)");
    }
    if flush {
        if let Err(e) = shard.store.borrow_mut().flush() {
            tracing::debug!(error = %e, "LSM flush for a merged source deferred");
        }
    }
}

/// Whether `target` (a snapshot's metadata) covers the whole range of the
/// prepared source `source` whose merge goes into it: the merge committed
/// (the snapshot's leader applied it), so the local source is merged.
/// Pure.
pub fn snapshot_takes(
    target: &RegionMeta,
    source: &RegionMeta,
    state: &golem_core::region::merge::MergeState,
) -> bool {
    state.target == target.id
        && target.contains(&source.start)
        && (target.end.is_empty() || (!source.end.is_empty() && source.end <= target.end))
}

/// A received snapshot of `target` overlaps `other` on this shard: if
/// `other` is a prepared source the snapshot's range has taken, mark it
/// merged (its tombstone is written before the snapshot is accepted on a
/// later try: the leader re-sends a refused snapshot). Whether it did.
pub fn on_overlapping_snapshot(shard: &Shard, target: &RegionMeta, other: RegionId) -> bool {
    let Some(h) = shard.regions.borrow().get(&other).cloned() else {
        return false;
    };
    let taken = {
        let p = h.peer.borrow();
        p.merge_state()
            .is_some_and(|state| snapshot_takes(target, p.meta(), &state))
    };
    if taken {
        tracing::info!(region = %other, target = %target.id, "a snapshot of the merge target covers this prepared source: merged");
        mark_merged(shard, other);
    }
    taken
}

/// After recovery: a prepared source whose local target already covers its
/// range was merged before the crash (its tombstone was not written yet).
pub fn after_recovery(shard: &Shard) {
    let regions: Vec<Rc<RegionHandle>> = shard.regions.borrow().values().cloned().collect();
    for r in regions {
        let p = r.peer.borrow();
        let Some(state) = p.merge_state() else {
            continue;
        };
        let (source, start) = (p.meta().id, p.meta().start.clone());
        drop(p);
        shard.merge.note_prepared(source);
        let covered = shard
            .regions
            .borrow()
            .get(&state.target)
            .is_some_and(|t| t.peer.borrow().meta().contains(&start));
        if covered {
            tracing::info!(region = %source, target = %state.target, "recovered a source its target already took");
            mark_merged(shard, source);
            shard.announce(state.target);
        }
    }
}

/// Commits or rolls back the prepared merges this shard leads (the
/// regions `note_prepared` named).
pub fn drive(shard: &Rc<Shard>) {
    let prepared: Vec<RegionId> = shard.merge.prepared.borrow().iter().copied().collect();
    for id in prepared {
        let Some(r) = shard.regions.borrow().get(&id).cloned() else {
            shard.merge.prepared.borrow_mut().remove(&id);
            continue;
        };
        let (source, state, meta) = {
            let p = r.peer.borrow();
            let Some(state) = p.merge_state().filter(|_| !p.is_merged()) else {
                // Rolled back, or merged: nothing more to drive.
                shard.merge.prepared.borrow_mut().remove(&id);
                continue;
            };
            if !p.is_leader() {
                continue;
            }
            (p.meta().id, state, p.meta().clone())
        };
        if shard.merge.running.borrow().contains(&source) {
            continue;
        }
        let Some(t) = shard.regions.borrow().get(&state.target).cloned() else {
            continue;
        };
        let action = {
            let tp = t.peer.borrow();
            if tp.meta().contains(&meta.start) {
                continue; // taken: on_merged destroys the source
            }
            if tp.meta().epoch != state.target_epoch {
                Action::Rollback
            } else if tp.is_leader() {
                if !r.peer.borrow().all_matched(state.prepare_index) {
                    continue;
                }
                Action::Commit
            } else {
                let store = tp
                    .leader_id()
                    .and_then(|id| tp.meta().peer(id))
                    .map(|q| q.store);
                match store {
                    Some(store) => Action::MoveTo(store),
                    None => continue,
                }
            }
        };
        if let Action::MoveTo(_) = action {
            let recent = shard
                .merge
                .transferred
                .borrow()
                .get(&source)
                .is_some_and(|at| at.elapsed() < TRANSFER_INTERVAL);
            if recent {
                continue;
            }
            shard
                .merge
                .transferred
                .borrow_mut()
                .insert(source, Instant::now());
        }
        shard.merge.running.borrow_mut().insert(source);
        let shard = shard.clone();
        spawn_local(async move {
            let result = match action {
                Action::Commit => {
                    t.propose_with(|p: &mut RegionPeer, token| {
                        p.propose_commit_merge(&meta, state, token)
                    })
                    .await
                }
                Action::Rollback => {
                    r.propose_with(|p: &mut RegionPeer, token| p.propose_rollback_merge(token))
                        .await
                }
                Action::MoveTo(store) => r.transfer_leader(store).await,
            };
            shard.merge.running.borrow_mut().remove(&source);
            match result {
                Ok(_) => tracing::info!(region = %source, target = %state.target, ?action, "merge driver step done"),
                Err(e) => tracing::debug!(region = %source, ?action, error = %e, "merge driver step failed; retried"),
            }
        })
        .detach();
    }
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Commit,
    Rollback,
    MoveTo(golem_wire::StoreId),
}

#[cfg(test)]
mod tests {
    use super::*;
    use golem_core::region::merge::MergeState;
    use golem_core::region::PeerMeta;
    use golem_wire::{PeerId, RegionEpoch, ShardId, StoreId};

    fn meta(id: u64, start: &str, end: &str) -> RegionMeta {
        RegionMeta {
            id: RegionId(id),
            start: start.as_bytes().to_vec(),
            end: end.as_bytes().to_vec(),
            epoch: RegionEpoch::default(),
            peers: vec![PeerMeta::new(PeerId(id), StoreId(1), ShardId(0))],
        }
    }

    #[test]
    fn a_snapshot_takes_a_prepared_source_only_if_it_is_its_target_and_covers_it() {
        let state = |target| MergeState {
            target: RegionId(target),
            target_epoch: RegionEpoch::default(),
            prepare_index: 9,
            prepare_term: 6,
        };
        let source = meta(9, "m", "t");
        for (target, want) in [
            (meta(7, "", ""), true),
            (meta(7, "a", "t"), true),
            (meta(7, "m", "z"), true),
            (meta(7, "a", "m"), false), // before the merge
            (meta(7, "n", "z"), false),
            (meta(7, "a", "p"), false),
        ] {
            assert_eq!(
                snapshot_takes(&target, &source, &state(7)),
                want,
                "{target:?}"
            );
        }
        // Another region's snapshot never takes it.
        assert!(!snapshot_takes(&meta(8, "", ""), &source, &state(7)));
        // A source running to the end of the key space.
        let last = meta(9, "m", "");
        assert!(snapshot_takes(&meta(7, "a", ""), &last, &state(7)));
        assert!(!snapshot_takes(&meta(7, "a", "z"), &last, &state(7)));
    }
}
