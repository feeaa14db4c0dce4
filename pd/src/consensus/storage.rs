//! `PdStorage`: raft-rs's `Storage` over the PD's in-memory log.
//!
//! Owns the entries after the last snapshot, the hard and conf states and
//! that snapshot (with its data), as last made durable by `disk.rs`. The
//! driver mutates it only after the matching disk write, so raft-rs never
//! sees an entry that could be lost by a crash.
//!
//! Invariants: `entries[i].index == snapshot.index + 1 + i`;
//! `first_index == snapshot.index + 1`; the snapshot returned to raft-rs is
//! the latest durable one and always carries the state machine's bytes.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// The PD's Raft log as seen by raft-rs.
#[derive(Debug, Default)]
pub struct PdStorage {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl PdStorage {
    /// A storage rebuilt from recovered state. `entries` must start right
    /// after the snapshot's index and be contiguous.
    pub fn new(
        hard_state: HardState,
        conf_state: ConfState,
        snapshot: Snapshot,
        entries: Vec<Entry>,
    ) -> PdStorage {
        let base = snapshot.get_metadata().index;
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                base + 1 + i as u64,
                "recovered entries are contiguous"
            );
        }
        PdStorage {
            hard_state,
            conf_state,
            snapshot,
            entries,
        }
    }

    fn snap_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// Index of the last entry (or of the snapshot when there is none).
    pub fn last(&self) -> u64 {
        self.snap_index() + self.entries.len() as u64
    }

    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The current snapshot.
    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The conf state.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Entries after the snapshot.
    pub fn entries_after_snapshot(&self) -> &[Entry] {
        &self.entries
    }

    /// Sets the hard state (after it was made durable).
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Records a commit index learnt from a light ready.
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Appends entries, dropping any conflicting suffix (after they were made durable).
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        assert!(
            first.index > self.snap_index() && first.index <= self.last() + 1,
            "append at {} outside ({}, {}]",
            first.index,
            self.snap_index(),
            self.last() + 1
        );
        let keep = (first.index - self.snap_index() - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
    }

    /// Installs a snapshot: everything up to its index is replaced by it.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        let index = meta.index;
        self.conf_state = meta.get_conf_state().clone();
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        self.hard_state.commit = self.hard_state.commit.max(index);
        // Keep entries after the snapshot only if they extend it consistently.
        let after: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.index > index)
            .cloned()
            .collect();
        let consistent = self
            .entries
            .iter()
            .any(|e| e.index == index && e.term == meta.term);
        self.entries = if consistent { after } else { Vec::new() };
        self.snapshot = snapshot;
    }

    /// Replaces the snapshot with a newer one built from the applied state
    /// and drops the entries it covers.
    pub fn compact_to(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(index >= self.snap_index() && index <= self.last());
        let drop = (index - self.snap_index()) as usize;
        self.entries.drain(..drop);
        self.snapshot = snapshot;
    }

    /// Term of entry `idx`, for building snapshots.
    pub fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.snap_index() {
            return Some(self.snapshot.get_metadata().term);
        }
        if idx < self.snap_index() || idx > self.last() {
            return None;
        }
        Some(self.entries[(idx - self.snap_index() - 1) as usize].term)
    }
}

impl raft::Storage for PdStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.snap_index() - 1) as usize;
        let hi = (high - self.snap_index() - 1) as usize;
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snap_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        Ok(self.snapshot.clone())
    }
}
