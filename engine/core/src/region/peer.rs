//! `RegionPeer`: one replica of a region, wrapping a raft-rs `RawNode`.
//!
//! Owns the region's raft node, its state machine and the proposals waiting
//! for their entries to apply. This file holds the type, its accessors,
//! `tick`/`campaign`/`step`, `propose` and `read`; the `Ready` cycle is in
//! `ready.rs`, bootstrap and recovery in `recover.rs`.
//!
//! Invariants:
//! - a proposal is answered exactly once, and only with its true outcome:
//!   with its entry's result once the entry at its index is applied with
//!   the proposal's term; with `NotLeader` (safe to retry: it never took
//!   effect) once the entry at its index is applied with another term.
//!   Nothing else decides: losing leadership, or this peer's log being cut
//!   below the entry, does not (another replica may still hold the entry
//!   and commit it as leader), so the proposal waits until the log decides
//!   (the client's deadline bounds the wait);
//! - `proposals` are sorted by index (several may share one index, of
//!   different terms: at most one of them takes effect);
//! - a read is served only by a leader that has applied an entry of its own
//!   term (so everything committed by earlier leaders is applied);
//! - no I/O, clock or randomness here: time is `tick()`, disk is `WalSink`.

use super::log_bridge::raft_logger;
use super::{CoreError, PeerConfig, RegionMeta};
use crate::command::Command;
use crate::raft_log::{FetchRequest, RegionStorage};
use crate::store::KvStore;
use golem_wire::{GolemError, LogIndex, PeerId, RequestBody, ResponseBody, Term};
use raft::eraftpb::{Entry, HardState, Message};
use raft::{RawNode, StateRole};
use std::collections::VecDeque;

/// Identifies a proposal to its proposer; chosen by the caller, returned
/// with the proposal's result. Must be unique among pending proposals.
pub type ProposalToken = u64;

/// `retry_after_ms` for a proposal raft dropped (leader transfer in
/// progress, or `uncommitted_bytes_max` reached).
pub const PROPOSAL_DROPPED_RETRY_AFTER_MS: u32 = 10;
/// `retry_after_ms` for a read at a new leader that has not yet applied an
/// entry of its term (one WAL sync away, normally).
pub const LEADER_NOT_READY_RETRY_AFTER_MS: u32 = 2;

/// A follower more than this many entries behind its leader is no longer
/// kept in the leader's WAL retention (it needs a snapshot to catch up).
pub const FOLLOWER_LAG_ENTRIES_MAX: u64 = 100_000;

/// A proposal waiting for its entry to apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Proposal {
    pub(crate) token: ProposalToken,
    pub(crate) index: u64,
    pub(crate) term: u64,
}

/// A finished proposal: its token and the answer for the client.
pub(crate) type Finished = (ProposalToken, Result<ResponseBody, GolemError>);

/// One replica of a region.
pub struct RegionPeer {
    pub(crate) cfg: PeerConfig,
    pub(crate) meta: RegionMeta,
    pub(crate) raw: RawNode<RegionStorage>,
    /// Committed entries handed out by raft and not yet applied (the store
    /// stalled), in index order.
    pub(crate) unapplied: VecDeque<raft::eraftpb::Entry>,
    /// Whether the last apply attempt stopped on a store stall.
    pub(crate) stalled: bool,
    /// Set when the store failed: the region applies and serves nothing
    /// more (the shell stops the node).
    pub(crate) failed: Option<String>,
    /// Confirmed read indexes `(ctx, index)` from raft, in request order:
    /// reads of batch `ctx` may be served once `index` is applied.
    pub(crate) read_states: VecDeque<(u64, u64)>,
    /// Proposals whose entries are not applied yet, in index order.
    pub(crate) proposals: VecDeque<Proposal>,
    /// Answers decided but not yet handed out by `on_persisted`.
    pub(crate) finished: Vec<Finished>,
    /// A commit-only hard state taken from raft in `on_persisted`, to be
    /// written by the next `collect_ready` (commit need not be durable at
    /// once: recovery replays less and the leader re-commits the rest).
    pub(crate) hs_unwritten: Option<HardState>,
    /// The last hard state raft handed out (written or in `hs_unwritten`).
    pub(crate) hs_last: HardState,
    /// Whether a `PendingReady` is out (collected, not yet persisted).
    pub(crate) ready_in_flight: bool,
    /// Term of the last applied entry (reads need it to equal the term).
    pub(crate) applied_term: u64,
    /// False for a replica created by a message before it received its
    /// first snapshot: it knows no range, votes for no one, writes no
    /// records and serves nothing.
    pub(crate) initialized: bool,
    /// The applied index `meta` is valid at: membership changes at or
    /// below it are already in `meta` (recovery skips them).
    pub(crate) meta_as_of: u64,
    /// `meta` changed and its record is not written yet (next
    /// `collect_ready` writes it).
    pub(crate) meta_unwritten: bool,
    /// Set when this replica applied its own removal: the shell destroys it.
    pub(crate) removed: bool,
    /// The entry `(index, term)` whose apply removed this replica (set with
    /// `removed`; `removal.rs`).
    pub(crate) removed_by: Option<(u64, u64)>,
    /// A received snapshot being applied: `(index, term)`; the shell
    /// installs its data in the store before `on_persisted`.
    pub(crate) applying_snapshot: Option<(u64, u64)>,
    /// Splits proposed, and new regions for the shell (`split.rs`).
    pub(crate) split: super::split::SplitState,
    /// A prepared merge, a commit waiting for its source (`merge.rs`).
    pub(crate) merge: super::merge::MergeBook,
    /// The region's clock is stopped (`hibernate.rs`).
    pub(crate) hibernating: bool,
    /// Consecutive ticks a leader found its region quiet.
    pub(crate) quiet_ticks: usize,
    /// Messages made outside raft-rs (hibernation markers), sent with the
    /// next `Ready`'s.
    pub(crate) extra_messages: Vec<Message>,
}

impl std::fmt::Debug for RegionPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionPeer")
            .field("region", &self.meta.id)
            .field("peer", &self.cfg.peer)
            .field("role", &self.raw.raft.state)
            .field("term", &self.raw.raft.term)
            .field("applied", &self.raw.raft.raft_log.applied)
            .field("pending_proposals", &self.proposals.len())
            .finish()
    }
}

impl RegionPeer {
    /// Builds the peer around a storage whose state is already settled;
    /// `applied` entries are already in the shard's store.
    pub(crate) fn build(
        cfg: PeerConfig,
        meta: RegionMeta,
        storage: RegionStorage,
        applied: u64,
        applied_term: u64,
    ) -> Result<RegionPeer, CoreError> {
        let hs_last = storage.hard_state().clone();
        let logger = raft_logger(cfg.region, cfg.peer);
        let raw = RawNode::new(&cfg.raft_config(applied), storage, &logger).map_err(|source| {
            CoreError::Raft {
                region: cfg.region,
                source,
            }
        })?;
        Ok(RegionPeer {
            cfg,
            meta,
            raw,
            unapplied: VecDeque::new(),
            stalled: false,
            failed: None,
            read_states: VecDeque::new(),
            proposals: VecDeque::new(),
            finished: Vec::new(),
            hs_unwritten: None,
            hs_last,
            ready_in_flight: false,
            applied_term,
            initialized: true,
            meta_as_of: 0,
            meta_unwritten: false,
            removed: false,
            removed_by: None,
            applying_snapshot: None,
            split: Default::default(),
            merge: Default::default(),
            hibernating: false,
            quiet_ticks: 0,
            extra_messages: Vec::new(),
        })
    }

    /// Whether this replica has its region's state (it was created with the
    /// region, or received a snapshot). An uninitialized replica serves
    /// nothing and persists nothing.
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// Whether this replica applied its own removal from the region: the
    /// shell writes its tombstone and drops it (its data is deleted).
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// The region's metadata (range, epoch, peers).
    pub fn meta(&self) -> &RegionMeta {
        &self.meta
    }

    /// This peer's configuration.
    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }

    /// One logical tick (elections, heartbeats, quorum checks); nothing
    /// while the region hibernates (`hibernate.rs`).
    pub fn tick(&mut self) {
        if self.hibernating || self.removed || self.merge.gone {
            return;
        }
        self.raw.tick();
        self.check_stale_learner();
        self.consider_hibernating();
    }

    /// Starts an election now. A single voter wins at once (its `Ready`
    /// then holds the new term and the leader's empty entry). No-op if
    /// already leader, or while entries of an earlier `Ready` are not yet
    /// persisted (raft-rs requires a new leader's log to be durable; try
    /// again after `on_persisted`).
    pub fn campaign(&mut self) {
        self.wake();
        if self.is_leader() {
            return;
        }
        let log = &self.raw.raft.raft_log;
        if log.persisted < log.last_index() {
            tracing::debug!(region = %self.meta.id, "campaign deferred: log not yet persisted");
            return;
        }
        if let Err(e) = self.raw.campaign() {
            tracing::warn!(region = %self.meta.id, error = %e, "campaign failed");
        }
    }

    /// Steps a raft message from another peer (multi-voter regions). An
    /// uninitialized replica ignores votes and leadership hand-offs (it
    /// remembers nothing across a restart, so it must not promise
    /// anything); a snapshot whose metadata does not decode or does not
    /// name this replica is dropped (`BadSnapshot`).
    pub fn step(&mut self, msg: Message) -> Result<(), CoreError> {
        use raft::eraftpb::MessageType as T;
        if self.removed || self.merge.gone {
            return Ok(());
        }
        if !self.initialized
            && matches!(
                msg.get_msg_type(),
                T::MsgRequestVote | T::MsgRequestPreVote | T::MsgTimeoutNow
            )
        {
            return Ok(());
        }
        if msg.get_msg_type() == T::MsgSnapshot {
            self.check_snapshot(msg.get_snapshot())?;
        }
        // A leader's hibernation marker puts a member to sleep, and
        // heartbeat answers need no awake leader; anything else wakes.
        let marker = super::hibernate::is_marker(&msg).then_some((msg.from, msg.term));
        if marker.is_none() && msg.get_msg_type() != T::MsgHeartbeatResponse {
            self.wake();
        }
        self.raw.step(msg).map_err(|source| CoreError::Raft {
            region: self.meta.id,
            source,
        })?;
        if let Some((from, term)) = marker {
            self.follow_into_hibernation(from, term);
        }
        Ok(())
    }

    /// Whether this peer is the region's leader (it may still be waiting
    /// for its first entry to apply before it serves reads).
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this peer knows of, if any.
    pub fn leader_id(&self) -> Option<PeerId> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(PeerId(id)),
        }
    }

    /// The current raft term.
    pub fn term(&self) -> Term {
        Term(self.raw.raft.term)
    }

    /// Index of the last entry in the log (persisted or not).
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.raw.raft.raft_log.last_index())
    }

    /// Index of the last committed entry known here.
    pub fn commit_index(&self) -> LogIndex {
        LogIndex(self.raw.raft.raft_log.committed)
    }

    /// Index of the last applied entry.
    pub fn applied_index(&self) -> LogIndex {
        LogIndex(self.raw.raft.raft_log.applied)
    }

    /// Whether applying stopped on a store write stall (the shell retries
    /// on a later pass: `has_ready` stays true).
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// The store failure that stopped this region, if any. The shell stops
    /// the node: nothing more can be applied.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Committed entries waiting for the store.
    pub fn unapplied_entries(&self) -> usize {
        self.unapplied.len()
    }

    /// Proposals not answered yet.
    pub fn pending_proposals(&self) -> usize {
        self.proposals.len()
    }

    /// Cached raft entries (bounded by `entry_cache_entries_max` once
    /// applied).
    pub fn cached_entries(&self) -> usize {
        self.raw.store().cached_entries()
    }

    /// Proposes a write; its result comes back from `on_persisted` with
    /// `token`. Errors (nothing was proposed): `NotLeader`, a limit error
    /// from `RequestBody::validate`, `InvalidArgument` for a read,
    /// `KeyNotInRegion`, `ServerBusy` when raft drops the proposal.
    pub fn propose(&mut self, body: RequestBody, token: ProposalToken) -> Result<(), GolemError> {
        self.wake();
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if let Some(reason) = &self.failed {
            return Err(GolemError::Internal {
                reason: format!("region {} stopped: {reason}", self.meta.id),
            });
        }
        body.validate()?;
        if let Some(busy) = self.merge_blocks() {
            return Err(busy);
        }
        if let RequestBody::ChangePeers { changes, .. } = &body {
            return self.propose_change_peers(changes, token);
        }
        if let RequestBody::Split {
            key,
            split_key,
            new_region,
            new_peers,
        } = body
        {
            return self.propose_split(&key, split_key, new_region, new_peers, token);
        }
        let cmd = Command::from_request(body)?;
        for key in cmd.keys() {
            self.meta.check_key(key)?;
        }
        debug_assert!(
            self.proposals.iter().all(|p| p.token != token),
            "proposal token {token} reused"
        );
        self.propose_command(&cmd, token).map(|_| ())
    }

    /// Appends `cmd` as a normal entry and tracks it as proposal `token`;
    /// returns the entry's index. `ServerBusy` when raft-rs drops it.
    pub(crate) fn propose_command(
        &mut self,
        cmd: &Command,
        token: ProposalToken,
    ) -> Result<u64, GolemError> {
        let term = self.raw.raft.term;
        let before = self.raw.raft.raft_log.last_index();
        match self.raw.propose(Vec::new(), cmd.encode()) {
            Ok(()) => {}
            Err(raft::Error::ProposalDropped) => {
                return Err(GolemError::ServerBusy {
                    retry_after_ms: PROPOSAL_DROPPED_RETRY_AFTER_MS,
                })
            }
            Err(e) => {
                return Err(GolemError::Internal {
                    reason: e.to_string(),
                })
            }
        }
        self.track_proposal(before, token, term);
        Ok(before + 1)
    }

    /// Remembers the proposal just appended after `before` (raft-rs
    /// appended exactly one entry) until its index is applied.
    pub(crate) fn track_proposal(&mut self, before: u64, token: ProposalToken, term: u64) {
        let index = self.raw.raft.raft_log.last_index();
        assert_eq!(index, before + 1, "a proposal appends exactly one entry");
        // Older proposals at or after this index had their entries cut from
        // this log, but another replica may still hold them and commit them
        // as leader (golem-sim's report): they stay pending until the entry
        // at their index is applied. Keep the queue sorted by index.
        let at = self.proposals.partition_point(|p| p.index <= index);
        self.proposals.insert(at, Proposal { token, index, term });
    }

    /// Serves a read (Get, Scan, BatchGet) from the applied state. Leader
    /// only (`NotLeader` otherwise); `ServerBusy` until a new leader has
    /// applied an entry of its term. A single voter is then always up to
    /// date; multi-voter regions will add lease/ReadIndex checks here.
    /// A Scan's whole `[start, end)` must lie in the region. Reads come from
    /// `store`, the shard's store holding this region's applied data.
    pub fn read(
        &self,
        body: &RequestBody,
        store: &mut dyn KvStore,
    ) -> Result<ResponseBody, GolemError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if let Some(reason) = &self.failed {
            return Err(GolemError::Internal {
                reason: format!("region {} stopped: {reason}", self.meta.id),
            });
        }
        if self.applied_term != self.raw.raft.term {
            return Err(GolemError::ServerBusy {
                retry_after_ms: LEADER_NOT_READY_RETRY_AFTER_MS,
            });
        }
        if self.merge.merging.is_some() || self.merge.gone {
            // The target may own the range already (`merge.rs`).
            return Err(GolemError::ServerBusy {
                retry_after_ms: super::merge::MERGE_BUSY_RETRY_AFTER_MS,
            });
        }
        body.validate()?;
        match body {
            RequestBody::Get { key } => self.meta.check_key(key)?,
            RequestBody::BatchGet { keys } => {
                for key in keys {
                    self.meta.check_key(key)?;
                }
            }
            RequestBody::Scan { start, end, .. } => self.meta.check_range(start, end)?,
            _ => {}
        }
        crate::kv::read(store, body)
    }

    /// The log start this region wants at most (entries after it are kept
    /// in the WAL) for the sake of its other replicas; `None` for a single
    /// voter. A leader keeps what its followers have not replicated, and one
    /// more entry (raft-rs may probe a follower at its matched index:
    /// golem-sim FINDINGS.md #3), unless a follower lags more than
    /// `FOLLOWER_LAG_ENTRIES_MAX` (it will need a snapshot). Every voter
    /// also keeps its last `log_retain_entries_min` applied entries, so that
    /// a replica that was down can catch up from whichever voter leads next
    /// (FINDINGS.md #1) as long as it is not further behind than that. The
    /// shell keeps WAL records above `min(persisted_applied, this)`.
    pub fn log_retention_floor(&self) -> Option<u64> {
        if self.meta.peers.len() == 1 {
            return None;
        }
        let applied = self.raw.raft.raft_log.applied;
        let retained = applied.saturating_sub(self.cfg.log_retain_entries_min);
        if !self.is_leader() {
            return Some(retained);
        }
        let lowest = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(_, pr)| pr.matched)
            .min()
            .unwrap_or(applied);
        if applied.saturating_sub(lowest) > FOLLOWER_LAG_ENTRIES_MAX {
            return Some(retained);
        }
        Some(retained.min(lowest.saturating_sub(1)))
    }

    /// Starts moving leadership to the most up-to-date other voter (for a
    /// graceful stop). Returns the chosen peer, or None when this peer does
    /// not lead a region with other voters. raft-rs stops accepting
    /// proposals while the transfer runs and gives up after an election
    /// timeout.
    pub fn transfer_leadership(&mut self) -> Option<PeerId> {
        self.wake();
        if !self.is_leader() || !self.meta.is_replicated() {
            return None;
        }
        let me = self.cfg.peer.get();
        let target = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me)
            .max_by_key(|(id, pr)| (pr.matched, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)?;
        self.raw.transfer_leader(target);
        Some(PeerId(target))
    }

    /// Starts moving leadership to voter `to` (an admin request). raft-rs
    /// sends it a `TimeoutNow` once its log is up to date, and gives up
    /// after an election timeout. No-op unless this peer leads.
    pub fn transfer_leadership_to(&mut self, to: PeerId) {
        self.wake();
        if self.is_leader() && to != self.cfg.peer {
            self.raw.transfer_leader(to.get());
        }
    }

    /// Whether reads need a read-index round before they are served: true
    /// when the region has other voters (a leader cut off from them could
    /// be deposed without knowing). A single voter is always up to date.
    pub fn needs_read_index(&self) -> bool {
        self.meta.is_replicated()
    }

    /// Asks raft to confirm leadership for the reads of batch `ctx` (ReadIndex:
    /// a heartbeat round with a quorum). The answer comes out of a later
    /// `take_ready_reads`; none comes if leadership is lost first.
    pub fn request_read(&mut self, ctx: u64) {
        self.wake();
        self.raw.read_index(ctx.to_le_bytes().to_vec());
    }

    /// Read batches whose confirmed index is applied: their reads may be
    /// served now. In request order.
    pub fn take_ready_reads(&mut self) -> Vec<u64> {
        let applied = self.raw.raft.raft_log.applied;
        let mut out = Vec::new();
        while let Some(&(ctx, index)) = self.read_states.front() {
            if index > applied {
                break;
            }
            self.read_states.pop_front();
            out.push(ctx);
        }
        out
    }

    /// Entries raft-rs wants that only the WAL holds (for a lagging
    /// follower). The shell reads them and calls `on_entries_fetched`.
    pub fn take_fetch_requests(&mut self) -> Vec<FetchRequest> {
        self.raw.mut_store().take_fetch_requests()
    }

    /// Hands back the entries of `req` read from the WAL (`Err`: the read
    /// failed; raft-rs asks again later). Entries that do not start at
    /// `req.low` and run consecutively are refused like a failed read. The
    /// messages raft-rs makes come out of the next `collect_ready`.
    pub fn on_entries_fetched(&mut self, req: FetchRequest, entries: Result<Vec<Entry>, String>) {
        let region = self.meta.id;
        let valid = entries.and_then(|ents| {
            let consecutive = ents
                .iter()
                .enumerate()
                .all(|(i, e)| e.index == req.low + i as u64);
            if ents.is_empty() || !consecutive {
                Err(format!("fetched entries do not run from {}", req.low))
            } else {
                Ok(ents)
            }
        });
        match valid {
            Ok(ents) => {
                self.raw.mut_store().set_fetched(req.low, ents);
                self.raw.on_entries_fetched(req.context);
                self.raw.mut_store().clear_fetched();
            }
            Err(reason) => {
                tracing::warn!(%region, low = req.low, high = req.high, %reason, "fetching old entries from the WAL failed");
                self.raw.mut_store().fetch_failed(req.low);
            }
        }
    }

    pub(crate) fn not_leader(&self) -> GolemError {
        GolemError::NotLeader {
            region: self.meta.id,
            leader: None,
        }
    }
}
