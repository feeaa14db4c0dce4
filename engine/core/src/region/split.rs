//! Region splits: proposing one (`RequestBody::Split`) and applying the
//! committed `Command::Split` on every replica.
//!
//! Owns the split's rules and its metadata arithmetic (TiKV's
//! `exec_batch_split`, for one split key): the region keeps `[start,
//! split_key)`, a new region takes `[split_key, end)`, both at `version` + 1
//! and the region's `conf_ver`; the new region's i-th peer sits on the
//! store and shard of the region's i-th peer, with the same role. No data
//! moves: both halves stay in the shard's store, so the entry's store write
//! is empty. Each replica queues the new region's metadata for the shell
//! (`take_split_regions`), which creates its replica on the same shard.
//!
//! Invariants:
//! - applying is deterministic from the entry and the metadata before it:
//!   the split applies only if the region's epoch is still the one it was
//!   proposed at (TiKV's apply-time epoch check), otherwise it changes
//!   nothing anywhere and its proposer gets `EpochNotMatch`;
//! - a split is proposed only by the leader, with a split key strictly
//!   inside the range, one new peer per replica (distinct, non-zero ids), a
//!   new region id other than the region's, outside a joint configuration,
//!   with no membership change and no other split of this leader pending;
//! - the store write comes first: a stalled split changes no metadata and
//!   is retried whole;
//! - a split at or below `meta_as_of` is already in the metadata (recovery
//!   replays the log after a checkpointed metadata record); later ones are
//!   applied again and their new regions queued again (the shell skips a
//!   region it already hosts);
//! - after a crash, a new region must not apply anything before its parent
//!   has applied the split again (the parent's earlier writes into the new
//!   region's range would otherwise land on top of the new region's):
//!   recovery reports these `(new region, split index)` pairs
//!   (`take_split_replay_gates`) and the shell holds the new region back.

use super::meta::{PeerMeta, PeerRole, RegionMeta};
use super::peer::{ProposalToken, RegionPeer};
use crate::command::Command;
use crate::kv::apply_noop;
use crate::store::{KvStore, WriteError};
use golem_wire::{GolemError, LogIndex, PeerId, RegionId, ResponseBody};

/// `retry_after_ms` while a membership change or another split is in
/// flight, or the region is in a joint configuration.
pub const SPLIT_BUSY_RETRY_AFTER_MS: u32 = 100;

/// A replica's split bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct SplitState {
    /// Index of the split this leader proposed last: another waits until
    /// it is applied (and lease reads are not served meanwhile).
    proposed_at: Option<u64>,
    /// New regions made by applied splits, not yet taken by the shell.
    created: Vec<RegionMeta>,
    /// Recovery: `(new region, split index)` for split entries after the
    /// store's applied index.
    replay_gates: Vec<(RegionId, u64)>,
}

/// The two halves of `meta` split at `split_key`: `(left, right)`, or why
/// the split makes no sense against `meta`. Pure and deterministic.
pub fn split_meta(
    meta: &RegionMeta,
    split_key: &[u8],
    new_region: RegionId,
    new_peers: &[PeerId],
) -> Result<(RegionMeta, RegionMeta), String> {
    let region = meta.id;
    if split_key <= meta.start.as_slice() || (!meta.end.is_empty() && split_key >= &meta.end[..]) {
        return Err(format!(
            "split key {split_key:?} is not strictly inside region {region} [{:?}, {:?})",
            meta.start, meta.end
        ));
    }
    if new_region == region || new_region.get() == 0 {
        return Err(format!("{new_region} cannot be the new region's id"));
    }
    if new_peers.len() != meta.peers.len() {
        return Err(format!(
            "{} new peers for the {} replicas of region {region}",
            new_peers.len(),
            meta.peers.len()
        ));
    }
    for (i, p) in new_peers.iter().enumerate() {
        if p.get() == 0 || new_peers[..i].contains(p) {
            return Err(format!("new peer id {p} is 0 or listed twice"));
        }
    }
    if meta
        .peers
        .iter()
        .any(|p| matches!(p.role, PeerRole::IncomingVoter | PeerRole::DemotingVoter))
    {
        return Err(format!("region {region} is in a joint configuration"));
    }
    let mut left = meta.clone();
    left.end = split_key.to_vec();
    left.epoch.version += 1;
    let right = RegionMeta {
        id: new_region,
        start: split_key.to_vec(),
        end: meta.end.clone(),
        epoch: left.epoch,
        peers: meta
            .peers
            .iter()
            .zip(new_peers)
            .map(|(p, &id)| PeerMeta { id, ..*p })
            .collect(),
    };
    left.validate()?;
    right.validate()?;
    Ok((left, right))
}

/// Whether an entry's data is a `Command::Split` (without decoding it).
pub(crate) fn is_split_entry(data: &[u8]) -> bool {
    data.len() >= 2
        && data[0] == crate::command::COMMAND_FORMAT_VERSION
        && data[1] == crate::command::TAG_SPLIT
}

impl RegionPeer {
    /// Proposes splitting this region at `split_key` into itself and
    /// `new_region` (peers `new_peers`, one per replica, in `meta.peers`
    /// order). The caller checked leadership and the request's limits.
    /// Errors (nothing was proposed): `KeyNotInRegion` for a routing key
    /// outside the region, `InvalidArgument` for a split that makes no
    /// sense, `ServerBusy` while a membership change or another split is in
    /// flight or the region is in a joint configuration.
    pub(crate) fn propose_split(
        &mut self,
        key: &[u8],
        split_key: Vec<u8>,
        new_region: RegionId,
        new_peers: Vec<PeerId>,
        token: ProposalToken,
    ) -> Result<(), GolemError> {
        self.meta.check_key(key)?;
        let busy = GolemError::ServerBusy {
            retry_after_ms: SPLIT_BUSY_RETRY_AFTER_MS,
        };
        let raft = &self.raw.raft;
        if self.is_splitting()
            || raft.has_pending_conf()
            || !raft.prs().conf().to_conf_state().voters_outgoing.is_empty()
        {
            return Err(busy);
        }
        split_meta(&self.meta, &split_key, new_region, &new_peers).map_err(GolemError::invalid)?;
        let cmd = Command::Split {
            split_key,
            new_region,
            new_peers,
            epoch: self.meta.epoch,
        };
        let index = self.propose_command(&cmd, token)?;
        self.split.proposed_at = Some(index);
        tracing::info!(region = %self.meta.id, %new_region, index, "split proposed");
        Ok(())
    }

    /// Whether a split this leader proposed is not applied yet. Lease reads
    /// wait meanwhile (TiKV's `is_splitting`): once the split commits, the
    /// new region may elect a leader elsewhere and take writes in the range
    /// this replica still holds until it applies the split.
    pub fn is_splitting(&self) -> bool {
        self.split
            .proposed_at
            .is_some_and(|at| at > self.raw.raft.raft_log.applied)
    }

    /// The new regions made by splits this replica applied since the last
    /// call (each as every replica computes it). The shell creates this
    /// store's replica of each, on this shard, unless it hosts one already.
    pub fn take_split_regions(&mut self) -> Vec<RegionMeta> {
        std::mem::take(&mut self.split.created)
    }

    /// After `recover`: `(new region, split index)` of each split in this
    /// region's log that the store does not hold durably. The new region
    /// must apply nothing until this region has applied that index.
    pub fn take_split_replay_gates(&mut self) -> Vec<(RegionId, u64)> {
        std::mem::take(&mut self.split.replay_gates)
    }

    /// Recovery: notes a split entry the store does not hold yet.
    pub(crate) fn note_split_replay_gate(&mut self, new_region: RegionId, index: u64) {
        self.split.replay_gates.push((new_region, index));
    }

    /// Applies the committed split `cmd` at `index` (term `term`): the
    /// (empty) store write, then the metadata. Returns the answer for its
    /// proposal; `Ok(None)` when the split was refused at apply (its
    /// proposal, if any, is answered here with `EpochNotMatch`).
    pub(crate) fn apply_split(
        &mut self,
        index: u64,
        term: u64,
        cmd: Command,
        store: &mut dyn KvStore,
    ) -> Result<Option<ResponseBody>, WriteError> {
        apply_noop(store, self.meta.id, LogIndex(index))?;
        match self.apply_split_meta(index, cmd) {
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

    /// The metadata side of applying a split (also recovery's replay of a
    /// split the store holds but no metadata record does).
    pub(crate) fn apply_split_meta(
        &mut self,
        index: u64,
        cmd: Command,
    ) -> Result<ResponseBody, GolemError> {
        let Command::Split {
            split_key,
            new_region,
            new_peers,
            epoch,
        } = cmd
        else {
            unreachable!("apply_split_meta is given split commands only")
        };
        let region = self.meta.id;
        if index <= self.meta_as_of {
            // Already in the metadata (a replay); the new region was
            // created when the split first applied.
            return Ok(ResponseBody::Split {
                regions: vec![self.meta.to_info()],
            });
        }
        let current = || GolemError::EpochNotMatch {
            current_regions: vec![self.meta.to_info()],
        };
        if epoch != self.meta.epoch {
            tracing::info!(%region, index, proposed = ?epoch, current = ?self.meta.epoch, "split refused at apply: the epoch changed");
            return Err(current());
        }
        let (left, right) = match split_meta(&self.meta, &split_key, new_region, &new_peers) {
            Ok(halves) => halves,
            Err(reason) => {
                tracing::warn!(%region, index, %reason, "split refused at apply");
                return Err(current());
            }
        };
        tracing::info!(
            %region,
            %new_region,
            index,
            version = left.epoch.version,
            split_key = ?split_key,
            "region split"
        );
        let answer = ResponseBody::Split {
            regions: vec![left.to_info(), right.to_info()],
        };
        self.meta = left;
        self.meta_as_of = index;
        self.meta_unwritten = true;
        self.split.created.push(right);
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golem_wire::{RegionEpoch, ShardId, StoreId};

    fn meta(start: &[u8], end: &[u8]) -> RegionMeta {
        RegionMeta {
            id: RegionId(2),
            start: start.to_vec(),
            end: end.to_vec(),
            epoch: RegionEpoch {
                conf_ver: 4,
                version: 7,
            },
            peers: vec![
                PeerMeta::new(PeerId(1), StoreId(1), ShardId(0)),
                PeerMeta {
                    role: PeerRole::Learner,
                    ..PeerMeta::new(PeerId(2), StoreId(2), ShardId(1))
                },
            ],
        }
    }

    #[test]
    fn halves_share_the_range_and_the_placement() {
        let m = meta(b"b", b"x");
        let (l, r) = split_meta(&m, b"m", RegionId(9), &[PeerId(10), PeerId(11)]).unwrap();
        assert_eq!(
            (l.start.as_slice(), l.end.as_slice()),
            (&b"b"[..], &b"m"[..])
        );
        assert_eq!(
            (r.start.as_slice(), r.end.as_slice()),
            (&b"m"[..], &b"x"[..])
        );
        let want = RegionEpoch {
            conf_ver: 4,
            version: 8,
        };
        assert_eq!((l.epoch, r.epoch), (want, want));
        assert_eq!((l.id, l.peers.clone()), (m.id, m.peers.clone()));
        assert_eq!(r.id, RegionId(9));
        assert_eq!(
            r.peers,
            vec![
                PeerMeta::new(PeerId(10), StoreId(1), ShardId(0)),
                PeerMeta {
                    role: PeerRole::Learner,
                    ..PeerMeta::new(PeerId(11), StoreId(2), ShardId(1))
                },
            ]
        );
        // The whole key space: the right half runs to its end.
        let (_, r) =
            split_meta(&meta(b"", b""), b"a", RegionId(9), &[PeerId(3), PeerId(4)]).unwrap();
        assert!(r.end.is_empty());
    }

    #[test]
    fn senseless_splits_are_refused() {
        let m = meta(b"b", b"x");
        let ok = [PeerId(10), PeerId(11)];
        for key in [&b"a"[..], b"b", b"x", b"y", b""] {
            assert!(split_meta(&m, key, RegionId(9), &ok).is_err(), "{key:?}");
        }
        assert!(split_meta(&m, b"m", RegionId(2), &ok).is_err());
        assert!(split_meta(&m, b"m", RegionId(0), &ok).is_err());
        assert!(split_meta(&m, b"m", RegionId(9), &[PeerId(10)]).is_err());
        assert!(split_meta(&m, b"m", RegionId(9), &[PeerId(10), PeerId(10)]).is_err());
        assert!(split_meta(&m, b"m", RegionId(9), &[PeerId(0), PeerId(10)]).is_err());
        let mut joint = m.clone();
        joint.peers[1].role = PeerRole::IncomingVoter;
        assert!(split_meta(&joint, b"m", RegionId(9), &ok).is_err());
    }

    #[test]
    fn split_entries_are_recognised_by_their_tag() {
        let cmd = Command::Split {
            split_key: b"m".to_vec(),
            new_region: RegionId(9),
            new_peers: vec![PeerId(3)],
            epoch: RegionEpoch::default(),
        };
        assert!(is_split_entry(&cmd.encode()));
        let put = Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        assert!(!is_split_entry(&put.encode()));
        assert!(!is_split_entry(&[]));
    }
}
