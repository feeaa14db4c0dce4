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
use crate::fatal::fail_stop;
use crate::runtime::{timeout, LocalNotify};
use crate::wal::Wal;
use golem_core::region::records::entries_span;
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

/// Drives `regions` until `stopping()` is true and no work is left.
pub async fn run(
    regions: Vec<Rc<RegionHandle>>,
    mut shell: Shell,
    notify: Rc<LocalNotify>,
    tick: Duration,
    stopping: impl Fn() -> bool,
) -> Shell {
    let mut next_tick = Instant::now() + tick;
    let mut next_gc = Instant::now() + WAL_GC_INTERVAL;
    let mut pending = Vec::with_capacity(regions.len());
    let mut appended: Vec<Appended> = Vec::new();
    let mut stalled = false;
    // Set once stopping: until then leadership is being handed over.
    let mut handover_deadline: Option<Instant> = None;
    loop {
        let busy = regions.iter().any(|r| r.peer.borrow().has_ready());
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
                p.is_leader() && p.meta().peers.len() > 1
            });
        if !busy || stalled {
            if !busy && stopping() && !handing_over {
                if shell.wal.has_pending() {
                    shell.wal.sync().await;
                }
                return shell;
            }
            let now = Instant::now();
            let wait = if stalled {
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
        if now >= next_tick {
            for r in &regions {
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
            for r in &regions {
                r.request_reads();
                if let Some(p) = r.peer.borrow_mut().collect_ready(&mut sink, &mut *store) {
                    pending.push((r.clone(), p));
                }
            }
        }
        // Records that need no sync (a commit-index-only hard state) stay
        // buffered and ride on the next sync.
        if pending.iter().any(|(_, p)| p.must_sync()) {
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
        {
            let mut store = shell.store.borrow_mut();
            for (r, p) in pending.drain(..) {
                let mut peer = r.peer.borrow_mut();
                let out = peer.on_persisted(p, &mut *store);
                if let Some(reason) = peer.failure() {
                    fail_stop("applying to the shard's LSM", &reason);
                }
                stalled |= peer.is_stalled();
                let fetches = peer.take_fetch_requests();
                let meta = (!out.messages.is_empty()).then(|| peer.meta().clone());
                drop(peer);
                if let Some(meta) = meta {
                    shell.transport.send(&meta, out.messages);
                }
                if !fetches.is_empty() {
                    spawn_fetches(&r, fetches, &shell.index, shell.wal.dir(), &shell.notify);
                }
                for (token, result) in out.finished {
                    r.finish(token, result);
                }
                r.release_reads();
            }
        }
        if now >= next_gc {
            next_gc = now + WAL_GC_INTERVAL;
            collect_wal_garbage(&regions, &mut shell).await;
        }
    }
}

/// Deletes the WAL segments that recovery no longer needs, and asks the
/// LSM to flush when many segments wait only for its memtable.
async fn collect_wal_garbage(regions: &[Rc<RegionHandle>], shell: &mut Shell) {
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
        shell.index.first_needed(active, |region| {
            keep_after
                .get(&region)
                .copied()
                .unwrap_or_else(|| store.persisted_applied(region))
        })
    };
    if needed > first {
        for r in regions {
            let mut peer = r.peer.borrow_mut();
            let keep = keep_after[&peer.meta().id];
            peer.write_checkpoint(keep, &mut shell.wal);
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
