//! `RegionMeta`: a region's range, epoch and peers, and its WAL codec.
//!
//! Owns the metadata a region peer persists in `RegionMeta` WAL records and
//! the key-range checks requests go through. Invariants (checked by
//! `validate`, on encode's callers and on every decode): `start < end` unless
//! `end` is empty (the end of the key space); keys are at most
//! `KEY_BYTES_MAX` bytes; there are 1..=`REGION_PEERS_MAX` peers, no peer id
//! is 0 or repeats, and no two peers are on the same store.
//!
//! Format (version 2, little-endian):
//! `version:u8(=2) id:u64 start:bytes end:bytes conf_ver:u64 version:u64
//! count:u32 (peer:u64 store:u64 shard:u16)*`, where `bytes = len:u32
//! data[len]`. Version 1 (peers without placement) is refused.

use crate::command::{ByteReader, ByteWriter, DecodeError};
use golem_wire::limits::KEY_BYTES_MAX;
use golem_wire::{GolemError, PeerId, RegionEpoch, RegionId, RegionInfo, ShardId, StoreId};

/// The version byte every encoded `RegionMeta` starts with.
pub const REGION_META_FORMAT_VERSION: u8 = 2;

/// One replica of a region and where it lives: the store (node) and the
/// shard (core) of that store that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerMeta {
    pub id: PeerId,
    pub store: StoreId,
    pub shard: ShardId,
}

impl PeerMeta {
    /// A peer `id` on `store`'s shard `shard`.
    pub fn new(id: PeerId, store: StoreId, shard: ShardId) -> PeerMeta {
        PeerMeta { id, store, shard }
    }
}
/// Most peers a region may have (voters and learners).
pub const REGION_PEERS_MAX: usize = 16;

/// A region's range, epoch and peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionMeta {
    pub id: RegionId,
    /// Inclusive start key; empty means the start of the key space.
    pub start: Vec<u8>,
    /// Exclusive end key; empty means the end of the key space.
    pub end: Vec<u8>,
    pub epoch: RegionEpoch,
    /// The region's voters and where they live.
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
            if self.peers[..i].iter().any(|q| q.store == p.store) {
                return Err(format!("two peers on store {}", p.store));
            }
        }
        Ok(())
    }

    /// The peer with raft id `id`, if it is a member.
    pub fn peer(&self, id: PeerId) -> Option<&PeerMeta> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// The peer on `store`, if any.
    pub fn peer_on(&self, store: StoreId) -> Option<&PeerMeta> {
        self.peers.iter().find(|p| p.store == store)
    }

    /// The raft ids of the voters.
    pub fn voter_ids(&self) -> Vec<u64> {
        self.peers.iter().map(|p| p.id.get()).collect()
    }

    /// The record payload.
    pub fn encode(&self) -> Vec<u8> {
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
        }
        w.into_vec()
    }

    /// Parses and validates a record payload.
    pub fn decode(bytes: &[u8]) -> Result<RegionMeta, DecodeError> {
        let mut r = ByteReader::new(bytes);
        r.version("region meta", REGION_META_FORMAT_VERSION)?;
        let id = RegionId(r.u64()?);
        let start = r.bytes()?;
        let end = r.bytes()?;
        let epoch = RegionEpoch {
            conf_ver: r.u64()?,
            version: r.u64()?,
        };
        let count = r.count("peer", 18, REGION_PEERS_MAX)?;
        let peers = (0..count)
            .map(|_| {
                Ok(PeerMeta {
                    id: PeerId(r.u64()?),
                    store: StoreId(r.u64()?),
                    shard: ShardId(r.u16()?),
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
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
        Ok(meta)
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
            ],
        }
    }

    fn one() -> Vec<PeerMeta> {
        vec![PeerMeta::new(PeerId(1), StoreId(1), ShardId(0))]
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        assert_eq!(RegionMeta::decode(&m.encode()), Ok(m));
        let whole = RegionMeta::whole_key_space(RegionId(1), one());
        assert_eq!(RegionMeta::decode(&whole.encode()), Ok(whole));
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
        // A version-1 record (peers without placement) is refused.
        let mut v1 = sample().encode();
        v1[0] = 1;
        assert!(matches!(
            RegionMeta::decode(&v1),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
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
