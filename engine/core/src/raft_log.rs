//! `RegionStorage`: the in-memory view of a region's Raft log that raft-rs
//! reads through its `Storage` trait.
//!
//! Owns the region's hard state, conf state and an entry cache: the entries
//! after a compaction point `(compacted_index, compacted_term)`. The WAL is
//! the durable copy; this cache holds what raft-rs may still read (every
//! unapplied entry and a bounded tail of applied ones), so memory stays
//! bounded once entries are applied.
//!
//! raft-rs sees the whole log the WAL still holds: from the log start
//! (`TermRuns::start`, moved by checkpoints) to the last entry. Entries
//! between the log start and the cache are fetched from the WAL
//! asynchronously: `entries` records a [`FetchRequest`] and answers
//! `LogTemporarilyUnavailable`; the shell reads the records and hands the
//! entries back (`set_fetched`), then raft-rs asks again
//! (`RawNode::on_entries_fetched`). Entries before the log start are
//! `Compacted` (a follower that needs them gets a snapshot).
//!
//! Snapshots: raft-rs asks `snapshot()` when a follower needs entries
//! before the log start. The storage answers with the snapshot the shell
//! prepared (`set_prepared_snapshot`: metadata only, the data is streamed
//! from an LSM view by the shell) if it is recent enough, else notes the
//! request (`take_snapshot_request`) and answers
//! `SnapshotTemporarilyUnavailable`: raft-rs asks again on a later
//! heartbeat response. `restore` resets the log to start after a received
//! snapshot.
//!
//! Invariants: `entries` are consecutive, the first has index
//! `compacted_index + 1`; terms never decrease along the log;
//! `compacted_index <= applied` at every compaction (the peer only compacts
//! applied entries). Entries are added here when a `Ready` is collected,
//! before they are durable; raft-rs tracks durability separately (its
//! `persisted` index), so reading an entry here does not imply it is synced.

use crate::term_runs::TermRuns;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::cell::RefCell;
use std::collections::VecDeque;

/// Entries raft-rs asked for that only the WAL holds: `[low, high)`. The
/// shell reads them and calls `RegionPeer::on_entries_fetched`.
#[derive(Debug)]
pub struct FetchRequest {
    /// First index wanted.
    pub low: u64,
    /// One past the last index wanted (at most the first cached one).
    pub high: u64,
    /// What raft-rs asked with; given back through `on_entries_fetched`.
    pub(crate) context: GetEntriesContext,
}

/// A region's Raft log cache, hard state and conf state.
#[derive(Debug, Default)]
pub struct RegionStorage {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index of the last entry dropped from the cache (0: none ever was).
    compacted_index: u64,
    /// Term of the entry at `compacted_index`, kept so that raft-rs can
    /// still match the entry before the first cached one.
    compacted_term: u64,
    /// Entries `compacted_index + 1 ..= last_index()`.
    entries: VecDeque<Entry>,
    /// Terms of the whole log since its start (cached or not).
    runs: TermRuns,
    /// Fetches raft-rs asked for since the shell last took them
    /// (`entries` takes `&self`, hence the cell).
    fetch_requests: RefCell<Vec<FetchRequest>>,
    /// Start indexes of fetches asked for and not yet answered (one fetch
    /// per start at a time).
    fetching: RefCell<std::collections::BTreeSet<u64>>,
    /// Entries read back from the WAL for the fetch being answered.
    fetched: Vec<Entry>,
    /// The snapshot the shell prepared for followers (metadata and region
    /// metadata; the data is streamed separately).
    prepared: Option<Snapshot>,
    /// Set when raft-rs asked for a snapshot newer than `prepared`.
    snapshot_wanted: std::cell::Cell<bool>,
}

impl RegionStorage {
    /// A storage with the given state, whose cache starts after
    /// `(compacted_index, compacted_term)` with `entries`.
    ///
    /// # Panics
    /// If `entries` are not consecutive from `compacted_index + 1`.
    pub fn new(
        hard_state: HardState,
        conf_state: ConfState,
        compacted_index: u64,
        compacted_term: u64,
        entries: Vec<Entry>,
    ) -> RegionStorage {
        let mut s = RegionStorage {
            hard_state,
            conf_state,
            compacted_index,
            compacted_term,
            entries: VecDeque::new(),
            runs: TermRuns::new(compacted_index, compacted_term),
            fetch_requests: RefCell::new(Vec::new()),
            fetching: RefCell::new(std::collections::BTreeSet::new()),
            fetched: Vec::new(),
            prepared: None,
            snapshot_wanted: std::cell::Cell::new(false),
        };
        s.append(&entries);
        s
    }

    /// Whether raft-rs asked for a snapshot that is not prepared (clears
    /// the request: the shell prepares one).
    pub fn take_snapshot_request(&mut self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// The snapshot to hand raft-rs for followers from now on.
    pub fn set_prepared_snapshot(&mut self, snap: Snapshot) {
        self.prepared = Some(snap);
    }

    /// Drops the prepared snapshot.
    pub fn clear_prepared_snapshot(&mut self) {
        self.prepared = None;
    }

    /// The prepared snapshot, if any.
    pub fn prepared_snapshot(&self) -> Option<&Snapshot> {
        self.prepared.as_ref()
    }

    /// Resets the log to start after `(index, term)` (a received snapshot
    /// was applied): every cached entry is dropped.
    pub fn restore(&mut self, index: u64, term: u64, conf_state: ConfState) {
        self.entries.clear();
        self.compacted_index = index;
        self.compacted_term = term;
        self.runs = TermRuns::new(index, term);
        self.conf_state = conf_state;
        self.fetching.borrow_mut().clear();
        self.fetch_requests.borrow_mut().clear();
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
    }

    /// Appends entries taken from a `Ready`, dropping every cached entry at
    /// or after the first new index (raft-rs overwrites a conflicting
    /// suffix this way).
    ///
    /// # Panics
    /// If the entries would leave a gap or overwrite compacted entries: raft-rs
    /// never asks for that.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        assert!(
            first.index > self.compacted_index,
            "append at {} overwrites compacted entries (compacted to {})",
            first.index,
            self.compacted_index
        );
        assert!(
            first.index <= self.last_index() + 1,
            "append at {} leaves a gap after {}",
            first.index,
            self.last_index()
        );
        for pair in ents.windows(2) {
            assert_eq!(pair[0].index + 1, pair[1].index, "entries not consecutive");
        }
        let keep = (first.index - self.compacted_index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend(ents.iter().cloned());
        self.runs.append(ents);
    }

    /// Replaces the term runs (recovery knows terms from before the cache).
    ///
    /// # Panics
    /// If they do not cover the cache's entries.
    pub fn set_term_runs(&mut self, runs: TermRuns) {
        assert!(
            runs.start().0 <= self.compacted_index && runs.last_index() == self.last_index(),
            "term runs {:?} do not cover the cache {}..={}",
            runs.start(),
            self.compacted_index,
            self.last_index()
        );
        self.runs = runs;
    }

    /// The terms of the log since its start.
    pub fn term_runs(&self) -> &TermRuns {
        &self.runs
    }

    /// Moves the log's start (what recovery can rebuild from) to `index`;
    /// terms before it are forgotten. No-op if not past the current start.
    pub fn set_log_start(&mut self, index: u64) {
        self.runs.set_start(index);
    }

    /// Drops cached entries up to and including `index` (no-op if already
    /// compacted that far).
    ///
    /// # Panics
    /// If `index` is past the last entry.
    pub fn compact_to(&mut self, index: u64) {
        if index <= self.compacted_index {
            return;
        }
        assert!(
            index <= self.last_index(),
            "compact to {index} past last index {}",
            self.last_index()
        );
        let drop = (index - self.compacted_index) as usize;
        let term = self.entries[drop - 1].term;
        self.entries.drain(..drop);
        self.compacted_index = index;
        self.compacted_term = term;
    }

    /// The current hard state (as last handed out by raft-rs).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Replaces the hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// The current membership.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Replaces the membership (after a conf change is applied).
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Index of the last entry dropped from the cache.
    pub fn compacted_index(&self) -> u64 {
        self.compacted_index
    }

    /// Index of the first cached entry (`compacted_index + 1`).
    pub fn first_cached_index(&self) -> u64 {
        self.compacted_index + 1
    }

    /// Index of the first entry raft-rs may ask for (after the log start).
    pub fn first_index(&self) -> u64 {
        self.runs.start().0 + 1
    }

    /// Takes the fetches raft-rs asked for.
    pub fn take_fetch_requests(&mut self) -> Vec<FetchRequest> {
        std::mem::take(self.fetch_requests.get_mut())
    }

    /// Holds entries read back from the WAL for the fetch starting at
    /// `low` while raft-rs asks again; `clear_fetched` after.
    pub fn set_fetched(&mut self, low: u64, entries: Vec<Entry>) {
        self.fetching.get_mut().remove(&low);
        self.fetched = entries;
    }

    /// Drops the fetched entries (raft-rs has taken what it needed).
    pub fn clear_fetched(&mut self) {
        self.fetched = Vec::new();
    }

    /// Forgets a fetch that failed (raft-rs asks again later).
    pub fn fetch_failed(&mut self, low: u64) {
        self.fetching.get_mut().remove(&low);
    }

    /// Entries `[low, high)` from the fetched buffer, at least one and at
    /// most `max_size` bytes after the first, if it starts at `low`.
    fn fetched_range(&self, low: u64, high: u64, max_size: u64) -> Option<Vec<Entry>> {
        let first = self.fetched.first()?.index;
        if low < first || low >= first + self.fetched.len() as u64 {
            return None;
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        for e in &self.fetched[(low - first) as usize..] {
            if e.index >= high {
                break;
            }
            size += u64::from(protobuf::Message::compute_size(e));
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }

    /// Index of the last entry (the compaction point if the cache is empty).
    pub fn last_index(&self) -> u64 {
        self.compacted_index + self.entries.len() as u64
    }

    /// Number of cached entries.
    pub fn cached_entries(&self) -> usize {
        self.entries.len()
    }

    /// The cached entry at `index`, if any.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_cached_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }
}

impl raft::Storage for RegionStorage {
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
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(u64::MAX);
        if low <= self.runs.start().0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if low <= self.compacted_index {
            // Only the WAL holds these: served from a finished fetch, or
            // fetched asynchronously when raft-rs allows it.
            if let Some(out) = self.fetched_range(low, high, max_size) {
                return Ok(out);
            }
            if !context.can_async() {
                return Err(raft::Error::Store(StorageError::Compacted));
            }
            if self.fetching.borrow_mut().insert(low) {
                self.fetch_requests.borrow_mut().push(FetchRequest {
                    low,
                    high: high.min(self.compacted_index + 1),
                    context,
                });
            }
            return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
        }
        assert!(
            high <= self.last_index() + 1,
            "entries [{low}, {high}) past last index {}",
            self.last_index()
        );
        let mut out = Vec::new();
        let mut size = 0u64;
        for index in low..high {
            let e = self.entry(index).expect("index within the cache");
            size += u64::from(protobuf::Message::compute_size(e));
            // Always return at least one entry, as raft-rs requires.
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.compacted_index {
            return Ok(self.compacted_term);
        }
        if idx < self.compacted_index {
            // Not cached: known from the term runs back to the log start.
            return self
                .runs
                .term(idx)
                .ok_or(raft::Error::Store(StorageError::Compacted));
        }
        match self.entry(idx) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(RegionStorage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RegionStorage::last_index(self))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // A prepared snapshot serves while it still connects to the log
        // (it is not older than the log start) and its configuration holds
        // the follower: one prepared before `to` was added would be refused
        // by it (`BadSnapshot`, and raft-rs's own `restore`) again and
        // again, so `to` could never catch up.
        if let Some(snap) = &self.prepared {
            let md = snap.get_metadata();
            let cs = md.get_conf_state();
            let holds_to = cs
                .voters
                .iter()
                .chain(&cs.learners)
                .chain(&cs.voters_outgoing)
                .any(|&id| id == to);
            if md.index >= request_index && md.index >= self.runs.start().0 && holds_to {
                return Ok(snap.clone());
            }
        }
        self.snapshot_wanted.set(true);
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn append_overwrites_a_conflicting_suffix() {
        let mut s = RegionStorage::default();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        assert_eq!(RegionStorage::last_index(&s), 3);
        s.append(&[entry(2, 2)]);
        assert_eq!(RegionStorage::last_index(&s), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        assert_eq!(
            s.term(3),
            Err(raft::Error::Store(StorageError::Unavailable))
        );
    }

    #[test]
    #[should_panic(expected = "gap")]
    fn append_with_a_gap_panics() {
        let mut s = RegionStorage::default();
        s.append(&[entry(2, 1)]);
    }

    #[test]
    fn compaction_keeps_the_term_of_the_compaction_point() {
        let mut s = RegionStorage::default();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]);
        s.compact_to(3);
        assert_eq!(s.first_cached_index(), 4);
        assert_eq!(RegionStorage::last_index(&s), 4);
        assert_eq!(s.term(3).unwrap(), 2);
        // Uncached entries after the log start: terms known, entries only
        // through an asynchronous fetch (this context allows none).
        assert_eq!(s.term(2), Ok(1));
        assert_eq!(s.first_index(), 1);
        assert_eq!(
            s.entries(3, 5, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        s.set_log_start(2);
        assert_eq!(s.first_index(), 3);
        assert_eq!(s.term(1), Err(raft::Error::Store(StorageError::Compacted)));
        assert_eq!(
            s.entries(2, 5, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        assert_eq!(s.entries(4, 5, None, ctx()).unwrap(), vec![entry(4, 2)]);
        // Compacting everything leaves an empty cache after the point.
        s.compact_to(4);
        assert_eq!(s.cached_entries(), 0);
        assert_eq!(RegionStorage::last_index(&s), 4);
        assert_eq!(s.term(4).unwrap(), 2);
        s.append(&[entry(5, 3)]);
        assert_eq!(s.term(5).unwrap(), 3);
    }

    #[test]
    fn uncached_entries_are_fetched_asynchronously_once() {
        let mut s = RegionStorage::default();
        let all: Vec<Entry> = (1..=6).map(|i| entry(i, 1)).collect();
        s.append(&all);
        s.compact_to(4);
        let unavailable = Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
        assert_eq!(
            s.entries(2, 6, None, GetEntriesContext::empty(true)),
            unavailable
        );
        // Asked again while in flight: no second request.
        assert_eq!(
            s.entries(2, 7, None, GetEntriesContext::empty(true)),
            unavailable
        );
        let reqs = s.take_fetch_requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!((reqs[0].low, reqs[0].high), (2, 5), "up to the cache");
        s.set_fetched(2, all[1..4].to_vec());
        assert_eq!(
            s.entries(2, 6, None, GetEntriesContext::empty(true))
                .unwrap(),
            all[1..4].to_vec()
        );
        assert_eq!(s.entries(3, 4, 0u64, ctx()).unwrap(), vec![entry(3, 1)]);
        s.clear_fetched();
        assert_eq!(
            s.entries(2, 6, None, GetEntriesContext::empty(true)),
            unavailable
        );
        assert_eq!(s.take_fetch_requests().len(), 1);
        s.fetch_failed(2);
        assert_eq!(
            s.entries(2, 6, None, GetEntriesContext::empty(true)),
            unavailable
        );
        assert_eq!(
            s.take_fetch_requests().len(),
            1,
            "asked again after a failure"
        );
    }

    #[test]
    fn entries_respect_max_size_but_return_one() {
        let mut s = RegionStorage::default();
        let mut big = entry(1, 1);
        big.data = vec![0u8; 100].into();
        s.append(&[big.clone(), entry(2, 1)]);
        assert_eq!(s.entries(1, 3, 1u64, ctx()).unwrap(), vec![big]);
        assert_eq!(s.entries(1, 3, None, ctx()).unwrap().len(), 2);
    }
}
