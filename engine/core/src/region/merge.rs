//! Region merges: `PrepareMerge` on the source, `CommitMerge` on the
//! target, `RollbackMerge` on the source (TiKV's three admin commands,
//! simplified because a merge here never moves data).
//!
//! Owns the merge's rules, its commands and their codec, the source's
//! durable merge state and the target's wait for its local source replica.
//! Precondition (checked by the PD, by the proposer and again at apply):
//! the source and the target are adjacent and have their replicas on
//! exactly the same (store, shard) pairs, all voters. Each shard keeps its
//! regions in one store, so the target's replica beside each source
//! replica already holds the source's data: merging is a hand-over of the
//! key range, no copy.
//!
//! 1. `Prepare { target, target_epoch, epoch }`, proposed by the source
//!    leader: every source replica applying it (if the source's epoch is
//!    still `epoch`) bumps `version` and `conf_ver`, records
//!    [`MergeState`] durably (the `RegionMeta` record's v4 trailer:
//!    `meta.rs`), and from then on serves no read and applies no write
//!    (`ServerBusy`: the client backs off and retries; once the merge is
//!    done the source is gone and the client re-routes). A data command
//!    after the prepare in the log applies as a no-op and its proposal gets
//!    `ServerBusy`.
//! 2. `Commit { source, prepare_index, prepare_term, target_epoch }`,
//!    proposed by the target leader once every source replica has the
//!    prepare entry in its log (the source leader's `matched`). A target
//!    replica applies it only if its epoch is still `target_epoch` (the one
//!    the prepare recorded) and the regions are still adjacent and aligned;
//!    then its apply *pauses* until the shell reports that the local source
//!    replica has applied `prepare_index` ([`RegionPeer::on_merge_source_applied`]).
//!    The shell helps the local source catch up: its log holds the entry
//!    (it was matched), so the committed `Commit` proves the prepare
//!    committed and the shell may raise the source's commit index to it
//!    ([`RegionPeer::catch_up_for_merge`]). This is why `Commit` does not
//!    carry the source's entries as TiKV's does: TiKV needs them for a
//!    source replica that lacks them, which the `matched` guard rules out.
//!    The target then covers both ranges, at version `max(target, source)`
//!    plus one, and hands the source to the shell
//!    ([`RegionPeer::take_merged_sources`]), which destroys the local source replica WITHOUT deleting its data.
//! 3. `Rollback { prepare_index }`, proposed by the source leader when the
//!    target's epoch is no longer `target_epoch` and its range does not
//!    cover the source's (so no `Commit` for this prepare can ever apply:
//!    the target's epoch only grows): the source resumes at `version` + 1.
//!
//! Invariants:
//! - exactly one owner per key: the source serves nothing from its prepare
//!   on; the target takes the range only after its local source applied
//!   everything up to the prepare (the data written there is in the shared
//!   store), and a rollback is only proposed once a commit can never apply;
//! - crash safety: the merge state is in every `RegionMeta` record written
//!   after the prepare (checkpoints included) and re-derived by replaying
//!   the prepare otherwise; a target replaying its `Commit` waits for the
//!   source's replay again; an LSM flush writes all of a shard's regions at
//!   once, so a target write durable after the commit implies the source's
//!   writes before it are durable too; the shell writes the source's
//!   tombstone only once the store holds the source's applied index;
//! - applying is deterministic from the entry and the metadata before it.

use super::meta::{PeerRole, RegionMeta};
use super::peer::{ProposalToken, RegionPeer};
use crate::command::{ByteReader, ByteWriter, Command, DecodeError};
use crate::kv::apply_noop;
use crate::store::{KvStore, WriteError};
use golem_wire::{GolemError, LogIndex, RegionEpoch, RegionId, ResponseBody};

/// `retry_after_ms` for requests to a merging source, and for merge
/// proposals while another admin change is in flight.
pub const MERGE_BUSY_RETRY_AFTER_MS: u32 = 100;

const SUBTAG_PREPARE: u8 = 1;
const SUBTAG_COMMIT: u8 = 2;
const SUBTAG_ROLLBACK: u8 = 3;

/// A source replica's merge in progress (from its applied prepare on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeState {
    /// The region the source merges into.
    pub target: RegionId,
    /// The target's epoch the merge was planned at: a `Commit` applies only
    /// at it, a `Rollback` only once the target has left it.
    pub target_epoch: RegionEpoch,
    /// Index and term of the prepare entry in the source's log.
    pub prepare_index: u64,
    pub prepare_term: u64,
}

impl MergeState {
    /// Bytes of the `RegionMeta` record's v4 trailer.
    pub const ENCODED_BYTES: usize = 5 * 8;

    pub(crate) fn encode_into(&self, w: &mut ByteWriter) {
        w.u64(self.target.get());
        w.u64(self.target_epoch.conf_ver);
        w.u64(self.target_epoch.version);
        w.u64(self.prepare_index);
        w.u64(self.prepare_term);
    }

    pub(crate) fn decode_from(r: &mut ByteReader<'_>) -> Result<MergeState, DecodeError> {
        Ok(MergeState {
            target: RegionId(r.u64()?),
            target_epoch: RegionEpoch {
                conf_ver: r.u64()?,
                version: r.u64()?,
            },
            prepare_index: r.u64()?,
            prepare_term: r.u64()?,
        })
    }
}

/// The merge admin commands (`Command::Merge`, tag 6).
///
/// Format after the command's tag: `subtag:u8` then
/// `Prepare(1) = target:u64 target_conf_ver:u64 target_version:u64
/// conf_ver:u64 version:u64`,
/// `Commit(2) = source:bytes(RegionMeta record) prepare_index:u64
/// prepare_term:u64 target_conf_ver:u64 target_version:u64`,
/// `Rollback(3) = prepare_index:u64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeCommand {
    /// Source: stop serving, bump the epoch, record the merge. Applies only
    /// at the source's `epoch`.
    Prepare {
        target: RegionId,
        target_epoch: RegionEpoch,
        epoch: RegionEpoch,
    },
    /// Target: take the source's range once the local source replica has
    /// applied `prepare_index`. Applies only at `target_epoch`.
    Commit {
        source: RegionMeta,
        prepare_index: u64,
        prepare_term: u64,
        target_epoch: RegionEpoch,
    },
    /// Source: give up the merge prepared at `prepare_index` and serve again.
    Rollback { prepare_index: u64 },
}

impl MergeCommand {
    pub(crate) fn encode_into(&self, w: &mut ByteWriter) {
        match self {
            MergeCommand::Prepare {
                target,
                target_epoch,
                epoch,
            } => {
                w.u8(SUBTAG_PREPARE);
                w.u64(target.get());
                w.u64(target_epoch.conf_ver);
                w.u64(target_epoch.version);
                w.u64(epoch.conf_ver);
                w.u64(epoch.version);
            }
            MergeCommand::Commit {
                source,
                prepare_index,
                prepare_term,
                target_epoch,
            } => {
                w.u8(SUBTAG_COMMIT);
                w.bytes(&source.encode());
                w.u64(*prepare_index);
                w.u64(*prepare_term);
                w.u64(target_epoch.conf_ver);
                w.u64(target_epoch.version);
            }
            MergeCommand::Rollback { prepare_index } => {
                w.u8(SUBTAG_ROLLBACK);
                w.u64(*prepare_index);
            }
        }
    }

    pub(crate) fn decode_from(r: &mut ByteReader<'_>) -> Result<MergeCommand, DecodeError> {
        let epoch = |r: &mut ByteReader<'_>| -> Result<RegionEpoch, DecodeError> {
            Ok(RegionEpoch {
                conf_ver: r.u64()?,
                version: r.u64()?,
            })
        };
        Ok(match r.u8()? {
            SUBTAG_PREPARE => MergeCommand::Prepare {
                target: RegionId(r.u64()?),
                target_epoch: epoch(r)?,
                epoch: epoch(r)?,
            },
            SUBTAG_COMMIT => MergeCommand::Commit {
                source: RegionMeta::decode(r.slice()?)?,
                prepare_index: r.u64()?,
                prepare_term: r.u64()?,
                target_epoch: epoch(r)?,
            },
            SUBTAG_ROLLBACK => MergeCommand::Rollback {
                prepare_index: r.u64()?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "merge command",
                    tag,
                })
            }
        })
    }

    pub(crate) fn encoded_len_hint(&self) -> usize {
        match self {
            MergeCommand::Commit { source, .. } => {
                80 + source.start.len() + source.end.len() + 19 * source.peers.len()
            }
            _ => 41,
        }
    }
}

/// A target replica's `Commit` waiting for its local source replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeWait {
    pub source: RegionId,
    pub prepare_index: u64,
    pub prepare_term: u64,
}

/// A replica's merge bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct MergeBook {
    /// Source: the applied prepare (durable in the metadata record).
    pub(crate) merging: Option<MergeState>,
    /// Leader: index of the last merge command it proposed; no other admin
    /// change is proposed until it applied.
    proposed_at: Option<u64>,
    /// Target: the local source replica's applied index, as the shell last
    /// reported it (`u64::MAX`: the source replica is gone from this shard,
    /// its data durable).
    source_applied: Option<(RegionId, u64)>,
    /// Target: a `Commit` paused for its local source replica.
    waiting: Option<MergeWait>,
    /// Target: sources whose range this replica took, for the shell.
    merged: Vec<RegionId>,
    /// Source: merged into its target; serves and steps nothing more (the
    /// shell writes its tombstone and drops it).
    pub(crate) gone: bool,
}

/// Why `source` cannot merge into `target` as they are (None: it can).
/// Pure: the PD and the proposers use the same rule.
pub fn merge_refusal(source: &RegionMeta, target: &RegionMeta) -> Option<String> {
    if source.id == target.id {
        return Some("a region cannot merge into itself".into());
    }
    let adjacent = (!source.end.is_empty() && source.end == target.start)
        || (!target.end.is_empty() && target.end == source.start);
    if !adjacent {
        return Some(format!(
            "regions {} and {} are not adjacent",
            source.id, target.id
        ));
    }
    if let Some(p) = source
        .peers
        .iter()
        .chain(&target.peers)
        .find(|p| p.role != PeerRole::Voter)
    {
        return Some(format!("peer {} is not a plain voter", p.id));
    }
    let placement = |m: &RegionMeta| {
        let mut v: Vec<_> = m.peers.iter().map(|p| (p.store, p.shard)).collect();
        v.sort();
        v
    };
    if placement(source) != placement(target) {
        return Some(format!(
            "regions {} and {} are not on the same (store, shard) pairs",
            source.id, target.id
        ));
    }
    None
}

/// The target's metadata after taking `source`'s range.
pub fn merged_meta(target: &RegionMeta, source: &RegionMeta) -> RegionMeta {
    let mut m = target.clone();
    if !source.end.is_empty() && source.end == target.start {
        m.start = source.start.clone();
    } else {
        m.end = source.end.clone();
    }
    m.epoch.version = target.epoch.version.max(source.epoch.version) + 1;
    m
}

impl RegionPeer {
    /// Source: the merge this replica prepared, if any.
    pub fn merge_state(&self) -> Option<MergeState> {
        self.merge.merging
    }

    /// Source: whether this replica was merged into its target (the shell
    /// destroys it without deleting its data).
    pub fn is_merged(&self) -> bool {
        self.merge.gone
    }

    /// Target: the `Commit` this replica's apply waits on, if any.
    pub fn merge_wait(&self) -> Option<MergeWait> {
        self.merge.waiting
    }

    /// Target: the shell reports how far the local replica of `source` has
    /// applied (`u64::MAX` when it is gone from the shard).
    pub fn on_merge_source_applied(&mut self, source: RegionId, applied: u64) {
        self.merge.source_applied = Some((source, applied));
    }

    /// Target: the sources merged into this region since the last call.
    pub fn take_merged_sources(&mut self) -> Vec<RegionId> {
        std::mem::take(&mut self.merge.merged)
    }

    /// Source: marks this replica merged into its target: it serves, steps
    /// and ticks nothing more. The shell calls it for each source a local
    /// target took (`take_merged_sources`).
    pub fn mark_merged(&mut self) {
        tracing::info!(region = %self.meta.id, "merged into its target; the replica stops");
        self.merge.gone = true;
    }

    /// Whether requests and other admin changes must wait: a merge is
    /// prepared here, or a merge command this leader proposed is not
    /// applied yet.
    pub(crate) fn merge_blocks(&self) -> Option<GolemError> {
        let pending = self
            .merge
            .proposed_at
            .is_some_and(|at| at > self.raw.raft.raft_log.applied);
        (self.merge.merging.is_some() || self.merge.gone || pending).then_some(
            GolemError::ServerBusy {
                retry_after_ms: MERGE_BUSY_RETRY_AFTER_MS,
            },
        )
    }

    /// Source: lets this replica apply up to the prepare of a merge whose
    /// `Commit` the local target applies: the commit proves the prepare is
    /// committed, and this replica's log holds it (it was matched when the
    /// commit was proposed), so the commit index may be raised to it even if
    /// no source leader is left to say so. Returns whether the replica has
    /// applied `prepare_index` already.
    pub fn catch_up_for_merge(&mut self, prepare_index: u64, prepare_term: u64) -> bool {
        let log = &mut self.raw.raft.raft_log;
        if log.applied >= prepare_index {
            return true;
        }
        if log.committed < prepare_index && log.term(prepare_index).ok() == Some(prepare_term) {
            tracing::info!(region = %self.meta.id, prepare_index, "merge: commit index raised to the prepare");
            log.commit_to(prepare_index);
            self.wake();
        }
        false
    }

    /// Leader: whether every replica's log holds entry `index`.
    pub fn all_matched(&self, index: u64) -> bool {
        self.raw
            .raft
            .prs()
            .iter()
            .all(|(_, pr)| pr.matched >= index)
    }

    /// Source leader: proposes preparing to merge into `target` (its meta
    /// as this node sees it). Errors (nothing proposed): `NotLeader`,
    /// `InvalidArgument` for a merge that makes no sense, `ServerBusy` while
    /// another admin change is in flight.
    pub fn propose_prepare_merge(
        &mut self,
        target: &RegionMeta,
        token: ProposalToken,
    ) -> Result<u64, GolemError> {
        self.check_merge_proposer()?;
        if let Some(busy) = self.merge_blocks() {
            return Err(busy);
        }
        if let Some(why) = merge_refusal(&self.meta, target) {
            return Err(GolemError::invalid(why));
        }
        let cmd = Command::Merge(MergeCommand::Prepare {
            target: target.id,
            target_epoch: target.epoch,
            epoch: self.meta.epoch,
        });
        let index = self.propose_command(&cmd, token)?;
        self.merge.proposed_at = Some(index);
        tracing::info!(region = %self.meta.id, target = %target.id, index, "merge prepare proposed");
        Ok(index)
    }

    /// Target leader: proposes taking over `source` (the source's meta after
    /// its prepare, `state` its merge state). `EpochNotMatch` when this
    /// region's epoch is not the one the prepare recorded (the source should
    /// roll back); otherwise as `propose_prepare_merge`.
    pub fn propose_commit_merge(
        &mut self,
        source: &RegionMeta,
        state: MergeState,
        token: ProposalToken,
    ) -> Result<u64, GolemError> {
        self.check_merge_proposer()?;
        if state.target != self.meta.id || state.target_epoch != self.meta.epoch {
            return Err(GolemError::EpochNotMatch {
                current_regions: vec![self.meta.to_info()],
            });
        }
        if let Some(busy) = self.merge_blocks() {
            return Err(busy);
        }
        if let Some(why) = merge_refusal(source, &self.meta) {
            return Err(GolemError::invalid(why));
        }
        let cmd = Command::Merge(MergeCommand::Commit {
            source: source.clone(),
            prepare_index: state.prepare_index,
            prepare_term: state.prepare_term,
            target_epoch: state.target_epoch,
        });
        let index = self.propose_command(&cmd, token)?;
        self.merge.proposed_at = Some(index);
        tracing::info!(region = %self.meta.id, source = %source.id, index, "merge commit proposed");
        Ok(index)
    }

    /// Source leader: proposes rolling the prepared merge back. The caller
    /// has checked that no `Commit` can apply any more (the target left the
    /// recorded epoch without covering this range). `InvalidArgument` when
    /// no merge is prepared here.
    pub fn propose_rollback_merge(&mut self, token: ProposalToken) -> Result<u64, GolemError> {
        self.check_merge_proposer()?;
        let Some(state) = self.merge.merging else {
            return Err(GolemError::invalid(format!(
                "region {} prepared no merge",
                self.meta.id
            )));
        };
        let cmd = Command::Merge(MergeCommand::Rollback {
            prepare_index: state.prepare_index,
        });
        let index = self.propose_command(&cmd, token)?;
        tracing::info!(region = %self.meta.id, index, "merge rollback proposed");
        Ok(index)
    }

    fn check_merge_proposer(&mut self) -> Result<(), GolemError> {
        self.wake();
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let raft = &self.raw.raft;
        if self.is_splitting()
            || raft.has_pending_conf()
            || !raft.prs().conf().to_conf_state().voters_outgoing.is_empty()
        {
            return Err(GolemError::ServerBusy {
                retry_after_ms: MERGE_BUSY_RETRY_AFTER_MS,
            });
        }
        Ok(())
    }

    /// Applies a committed merge command at `index` (term `term`). `Stall`
    /// when a `Commit` waits for the local source (nothing changed; retried
    /// on a later pass). Refused commands change nothing but the applied
    /// index, and their proposal gets `EpochNotMatch`.
    pub(crate) fn apply_merge(
        &mut self,
        index: u64,
        term: u64,
        cmd: MergeCommand,
        store: &mut dyn KvStore,
    ) -> Result<Option<ResponseBody>, WriteError> {
        if let MergeCommand::Commit {
            source,
            prepare_index,
            prepare_term,
            target_epoch,
        } = &cmd
        {
            let applies = index <= self.meta_as_of || *target_epoch == self.meta.epoch;
            if applies && merge_refusal(source, &self.meta).is_none() || index <= self.meta_as_of {
                let ready = self
                    .merge
                    .source_applied
                    .is_some_and(|(s, a)| s == source.id && a >= *prepare_index);
                if !ready {
                    if self.merge.waiting.is_none() {
                        tracing::info!(region = %self.meta.id, source = %source.id, prepare_index, "merge commit waits for the local source replica");
                    }
                    self.merge.waiting = Some(MergeWait {
                        source: source.id,
                        prepare_index: *prepare_index,
                        prepare_term: *prepare_term,
                    });
                    return Err(WriteError::Stall);
                }
            }
        }
        apply_noop(store, self.meta.id, LogIndex(index))?;
        self.merge.waiting = None;
        self.merge.source_applied = None;
        match self.apply_merge_meta(index, term, cmd) {
            Ok(answer) => Ok(Some(answer)),
            Err(err) => {
                let at = self
                    .proposals
                    .iter()
                    .position(|p| p.index == index && p.term == term);
                if let Some(p) = at.and_then(|at| self.proposals.remove(at)) {
                    self.finished.push((p.token, Err(err)));
                }
                Ok(None)
            }
        }
    }

    /// The metadata side of a merge command (also recovery's replay of one
    /// the store holds but no metadata record does). The answer of an
    /// applied command is the region's new epoch (`ResponseBody::ChangePeers`).
    pub(crate) fn apply_merge_meta(
        &mut self,
        index: u64,
        term: u64,
        cmd: MergeCommand,
    ) -> Result<ResponseBody, GolemError> {
        let region = self.meta.id;
        let refused = |why: String, meta: &RegionMeta| {
            tracing::info!(%region, index, reason = %why, "merge command refused at apply");
            GolemError::EpochNotMatch {
                current_regions: vec![meta.to_info()],
            }
        };
        if index <= self.meta_as_of {
            // Already in the metadata (a replay). A commit's source must
            // still go.
            if let MergeCommand::Commit { source, .. } = cmd {
                if self.meta.contains(&source.start) {
                    self.merge.merged.push(source.id);
                }
            }
            return Ok(ResponseBody::ChangePeers {
                epoch: self.meta.epoch,
            });
        }
        match cmd {
            MergeCommand::Prepare {
                target,
                target_epoch,
                epoch,
            } => {
                if epoch != self.meta.epoch {
                    return Err(refused("the source's epoch changed".into(), &self.meta));
                }
                if self.merge.merging.is_some() {
                    return Err(refused("a merge is prepared already".into(), &self.meta));
                }
                if let Some(p) = self.meta.peers.iter().find(|p| p.role != PeerRole::Voter) {
                    return Err(refused(format!("peer {} is not a voter", p.id), &self.meta));
                }
                self.meta.epoch.version += 1;
                self.meta.epoch.conf_ver += 1;
                self.merge.merging = Some(MergeState {
                    target,
                    target_epoch,
                    prepare_index: index,
                    prepare_term: term,
                });
                tracing::info!(%region, %target, index, "merge prepared: the region stops serving");
            }
            MergeCommand::Commit {
                source,
                target_epoch,
                ..
            } => {
                if target_epoch != self.meta.epoch {
                    return Err(refused("the target's epoch changed".into(), &self.meta));
                }
                if let Some(why) = merge_refusal(&source, &self.meta) {
                    return Err(refused(why, &self.meta));
                }
                self.meta = merged_meta(&self.meta, &source);
                self.merge.merged.push(source.id);
                tracing::info!(%region, source = %source.id, index, version = self.meta.epoch.version, "merge committed: the region took its source's range");
            }
            MergeCommand::Rollback { prepare_index } => {
                if self.merge.merging.map(|m| m.prepare_index) != Some(prepare_index)
                    || self.merge.gone
                {
                    return Err(refused(
                        format!("no merge prepared at {prepare_index}"),
                        &self.meta,
                    ));
                }
                self.merge.merging = None;
                self.meta.epoch.version += 1;
                tracing::info!(%region, prepare_index, "merge rolled back: the region serves again");
            }
        }
        self.meta_as_of = index;
        self.meta_unwritten = true;
        Ok(ResponseBody::ChangePeers {
            epoch: self.meta.epoch,
        })
    }

    /// Whether data commands apply as no-ops (a merge is prepared).
    pub(crate) fn merge_blocks_writes(&self) -> bool {
        self.merge.merging.is_some() || self.merge.gone
    }

    /// Applies a data command found after a merge prepare as a no-op; its
    /// proposal gets `ServerBusy` (it took no effect: safe to retry).
    pub(crate) fn skip_write(
        &mut self,
        index: u64,
        term: u64,
        store: &mut dyn KvStore,
    ) -> Result<Option<ResponseBody>, WriteError> {
        apply_noop(store, self.meta.id, LogIndex(index))?;
        let at = self
            .proposals
            .iter()
            .position(|p| p.index == index && p.term == term);
        if let Some(p) = at.and_then(|at| self.proposals.remove(at)) {
            self.finished.push((
                p.token,
                Err(GolemError::ServerBusy {
                    retry_after_ms: MERGE_BUSY_RETRY_AFTER_MS,
                }),
            ));
        }
        Ok(None)
    }

    /// The `RegionMeta` record of this replica as of `as_of`, with its
    /// merge state (format v4) while a merge is prepared.
    pub(crate) fn meta_record(&self, as_of: u64) -> Vec<u8> {
        self.meta.encode_record(as_of, self.merge.merging.as_ref())
    }

    /// Recovery and snapshots: the merge state the metadata record held.
    pub(crate) fn set_merge_state(&mut self, state: Option<MergeState>) {
        self.merge.merging = state;
    }
}

/// Whether an entry's data is a merge command (without decoding it).
pub(crate) fn is_merge_entry(data: &[u8]) -> bool {
    data.len() >= 2
        && data[0] == crate::command::COMMAND_FORMAT_VERSION
        && data[1] == crate::command::TAG_MERGE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::meta::PeerMeta;
    use golem_wire::{PeerId, ShardId, StoreId};

    fn region(id: u64, start: &[u8], end: &[u8], first_peer: u64) -> RegionMeta {
        RegionMeta {
            id: RegionId(id),
            start: start.to_vec(),
            end: end.to_vec(),
            epoch: RegionEpoch {
                conf_ver: 2,
                version: 5,
            },
            peers: (0..3)
                .map(|i| PeerMeta::new(PeerId(first_peer + i), StoreId(1 + i), ShardId(i as u16)))
                .collect(),
        }
    }

    #[test]
    fn commands_and_merge_records_roundtrip_and_bad_bytes_are_typed_errors() {
        let source = region(9, b"m", b"", 11);
        let cmds = [
            MergeCommand::Prepare {
                target: RegionId(7),
                target_epoch: RegionEpoch {
                    conf_ver: 1,
                    version: 2,
                },
                epoch: source.epoch,
            },
            MergeCommand::Commit {
                source: source.clone(),
                prepare_index: 42,
                prepare_term: 6,
                target_epoch: RegionEpoch::default(),
            },
            MergeCommand::Rollback { prepare_index: 42 },
        ];
        for cmd in cmds {
            let bytes = Command::Merge(cmd.clone()).encode();
            assert!(is_merge_entry(&bytes));
            assert_eq!(Command::decode(&bytes), Ok(Command::Merge(cmd)));
            for cut in 0..bytes.len() {
                assert!(Command::decode(&bytes[..cut]).is_err(), "prefix {cut}");
            }
        }
        let mut bad = Command::Merge(MergeCommand::Rollback { prepare_index: 1 }).encode();
        bad[2] = 9;
        assert!(Command::decode(&bad).is_err());

        let state = MergeState {
            target: RegionId(7),
            target_epoch: RegionEpoch {
                conf_ver: 1,
                version: 2,
            },
            prepare_index: 42,
            prepare_term: 6,
        };
        let record = source.encode_record(43, Some(&state));
        assert_eq!(
            record[0],
            super::super::meta::REGION_META_MERGING_FORMAT_VERSION
        );
        assert_eq!(
            RegionMeta::decode_record(&record),
            Ok((source.clone(), 43, Some(state)))
        );
        assert_eq!(RegionMeta::decode_at(&record), Ok((source.clone(), 43)));
        assert_eq!(source.encode_record(43, None), source.encode_at(43));
        for cut in 0..record.len() {
            assert!(RegionMeta::decode_record(&record[..cut]).is_err());
        }
    }

    #[test]
    fn only_adjacent_aligned_voter_regions_merge() {
        let left = region(7, b"", b"m", 1);
        let right = region(9, b"m", b"", 11);
        assert_eq!(merge_refusal(&right, &left), None);
        assert_eq!(merge_refusal(&left, &right), None);
        let merged = merged_meta(&left, &right);
        assert_eq!((merged.start.clone(), merged.end.clone()), (vec![], vec![]));
        assert_eq!(merged.epoch.version, 6);
        assert_eq!(merged.peers, left.peers);
        let merged = merged_meta(&right, &left);
        assert_eq!((merged.id, merged.start.is_empty()), (RegionId(9), true));
        // The whole-key-space ends never make two regions adjacent.
        let gap = region(9, b"n", b"", 11);
        assert!(merge_refusal(&gap, &left).is_some());
        assert!(merge_refusal(&left, &left).is_some());
        let mut moved = right.clone();
        moved.peers[1].shard = ShardId(7);
        assert!(merge_refusal(&moved, &left).is_some());
        let mut learner = right.clone();
        learner.peers[2].role = PeerRole::Learner;
        assert!(merge_refusal(&learner, &left).is_some());
    }
}
