//! Membership changes of a region: proposing them (`ChangePeers`) and
//! applying committed ones to raft and to the region's metadata.
//!
//! Owns the translation between the client's `PeerChange`s and raft-rs's
//! `ConfChangeV2`, the placement of added peers (carried in the entry's
//! context, since raft ids alone do not say where a peer lives), and the
//! metadata update at apply (`conf_ver` + 1 per applied change, roles from
//! raft's resulting configuration).
//!
//! Invariants:
//! - at most one membership change is in flight (raft-rs's pending conf
//!   index), and none is proposed while the region is in a joint
//!   configuration (raft-rs leaves it on its own) or while this leader's
//!   split is in flight (`split.rs`);
//! - a request whose changes are all in effect already (a retry) is
//!   answered at once with the current epoch, without a log entry;
//! - a change is proposed only by the leader, never removes or demotes the
//!   leader itself (move leadership first), adds a new peer only as a
//!   learner, and promotes a learner only once it holds the region and has
//!   caught up (`LEARNER_CATCH_UP_ENTRIES_MAX`);
//! - applying is deterministic from the entry and the metadata before it,
//!   so every replica computes the same metadata;
//! - a change at or below `meta_as_of` is already in the metadata and is
//!   not applied again (recovery replays the log after a checkpointed
//!   metadata record).

use super::meta::{PeerMeta, PeerRole};
use super::peer::{ProposalToken, RegionPeer, PROPOSAL_DROPPED_RETRY_AFTER_MS};
use crate::command::{ByteReader, ByteWriter, DecodeError};
use golem_wire::{GolemError, PeerChange, PeerChangeKind, PeerId, ResponseBody, ShardId, StoreId};
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType,
};

/// A learner is promoted only when at most this many entries behind the
/// leader's last entry (otherwise the promotion waits: `ServerBusy`).
pub const LEARNER_CATCH_UP_ENTRIES_MAX: u64 = 1000;

/// `retry_after_ms` while another membership change is in flight or a
/// learner catches up.
pub const CHANGE_BUSY_RETRY_AFTER_MS: u32 = 100;

/// The version byte of a conf change's context (the added peers).
const CONTEXT_FORMAT_VERSION: u8 = 1;

/// Encodes the placement of added peers: `version:u8 count:u32 (peer:u64
/// store:u64 shard:u16)*`.
fn encode_context(added: &[PeerMeta]) -> Vec<u8> {
    let mut w = ByteWriter::with_capacity(5 + 18 * added.len());
    w.u8(CONTEXT_FORMAT_VERSION);
    w.len_u32(added.len());
    for p in added {
        w.u64(p.id.get());
        w.u64(p.store.get());
        w.u16(p.shard.get());
    }
    w.into_vec()
}

/// Decodes a conf change context (empty: no placements, e.g. raft-rs's
/// own leave-joint entry).
fn decode_context(bytes: &[u8]) -> Result<Vec<(PeerId, StoreId, ShardId)>, DecodeError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = ByteReader::new(bytes);
    r.version("conf change context", CONTEXT_FORMAT_VERSION)?;
    let count = r.count("peer", 18, super::meta::REGION_PEERS_MAX)?;
    let out = (0..count)
        .map(|_| Ok((PeerId(r.u64()?), StoreId(r.u64()?), ShardId(r.u16()?))))
        .collect::<Result<Vec<_>, DecodeError>>()?;
    r.finish()?;
    Ok(out)
}

/// Decodes a committed conf change entry (either format) as a
/// `ConfChangeV2`, with its context.
///
/// # Panics
/// If the bytes do not decode: a committed entry is trusted (it passed the
/// WAL checksum and raft's log matching); this is a broken invariant.
fn decode_entry(region: golem_wire::RegionId, e: &Entry) -> ConfChangeV2 {
    if e.get_entry_type() == EntryType::EntryConfChange {
        let cc = ConfChange::parse_from_bytes(&e.data).unwrap_or_else(|err| {
            panic!(
                "region {region}: conf change at {} does not decode: {err}",
                e.index
            )
        });
        let mut single = ConfChangeSingle::default();
        single.set_change_type(cc.get_change_type());
        single.node_id = cc.node_id;
        let mut v2 = ConfChangeV2::default();
        v2.mut_changes().push(single);
        v2.context = cc.context;
        v2
    } else {
        ConfChangeV2::parse_from_bytes(&e.data).unwrap_or_else(|err| {
            panic!(
                "region {region}: conf change at {} does not decode: {err}",
                e.index
            )
        })
    }
}

impl RegionPeer {
    /// Proposes `changes` as one membership change. Errors (nothing was
    /// proposed): `InvalidArgument` for a change that makes no sense against
    /// the current members, `ServerBusy` while another change is in flight,
    /// the region is in a joint configuration, or a learner to promote
    /// lags.
    pub(crate) fn propose_change_peers(
        &mut self,
        changes: &[PeerChange],
        token: ProposalToken,
    ) -> Result<(), GolemError> {
        let region = self.meta.id;
        let busy = || GolemError::ServerBusy {
            retry_after_ms: CHANGE_BUSY_RETRY_AFTER_MS,
        };
        let raft = &self.raw.raft;
        if raft.has_pending_conf()
            || !raft.prs().conf().to_conf_state().voters_outgoing.is_empty()
            || self.is_splitting()
        {
            return Err(busy());
        }
        let mut cc = ConfChangeV2::default();
        let mut added = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            if changes[..i].iter().any(|d| d.peer == c.peer) {
                return Err(GolemError::invalid(format!(
                    "peer {} changed twice",
                    c.peer
                )));
            }
            let current = self.meta.peer(c.peer).copied();
            // Already done (a retried request): nothing to change.
            let done = match (c.kind, current) {
                (PeerChangeKind::AddLearner, Some(p)) => {
                    p.role == PeerRole::Learner && p.store == c.store
                }
                (PeerChangeKind::AddVoter, Some(p)) => {
                    p.role == PeerRole::Voter && p.store == c.store
                }
                (PeerChangeKind::Remove, None) => true,
                _ => false,
            };
            if done {
                continue;
            }
            let change_type = match (c.kind, current) {
                (PeerChangeKind::AddVoter, None) => {
                    // A brand-new voter holds nothing and votes for no one
                    // until its snapshot: losing the leader then could
                    // leave no electable quorum (golem-sim FINDINGS.md #5).
                    return Err(GolemError::invalid(format!(
                        "peer {} is not a member of region {region}: add it as a learner first",
                        c.peer
                    )));
                }
                (PeerChangeKind::AddLearner, None) => {
                    // A second peer on a store only on another of its
                    // shards (a replica moving between the store's
                    // shards), and never a third.
                    let on_store = self.meta.peers.iter().filter(|p| p.store == c.store);
                    if let Some(other) = self.meta.peer_at(c.store, c.shard) {
                        return Err(GolemError::invalid(format!(
                            "region {region} already has peer {} on store {} shard {}",
                            other.id, c.store, c.shard
                        )));
                    }
                    if on_store.count() >= super::meta::PEERS_PER_STORE_MAX {
                        return Err(GolemError::invalid(format!(
                            "region {region} already has {} peers on store {}",
                            super::meta::PEERS_PER_STORE_MAX,
                            c.store
                        )));
                    }
                    added.push(PeerMeta::new(c.peer, c.store, c.shard));
                    ConfChangeType::AddLearnerNode
                }
                (PeerChangeKind::AddVoter, Some(p)) if p.role == PeerRole::Learner => {
                    let matched = raft.prs().get(c.peer.get()).map_or(0, |pr| pr.matched);
                    let last = raft.raft_log.last_index();
                    // It must hold the region (a snapshot at least: every
                    // log starts after the virtual entry) and be close to
                    // the leader's last entry.
                    if matched < super::snapshot::RAFT_INIT_LOG_INDEX
                        || matched + LEARNER_CATCH_UP_ENTRIES_MAX < last
                    {
                        return Err(busy());
                    }
                    ConfChangeType::AddNode
                }
                (PeerChangeKind::Remove, Some(p)) => {
                    if p.id == self.cfg.peer {
                        return Err(GolemError::invalid(format!(
                            "peer {} leads region {region}: move leadership before removing it",
                            p.id
                        )));
                    }
                    ConfChangeType::RemoveNode
                }
                (kind, current) => {
                    return Err(GolemError::invalid(format!(
                        "{kind:?} of peer {} in region {region}, where it is {}",
                        c.peer,
                        current.map_or("not a member".to_string(), |p| format!("{:?}", p.role))
                    )))
                }
            };
            let mut single = ConfChangeSingle::default();
            single.set_change_type(change_type);
            single.node_id = c.peer.get();
            cc.mut_changes().push(single);
        }
        if cc.get_changes().is_empty() {
            // Every change is already in effect: answered on the next pass.
            self.finished.push((
                token,
                Ok(ResponseBody::ChangePeers {
                    epoch: self.meta.epoch,
                }),
            ));
            return Ok(());
        }
        // One change: a simple change. Several: joint consensus, left by
        // raft-rs on its own once the joint configuration is applied.
        cc.set_transition(ConfChangeTransition::Auto);
        cc.context = encode_context(&added).into();
        let term = raft.term;
        let before = raft.raft_log.last_index();
        let context = cc.context.to_vec();
        match self.raw.propose_conf_change(context, cc) {
            Ok(()) => {}
            Err(raft::Error::ProposalDropped) => {
                return Err(GolemError::ServerBusy {
                    retry_after_ms: PROPOSAL_DROPPED_RETRY_AFTER_MS,
                })
            }
            Err(e) => return Err(GolemError::invalid(e.to_string())),
        }
        self.track_proposal(before, token, term);
        Ok(())
    }

    /// Applies the committed membership change `e` to raft and to the
    /// region's metadata (`conf_ver` + 1, roles from raft's new
    /// configuration, placement of added peers from the context). A change
    /// at or below `meta_as_of` is already in the metadata: skipped. Marks
    /// the replica removed when the change removed it. Returns the answer
    /// for its proposal.
    /// Whether applying the conf change `e` may remove this replica: a
    /// change removing this peer, or the entry leaving a joint
    /// configuration in which it is an outgoing voter only (it may be
    /// staying as a learner: a harmless over-estimate). Nothing for an
    /// entry already reflected in the metadata.
    pub(crate) fn may_remove_self(&self, e: &Entry) -> bool {
        if e.index <= self.meta_as_of {
            return false;
        }
        let cc = decode_entry(self.meta.id, e);
        if cc.changes.is_empty() {
            return self
                .meta
                .peer(self.cfg.peer)
                .is_some_and(|p| p.role == PeerRole::DemotingVoter);
        }
        cc.changes.iter().any(|c| {
            c.node_id == self.cfg.peer.get() && c.get_change_type() == ConfChangeType::RemoveNode
        })
    }

    pub(crate) fn apply_conf_change(&mut self, e: &Entry) -> ResponseBody {
        if e.index <= self.meta_as_of {
            return ResponseBody::ChangePeers {
                epoch: self.meta.epoch,
            };
        }
        let region = self.meta.id;
        let cc = decode_entry(region, e);
        let placements = decode_context(&cc.context).unwrap_or_else(|err| {
            panic!(
                "region {region}: conf change context at {} does not decode: {err}",
                e.index
            )
        });
        match self.raw.apply_conf_change(&cc) {
            Ok(cs) => {
                self.raw.mut_store().set_conf_state(cs.clone());
                self.update_meta_roles(&cs, &placements);
            }
            // raft-rs refuses an impossible change the same way on every
            // replica: the configuration stays as it was everywhere.
            Err(err) => tracing::warn!(
                %region,
                index = e.index,
                error = %err,
                "conf change rejected"
            ),
        }
        self.meta.epoch.conf_ver += 1;
        self.meta_as_of = e.index;
        self.meta_unwritten = true;
        if self.meta.peer(self.cfg.peer).is_none() {
            tracing::info!(%region, peer = %self.cfg.peer, index = e.index, "this replica was removed");
            self.removed = true;
            self.removed_by = Some((e.index, e.term));
        }
        tracing::info!(
            %region,
            index = e.index,
            conf_ver = self.meta.epoch.conf_ver,
            peers = ?self.meta.peers,
            "membership changed"
        );
        ResponseBody::ChangePeers {
            epoch: self.meta.epoch,
        }
    }

    /// Rebuilds `meta.peers` from raft's configuration `cs`: roles from the
    /// configuration, placement from the current metadata or `placements`.
    fn update_meta_roles(&mut self, cs: &ConfState, placements: &[(PeerId, StoreId, ShardId)]) {
        let incoming: Vec<u64> = cs.voters.clone();
        let outgoing: Vec<u64> = cs.voters_outgoing.clone();
        let joint = !outgoing.is_empty();
        let role_of = |id: u64| -> Option<PeerRole> {
            let in_in = incoming.contains(&id);
            let in_out = outgoing.contains(&id);
            let learner = cs.learners.contains(&id) || cs.learners_next.contains(&id);
            Some(match (in_in, in_out, joint) {
                (true, _, false) => PeerRole::Voter,
                (true, true, true) => PeerRole::Voter,
                (true, false, true) => PeerRole::IncomingVoter,
                (false, true, true) => PeerRole::DemotingVoter,
                (false, _, _) if learner => PeerRole::Learner,
                _ => return None,
            })
        };
        let mut ids: Vec<u64> = incoming.clone();
        for id in outgoing.iter().chain(&cs.learners).chain(&cs.learners_next) {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        let mut peers = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(role) = role_of(id) else { continue };
            let placed = self.meta.peer(PeerId(id)).copied().or_else(|| {
                placements
                    .iter()
                    .find(|(p, _, _)| p.get() == id)
                    .map(|&(p, store, shard)| PeerMeta::new(p, store, shard))
            });
            match placed {
                Some(p) => peers.push(PeerMeta { role, ..p }),
                None => panic!(
                    "region {}: peer {id} joined without a placement in its conf change",
                    self.meta.id
                ),
            }
        }
        // Keep the previous order for members that stay (stable reports).
        peers.sort_by_key(|p| {
            self.meta
                .peers
                .iter()
                .position(|q| q.id == p.id)
                .unwrap_or(usize::MAX)
        });
        self.meta.peers = peers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_roundtrips_and_rejects_garbage() {
        let added = vec![
            PeerMeta::new(PeerId(9), StoreId(4), ShardId(1)),
            PeerMeta::new(PeerId(10), StoreId(5), ShardId(0)),
        ];
        let bytes = encode_context(&added);
        assert_eq!(
            decode_context(&bytes).unwrap(),
            vec![
                (PeerId(9), StoreId(4), ShardId(1)),
                (PeerId(10), StoreId(5), ShardId(0))
            ]
        );
        assert_eq!(decode_context(&[]).unwrap(), vec![]);
        for len in 1..bytes.len() {
            assert!(decode_context(&bytes[..len]).is_err());
        }
        let mut bad = bytes.clone();
        bad[0] = 7;
        assert!(decode_context(&bad).is_err());
    }
}
