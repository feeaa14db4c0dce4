//! The shard's raft loop: one timer, one WAL sync per pass, for all regions.
//!
//! Each pass: tick regions when the tick is due; collect `Ready` from every
//! region into the shard's WAL; make it durable with ONE sync (group commit:
//! every write gathered during the previous sync rides on this one); then
//! advance every region, apply committed entries and answer their waiters.
//!
//! Invariants: a write is answered only after the sync that covers its
//! entry returned (acknowledged ⇒ durable); a pass whose records raft does
//! not require to be durable (only the commit index moved) issues no sync; no region borrow is held across
//! the sync's `.await`; a sync error never returns (fail-stop in the WAL).

use super::region_handle::RegionHandle;
use crate::runtime::{timeout, LocalNotify};
use crate::wal::Wal;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Drives `regions` until `stopping()` is true and no work is left.
pub async fn run(
    regions: Vec<Rc<RegionHandle>>,
    mut wal: Wal,
    notify: Rc<LocalNotify>,
    tick: Duration,
    stopping: impl Fn() -> bool,
) -> Wal {
    let mut next_tick = Instant::now() + tick;
    let mut pending = Vec::with_capacity(regions.len());
    loop {
        let busy = regions.iter().any(|r| r.peer.borrow().has_ready());
        if !busy {
            if stopping() {
                if wal.has_pending() {
                    wal.sync().await;
                }
                return wal;
            }
            let now = Instant::now();
            if now < next_tick {
                // Wake on a proposal or at the next tick, whichever is first.
                timeout(next_tick - now, notify.wait()).await;
            }
        }
        let now = Instant::now();
        if now >= next_tick {
            for r in &regions {
                r.peer.borrow_mut().tick();
            }
            next_tick = now + tick;
        }
        for r in &regions {
            if let Some(p) = r.peer.borrow_mut().collect_ready(&mut wal) {
                pending.push((r.clone(), p));
            }
        }
        // Records that need no sync (a commit-index-only hard state) stay
        // buffered and ride on the next sync.
        if pending.iter().any(|(_, p)| p.must_sync()) {
            wal.sync().await;
        }
        for (r, p) in pending.drain(..) {
            let out = r.peer.borrow_mut().on_persisted(p);
            for (token, result) in out.finished {
                r.finish(token, result);
            }
        }
    }
}
