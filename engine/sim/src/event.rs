//! The simulator's events and its queue: virtual time in milliseconds,
//! ties broken by insertion order.
//!
//! Owns the event vocabulary and the order they run in. Invariants: events
//! pop in (time, insertion) order, so a run depends only on the seed; time
//! never goes back; a node event carries the node's incarnation and is void
//! if the node crashed since it was queued.

use crate::node::Pairs;
use golem_core::raft_log::FetchRequest;
use golem_wire::{GolemError, PeerId, RegionId, RequestBody, ResponseBody};
use raft::eraftpb::Message;
use std::collections::BTreeMap;

/// The data streamed with a `MsgSnapshot`, and the sender's incarnation
/// (the outcome is reported to it).
#[derive(Clone, Debug)]
pub struct SnapshotData {
    pub from_inc: u64,
    pub pairs: Pairs,
}

/// One thing that happens at one instant.
#[derive(Debug)]
pub enum Event {
    /// A node's clock ticks every region.
    Tick {
        node: usize,
        inc: u64,
    },
    /// A node's raft loop runs a pass (collect every `Ready`).
    Pass {
        node: usize,
        inc: u64,
    },
    /// A node's WAL sync covering records `[..upto]` returns.
    SyncDone {
        node: usize,
        inc: u64,
        upto: usize,
    },
    /// A raft message arrives. A `MsgSnapshot` carries its data (the
    /// shell streams it ahead of the message).
    Raft {
        from: usize,
        to: usize,
        region: RegionId,
        msg: Message,
        snap: Option<SnapshotData>,
        /// The sender's `conf_ver` (the shell's `RegionMessage::epoch`):
        /// a member answers a non-member at an older one with a `Gc`.
        conf_ver: u64,
    },
    /// A member's notice to peer `to_peer` of `region` on `to` that it is
    /// no longer a member (TiKV's tombstone message): sent at `conf_ver`.
    Gc {
        from: usize,
        to: usize,
        region: RegionId,
        to_peer: PeerId,
        conf_ver: u64,
    },
    /// A removed replica's node answers a message to it: the entry
    /// `(index, term)` that removed `from_peer` is committed (the shell's
    /// `removed_by` notice to `to_peer` on `to`).
    Removed {
        from: usize,
        to: usize,
        region: RegionId,
        from_peer: PeerId,
        to_peer: PeerId,
        index: u64,
        term: u64,
    },
    /// A node's snapshot data is in its store: the parked `Ready` of
    /// `region` finishes.
    SnapshotInstalled {
        node: usize,
        inc: u64,
        region: RegionId,
    },
    /// How sending a snapshot to `to` went, back at the leader.
    SnapshotStatus {
        node: usize,
        inc: u64,
        region: RegionId,
        to: PeerId,
        ok: bool,
    },
    /// The operator's next membership step.
    Operator,
    /// The operator gives up waiting for its request `op` (its answers
    /// come as `Response`s to `OPERATOR`).
    OperatorTimeout {
        op: u64,
    },
    /// A crash aimed at a moment (mid snapshot install, right after a
    /// removal): void if the node restarted since.
    CrashNode {
        node: usize,
        inc: u64,
    },
    /// A read of old entries from a node's WAL completes.
    Fetched {
        node: usize,
        inc: u64,
        region: RegionId,
        req: FetchRequest,
    },
    /// A client's request arrives at a node.
    Request {
        node: usize,
        client: usize,
        op: u64,
        /// Index of the key in the run's key set (names its region).
        key: usize,
        body: RequestBody,
    },
    /// A node's answer arrives at a client. `proposed`: the request
    /// reached the Raft log (so an error leaves the outcome unknown).
    Response {
        client: usize,
        op: u64,
        node: usize,
        result: Result<ResponseBody, GolemError>,
        proposed: bool,
        hint: Option<usize>,
    },
    ClientTimeout {
        client: usize,
        op: u64,
    },
    /// A client starts its next operation.
    ClientNext {
        client: usize,
    },
    /// A client retries its operation after a refusal.
    ClientRetry {
        client: usize,
        op: u64,
    },
    /// The next discrete fault (fault phase only).
    Fault,
    Restart {
        node: usize,
    },
    HealPartition {
        id: u64,
    },
    Flush {
        node: usize,
    },
    Checkpoint {
        node: usize,
    },
    /// Faults stop: links heal, down nodes restart.
    EndFaults,
    /// Clients start no new operation.
    EndClients,
    /// The simulated PD's heartbeat round and scheduler tick.
    PdTick,
    /// A node dies for good.
    Kill {
        node: usize,
    },
    /// A new node joins, empty.
    Join {
        node: usize,
    },
}

impl Event {
    /// A short name, for traces and the run digest.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Tick { .. } => "tick",
            Event::Pass { .. } => "pass",
            Event::SyncDone { .. } => "sync",
            Event::Raft { .. } => "raft",
            Event::Gc { .. } => "gc",
            Event::Removed { .. } => "removed",
            Event::Fetched { .. } => "fetched",
            Event::SnapshotInstalled { .. } => "snapshot-installed",
            Event::SnapshotStatus { .. } => "snapshot-status",
            Event::Operator => "operator",
            Event::OperatorTimeout { .. } => "operator-timeout",
            Event::CrashNode { .. } => "crash-node",
            Event::Request { .. } => "request",
            Event::Response { .. } => "response",
            Event::ClientTimeout { .. } => "timeout",
            Event::ClientNext { .. } => "next",
            Event::ClientRetry { .. } => "retry",
            Event::Fault => "fault",
            Event::Restart { .. } => "restart",
            Event::HealPartition { .. } => "heal",
            Event::Flush { .. } => "flush",
            Event::Checkpoint { .. } => "checkpoint",
            Event::EndFaults => "end-faults",
            Event::EndClients => "end-clients",
            Event::PdTick => "pd-tick",
            Event::Kill { .. } => "kill",
            Event::Join { .. } => "join",
        }
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Queue {
    events: BTreeMap<(u64, u64), Event>,
    seq: u64,
    now_ms: u64,
}

impl Queue {
    /// Current virtual time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Queues `ev` to run `delay_ms` from now.
    pub fn after(&mut self, delay_ms: u64, ev: Event) {
        self.seq += 1;
        self.events.insert((self.now_ms + delay_ms, self.seq), ev);
    }

    /// Pops the next event and advances time to it.
    pub fn pop(&mut self) -> Option<Event> {
        let ((t, _), ev) = self.events.pop_first()?;
        debug_assert!(t >= self.now_ms);
        self.now_ms = t;
        Some(ev)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pop_in_time_then_insertion_order() {
        let mut q = Queue::default();
        q.after(5, Event::Flush { node: 1 });
        q.after(2, Event::Flush { node: 2 });
        q.after(5, Event::Flush { node: 3 });
        let mut order = Vec::new();
        while let Some(Event::Flush { node }) = q.pop() {
            order.push((q.now_ms(), node));
            if node == 2 {
                q.after(0, Event::Flush { node: 4 });
            }
        }
        assert_eq!(order, vec![(2, 2), (2, 4), (5, 1), (5, 3)]);
        assert!(q.is_empty());
    }
}
