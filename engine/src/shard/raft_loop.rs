//! The shard's raft loop: one timer, one WAL sync per pass, for all regions.
//!
//! Each pass: tick regions when the tick is due; collect `Ready` from every
//! region into the shard's WAL (applying entries that are already committed
//! and durable into the shard's LSM); make it durable with ONE sync (group
//! commit: every write gathered during the previous sync rides on this one);
//! then advance every region, apply committed entries and answer their
//! waiters. About once a second it deletes the WAL segments whose entries
//! the LSM holds durably (after checkpoint records that make them
//! unnecessary for recovery), and asks the LSM to flush when too many
//! segments are kept only for its memtable.
//!
//! Invariants: a write is answered only after the sync that covers its
//! entry returned (acknowledged ⇒ durable); a pass whose records raft does
//! not require to be durable (only the commit index moved) issues no sync;
//! no region or store borrow is held across an `.await`; a sync error never
//! returns (fail-stop in the WAL), nor does a store failure (fail-stop
//! here); a store write stall never blocks the thread: the entries stay
//! queued in their region and the loop retries after `STALL_RETRY`.

use super::region_handle::RegionHandle;
use crate::fatal::fail_stop;
use crate::runtime::{timeout, LocalNotify};
use crate::wal::Wal;
use golem_core::wal_retention::WalRetention;
use golem_lsm::Lsm;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long the loop waits before retrying entries the store stalled on
/// (a new proposal wakes it sooner).
const STALL_RETRY: Duration = Duration::from_millis(1);
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
    /// What each WAL segment holds, for deleting them.
    pub retention: WalRetention,
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
    let mut stalled = false;
    loop {
        let busy = regions.iter().any(|r| r.peer.borrow().has_ready());
        if !busy || stalled {
            if !busy && stopping() {
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
            for r in &regions {
                if let Some(p) = r
                    .peer
                    .borrow_mut()
                    .collect_ready(&mut shell.wal, &mut *store)
                {
                    pending.push((r.clone(), p));
                }
            }
        }
        // Records that need no sync (a commit-index-only hard state) stay
        // buffered and ride on the next sync.
        if pending.iter().any(|(_, p)| p.must_sync()) {
            shell.wal.sync().await;
        }
        let segment = shell.wal.active_segment();
        stalled = false;
        {
            let mut store = shell.store.borrow_mut();
            for (r, p) in pending.drain(..) {
                let mut peer = r.peer.borrow_mut();
                shell
                    .retention
                    .note(peer.meta().id, segment, peer.last_index().get());
                let out = peer.on_persisted(p, &mut *store);
                if let Some(reason) = peer.failure() {
                    fail_stop("applying to the shard's LSM", &reason);
                }
                stalled |= peer.is_stalled();
                drop(peer);
                for (token, result) in out.finished {
                    r.finish(token, result);
                }
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
    let needed = {
        let mut store = shell.store.borrow_mut();
        shell
            .retention
            .first_needed(active, |region| store.persisted_applied(region))
    };
    if needed > first {
        {
            let mut store = shell.store.borrow_mut();
            for r in regions {
                let mut peer = r.peer.borrow_mut();
                let persisted = store.persisted_applied(peer.meta().id);
                peer.write_checkpoint(persisted, &mut shell.wal);
            }
        }
        shell.wal.delete_segments_before(needed).await;
        shell.retention.forget_before(needed);
    }
    if active - needed.max(first) >= WAL_SEGMENTS_BEFORE_FLUSH {
        // A stall means a flush is already under way; a background failure
        // surfaces on the next apply.
        if let Err(e) = shell.store.borrow_mut().flush() {
            tracing::debug!(error = %e, "LSM flush for WAL retention deferred");
        }
    }
}
