//! The shard's raft loop: one timer, one WAL sync per pass, for all regions.
//!
//! Each pass: tick regions when the tick is due; collect `Ready` from every
//! region into the shard's WAL (applying entries that are already committed
//! and durable into the shard's LSM); make it durable with ONE sync (group
//! commit: every write gathered during the previous sync rides on this one);
//! index where each `Entries` record landed; then advance every region,
//! apply committed entries and answer their waiters, and start reads of old
//! entries regions asked for (`fetch`). About once a second it deletes the
//! WAL segments whose entries the LSM holds durably (after checkpoint
//! records that make them unnecessary for recovery), and asks the LSM to
//! flush when too many segments are kept only for its memtable.
//!
//! Invariants: a write is answered only after the sync that covers its
//! entry returned (acknowledged ⇒ durable); a pass whose records raft does
//! not require to be durable (only the commit index moved) issues no sync;
//! no region or store borrow is held across an `.await`; a sync error never
//! returns (fail-stop in the WAL), nor does a store failure (fail-stop
//! here); a store write stall never blocks the thread: the entries stay
//! queued in their region and the loop retries after `STALL_RETRY`.

use super::fetch::spawn_fetches;
use super::region_handle::RegionHandle;
use super::snapshot::Install;
use super::Shard;
use crate::fatal::fail_stop;
use crate::runtime::{timeout, LocalNotify};
use crate::wal::Wal;
use golem_core::region::records::{entries_span, Tombstone};
use golem_core::region::PendingReady;
use golem_core::wal_index::{RecordLocation, WalIndex};
use golem_core::wal_record::{RecordKind, WalSink};
use golem_lsm::Lsm;
use golem_wire::RegionId;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long the loop waits before retrying entries the store stalled on
/// (a new proposal wakes it sooner).
const STALL_RETRY: Duration = Duration::from_millis(1);
/// How long a stopping shard waits for its regions' leadership to move to
/// other nodes before it stops anyway.
const LEADER_HANDOVER_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the loop visits every region, touched or not (a region's
/// changes normally mark it active: `RegionHandle::poke`).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often the loop considers deleting WAL segments.
const WAL_GC_INTERVAL: Duration = Duration::from_secs(1);
/// WAL segments kept only for the memtable beyond which the loop asks the
/// LSM to flush it (bounds the WAL, and so the restart time).
const WAL_SEGMENTS_BEFORE_FLUSH: u64 = 4;

/// The shard's storage, as the loop drives it.
#[derive(Debug)]
pub struct Shell {
    pub wal: Wal,
    pub store: Rc<RefCell<Lsm>>,
    /// Where each region's entries lie in the WAL.
    pub index: WalIndex,
    /// Wakes this loop (fetch tasks use it when they finish).
    pub notify: Rc<LocalNotify>,
    /// Sends Raft messages to peers on other shards and nodes.
    pub transport: Rc<super::transport::Transport>,
}

/// An `Entries` record appended since the last sync: its region, entry
/// span, offset in the pending batch and payload length.
type Appended = (RegionId, u64, u64, u64, u32);

/// The WAL, as region peers append to it: also notes where each `Entries`
/// record goes, to index it once the sync places the batch.
struct IndexingSink<'a> {
    wal: &'a mut Wal,
    appended: &'a mut Vec<Appended>,
}

impl WalSink for IndexingSink<'_> {
    fn append(&mut self, kind: RecordKind, region: RegionId, payload: &[u8]) {
        let at = self.wal.append(kind, region, payload);
        if kind == RecordKind::Entries {
            // The peer encoded this payload a moment ago: it decodes.
            let (first, last) = entries_span(payload).expect("a freshly encoded entries run");
            self.appended
                .push((region, first, last, at, payload.len() as u32));
        }
    }
}

/// Drives the shard's regions until `stopping()` is true and no work is
/// left. Regions added to or removed from the shard (`Shard::regions`) are
/// picked up at the next pass.
pub async fn run(
    shard: Rc<Shard>,
    mut shell: Shell,
    notify: Rc<LocalNotify>,
    tick: Duration,
    stopping: impl Fn() -> bool,
) -> Shell {
    let mut next_tick = Instant::now() + tick;
    let mut next_gc = Instant::now() + WAL_GC_INTERVAL;
    let mut next_merge_drive = Instant::now();
    let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
    let mut regions: Vec<Rc<RegionHandle>> = Vec::new();
    let mut regions_gen = None;
    let mut pending = Vec::new();
    let mut appended: Vec<Appended> = Vec::new();
    let mut stalled = false;
    // Regions whose received snapshot is being put into the store: their
    // `PendingReady` waits here (no `collect_ready` for them meanwhile).
    let mut installing: Vec<(Rc<RegionHandle>, PendingReady, Install)> = Vec::new();
    // Set once stopping: until then leadership is being handed over.
    let mut handover_deadline: Option<Instant> = None;
    loop {
        shard.flush_placements();
        shell.transport.send_gc_notices();
        if regions_gen != Some(shard.regions_gen.get()) {
            regions_gen = Some(shard.regions_gen.get());
            regions = shard.regions.borrow().values().cloned().collect();
        }
        let is_installing =
            |r: &Rc<RegionHandle>| installing.iter().any(|(h, _, _)| Rc::ptr_eq(h, r));
        // Only regions that are awake or were touched can have work.
        let busy = {
            let map = shard.regions.borrow();
            let active = shard.active.borrow();
            active.iter().filter_map(|id| map.get(id)).any(|r| {
                r.peer.borrow().has_ready()
                    && !is_installing(r)
                    && !shard.split.is_gated(&shard, r.peer.borrow().meta().id)
            })
        };
        if stopping() && handover_deadline.is_none() {
            handover_deadline = Some(Instant::now() + LEADER_HANDOVER_TIMEOUT);
            for r in &regions {
                let mut peer = r.peer.borrow_mut();
                if let Some(to) = peer.transfer_leadership() {
                    tracing::info!(region = %peer.meta().id, %to, "stopping: moving leadership");
                }
            }
        }
        let handing_over = handover_deadline.is_some_and(|d| Instant::now() < d)
            && regions.iter().any(|r| {
                let p = r.peer.borrow();
                p.is_leader() && p.meta().is_replicated()
            });
        if !busy || stalled {
            if !busy && stopping() && !handing_over {
                if shell.wal.has_pending() {
                    shell.wal.sync().await;
                }
                return shell;
            }
            let now = Instant::now();
            let wait = if stalled || !installing.is_empty() {
                STALL_RETRY
            } else {
                next_tick.saturating_duration_since(now)
            };
            if !wait.is_zero() {
                // Wake on a proposal or at the deadline, whichever is first.
                timeout(wait, notify.wait()).await;
            }
        }
        let now = Instant::now();
        // The regions this pass visits: every one once per sweep (a safety
        // net), else those awake or touched since the last pass.
        let visit: Vec<Rc<RegionHandle>> = if now >= next_sweep {
            next_sweep = now + SWEEP_INTERVAL;
            regions.clone()
        } else {
            let map = shard.regions.borrow();
            let active = shard.active.borrow();
            active
                .iter()
                .filter_map(|id| map.get(id).cloned())
                .collect()
        };
        if now >= next_tick {
            for r in &visit {
                r.peer.borrow_mut().tick();
            }
            next_tick = now + tick;
        }
        {
            let mut store = shell.store.borrow_mut();
            let mut sink = IndexingSink {
                wal: &mut shell.wal,
                appended: &mut appended,
            };
            super::merge::report_sources(&shard, &visit);
            for r in &visit {
                if installing.iter().any(|(h, _, _)| Rc::ptr_eq(h, r))
                    || shard.split.is_gated(&shard, r.peer.borrow().meta().id)
                {
                    continue;
                }
                r.request_reads();
                if let Some(p) = r.peer.borrow_mut().collect_ready(&mut sink, &mut *store) {
                    pending.push((r.clone(), p));
                }
            }
        }
        // Records that need no sync (a commit-index-only hard state) stay
        // buffered and ride on the next sync.
        // (An uninitialized replica's `Ready` may ask for a sync while it
        // wrote nothing: then there is nothing to sync.)
        if pending.iter().any(|(_, p)| p.must_sync()) && shell.wal.has_pending() {
            shell.wal.sync().await;
            let (segment, base) = shell.wal.last_batch().expect("synced");
            for (region, first, last, at, payload_bytes) in appended.drain(..) {
                let location = RecordLocation {
                    segment,
                    offset: base + at,
                    payload_bytes,
                };
                shell.index.insert(region, first, last, location);
            }
        }
        stalled = false;
        let mut finished: Vec<(Rc<RegionHandle>, PendingReady)> = Vec::new();
        for (r, p) in pending.drain(..) {
            match p.snapshot() {
                // Its records are durable; now its data goes into the store.
                Some((index, term)) => {
                    let region = r.peer.borrow().meta().id;
                    let install = shard.snapshots.start_install((region, index, term));
                    installing.push((r, p, install));
                }
                None => finished.push((r, p)),
            }
        }
        {
            let mut store = shell.store.borrow_mut();
            let mut i = 0;
            while i < installing.len() {
                if shard
                    .snapshots
                    .poll_install(&mut installing[i].2, &mut store)
                {
                    let (r, p, _) = installing.swap_remove(i);
                    finished.push((r, p));
                } else {
                    i += 1;
                }
            }
        }
        let mut removed = Vec::new();
        {
            let mut store = shell.store.borrow_mut();
            for (r, p) in finished {
                let mut peer = r.peer.borrow_mut();
                let was_installing = p.snapshot().is_some();
                let out = peer.on_persisted(p, &mut *store);
                if let Some(reason) = peer.failure() {
                    fail_stop("applying to the shard's LSM", &reason);
                }
                stalled |= peer.is_stalled();
                let fetches = peer.take_fetch_requests();
                let wants_snapshot = peer.take_snapshot_request();
                let split = (peer.take_split_regions(), peer.is_leader());
                let merged = peer.take_merged_sources();
                if peer.merge_state().is_some() {
                    shard.merge.note_prepared(peer.meta().id);
                }
                let meta = (!out.messages.is_empty()).then(|| peer.meta().clone());
                let id = peer.meta().id;
                if peer.is_removed() {
                    removed.push(id);
                }
                drop(peer);
                if !split.0.is_empty() {
                    // Before the parent's next metadata record (split.rs).
                    super::split::create_regions(&shard, &mut shell.wal, split.0, split.1);
                    shard.announce(id);
                }
                if !merged.is_empty() {
                    super::merge::on_merged(&shard, id, merged);
                }
                if wants_snapshot {
                    shard.snapshots.prepare(&r, &mut store);
                }
                if let Some(meta) = meta {
                    shell
                        .transport
                        .send(&meta, &r.learned_peers(), out.messages);
                }
                if !fetches.is_empty() {
                    spawn_fetches(&r, fetches, &shell.index, shell.wal.dir(), &shell.notify);
                }
                for (token, result) in out.finished {
                    r.finish(token, result);
                }
                r.release_reads();
                if was_installing {
                    shard.announce(id);
                }
            }
        }
        // Replicas a member told they were removed while they were away:
        // delete their range, then the same tombstone as below.
        let doomed: Vec<RegionId> = shard.doomed.borrow_mut().drain().collect();
        for id in doomed {
            if is_installing_id(&installing, id) {
                shard.doomed.borrow_mut().insert(id);
                continue;
            }
            let Some(r) = shard.regions.borrow().get(&id).cloned() else {
                continue;
            };
            let p = r.peer.borrow();
            if p.is_initialized() {
                // Everything it applied must be durable before its
                // tombstone hides its log from recovery (writes into a
                // split-off range live only in its log until a flush:
                // golem-sim FINDINGS #12).
                let mut store = shell.store.borrow_mut();
                if store.persisted_applied(id) < p.applied_index() {
                    if let Err(e) = store.flush() {
                        tracing::debug!(%id, error = %e, "flush before destroying a stale replica deferred");
                    }
                    shard.doomed.borrow_mut().insert(id);
                    stalled = true;
                    continue;
                }
                drop(store);
                let mut batch = golem_lsm::WriteBatch::new();
                batch.delete_range(p.meta().start.clone(), p.meta().end.clone());
                let at = (id, p.applied_index());
                match shell.store.borrow_mut().apply(batch, at) {
                    Ok(()) => {}
                    Err(golem_lsm::LsmError::WriteStall { .. }) => {
                        shard.doomed.borrow_mut().insert(id);
                        stalled = true;
                        continue;
                    }
                    Err(e) => fail_stop("deleting a stale replica's data", &e.to_string()),
                }
            }
            drop(p);
            removed.push(id);
        }
        if now >= next_merge_drive {
            next_merge_drive = now + super::merge::DRIVE_INTERVAL;
            super::merge::destroy_merged(&shard, &mut shell.wal);
            super::merge::drive(&shard);
        }
        for id in removed {
            // Its data went with the entry that removed it; the tombstone
            // makes recovery forget its records (it rides on the next sync;
            // if lost, recovery replays the removal and writes it again).
            // It keeps the entry that removed it, if this replica applied
            // one: its store answers a member that still counts it with
            // that entry (`transport::deliver`, golem-sim FINDINGS.md #9).
            let tombstone = shard
                .regions
                .borrow()
                .get(&id)
                .map(|r| {
                    let p = r.peer.borrow();
                    Tombstone {
                        peer: p.config().peer,
                        removed_by: p.removed_by(),
                    }
                })
                .expect("a removed region is still hosted here");
            shell.wal.append(
                RecordKind::Tombstone,
                id,
                &golem_core::region::records::encode_tombstone(&tombstone),
            );
            shard.tombstones.borrow_mut().insert(id, tombstone);
            shard.remove_region(id);
            tracing::info!(region = %id, "replica removed from this shard");
        }
        // Sleeping regions with nothing to do leave the active set until
        // something touches them again.
        {
            let mut active = shard.active.borrow_mut();
            for r in &visit {
                let p = r.peer.borrow();
                let id = p.meta().id;
                if p.is_hibernating() && !p.has_ready() && !is_installing_id(&installing, id) {
                    active.remove(&id);
                } else if shard.regions.borrow().contains_key(&id) {
                    active.insert(id);
                }
            }
        }
        if now >= next_gc {
            next_gc = now + WAL_GC_INTERVAL;
            let parked: Vec<RegionId> = installing
                .iter()
                .map(|(h, _, _)| h.peer.borrow().meta().id)
                .collect();
            // While a snapshot is being installed, its region's only
            // metadata records may lie in any segment (a new replica has
            // no entries to keep them) and it writes no checkpoint: delete
            // nothing until the install is done.
            if parked.is_empty() {
                collect_wal_garbage(&regions, &parked, &shard.tombstones, &mut shell).await;
            }
            shard.snapshots.collect_garbage(|region| {
                shard
                    .regions
                    .borrow()
                    .get(&region)
                    .filter(|_| !parked.contains(&region))
                    .map(|r| r.peer.borrow().applied_index().get())
            });
        }
    }
}

fn is_installing_id(
    installing: &[(Rc<RegionHandle>, PendingReady, Install)],
    id: RegionId,
) -> bool {
    installing
        .iter()
        .any(|(h, _, _)| h.peer.borrow().meta().id == id)
}

/// Deletes the WAL segments that recovery no longer needs, and asks the
/// LSM to flush when many segments wait only for its memtable.
async fn collect_wal_garbage(
    regions: &[Rc<RegionHandle>],
    parked: &[RegionId],
    tombstones: &RefCell<std::collections::HashMap<RegionId, Tombstone>>,
    shell: &mut Shell,
) {
    let active = shell.wal.active_segment();
    let first = shell.wal.first_segment();
    if active <= first {
        return;
    }
    // What each region needs kept: entries after its durable applied index
    // (recovery replays them), and for a leader, entries its followers
    // have not replicated yet.
    let keep_after: std::collections::HashMap<RegionId, golem_wire::LogIndex> = {
        let mut store = shell.store.borrow_mut();
        regions
            .iter()
            .filter(|r| !parked.contains(&r.peer.borrow().meta().id))
            .map(|r| {
                let peer = r.peer.borrow();
                let id = peer.meta().id;
                let mut keep = store.persisted_applied(id);
                if let Some(floor) = peer.log_retention_floor() {
                    keep = keep.min(golem_wire::LogIndex(floor));
                }
                (id, keep)
            })
            .collect()
    };
    let needed = {
        let mut store = shell.store.borrow_mut();
        shell
            .index
            .first_needed(active, |region| match keep_after.get(&region) {
                Some(keep) => *keep,
                // Installing a snapshot: keep what the store does not hold yet.
                None if parked.contains(&region) => store.persisted_applied(region),
                // Not hosted any more (removed): nothing of it is needed.
                None => golem_wire::LogIndex(u64::MAX),
            })
    };
    if needed > first {
        for r in regions {
            let mut peer = r.peer.borrow_mut();
            let Some(&keep) = keep_after.get(&peer.meta().id) else {
                continue;
            };
            peer.write_checkpoint(keep, &mut shell.wal);
        }
        // Tombstones outlive the segments that held them, except for a
        // region hosted here again (re-added under a new peer id): a
        // tombstone after its records would hide them from recovery.
        let hosted: std::collections::HashSet<RegionId> =
            regions.iter().map(|r| r.peer.borrow().meta().id).collect();
        for (region, t) in tombstones.borrow().iter() {
            if hosted.contains(region) {
                continue;
            }
            shell.wal.append(
                RecordKind::Tombstone,
                *region,
                &golem_core::region::records::encode_tombstone(t),
            );
        }
        shell.wal.delete_segments_before(needed).await;
        shell.index.forget_before(needed);
    }
    if active - needed.max(first) >= WAL_SEGMENTS_BEFORE_FLUSH {
        // A stall means a flush is already under way; a background failure
        // surfaces on the next apply.
        if let Err(e) = shell.store.borrow_mut().flush() {
            tracing::debug!(error = %e, "LSM flush for WAL retention deferred");
        }
    }
}
