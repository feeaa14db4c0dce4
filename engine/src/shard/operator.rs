//! Executing the PD's operator steps on a region leader.
//!
//! Owns what a region leader does with the `Operator` a region heartbeat's
//! answer carries (the node's PD link hands it to the shard hosting the
//! region: `ShardMsg::Operator`). A step becomes the same request
//! `golem ctl` sends for it (`cli/membership.rs`, `cli/split.rs`), run
//! through the same paths (`RegionHandle::write`, `transfer_leader`):
//! - `AddLearner` → `ChangePeers` AddLearner of the given peer;
//! - `PromoteLearner` → `ChangePeers` AddVoter (`ServerBusy` while the
//!   learner catches up: the PD re-sends the step on a later heartbeat);
//! - `RemovePeer` → `ChangePeers` Remove, or, when the peer is this leader,
//!   a leadership transfer to another voter first (the new leader is then
//!   handed the step by the PD);
//! - `TransferLeader` → a leadership transfer;
//! - `Split` → `Split` with the PD's key and ids;
//! - `ReplacePeer` → one `ChangePeers` with AddVoter of the learner `add`
//!   and Remove of `remove` (a joint change: balance-shard's move of a
//!   replica to another shard of its store), or, when `remove` is this
//!   leader, a leadership transfer to another voter first;
//! - `Merge { target }` → `shard/merge.rs`: move the leadership beside the
//!   target's leader if needed, then `PrepareMerge` (the shard's merge
//!   driver commits or rolls it back).
//!
//! Invariants: a step runs only on the region's leader here and only at
//! the operator's epoch exactly (a stale operator is ignored: the PD
//! re-plans from the next heartbeat); at most one step per region runs on
//! the shard (another operator for the region meanwhile is ignored); a step
//! runs in its own task, bounded by `STEP_TIMEOUT`, so neither the raft
//! loop nor the PD link ever waits for it. Nothing here is durable: a
//! restart forgets running steps, and the PD re-sends them.

use super::region_handle::RegionHandle;
use super::Shard;
use crate::runtime::{spawn_local, timeout};
use golem_core::region::{PeerRole, RegionMeta};
use golem_wire::pd::{Operator, OperatorStep};
use golem_wire::{GolemError, PeerChange, PeerChangeKind, PeerId, RegionId, RequestBody, StoreId};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Longest a step may run before its region takes another (a proposal
/// normally applies within a few Raft rounds; a transfer waits up to 5 s).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a step asks of the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Propose this request and wait until it applied.
    Propose(RequestBody),
    /// Move the leadership to voter `to` (on `store`; a store may hold two
    /// peers of the region while one moves between its shards).
    TransferLeader { to: PeerId, store: StoreId },
    /// Prepare merging this region into `target` (`shard/merge.rs`).
    Merge { target: RegionId },
}

/// Why a step is not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The operator was planned at another epoch (or for another region).
    Stale,
    /// Its effect is already there (the PD sees it in the next heartbeat).
    Done,
    /// It cannot apply to the region as it is (a bug or a race in the PD).
    Invalid(String),
}

/// The operators of a shard's regions: the step running for each, and the
/// last one that ended in an error (its repeats are logged at debug).
#[derive(Debug, Default)]
pub struct Operators {
    slots: std::cell::RefCell<HashMap<RegionId, Slot>>,
}

#[derive(Debug)]
struct Slot {
    /// The step's operator id and step.
    op: (u64, OperatorStep),
    running: bool,
}

impl Operators {
    /// Forgets a region that left the shard.
    pub fn forget(&self, region: RegionId) {
        self.slots.borrow_mut().remove(&region);
    }

    /// Whether a step of `region` is running.
    pub fn is_running(&self, region: RegionId) -> bool {
        self.slots.borrow().get(&region).is_some_and(|s| s.running)
    }
}

/// A key inside the region to route an admin request by (non-empty, as
/// requests require; membership changes do not check it against the range).
fn region_key(meta: &RegionMeta) -> Vec<u8> {
    if meta.start.is_empty() {
        vec![0]
    } else {
        meta.start.clone()
    }
}

fn change(meta: &RegionMeta, kind: PeerChangeKind, p: PeerChange) -> Action {
    Action::Propose(RequestBody::ChangePeers {
        key: region_key(meta),
        changes: vec![PeerChange { kind, ..p }],
    })
}

/// What leader `me` of the region described by `meta` should do for `op`.
/// Pure: the translation the shard runs, and the one its tests check.
pub fn plan(op: &Operator, meta: &RegionMeta, me: PeerId) -> Result<Action, Skip> {
    if op.region != meta.id || op.epoch != meta.epoch {
        return Err(Skip::Stale);
    }
    let member = |id: PeerId| meta.peer(id);
    match &op.step {
        OperatorStep::AddLearner { peer } => {
            if member(peer.id).is_some() {
                return Err(Skip::Done);
            }
            Ok(change(
                meta,
                PeerChangeKind::AddLearner,
                PeerChange {
                    kind: PeerChangeKind::AddLearner,
                    peer: peer.id,
                    store: peer.store,
                    shard: peer.shard,
                },
            ))
        }
        OperatorStep::PromoteLearner { peer } => {
            let Some(p) = member(*peer) else {
                return Err(Skip::Invalid(format!("peer {peer} is not a member")));
            };
            if p.role == PeerRole::Voter {
                return Err(Skip::Done);
            }
            Ok(change(meta, PeerChangeKind::AddVoter, as_change(p)))
        }
        OperatorStep::RemovePeer { peer } => {
            let Some(p) = member(*peer) else {
                return Err(Skip::Done);
            };
            if *peer != me {
                return Ok(change(meta, PeerChangeKind::Remove, as_change(p)));
            }
            // The leader cannot remove itself: it hands over first.
            match meta
                .peers
                .iter()
                .find(|q| q.id != me && q.role == PeerRole::Voter)
            {
                Some(q) => Ok(Action::TransferLeader {
                    to: q.id,
                    store: q.store,
                }),
                None => Err(Skip::Invalid(format!(
                    "peer {peer} is the region's only voter"
                ))),
            }
        }
        OperatorStep::TransferLeader { to } => {
            if *to == me {
                return Err(Skip::Done);
            }
            match member(*to) {
                Some(p) if p.role == PeerRole::Voter => Ok(Action::TransferLeader {
                    to: p.id,
                    store: p.store,
                }),
                Some(_) => Err(Skip::Invalid(format!("peer {to} is not a voter"))),
                None => Err(Skip::Invalid(format!("peer {to} is not a member"))),
            }
        }
        OperatorStep::Split {
            key,
            new_region,
            new_peers,
        } => {
            if !meta.contains(key) || key.as_slice() == meta.start.as_slice() {
                return Err(Skip::Invalid(
                    "the split key is not strictly inside the region".into(),
                ));
            }
            Ok(Action::Propose(RequestBody::Split {
                key: key.clone(),
                split_key: key.clone(),
                new_region: *new_region,
                new_peers: new_peers.clone(),
            }))
        }
        OperatorStep::Merge { target } => {
            if *target == meta.id {
                return Err(Skip::Invalid("a region cannot merge into itself".into()));
            }
            Ok(Action::Merge { target: *target })
        }
        OperatorStep::ReplacePeer { add, remove } => plan_replace(meta, me, *add, *remove),
    }
}

/// `ReplacePeer`: one joint change that promotes the learner `add` and
/// removes `remove` (a replica moving between the shards of its store:
/// the store never holds two votes of the region at once). The leader
/// does not remove itself: when it is `remove`, it hands over first.
fn plan_replace(
    meta: &RegionMeta,
    me: PeerId,
    add: PeerId,
    remove: PeerId,
) -> Result<Action, Skip> {
    let Some(new) = meta.peer(add) else {
        return Err(Skip::Invalid(format!("peer {add} is not a member")));
    };
    let old = meta.peer(remove);
    match (new.role, old) {
        (PeerRole::Voter, None) => return Err(Skip::Done),
        // The joint configuration is entered; raft leaves it on its own.
        (PeerRole::IncomingVoter, _) => return Err(Skip::Done),
        (PeerRole::DemotingVoter, _) => {
            return Err(Skip::Invalid(format!("peer {add} is being removed")))
        }
        _ => {}
    }
    if remove == me {
        return match meta
            .peers
            .iter()
            .find(|q| q.id != me && q.role == PeerRole::Voter)
        {
            Some(q) => Ok(Action::TransferLeader {
                to: q.id,
                store: q.store,
            }),
            None => Err(Skip::Invalid(format!(
                "peer {remove} is the region's only voter"
            ))),
        };
    }
    let mut changes = Vec::new();
    if new.role == PeerRole::Learner {
        changes.push(PeerChange {
            kind: PeerChangeKind::AddVoter,
            ..as_change(new)
        });
    }
    if let Some(old) = old {
        changes.push(PeerChange {
            kind: PeerChangeKind::Remove,
            ..as_change(old)
        });
    }
    Ok(Action::Propose(RequestBody::ChangePeers {
        key: region_key(meta),
        changes,
    }))
}

fn as_change(p: &golem_core::region::PeerMeta) -> PeerChange {
    PeerChange {
        kind: PeerChangeKind::AddVoter,
        peer: p.id,
        store: p.store,
        shard: p.shard,
    }
}

/// Runs `op` if this shard leads its region at its epoch and no step of
/// the region is running; returns at once (the step runs in a task).
pub fn start(shard: &Rc<Shard>, op: Operator) {
    let region = op.region;
    if shard.operators.is_running(region) {
        tracing::debug!(operator = op.id, %region, "a step of the region is running; operator ignored");
        return;
    }
    let Some(handle) = shard.regions.borrow().get(&region).cloned() else {
        tracing::debug!(operator = op.id, %region, "operator for a region not hosted here");
        return;
    };
    let planned = {
        let peer = handle.peer.borrow();
        if !peer.is_leader() {
            tracing::debug!(operator = op.id, %region, "operator ignored: not the leader");
            return;
        }
        plan(&op, peer.meta(), peer.config().peer)
    };
    let action = match planned {
        Ok(a) => a,
        Err(Skip::Stale) => {
            tracing::debug!(operator = op.id, %region, epoch = ?op.epoch, "stale operator ignored");
            return;
        }
        Err(Skip::Done) => {
            tracing::debug!(operator = op.id, %region, step = ?op.step, "operator step already done");
            return;
        }
        Err(Skip::Invalid(why)) => {
            tracing::info!(operator = op.id, %region, step = ?op.step, reason = %why, "operator step refused");
            return;
        }
    };
    let key = (op.id, op.step.clone());
    let repeat = {
        let mut slots = shard.operators.slots.borrow_mut();
        let repeat = slots.get(&region).is_some_and(|s| s.op == key);
        slots.insert(
            region,
            Slot {
                op: key,
                running: true,
            },
        );
        repeat
    };
    if repeat {
        tracing::debug!(operator = op.id, %region, step = ?op.step, "retrying operator step");
    } else {
        tracing::info!(operator = op.id, %region, step = ?op.step, "executing operator step");
    }
    let shard = shard.clone();
    spawn_local(async move {
        let result = timeout(STEP_TIMEOUT, run(&shard, &handle, action))
            .await
            .unwrap_or(Err(GolemError::DeadlineExceeded));
        let mut slots = shard.operators.slots.borrow_mut();
        match &result {
            // Done: the next step is new.
            Ok(()) => {
                slots.remove(&region);
            }
            Err(_) => {
                if let Some(s) = slots.get_mut(&region) {
                    s.running = false;
                }
            }
        }
        drop(slots);
        match result {
            Ok(()) => tracing::info!(operator = op.id, %region, step = ?op.step, "operator step done"),
            Err(GolemError::ServerBusy { .. }) => tracing::debug!(
                operator = op.id, %region, step = ?op.step,
                "operator step busy (learner catching up or another change in flight); the PD re-sends it"
            ),
            Err(e) if repeat => tracing::debug!(operator = op.id, %region, error = %e, "operator step failed again"),
            Err(e) => tracing::info!(operator = op.id, %region, step = ?op.step, error = %e, "operator step failed"),
        }
    })
    .detach();
}

async fn run(shard: &Shard, handle: &RegionHandle, action: Action) -> Result<(), GolemError> {
    match action {
        Action::Merge { target } => super::merge::run_step(shard, handle, target).await,
        Action::Propose(body) => handle.write(body).await.map(|_| ()),
        Action::TransferLeader { to, .. } => handle.transfer_leader_to(to).await.map(|_| ()),
    }
}

#[cfg(test)]
mod tests;
