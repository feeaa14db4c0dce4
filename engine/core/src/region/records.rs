//! Payload codecs of the `Entries` and `HardState` WAL records.
//!
//! Owns how a region's Raft entries and hard state become WAL record
//! payloads. Raft's own protobuf encoding is used inside our framing: this is
//! data this process wrote and the WAL checksummed, never network input.
//!
//! Formats (little-endian):
//! - `Entries`: `version:u8(=1) count:u32 (len:u32 eraftpb.Entry[len])*`;
//!   the entries are consecutive, the first has index ≥ 1. A run starting at
//!   index `i` supersedes every earlier-written entry with index ≥ `i`.
//! - `HardState`: `version:u8(=1) eraftpb.HardState`.
//!
//! Invariants: decoding never panics and allocates at most in proportion to
//! the input; a run holds at least one entry; a record is at most
//! `ENTRIES_RECORD_SPLIT_BYTES` plus one entry, so a long `Ready` becomes
//! several consecutive runs.

use crate::command::{ByteReader, ByteWriter, DecodeError};
use crate::wal_record::RECORD_PAYLOAD_BYTES_MAX;
use golem_wire::limits::{BATCH_BYTES_MAX, BATCH_OPS_MAX};
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

/// The version byte of `Entries` and `HardState` payloads.
pub const RAFT_RECORD_FORMAT_VERSION: u8 = 1;
/// An `Entries` record is closed before the entry that would take it past
/// this size (a single larger entry gets a record of its own).
pub const ENTRIES_RECORD_SPLIT_BYTES: usize = 1024 * 1024;
/// Most entries one `Entries` record may hold when decoded.
pub const ENTRIES_RECORD_ENTRIES_MAX: usize = 1 << 20;
/// An upper bound of one encoded entry: the largest command (a full
/// `BatchWrite`, 9 bytes of framing per op) plus the entry's own fields.
pub const ENTRY_BYTES_MAX: usize = BATCH_BYTES_MAX + 9 * BATCH_OPS_MAX + 1024;

// The largest `Entries` record (a full split plus one largest entry) fits a
// WAL record.
const _: () =
    assert!(ENTRIES_RECORD_SPLIT_BYTES + ENTRY_BYTES_MAX + 64 <= RECORD_PAYLOAD_BYTES_MAX);

/// Encodes consecutive `entries` as one or more `Entries` payloads, in
/// order; none if `entries` is empty.
pub fn encode_entries(entries: &[Entry]) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut current_bytes = 0usize;
    for e in entries {
        let bytes = e.write_to_bytes().expect("a proto3 Entry always encodes");
        if !current.is_empty() && current_bytes + bytes.len() > ENTRIES_RECORD_SPLIT_BYTES {
            records.push(finish_run(&current, current_bytes));
            current.clear();
            current_bytes = 0;
        }
        current_bytes += 4 + bytes.len();
        current.push(bytes);
    }
    if !current.is_empty() {
        records.push(finish_run(&current, current_bytes));
    }
    records
}

fn finish_run(encoded: &[Vec<u8>], bytes: usize) -> Vec<u8> {
    let mut w = ByteWriter::with_capacity(5 + bytes);
    w.u8(RAFT_RECORD_FORMAT_VERSION);
    w.len_u32(encoded.len());
    for e in encoded {
        w.bytes(e);
    }
    w.into_vec()
}

/// Parses an `Entries` payload: a non-empty run of consecutive entries.
pub fn decode_entries(bytes: &[u8]) -> Result<Vec<Entry>, DecodeError> {
    let mut r = ByteReader::new(bytes);
    r.version("entries", RAFT_RECORD_FORMAT_VERSION)?;
    let count = r.count("entry", 4, ENTRIES_RECORD_ENTRIES_MAX)?;
    if count == 0 {
        return Err(DecodeError::Invalid {
            reason: "empty entries run".into(),
        });
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let e = Entry::parse_from_bytes(r.slice()?).map_err(|e| DecodeError::Protobuf {
            reason: e.to_string(),
        })?;
        let expected = entries.last().map_or(e.index, |p: &Entry| p.index + 1);
        if e.index == 0 || e.index != expected {
            return Err(DecodeError::Invalid {
                reason: format!("entry index {} where {expected} was expected", e.index),
            });
        }
        entries.push(e);
    }
    r.finish()?;
    Ok(entries)
}

/// Encodes a `HardState` payload.
pub fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    let mut out = vec![RAFT_RECORD_FORMAT_VERSION];
    out.extend_from_slice(
        &hs.write_to_bytes()
            .expect("a proto3 HardState always encodes"),
    );
    out
}

/// Parses a `HardState` payload.
pub fn decode_hard_state(bytes: &[u8]) -> Result<HardState, DecodeError> {
    let mut r = ByteReader::new(bytes);
    r.version("hard state", RAFT_RECORD_FORMAT_VERSION)?;
    let rest = r.take(bytes.len() - 1)?;
    HardState::parse_from_bytes(rest).map_err(|e| DecodeError::Protobuf {
        reason: e.to_string(),
    })
}

/// The first and last entry index of an `Entries` payload, parsing only the
/// run's first entry (the run is consecutive: last = first + count - 1).
pub fn entries_span(bytes: &[u8]) -> Result<(u64, u64), DecodeError> {
    let mut r = ByteReader::new(bytes);
    r.version("entries", RAFT_RECORD_FORMAT_VERSION)?;
    let count = r.count("entry", 4, ENTRIES_RECORD_ENTRIES_MAX)?;
    if count == 0 {
        return Err(DecodeError::Invalid {
            reason: "empty entries run".into(),
        });
    }
    let first = Entry::parse_from_bytes(r.slice()?).map_err(|e| DecodeError::Protobuf {
        reason: e.to_string(),
    })?;
    if first.index == 0 {
        return Err(DecodeError::Invalid {
            reason: "entry index 0".into(),
        });
    }
    Ok((first.index, first.index + count as u64 - 1))
}

/// What a `Tombstone` record says: the removed replica's peer id and, when
/// it applied the entry that removed it, that entry's `(index, term)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    pub peer: golem_wire::PeerId,
    /// The committed entry that removed `peer` (None: removed by a
    /// member's `gc` notice, or a record written before tombstones kept it).
    pub removed_by: Option<(u64, u64)>,
}

/// Encodes a `Tombstone` payload: the removed replica's peer id (u64 LE),
/// then, if known, the index and term of the entry that removed it (u64 LE
/// each). Messages to that peer id are refused from then on, so a leader
/// that still counts it cannot re-create it (golem-sim FINDINGS.md #7);
/// they are answered with the removal entry instead (`removal.rs`, #9).
pub fn encode_tombstone(t: &Tombstone) -> Vec<u8> {
    let mut out = t.peer.get().to_le_bytes().to_vec();
    if let Some((index, term)) = t.removed_by {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&term.to_le_bytes());
    }
    out
}

/// Decodes a `Tombstone` payload: 8 bytes (a peer id, written before
/// tombstones kept the removal entry) or 24; `None` for an empty one
/// (written before tombstones named their peer) or any other length.
pub fn decode_tombstone(bytes: &[u8]) -> Option<Tombstone> {
    let u64_at = |at: usize| -> Option<u64> {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    };
    let peer = golem_wire::PeerId(u64_at(0)?);
    let removed_by = match bytes.len() {
        8 => None,
        24 => Some((u64_at(8)?, u64_at(16)?)),
        _ => return None,
    };
    Some(Tombstone { peer, removed_by })
}

/// Encodes a `LogStart` payload: the version byte, then the index and the
/// term of the last entry before the log's first kept entry (u64 LE each).
pub fn encode_log_start(index: u64, term: u64) -> Vec<u8> {
    let mut w = ByteWriter::with_capacity(17);
    w.u8(RAFT_RECORD_FORMAT_VERSION);
    w.u64(index);
    w.u64(term);
    w.into_vec()
}

/// Parses a `LogStart` payload into `(index, term)`.
pub fn decode_log_start(bytes: &[u8]) -> Result<(u64, u64), DecodeError> {
    let mut r = ByteReader::new(bytes);
    r.version("log start", RAFT_RECORD_FORMAT_VERSION)?;
    let index = r.u64()?;
    let term = r.u64()?;
    r.finish()?;
    Ok((index, term))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data_bytes: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; data_bytes].into(),
            ..Default::default()
        }
    }

    #[test]
    fn log_start_roundtrip_and_rejects_bad_bytes() {
        let bytes = encode_log_start(42, 7);
        assert_eq!(decode_log_start(&bytes).unwrap(), (42, 7));
        assert!(decode_log_start(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_log_start(&long).is_err());
        let mut other_version = bytes;
        other_version[0] ^= 0xFF;
        assert!(decode_log_start(&other_version).is_err());
    }

    #[test]
    fn entries_roundtrip_and_split() {
        let small: Vec<Entry> = (1..=5).map(|i| entry(i, 1, 10)).collect();
        let records = encode_entries(&small);
        assert_eq!(records.len(), 1);
        assert_eq!(decode_entries(&records[0]).unwrap(), small);

        assert_eq!(entries_span(&records[0]).unwrap(), (1, 5));

        let big: Vec<Entry> = (3..=8).map(|i| entry(i, 2, 400 * 1024)).collect();
        let records = encode_entries(&big);
        assert!(records.len() > 1);
        let back: Vec<Entry> = records
            .iter()
            .flat_map(|r| decode_entries(r).unwrap())
            .collect();
        assert_eq!(back, big);
        assert!(encode_entries(&[]).is_empty());
    }

    #[test]
    fn bad_entries_are_typed_errors() {
        let records = encode_entries(&[entry(1, 1, 3), entry(2, 1, 3)]);
        let bytes = &records[0];
        for len in 0..bytes.len() {
            assert!(decode_entries(&bytes[..len]).is_err(), "prefix {len}");
        }
        // Not consecutive.
        let a = encode_entries(&[entry(1, 1, 0)]).remove(0);
        let b = encode_entries(&[entry(3, 1, 0)]).remove(0);
        let mut w = ByteWriter::default();
        w.u8(RAFT_RECORD_FORMAT_VERSION);
        w.len_u32(2);
        w.bytes(&a[9..]);
        w.bytes(&b[9..]);
        assert!(matches!(
            decode_entries(&w.into_vec()),
            Err(DecodeError::Invalid { .. })
        ));
        // Empty run, garbage.
        assert!(decode_entries(&[RAFT_RECORD_FORMAT_VERSION, 0, 0, 0, 0]).is_err());
        assert!(decode_entries(&[
            RAFT_RECORD_FORMAT_VERSION,
            1,
            0,
            0,
            0,
            2,
            0,
            0,
            0,
            0xff,
            0xff
        ])
        .is_err());
    }

    #[test]
    fn tombstones_roundtrip_and_old_ones_still_decode() {
        let peer = golem_wire::PeerId(77);
        for removed_by in [None, Some((42, 7))] {
            let t = Tombstone { peer, removed_by };
            assert_eq!(decode_tombstone(&encode_tombstone(&t)), Some(t));
        }
        // Written before the removal entry was kept: the peer id alone.
        assert_eq!(
            decode_tombstone(&77u64.to_le_bytes()),
            Some(Tombstone {
                peer,
                removed_by: None
            })
        );
        // Written before tombstones named their peer, or damaged.
        let full = encode_tombstone(&Tombstone {
            peer,
            removed_by: Some((1, 1)),
        });
        for len in (0..full.len()).filter(|l| *l != 8) {
            assert_eq!(decode_tombstone(&full[..len]), None, "length {len}");
        }
    }

    #[test]
    fn hard_state_roundtrip() {
        let hs = HardState {
            term: 5,
            vote: 2,
            commit: 17,
            ..Default::default()
        };
        assert_eq!(decode_hard_state(&encode_hard_state(&hs)).unwrap(), hs);
        assert!(decode_hard_state(&[]).is_err());
        assert!(decode_hard_state(&[2]).is_err());
        assert!(decode_hard_state(&[RAFT_RECORD_FORMAT_VERSION, 0xff]).is_err());
    }
}
