//! WAL record kinds and the sink that region logic writes records into.
//!
//! Owns the vocabulary shared by the region logic (which decides *what* to
//! persist) and the WAL (which decides *how*). Invariant: a `RecordKind`'s
//! numeric value never changes; it is part of the on-disk format
//! (docs/storage.md).

use golem_wire::RegionId;

/// What a WAL record holds. Values are stable on disk.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A region's metadata (range, epoch, peers), written when the region is
    /// created on this shard or changes.
    RegionMeta = 1,
    /// A run of consecutive Raft entries of one region. A run starting at
    /// index `i` supersedes every earlier-written entry with index ≥ `i`.
    Entries = 2,
    /// A region's Raft hard state (term, vote, commit).
    HardState = 3,
}

impl RecordKind {
    /// Parses a kind byte.
    pub fn from_u8(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::RegionMeta,
            2 => RecordKind::Entries,
            3 => RecordKind::HardState,
            _ => return None,
        })
    }
}

/// Where region logic puts the records a pass must make durable. The shard
/// loop makes everything appended during a pass durable with one sync before
/// it reports the pass persisted.
pub trait WalSink {
    /// Buffers one record of `region`.
    fn append(&mut self, kind: RecordKind, region: RegionId, payload: &[u8]);
}

/// A `WalSink` that keeps records in memory: for tests and the simulator.
#[derive(Debug, Default, Clone)]
pub struct VecSink {
    pub records: Vec<(RecordKind, RegionId, Vec<u8>)>,
}

impl WalSink for VecSink {
    fn append(&mut self, kind: RecordKind, region: RegionId, payload: &[u8]) {
        self.records.push((kind, region, payload.to_vec()));
    }
}
