//! The Raft driver: one thread that owns the PD member's Raft node, log and
//! state.
//!
//! Owns the raft-rs `RawNode`, the log sink, the `PdState`, the TSO
//! oracle and the proposals waiting for their entries to apply. Everything
//! reaches it as a message on one bounded inbox (client requests, peers'
//! Raft messages); it ticks raft-rs on a timer and runs the Ready cycle:
//! send, persist (one fdatasync per pass), send the persisted messages,
//! apply, reply.
//!
//! Invariants:
//! - a write is answered only after its entry is committed and applied;
//! - reads are answered only by a leader that has applied an entry of its
//!   own term (so its state includes everything committed before it);
//! - timestamps are served only below a committed window end (`TsoOracle`),
//!   and only after a ReadIndex round started after the request arrived
//!   confirmed the leadership (linearizable across leader changes);
//! - a durable-log error stops the process (fail-stop, never retried);
//! - disk, network, clock and randomness enter only through `seams`, so a
//!   test or the simulator can run members in one thread.

mod ready;
mod requests;
pub mod seams;
#[cfg(test)]
mod tests;

use super::Shared;
use crate::config::PdConfig;
use crate::consensus::convert;
use crate::consensus::disk::{DurableLog, Recovered};
use crate::consensus::log_bridge::raft_logger;
use crate::consensus::storage::PdStorage;
use crate::sched::Scheduler;
use crate::state::{
    HeartbeatEffect, JoinStep, PdCommand, PdState, StoreTimeouts, TsoError, TsoOracle,
};
use golem_wire::pd::{Operator, PdMember, PdRequestBody, PdResponse, PdResponseBody, StoreState};
use golem_wire::raft::RaftMessage;
use golem_wire::{ClusterId, GolemError, PdMemberId};
use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use seams::{Env, LogSink, Outbox, SystemEnv};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Messages the driver accepts.
pub enum DriverMsg {
    /// A validated client request.
    Client {
        /// Boxed: heartbeats carry sampled keys, other requests are small.
        body: Box<PdRequestBody>,
        /// Ms since the Unix epoch (`Env::now_ms`).
        deadline_ms: u64,
        reply: oneshot::Sender<PdResponse>,
    },
    /// Raft messages from a peer (already converted and checked).
    Raft(Vec<Message>),
    /// Stop the driver.
    Stop,
}

/// What a client request leads to.
enum Step {
    Reply(Result<PdResponseBody, GolemError>),
    Propose(PdCommand),
    /// A region heartbeat's metadata change; once applied, the answer
    /// carries this operator step.
    ProposeHeartbeat(PdCommand, Option<Operator>),
    /// Served once a ReadIndex round confirms this member still leads.
    Tso {
        count: u32,
    },
}

/// A `Tso` request waiting for the leadership confirmation of its batch.
struct TsoWait {
    count: u32,
    reply: oneshot::Sender<PdResponse>,
    deadline_ms: u64,
}

/// A proposal waiting for its entry to apply.
struct Pending {
    reply: oneshot::Sender<PdResponse>,
    deadline_ms: u64,
    /// The operator step a `RegionHeartbeat` answer carries.
    operator: Option<Operator>,
}

/// Proposal token of the scheduler's id-pool `AllocIds` (client tokens
/// start from the clock and never reach it).
const ID_POOL_TOKEN: u64 = u64::MAX;

/// Client requests handled per loop pass, at most (keeps ticks on time).
const INBOX_BATCH_MAX: usize = 4096;
/// Retry hint while a new leader commits its first window, in ms.
const NOT_READY_RETRY_MS: u32 = 10;

/// Raft context of a proposal: proposing member and token.
fn proposal_context(member: PdMemberId, token: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(16);
    c.extend_from_slice(&member.0.to_le_bytes());
    c.extend_from_slice(&token.to_le_bytes());
    c
}

fn parse_context(c: &[u8]) -> Option<(u64, u64)> {
    let c: &[u8; 16] = c.try_into().ok()?;
    let member = u64::from_le_bytes(c[..8].try_into().ok()?);
    let token = u64::from_le_bytes(c[8..].try_into().ok()?);
    Some((member, token))
}

/// Fail-stop on a durable-log error (fsyncgate: never retry).
fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    tracing::error!("fatal: {what}: {e}; stopping the PD member");
    eprintln!("golem-pd: fatal: {what}: {e}");
    std::process::exit(70)
}

/// The driver's state; the server's is `Driver<DurableLog,
/// HashMap<u64, mpsc::Sender<RaftMessage>>, SystemEnv>`.
pub struct Driver<L: LogSink, O: Outbox, E: Env> {
    cfg: PdConfig,
    node: RawNode<PdStorage>,
    log: L,
    outbox: O,
    env: E,
    state: PdState,
    oracle: TsoOracle,
    applied_index: u64,
    applied_term: u64,
    pending: HashMap<u64, Pending>,
    /// Tso requests of this pass, confirmed together by one ReadIndex.
    tso_queue: Vec<TsoWait>,
    /// Batches waiting for their ReadIndex, by request context.
    tso_confirming: HashMap<u64, Vec<TsoWait>>,
    next_read_ctx: u64,
    next_token: u64,
    shared: Arc<Shared>,
    /// The TSO oracle was started in this leadership (its first window proposed).
    tso_started: bool,
    was_leader: bool,
    /// Snapshot messages handed to the transport in this Ready cycle.
    snapshot_reports: Vec<(u64, SnapshotStatus)>,
    /// Operators, checkers and schedulers (leader-local soft state).
    sched: Scheduler,
}

/// The server's driver.
pub type ServerDriver = Driver<DurableLog, HashMap<u64, mpsc::Sender<RaftMessage>>, SystemEnv>;

impl ServerDriver {
    /// Recovers the member from its data directory.
    pub fn open(
        cfg: PdConfig,
        peers_out: HashMap<u64, mpsc::Sender<RaftMessage>>,
        shared: Arc<Shared>,
    ) -> Result<ServerDriver, super::ServerError> {
        let (log, rec) = DurableLog::open(&cfg.data_dir)?;
        if rec.cut_bytes > 0 {
            tracing::warn!(bytes = rec.cut_bytes, "cut a torn tail from the raft log");
        }
        Driver::recover(cfg, log, rec, peers_out, SystemEnv, shared)
    }
}

impl<L: LogSink, O: Outbox, E: Env> Driver<L, O, E> {
    /// Builds a member from what its log recovered.
    pub fn recover(
        cfg: PdConfig,
        log: L,
        rec: Recovered,
        outbox: O,
        env: E,
        shared: Arc<Shared>,
    ) -> Result<Self, super::ServerError> {
        let timeouts = StoreTimeouts {
            disconnected_after_ms: cfg.store_disconnected_after_ms,
            down_after_ms: cfg.store_down_after_ms,
        };
        let (state, snapshot, conf_state) = match &rec.snapshot {
            Some(s) => (
                PdState::decode_snapshot(&s.data, timeouts)
                    .map_err(|e| super::ServerError::Snapshot(e.to_string()))?,
                convert::snapshot_from_wire(s),
                convert::conf_state_from_wire(&s.conf_state),
            ),
            None => {
                let cs = ConfState {
                    voters: cfg.peers.iter().map(|(id, _)| id.0).collect(),
                    ..Default::default()
                };
                (PdState::new(timeouts), Snapshot::default(), cs)
            }
        };
        let applied = snapshot.get_metadata().index;
        let applied_term = snapshot.get_metadata().term;
        let entries = rec
            .entries
            .iter()
            .map(convert::entry_from_wire)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| super::ServerError::Snapshot(e.to_string()))?;
        let storage = PdStorage::new(
            convert::hard_state_from_wire(&rec.hard_state),
            conf_state,
            snapshot,
            entries,
        );
        let raft_cfg = raft::Config {
            id: cfg.id.0,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        raft_cfg
            .validate()
            .map_err(|e| super::ServerError::Raft(e.to_string()))?;
        let mut node = RawNode::new(&raft_cfg, storage, &raft_logger(cfg.id))
            .map_err(|e| super::ServerError::Raft(e.to_string()))?;
        if cfg.peers.len() == 1 {
            // A single member need not wait for an election timeout.
            let _ = node.campaign();
        }
        shared
            .cluster
            .store(state.cluster().map_or(0, |c| c.0), Ordering::Release);
        let oracle = TsoOracle::new(cfg.tso_window_ms);
        let sched = Scheduler::new(cfg.sched.clone(), env.now_ms());
        Ok(Driver {
            sched,
            cfg,
            node,
            state,
            oracle,
            applied_index: applied,
            applied_term,
            pending: HashMap::new(),
            tso_queue: Vec::new(),
            tso_confirming: HashMap::new(),
            next_read_ctx: 1,
            // Tokens of an earlier run of this member may still be in the
            // log; starting from the clock keeps them distinct (and the
            // leader applies every earlier entry before proposing anyway).
            next_token: (env.now_ms() << 16) | 1,
            log,
            outbox,
            env,
            shared,
            tso_started: false,
            was_leader: false,
            snapshot_reports: Vec::new(),
        })
    }

    /// Runs until `Stop` or until every sender is gone.
    pub fn run(mut self, inbox: Receiver<DriverMsg>) {
        let tick = Duration::from_millis(self.cfg.tick_ms);
        let mut next_tick = Instant::now() + tick;
        loop {
            // Work left by the previous pass (a window proposed by
            // `leadership_changes`, a snapshot report) runs at once.
            let wait = if self.node.has_ready() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            let first = match inbox.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch: Vec<DriverMsg> = first.into_iter().collect();
            while batch.len() < INBOX_BATCH_MAX {
                match inbox.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            for m in batch {
                match m {
                    DriverMsg::Stop => return,
                    DriverMsg::Raft(msgs) => self.step_raft(msgs),
                    DriverMsg::Client {
                        body,
                        deadline_ms,
                        reply,
                    } => self.on_client(*body, deadline_ms, reply),
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick();
                next_tick = now + tick;
            }
            self.pass();
        }
    }

    /// Hands Raft messages from peers to raft-rs.
    pub fn step_raft(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            // A message from a stale term or an unknown peer is ignored by
            // raft-rs; an error here is not fatal.
            let _ = self.node.step(msg);
        }
    }

    /// One Raft tick; requests past their deadline are answered.
    pub fn tick(&mut self) {
        self.node.tick();
        self.expire_pending(self.env.now_ms());
        self.schedule();
    }

    /// The scheduler's periodic work: its id pool's refills, balance
    /// operators, offline stores that became empty (proposals: never
    /// inside the Ready cycle).
    fn schedule(&mut self) {
        if !self.is_ready_leader() || self.state.cluster().is_none() {
            return;
        }
        let now = self.env.now_ms();
        let actions = self.sched.tick(&self.state, now);
        if let Some(count) = actions.alloc_ids {
            let _ = self.node.propose(
                proposal_context(self.cfg.id, ID_POOL_TOKEN),
                PdCommand::AllocIds { count }.encode(),
            );
        }
        for store in actions.tombstones {
            tracing::info!(store = store.0, "offline store is empty: tombstone");
            self.propose_internal(PdCommand::SetStoreState {
                store,
                state: StoreState::Tombstone,
            });
        }
    }

    /// The scheduler (tests).
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// Everything after a batch of input: ReadIndex for this pass's Tso
    /// requests, the Ready cycle, snapshot reports, leadership changes.
    pub fn pass(&mut self) {
        self.confirm_tso_batch();
        self.handle_ready();
        self.report_snapshots();
        self.leadership_changes();
    }

    /// The outbox (tests and the simulator deliver its messages).
    pub fn outbox_mut(&mut self) -> &mut O {
        &mut self.outbox
    }

    /// The log sink (tests and the simulator crash-restart from it).
    pub fn log(&self) -> &L {
        &self.log
    }

    /// The applied state.
    pub fn state(&self) -> &PdState {
        &self.state
    }

    /// Whether this member leads and has applied an entry of its term.
    pub fn serves(&self) -> bool {
        self.is_ready_leader()
    }

    fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// Leader whose applied state includes everything committed before its term.
    fn is_ready_leader(&self) -> bool {
        self.is_leader() && self.applied_term == self.node.raft.term
    }

    fn redirect(&self) -> GolemError {
        let leader = self.node.raft.leader_id;
        if leader == self.cfg.id.0 {
            // Leader, still applying the log of earlier terms.
            return GolemError::ServerBusy {
                retry_after_ms: NOT_READY_RETRY_MS,
            };
        }
        let id = (leader != 0).then_some(PdMemberId(leader));
        GolemError::PdNotLeader {
            leader_id: id,
            leader_addr: id
                .and_then(|id| self.cfg.addr_of(id))
                .map(|a| a.to_string()),
        }
    }

    fn members(&self) -> PdResponseBody {
        let leader = self.node.raft.leader_id;
        PdResponseBody::Members {
            members: self
                .cfg
                .peers
                .iter()
                .map(|(id, addr)| PdMember {
                    id: *id,
                    addr: addr.to_string(),
                })
                .collect(),
            leader: (leader != 0).then_some(PdMemberId(leader)),
        }
    }

    fn expire_pending(&mut self, now: u64) {
        for batch in self.tso_confirming.values_mut() {
            for w in std::mem::take(batch) {
                if w.deadline_ms <= now {
                    let _ = w.reply.send(PdResponse::Err(GolemError::DeadlineExceeded));
                } else {
                    batch.push(w);
                }
            }
        }
        self.tso_confirming.retain(|_, b| !b.is_empty());
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            if let Some(p) = self.pending.remove(&t) {
                let _ = p.reply.send(PdResponse::Err(GolemError::DeadlineExceeded));
            }
        }
    }

    fn leadership_changes(&mut self) {
        let leader = self.is_leader();
        let ready = self.is_ready_leader();
        self.shared
            .leader
            .store(self.node.raft.leader_id, Ordering::Release);
        if ready && !self.tso_started {
            tracing::info!(term = self.node.raft.term, "PD leader ready");
            // A new leader starts with no operators (soft state).
            self.sched.reset(self.env.now_ms());
            let end_ms = self
                .oracle
                .start(self.state.tso_window_end_ms(), self.env.now_ms());
            if self.propose_internal(PdCommand::TsoWindow { end_ms }) {
                self.tso_started = true;
            } else {
                self.oracle.stop(); // retried next pass
            }
        } else if ready {
            self.maybe_extend_tso(self.env.now_ms());
        }
        if !ready && self.tso_started {
            self.oracle.stop();
            self.tso_started = false;
        }
        if !leader && self.was_leader {
            tracing::info!(term = self.node.raft.term, "PD member lost leadership");
            self.sched.reset(self.env.now_ms());
            // Their entries may still commit; the outcome is unknown to the
            // client, which retries (every PD write is safe to retry).
            let e = self.redirect();
            for (_, p) in self.pending.drain() {
                let _ = p.reply.send(PdResponse::Err(e.clone()));
            }
            for (_, batch) in self.tso_confirming.drain() {
                for w in batch {
                    let _ = w.reply.send(PdResponse::Err(e.clone()));
                }
            }
        }
        self.was_leader = leader;
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            // A full queue drops the message: Raft retransmits.
            let queued = self.outbox.send(m.to, convert::message_to_wire(&m));
            if m.get_msg_type() == MessageType::MsgSnapshot {
                // Report at once (after this Ready cycle): the leader then
                // probes the follower, and resends the snapshot if it was
                // lost on the way, instead of waiting forever for it.
                let status = if queued {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.snapshot_reports.push((m.to, status));
            }
        }
    }

    /// Hands raft-rs the snapshot reports of the last Ready cycle (never
    /// inside the cycle).
    fn report_snapshots(&mut self) {
        for (to, status) in std::mem::take(&mut self.snapshot_reports) {
            self.node.report_snapshot(to, status);
        }
    }
}
