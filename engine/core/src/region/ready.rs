//! The `Ready` cycle of a region peer: what to persist, what to apply.
//!
//! Owns `collect_ready` (take raft's `Ready`, append its hard state and
//! entries as WAL records, apply entries that are already committed and
//! durable) and `on_persisted` (tell raft the records are durable, apply
//! what that commits, hand out finished proposals and messages).
//!
//! raft-rs is driven in its asynchronous-persistence style
//! (`advance_append_async` at collect time, `on_persist_ready` after the
//! sync) so that `propose`, `tick` and `step` stay legal while a sync is in
//! flight.
//!
//! Invariants:
//! - records of one `Ready` are appended entries first, then the hard
//!   state: a torn tail that keeps a commit index also keeps the entries it
//!   covers; entries kept without the hard state of their term are cut at
//!   recovery (never acknowledged); a commit index past the surviving log
//!   is clamped;
//! - at most one `PendingReady` per peer is out at a time, and it is given
//!   back to the peer that made it;
//! - entries are applied in index order, each once; the applied index never
//!   passes min(commit, persisted);
//! - the entry cache is compacted only below the applied index.

use super::peer::RegionPeer;
use super::records::{encode_entries, encode_hard_state};
use crate::command::Command;
use crate::kv::{apply_command, apply_noop};
use crate::store::{KvStore, WriteError};
use crate::wal_record::{RecordKind, WalSink};
use golem_wire::{GolemError, LogIndex, RegionId, ResponseBody};
use raft::eraftpb::{Entry, EntryType, Message};
use raft::{Ready, StateRole};

/// What `on_persisted` must finish once the WAL sync covering the records
/// of one `collect_ready` returned.
#[derive(Debug)]
#[must_use = "pass it to on_persisted after the WAL sync"]
pub struct PendingReady {
    region: RegionId,
    /// The raft `Ready` to acknowledge (None: only a stashed hard state was
    /// written).
    number: Option<u64>,
    /// Whether the records must be durable before `on_persisted` (entries,
    /// or a new term or vote). Otherwise the shell may skip the sync.
    must_sync: bool,
    /// Raft messages (sent after the sync: always safe, see `on_persisted`).
    messages: Vec<Message>,
    /// A received snapshot `(index, term)` this `Ready` installs: the shell
    /// must put its data in the store before `on_persisted`.
    snapshot: Option<(u64, u64)>,
}

impl PendingReady {
    /// Whether the records appended by this `collect_ready` must be synced
    /// before `on_persisted` (false: only a commit index was written, which
    /// may stay in the WAL buffer until a later sync).
    pub fn must_sync(&self) -> bool {
        self.must_sync
    }

    /// The received snapshot `(index, term)` whose data the shell must
    /// install in the store (and wait for) before `on_persisted`.
    pub fn snapshot(&self) -> Option<(u64, u64)> {
        self.snapshot
    }
}

/// The results of one persisted `Ready`.
#[derive(Debug, Default)]
pub struct PersistedOutput {
    /// Finished proposals, each token exactly once.
    pub finished: Vec<(super::ProposalToken, Result<ResponseBody, GolemError>)>,
    /// Raft messages to send to other peers (none for a single voter).
    pub messages: Vec<Message>,
}

impl RegionPeer {
    /// Whether `collect_ready` has work (raft's `Ready`, a hard state to
    /// write, answers to hand out, or committed entries a store stall held
    /// back; not after a store failure).
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
            || self.hs_unwritten.is_some()
            || !self.extra_messages.is_empty()
            || !self.finished.is_empty()
            || (!self.unapplied.is_empty() && self.failed.is_none())
    }

    /// Takes raft's `Ready`: appends its hard state and entries as WAL
    /// records of this region to `wal`, applies entries that are already
    /// committed and durable, and returns what `on_persisted` must finish
    /// after the sync. None when there is nothing to do.
    ///
    /// # Panics
    /// If the previous `PendingReady` was not given to `on_persisted`.
    pub fn collect_ready(
        &mut self,
        wal: &mut dyn WalSink,
        store: &mut dyn KvStore,
    ) -> Option<PendingReady> {
        assert!(
            !self.ready_in_flight,
            "region {}: collect_ready before on_persisted of the previous one",
            self.meta.id
        );
        if !self.has_ready() {
            return None;
        }
        let region = self.meta.id;
        let mut hs_to_write = self.hs_unwritten.take();
        let mut pending = PendingReady {
            region,
            number: None,
            must_sync: false,
            messages: Vec::new(),
            snapshot: None,
        };
        // An uninitialized replica persists nothing until its snapshot: it
        // has no metadata to recover with (it is recreated empty).
        let mut sink = OptionalSink {
            wal,
            enabled: self.initialized,
        };
        let wal = &mut sink;
        let mut committed = Vec::new();
        if self.raw.has_ready() {
            let mut rd = self.raw.ready();
            self.log_role_change(&rd);
            pending.number = Some(rd.number());
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                pending.snapshot = Some(self.install_snapshot_records(&snap, wal.wal));
                wal.enabled = true;
            }
            pending.must_sync = rd.must_sync();
            if let Some(hs) = rd.hs() {
                // Newer than any stashed commit-only hard state.
                hs_to_write = Some(hs.clone());
                self.hs_last = hs.clone();
            }
            self.note_read_states(rd.take_read_states());
            let entries = rd.take_entries();
            committed = rd.take_committed_entries();
            pending.messages = rd.take_messages();
            pending.messages.extend(rd.take_persisted_messages());

            // Entries first, then the hard state (etcd-raft's order): a
            // torn tail that keeps a commit index also keeps the entries it
            // covers (golem-sim: FINDINGS.md #4); recovery cuts entries of
            // a term whose hard state was lost.
            for record in encode_entries(&entries) {
                wal.append(RecordKind::Entries, region, &record);
            }
            self.raw.mut_store().append(&entries);
            if let Some(hs) = hs_to_write.take() {
                wal.append(RecordKind::HardState, region, &encode_hard_state(&hs));
                self.raw.mut_store().set_hard_state(hs);
            }
            self.raw.advance_append_async(rd);
        }
        if let Some(hs) = hs_to_write {
            wal.append(RecordKind::HardState, region, &encode_hard_state(&hs));
            self.raw.mut_store().set_hard_state(hs);
        }
        if self.meta_unwritten && self.initialized {
            self.meta_unwritten = false;
            wal.append(
                RecordKind::RegionMeta,
                region,
                &self.meta_record(self.meta_as_of),
            );
        }
        pending.messages.append(&mut self.extra_messages);
        // Committed entries of a Ready are already durable here (raft-rs
        // hands out at most min(commit, persisted)); their answers go out
        // after this pass's sync, with its commit index.
        self.apply(committed, store);
        self.ready_in_flight = true;
        Some(pending)
    }

    /// Called after the sync that covers the records of the matching
    /// `collect_ready`: advances raft, applies what is now committed and
    /// returns the finished proposals and the messages to send.
    ///
    /// # Panics
    /// If `pending` is not this peer's outstanding one.
    pub fn on_persisted(
        &mut self,
        pending: PendingReady,
        store: &mut dyn KvStore,
    ) -> PersistedOutput {
        assert!(
            self.ready_in_flight && pending.region == self.meta.id,
            "region {}: on_persisted without a matching collect_ready",
            self.meta.id
        );
        self.ready_in_flight = false;
        let mut messages = pending.messages;
        if self.removed {
            // This replica applied its own removal: raft-rs keeps a removed
            // leader leading and would unwrap its missing progress
            // (golem-sim FINDINGS.md #6). Nothing more of raft here; the
            // shell drops the replica. The messages raft made before the
            // removal still go: a leader that committed its own removal
            // tells the others the commit index with them (FINDINGS #9; if
            // they are lost, the tombstone's notice does: `removal.rs`).
            return PersistedOutput {
                finished: std::mem::take(&mut self.finished),
                messages,
            };
        }
        if let Some(number) = pending.number {
            self.raw.on_persist_ready(number);
        }
        if let Some((index, term)) = pending.snapshot {
            self.finish_snapshot(index, term, store);
        }
        // A leader's persisted entries may now be committed. Take that
        // Ready at once when it needs nothing persisted (only a new commit
        // index, committed entries and messages), so that a single voter
        // answers a write after one sync.
        if self.raw.has_ready() && self.light_ready_possible() {
            let mut rd = self.raw.ready();
            self.log_role_change(&rd);
            assert!(rd.entries().is_empty() && rd.snapshot().is_empty());
            if let Some(hs) = rd.hs() {
                assert!(
                    hs.term == self.hs_last.term && hs.vote == self.hs_last.vote,
                    "only the commit index changes without a persist"
                );
                self.hs_unwritten = Some(hs.clone());
                self.hs_last = hs.clone();
            }
            self.note_read_states(rd.take_read_states());
            let committed = rd.take_committed_entries();
            messages.extend(rd.take_messages());
            messages.extend(rd.take_persisted_messages());
            let number = rd.number();
            self.raw.advance_append_async(rd);
            self.raw.on_persist_ready(number);
            self.apply(committed, store);
        }
        PersistedOutput {
            finished: std::mem::take(&mut self.finished),
            messages,
        }
    }

    /// Whether the next `Ready` can be taken without persisting anything: we
    /// lead, nothing is unstable, and term and vote are as last written.
    fn light_ready_possible(&self) -> bool {
        let raft = &self.raw.raft;
        raft.state == StateRole::Leader
            && raft.raft_log.unstable_entries().is_empty()
            && raft.raft_log.unstable_snapshot().is_none()
            && raft.term == self.hs_last.term
            && raft.vote == self.hs_last.vote
    }

    /// Keeps raft's confirmed read indexes, keyed by the batch id the
    /// shell gave `request_read` (8 bytes LE; anything else is ignored).
    fn note_read_states(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            if let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) {
                self.read_states
                    .push_back((u64::from_le_bytes(ctx), rs.index));
            }
        }
    }

    fn log_role_change(&self, rd: &Ready) {
        if let Some(ss) = rd.ss() {
            tracing::info!(
                region = %self.meta.id,
                peer = %self.cfg.peer,
                role = ?ss.raft_state,
                term = self.raw.raft.term,
                "region role changed"
            );
        }
    }

    /// Queues committed entries and applies as many queued entries as the
    /// store takes, in order; answers their proposals; compacts the entry
    /// cache. A store stall leaves the rest queued (`has_ready` stays true,
    /// the next pass retries); a store failure stops the region.
    fn apply(&mut self, entries: Vec<Entry>, store: &mut dyn KvStore) {
        self.unapplied.extend(entries);
        self.stalled = false;
        if self.failed.is_some() {
            return;
        }
        let region = self.meta.id;
        let mut applied_any = false;
        while let Some(e) = self.unapplied.front() {
            let (index, term) = (e.index, e.term);
            assert_eq!(
                index,
                self.raw.raft.raft_log.applied + 1,
                "region {region}: entries apply in order"
            );
            let outcome = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {
                    apply_noop(store, region, LogIndex(index)).map(|()| None)
                }
                EntryType::EntryNormal => {
                    let cmd = Command::decode(&e.data).unwrap_or_else(|err| {
                        panic!("region {region}: committed entry {index} is not a command: {err}")
                    });
                    match cmd {
                        Command::Split { .. } => self.apply_split(index, term, cmd, store),
                        Command::Merge(m) => self.apply_merge(index, term, m, store),
                        // A write after a merge prepare changes nothing.
                        _ if self.merge_blocks_writes() => self.skip_write(index, term, store),
                        cmd => apply_command(store, region, LogIndex(index), cmd).map(Some),
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    // Applied to raft and the metadata first (once: after a
                    // store stall the retry finds it at or below
                    // `meta_as_of`), so that whether this replica leaves is
                    // read from the resulting configuration, not from the
                    // entry: a Remove in a joint change keeps the replica as
                    // an outgoing voter until the joint configuration is
                    // left, by an entry that names no one. Deleting its data
                    // at the first entry would leave a voter with an empty
                    // store (membership_tests found it).
                    if self.may_remove_self(e)
                        && store.persisted_applied(region) < LogIndex(index - 1)
                    {
                        // Leaving: recovery will skip this replica's log
                        // after its tombstone, so everything it applied must
                        // be durable in the store first, including writes
                        // into ranges a split gave to other regions, whose
                        // own logs start at the split (golem-sim FINDINGS
                        // #12). Wait for a flush, like a store stall.
                        store.request_flush();
                        self.stalled = true;
                        break;
                    }
                    let e = e.clone();
                    let answer = self.apply_conf_change(&e);
                    let written = if self.removed {
                        // This replica leaves: its data goes with the entry.
                        let mut batch = crate::store::WriteBatch::new();
                        batch.delete_range(self.meta.start.clone(), self.meta.end.clone());
                        store.write(batch, region, LogIndex(index))
                    } else {
                        apply_noop(store, region, LogIndex(index))
                    };
                    written.map(|()| Some(answer))
                }
            };
            let result = match outcome {
                Ok(result) => result,
                Err(WriteError::Stall) => {
                    self.stalled = true;
                    break;
                }
                Err(WriteError::Failed(reason)) => {
                    tracing::error!(%region, index, %reason, "the store failed; the region stops applying");
                    self.failed = Some(reason);
                    break;
                }
            };
            self.unapplied.pop_front().expect("front exists");
            self.applied_term = term;
            self.answer(index, term, result);
            self.raw.advance_apply_to(index);
            applied_any = true;
            if self.removed {
                // Nothing after its own removal concerns this replica.
                self.unapplied.clear();
                break;
            }
        }
        if applied_any {
            let keep = self.cfg.entry_cache_entries_max as u64;
            let compact_to = self.raw.raft.raft_log.applied.saturating_sub(keep);
            self.raw.mut_store().compact_to(compact_to);
        }
    }

    /// Answers the proposals at `index`: the one of the entry's term gets
    /// the result; any other was overwritten and gets `NotLeader`.
    fn answer(&mut self, index: u64, term: u64, mut result: Option<ResponseBody>) {
        while let Some(p) = self.proposals.front().copied() {
            if p.index > index {
                break;
            }
            self.proposals.pop_front();
            let answer = if p.index == index && p.term == term {
                Ok(result.take().expect("a proposal's entry carries a command"))
            } else {
                Err(self.not_leader())
            };
            self.finished.push((p.token, answer));
        }
    }
}

/// The WAL as a `Ready` of a possibly uninitialized replica writes it:
/// appends are dropped while `enabled` is false.
struct OptionalSink<'a> {
    wal: &'a mut dyn WalSink,
    enabled: bool,
}

impl WalSink for OptionalSink<'_> {
    fn append(&mut self, kind: RecordKind, region: RegionId, payload: &[u8]) {
        if self.enabled {
            self.wal.append(kind, region, payload);
        }
    }
}
