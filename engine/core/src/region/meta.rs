//! `RegionMeta`: a region's range, epoch and peers, and its WAL codec.
//!
//! Owns the metadata a region peer persists in `RegionMeta` WAL records (and
//! sends in Raft snapshots) and the key-range checks requests go through.
//! Invariants (checked by `validate`, on encode's callers and on every
//! decode): `start < end` unless `end` is empty (the end of the key space);
//! keys are at most `KEY_BYTES_MAX` bytes; there are 1..=`REGION_PEERS_MAX`
//! peers, no peer id is 0 or repeats, no two peers are on the same shard
//! of a store and at most `PEERS_PER_STORE_MAX` (2) on one store (a
//! replica moving between the store's shards: the new peer is added
//! before the old one leaves); at least one peer votes.
//!
//! A peer's role mirrors raft's configuration: `Voter`, `Learner`, and
//! during a joint configuration `IncomingVoter` (votes in the new
//! configuration only) and `DemotingVoter` (votes in the old one only and
//! leaves with it: raft-rs's `RemoveNode` in a joint change keeps no
//! learner): `conf_state` rebuilds raft's `ConfState` from the roles.
//!
//! Format (version 3, little-endian):
//! `version:u8(=3) id:u64 start:bytes end:bytes conf_ver:u64 version:u64
//! count:u32 (peer:u64 store:u64 shard:u16 role:u8)* as_of:u64`, where
//! `bytes = len:u32 data[len]` and `as_of` is the applied index the
//! metadata is valid at (membership changes and splits at or below it are
//! in it). Version 4 is version 3 followed by the merge state of a source
//! region that prepared a merge (`region::merge::MergeState`: `target:u64
//! target_conf_ver:u64 target_version:u64 prepare_index:u64
//! prepare_term:u64`); it is written only while a merge is prepared, so
//! every other record stays version 3. Version 2 (no roles, no `as_of`: all
//! voters, as of 0) is still read; version 1 (peers without placement) is
//! refused.

use super::merge::MergeState;
use crate::command::{ByteReader, ByteWriter, DecodeError};
use golem_wire::limits::KEY_BYTES_MAX;
use golem_wire::{GolemError, PeerId, RegionEpoch, RegionId, RegionInfo, ShardId, StoreId};

/// The version byte every encoded `RegionMeta` starts with.
pub const REGION_META_FORMAT_VERSION: u8 = 3;
/// The version byte of a record carrying a prepared merge (v3 + trailer).
pub const REGION_META_MERGING_FORMAT_VERSION: u8 = 4;

/// Role byte of each peer in the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerRole {
    Voter = 0,
    Learner = 1,
    /// Joint configuration: a voter of the incoming configuration only.
    IncomingVoter = 2,
    /// Joint configuration: a voter of the outgoing configuration only
    /// (being removed: it leaves with the joint configuration).
    DemotingVoter = 3,
}

impl PeerRole {
    fn from_u8(b: u8) -> Option<PeerRole> {
        Some(match b {
            0 => PeerRole::Voter,
            1 => PeerRole::Learner,
            2 => PeerRole::IncomingVoter,
            3 => PeerRole::DemotingVoter,
            _ => return None,
        })
    }
}

/// One replica of a region and where it lives: the store (node) and the
/// shard (core) of that store that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerMeta {
    pub id: PeerId,
    pub store: StoreId,
    pub shard: ShardId,
    pub role: PeerRole,
}

impl PeerMeta {
    /// A voter `id` on `store`'s shard `shard`.
    pub fn new(id: PeerId, store: StoreId, shard: ShardId) -> PeerMeta {
        PeerMeta {
            id,
            store,
            shard,
            role: PeerRole::Voter,
        }
    }

    /// Whether this peer votes in the current (incoming) configuration.
    pub fn is_voter(&self) -> bool {
        matches!(self.role, PeerRole::Voter | PeerRole::IncomingVoter)
    }
}
/// Most peers a region may have (voters and learners).
pub const REGION_PEERS_MAX: usize = 16;
/// Peers of one region on one store at most: two while a replica moves
/// between the store's shards (docs/scheduling.md, balance-shard).
pub const PEERS_PER_STORE_MAX: usize = 2;

/// A region's range, epoch and peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionMeta {
    pub id: RegionId,
    /// Inclusive start key; empty means the start of the key space.
    pub start: Vec<u8>,
    /// Exclusive end key; empty means the end of the key space.
    pub end: Vec<u8>,
    pub epoch: RegionEpoch,
    /// The region's replicas (voters and learners) and where they live.
    pub peers: Vec<PeerMeta>,
}

impl RegionMeta {
    /// A region covering the whole key space with `peers` as voters, at the
    /// initial epoch `{conf_ver: 1, version: 1}`.
    pub fn whole_key_space(id: RegionId, peers: Vec<PeerMeta>) -> RegionMeta {
        RegionMeta {
            id,
            start: Vec::new(),
            end: Vec::new(),
            epoch: RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
            peers,
        }
    }

    /// Whether `key` lies in `[start, end)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// `KeyNotInRegion` unless `key` lies in the region.
    pub fn check_key(&self, key: &[u8]) -> Result<(), GolemError> {
        if self.contains(key) {
            Ok(())
        } else {
            Err(self.key_not_in_region(key))
        }
    }

    /// `KeyNotInRegion` unless the whole scan range `[start, end)` (empty
    /// `end`: the end of the key space) lies in the region. Clients split
    /// scans at region boundaries.
    pub fn check_range(&self, start: &[u8], end: &[u8]) -> Result<(), GolemError> {
        if start < self.start.as_slice() {
            return Err(self.key_not_in_region(start));
        }
        if !self.end.is_empty() && (end.is_empty() || end > self.end.as_slice()) {
            return Err(self.key_not_in_region(end));
        }
        Ok(())
    }

    fn key_not_in_region(&self, key: &[u8]) -> GolemError {
        GolemError::KeyNotInRegion {
            key: key.to_vec(),
            region: self.id,
            start: self.start.clone(),
            end: self.end.clone(),
        }
    }

    /// Routing metadata for clients, with the leader left for the caller to
    /// fill (it knows where peers live).
    pub fn to_info(&self) -> RegionInfo {
        RegionInfo {
            id: self.id,
            start: self.start.clone(),
            end: self.end.clone(),
            epoch: self.epoch,
            leader: None,
        }
    }

    /// Checks the invariants listed in the module docs.
    pub fn validate(&self) -> Result<(), String> {
        if self.start.len() > KEY_BYTES_MAX || self.end.len() > KEY_BYTES_MAX {
            return Err("range key too large".into());
        }
        if !self.end.is_empty() && self.start >= self.end {
            return Err("start is not before end".into());
        }
        if self.peers.is_empty() || self.peers.len() > REGION_PEERS_MAX {
            return Err(format!(
                "{} peers (must be 1..={REGION_PEERS_MAX})",
                self.peers.len()
            ));
        }
        for (i, p) in self.peers.iter().enumerate() {
            if p.id.get() == 0 {
                return Err("peer id 0".into());
            }
            if self.peers[..i].iter().any(|q| q.id == p.id) {
                return Err(format!("peer {} listed twice", p.id));
            }
            if self.peers[..i]
                .iter()
                .any(|q| q.store == p.store && q.shard == p.shard)
            {
                return Err(format!("two peers on store {} shard {}", p.store, p.shard));
            }
            let on_store = self.peers.iter().filter(|q| q.store == p.store).count();
            if on_store > PEERS_PER_STORE_MAX {
                return Err(format!("{on_store} peers on store {}", p.store));
            }
        }
        if !self.peers.iter().any(PeerMeta::is_voter) {
            return Err("no voter".into());
        }
        Ok(())
    }

    /// The peer with raft id `id`, if it is a member.
    pub fn peer(&self, id: PeerId) -> Option<&PeerMeta> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// The peer on `store`, if any (the first listed: while a replica
    /// moves between the store's shards it has two, the old one first).
    pub fn peer_on(&self, store: StoreId) -> Option<&PeerMeta> {
        self.peers.iter().find(|p| p.store == store)
    }

    /// The peer on `store`'s shard `shard`, if any (at most one).
    pub fn peer_at(&self, store: StoreId, shard: ShardId) -> Option<&PeerMeta> {
        self.peers
            .iter()
            .find(|p| p.store == store && p.shard == shard)
    }

    /// The raft ids of the voters (of the incoming configuration).
    pub fn voter_ids(&self) -> Vec<u64> {
        self.peers
            .iter()
            .filter(|p| p.is_voter())
            .map(|p| p.id.get())
            .collect()
    }

    /// Whether the region has more than one voter (or is in a joint
    /// configuration): a leader then needs a quorum of others.
    pub fn is_replicated(&self) -> bool {
        self.peers
            .iter()
            .filter(|p| p.role != PeerRole::Learner)
            .count()
            > 1
    }

    /// raft's configuration, rebuilt from the peers' roles.
    pub fn conf_state(&self) -> raft::eraftpb::ConfState {
        let ids = |f: &dyn Fn(PeerRole) -> bool| -> Vec<u64> {
            self.peers
                .iter()
                .filter(|p| f(p.role))
                .map(|p| p.id.get())
                .collect()
        };
        let joint = self
            .peers
            .iter()
            .any(|p| matches!(p.role, PeerRole::IncomingVoter | PeerRole::DemotingVoter));
        let mut cs = raft::eraftpb::ConfState {
            voters: ids(&|r| matches!(r, PeerRole::Voter | PeerRole::IncomingVoter)),
            learners: ids(&|r| r == PeerRole::Learner),
            ..Default::default()
        };
        if joint {
            // No `learners_next`: a replica rebuilt from metadata written
            // while joint must leave the joint state like the others, which
            // drop the removed voter (membership_tests found it).
            cs.voters_outgoing = ids(&|r| matches!(r, PeerRole::Voter | PeerRole::DemotingVoter));
            cs.auto_leave = true;
        }
        cs
    }

    /// The record payload, valid as of applied index 0 (a new region).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_at(0)
    }

    /// The record payload, valid as of applied index `as_of`.
    pub fn encode_at(&self, as_of: u64) -> Vec<u8> {
        let mut w = ByteWriter::with_capacity(
            48 + self.start.len() + self.end.len() + 18 * self.peers.len(),
        );
        w.u8(REGION_META_FORMAT_VERSION);
        w.u64(self.id.get());
        w.bytes(&self.start);
        w.bytes(&self.end);
        w.u64(self.epoch.conf_ver);
        w.u64(self.epoch.version);
        w.len_u32(self.peers.len());
        for p in &self.peers {
            w.u64(p.id.get());
            w.u64(p.store.get());
            w.u16(p.shard.get());
            w.u8(p.role as u8);
        }
        w.u64(as_of);
        w.into_vec()
    }

    /// The record payload as of `as_of`, with the merge state of a source
    /// that prepared a merge (format v4; v3 without one).
    pub fn encode_record(&self, as_of: u64, merging: Option<&MergeState>) -> Vec<u8> {
        let mut bytes = self.encode_at(as_of);
        if let Some(m) = merging {
            bytes[0] = REGION_META_MERGING_FORMAT_VERSION;
            let mut w = ByteWriter::with_capacity(MergeState::ENCODED_BYTES);
            m.encode_into(&mut w);
            bytes.extend(w.into_vec());
        }
        bytes
    }

    /// Parses and validates a record payload; also returns the applied
    /// index it is valid at and the merge state it carries (v4).
    pub fn decode_record(
        bytes: &[u8],
    ) -> Result<(RegionMeta, u64, Option<MergeState>), DecodeError> {
        Self::decode_inner(bytes)
    }

    /// Parses and validates a record payload.
    pub fn decode(bytes: &[u8]) -> Result<RegionMeta, DecodeError> {
        Self::decode_at(bytes).map(|(meta, _)| meta)
    }

    /// Parses and validates a record payload; also returns the applied
    /// index it is valid at.
    pub fn decode_at(bytes: &[u8]) -> Result<(RegionMeta, u64), DecodeError> {
        Self::decode_inner(bytes).map(|(meta, as_of, _)| (meta, as_of))
    }

    fn decode_inner(bytes: &[u8]) -> Result<(RegionMeta, u64, Option<MergeState>), DecodeError> {
        let mut r = ByteReader::new(bytes);
        let format = r.u8()?;
        let merging = format == REGION_META_MERGING_FORMAT_VERSION;
        let format = if merging {
            REGION_META_FORMAT_VERSION
        } else {
            format
        };
        if format != 2 && format != REGION_META_FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "region meta",
                got: format,
            });
        }
        let id = RegionId(r.u64()?);
        let start = r.bytes()?;
        let end = r.bytes()?;
        let epoch = RegionEpoch {
            conf_ver: r.u64()?,
            version: r.u64()?,
        };
        let peer_bytes = if format == 2 { 18 } else { 19 };
        let count = r.count("peer", peer_bytes, REGION_PEERS_MAX)?;
        let peers = (0..count)
            .map(|_| {
                let (id, store, shard) = (PeerId(r.u64()?), StoreId(r.u64()?), ShardId(r.u16()?));
                let role = if format == 2 {
                    PeerRole::Voter
                } else {
                    let b = r.u8()?;
                    PeerRole::from_u8(b).ok_or(DecodeError::UnknownTag {
                        what: "peer role",
                        tag: b,
                    })?
                };
                Ok(PeerMeta {
                    id,
                    store,
                    shard,
                    role,
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let as_of = if format == 2 { 0 } else { r.u64()? };
        let merge = if merging {
            Some(MergeState::decode_from(&mut r)?)
        } else {
            None
        };
        r.finish()?;
        let meta = RegionMeta {
            id,
            start,
            end,
            epoch,
            peers,
        };
        meta.validate()
            .map_err(|reason| DecodeError::Invalid { reason })?;
        Ok((meta, as_of, merge))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RegionMeta {
        RegionMeta {
            id: RegionId(7),
            start: b"b".to_vec(),
            end: b"m".to_vec(),
            epoch: RegionEpoch {
                conf_ver: 3,
                version: 9,
            },
            peers: vec![
                PeerMeta::new(PeerId(1), StoreId(1), ShardId(0)),
                PeerMeta::new(PeerId(4), StoreId(2), ShardId(1)),
                PeerMeta {
                    role: PeerRole::Learner,
                    ..PeerMeta::new(PeerId(5), StoreId(3), ShardId(1))
                },
            ],
        }
    }

    fn one() -> Vec<PeerMeta> {
        vec![PeerMeta::new(PeerId(1), StoreId(1), ShardId(0))]
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        assert_eq!(RegionMeta::decode(&m.encode()), Ok(m.clone()));
        let whole = RegionMeta::whole_key_space(RegionId(1), one());
        assert_eq!(RegionMeta::decode(&whole.encode()), Ok(whole));
        assert_eq!(RegionMeta::decode_at(&m.encode_at(42)), Ok((m, 42)));
    }

    #[test]
    fn version_2_records_read_as_voters_as_of_0() {
        let m = RegionMeta::whole_key_space(
            RegionId(3),
            vec![
                PeerMeta::new(PeerId(1), StoreId(1), ShardId(0)),
                PeerMeta::new(PeerId(2), StoreId(2), ShardId(1)),
            ],
        );
        let mut w = ByteWriter::with_capacity(64);
        w.u8(2);
        w.u64(3);
        w.bytes(b"");
        w.bytes(b"");
        w.u64(1);
        w.u64(1);
        w.len_u32(2);
        for (id, store, shard) in [(1, 1, 0), (2, 2, 1)] {
            w.u64(id);
            w.u64(store);
            w.u16(shard);
        }
        assert_eq!(RegionMeta::decode_at(&w.into_vec()), Ok((m, 0)));
    }

    #[test]
    fn conf_state_follows_roles() {
        let mut m = sample();
        let cs = m.conf_state();
        assert_eq!((cs.voters, cs.learners), (vec![1, 4], vec![5]));
        assert!(cs.voters_outgoing.is_empty());
        // Joint: 5 comes in, 4 is demoted.
        m.peers[1].role = PeerRole::DemotingVoter;
        m.peers[2].role = PeerRole::IncomingVoter;
        let cs = m.conf_state();
        assert_eq!(cs.voters, vec![1, 5]);
        assert_eq!(cs.voters_outgoing, vec![1, 4]);
        assert!(cs.learners_next.is_empty());
        assert!(cs.auto_leave);
        let mut none = sample();
        for p in &mut none.peers {
            p.role = PeerRole::Learner;
        }
        assert!(none.validate().is_err());
    }

    #[test]
    fn every_prefix_and_garbage_is_a_typed_error() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(RegionMeta::decode(&bytes[..len]).is_err());
        }
        let mut long = bytes.clone();
        long.push(1);
        assert!(matches!(
            RegionMeta::decode(&long),
            Err(DecodeError::TrailingBytes { .. })
        ));
        for peers in [vec![(2, 1), (2, 2)], vec![(2, 1), (3, 1)], vec![(0, 1)]] {
            let mut bad = sample();
            bad.peers = peers
                .into_iter()
                .map(|(p, s)| PeerMeta::new(PeerId(p), StoreId(s), ShardId(0)))
                .collect();
            assert!(matches!(
                RegionMeta::decode(&bad.encode()),
                Err(DecodeError::Invalid { .. })
            ));
        }
        let mut role = sample().encode();
        let at = role.len() - 9; // the last peer's role byte
        role[at] = 9;
        assert!(matches!(
            RegionMeta::decode(&role),
            Err(DecodeError::UnknownTag { .. })
        ));
        // A version-1 record (peers without placement) is refused.
        let mut v1 = sample().encode();
        v1[0] = 1;
        assert!(matches!(
            RegionMeta::decode(&v1),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn a_store_holds_two_peers_only_on_different_shards() {
        let at = |p: u64, store: u64, shard: u16| {
            PeerMeta::new(PeerId(p), StoreId(store), ShardId(shard))
        };
        // (peers, valid): a replica moving between the shards of store 1.
        let table = vec![
            (vec![at(1, 1, 0), at(2, 2, 0), at(3, 1, 1)], true),
            (vec![at(1, 1, 0), at(3, 1, 0)], false),
            (vec![at(1, 1, 0), at(2, 1, 1), at(3, 1, 2)], false),
        ];
        for (peers, valid) in table {
            let m = RegionMeta::whole_key_space(RegionId(1), peers.clone());
            assert_eq!(m.validate().is_ok(), valid, "{peers:?}");
            assert_eq!(RegionMeta::decode(&m.encode()).is_ok(), valid, "{peers:?}");
        }
        let m = RegionMeta::whole_key_space(RegionId(1), vec![at(1, 1, 0), at(3, 1, 1)]);
        assert_eq!(
            m.peer_at(StoreId(1), ShardId(1)).map(|p| p.id),
            Some(PeerId(3))
        );
        assert_eq!(m.peer_at(StoreId(1), ShardId(2)), None);
    }

    #[test]
    fn key_and_range_checks() {
        let m = sample();
        assert!(m.check_key(b"b").is_ok());
        assert!(m.check_key(b"lz").is_ok());
        assert_eq!(m.check_key(b"m").unwrap_err().code(), 4);
        assert_eq!(m.check_key(b"a").unwrap_err().code(), 4);
        assert!(m.check_range(b"b", b"m").is_ok());
        assert!(m.check_range(b"c", b"d").is_ok());
        assert!(m.check_range(b"a", b"d").is_err());
        assert!(m.check_range(b"c", b"").is_err());
        assert!(m.check_range(b"c", b"n").is_err());
        let whole = RegionMeta::whole_key_space(RegionId(1), one());
        assert!(whole.check_range(b"", b"").is_ok());
        assert!(whole.check_key(b"\xff\xff").is_ok());
    }
}
