//! A region hosted by this shard: its peer and the requests waiting on it.
//!
//! Owns the link between request tasks and the raft loop. Invariants: the
//! `RefCell` borrows are never held across an `.await` (the raft loop and
//! request tasks interleave on one thread); every proposal's waiter is
//! answered exactly once (by the raft loop, or dropped with the region,
//! which the waiting task reports as `ShuttingDown`).

use crate::runtime::LocalNotify;
use golem_core::region::{ProposalToken, RegionPeer};
use golem_lsm::Lsm;
use golem_wire::{GolemError, RequestBody, ResponseBody};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use tokio::sync::oneshot;

/// Result of a request against a region.
pub type RegionResult = Result<ResponseBody, GolemError>;

/// One region on this shard.
pub struct RegionHandle {
    pub peer: RefCell<RegionPeer>,
    waiters: RefCell<HashMap<ProposalToken, oneshot::Sender<RegionResult>>>,
    next_token: Cell<ProposalToken>,
    /// Wakes the shard's raft loop when a proposal is made.
    raft_loop: Rc<LocalNotify>,
    /// The shard's store, which reads are served from.
    store: Rc<RefCell<Lsm>>,
}

impl std::fmt::Debug for RegionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionHandle")
            .field("region", &self.peer.borrow().meta().id)
            .field("waiters", &self.waiters.borrow().len())
            .finish()
    }
}

impl RegionHandle {
    pub fn new(
        peer: RegionPeer,
        raft_loop: Rc<LocalNotify>,
        store: Rc<RefCell<Lsm>>,
    ) -> Rc<RegionHandle> {
        Rc::new(RegionHandle {
            peer: RefCell::new(peer),
            waiters: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            raft_loop,
            store,
        })
    }

    /// Proposes a write and waits until it is durable and applied.
    pub async fn write(&self, body: RequestBody) -> RegionResult {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let (tx, rx) = oneshot::channel();
        self.peer.borrow_mut().propose(body, token)?;
        self.waiters.borrow_mut().insert(token, tx);
        self.raft_loop.notify();
        rx.await.unwrap_or(Err(GolemError::ShuttingDown))
    }

    /// Serves a read from the applied state.
    pub fn read(&self, body: &RequestBody) -> RegionResult {
        self.peer.borrow().read(body, &mut *self.store.borrow_mut())
    }

    /// Answers the waiter of `token` (the raft loop calls this).
    pub fn finish(&self, token: ProposalToken, result: RegionResult) {
        if let Some(tx) = self.waiters.borrow_mut().remove(&token) {
            // The requester may have gone (connection closed): nothing to do.
            let _ = tx.send(result);
        }
    }
}
