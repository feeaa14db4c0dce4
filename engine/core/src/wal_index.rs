//! `WalIndex`: where each region's Raft entries lie in the shard's WAL, and
//! which WAL segments recovery still needs.
//!
//! A shard's WAL segments hold the Raft entries of all its regions. For each
//! `Entries` record written (or found at recovery) this index keeps the run
//! of entry indexes it holds and its location (segment, byte offset,
//! payload length), so that entries no longer in a region's cache can be
//! read back for a lagging follower. The same index answers which segments
//! may be deleted: a segment may go once, for every region, each of its
//! entries in that segment (and in every older one) is at or below the
//! region's `persisted_applied` index in the store: recovery replays only
//! entries after that.
//!
//! Invariants: per region, runs are keyed by first index and do not
//! overlap; a run written at index `i` supersedes every indexed entry ≥ `i`
//! (as a Raft log append does: later runs are trimmed or dropped), so a
//! lookup returns the record written last for each index; `first_needed`
//! never exceeds the active segment. Memory is one small entry per
//! `Entries` record of the retained segments. No I/O: the shell notes
//! writes, performs reads and deletions.

use golem_wire::{LogIndex, RegionId};
use std::collections::{BTreeMap, HashMap};

/// Where one `Entries` record lies in the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLocation {
    /// Segment sequence number.
    pub segment: u64,
    /// Byte offset of the record header in the segment file.
    pub offset: u64,
    /// Length of the record's payload.
    pub payload_bytes: u32,
}

/// One indexed run: entries `first..=last` of a region, in one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexedRun {
    pub first: u64,
    pub last: u64,
    pub location: RecordLocation,
}

/// Per-region index of `Entries` records. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct WalIndex {
    /// region → first index → run.
    regions: HashMap<RegionId, BTreeMap<u64, IndexedRun>>,
}

impl WalIndex {
    /// An empty index.
    pub fn new() -> WalIndex {
        WalIndex::default()
    }

    /// Records that entries `first..=last` of `region` were written at
    /// `location`, superseding every indexed entry at or after `first`.
    ///
    /// # Panics
    /// If `first > last` or `first == 0`.
    pub fn insert(&mut self, region: RegionId, first: u64, last: u64, location: RecordLocation) {
        assert!(first >= 1 && first <= last, "bad run {first}..={last}");
        let runs = self.regions.entry(region).or_default();
        runs.split_off(&first);
        if let Some((_, prev)) = runs.range_mut(..first).next_back() {
            prev.last = prev.last.min(first - 1);
        }
        runs.insert(
            first,
            IndexedRun {
                first,
                last,
                location,
            },
        );
    }

    /// The runs holding `region`'s entries `low..high`, in order, stopping
    /// at the first index no run holds.
    pub fn locate(&self, region: RegionId, low: u64, high: u64) -> Vec<IndexedRun> {
        let mut out = Vec::new();
        let Some(runs) = self.regions.get(&region) else {
            return out;
        };
        let mut next = low;
        let start = runs.range(..=low).next_back().map_or(low, |(&f, _)| f);
        for run in runs.range(start..).map(|(_, r)| r) {
            if next >= high || run.first > next {
                break;
            }
            if run.last >= next {
                out.push(*run);
                next = run.last + 1;
            }
        }
        out
    }

    /// The oldest segment still needed: every segment before it holds only
    /// entries at or below their region's `persisted` index. At most
    /// `active_seq`.
    pub fn first_needed(
        &self,
        active_seq: u64,
        mut persisted: impl FnMut(RegionId) -> LogIndex,
    ) -> u64 {
        let mut first = active_seq;
        for (&region, runs) in &self.regions {
            let p = persisted(region).get();
            for run in runs.values().filter(|r| r.last > p) {
                first = first.min(run.location.segment);
            }
        }
        first
    }

    /// Forgets runs in segments before `seq` (they were deleted).
    pub fn forget_before(&mut self, seq: u64) {
        self.regions.retain(|_, runs| {
            runs.retain(|_, r| r.location.segment >= seq);
            !runs.is_empty()
        });
    }

    /// Forgets a region (it left this shard; its data range is deleted).
    pub fn forget_region(&mut self, region: RegionId) {
        self.regions.remove(&region);
    }

    /// Indexed runs over all regions (for metrics and tests).
    pub fn len(&self) -> usize {
        self.regions.values().map(BTreeMap::len).sum()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: RegionId = RegionId(1);
    const B: RegionId = RegionId(2);

    fn at(segment: u64, offset: u64) -> RecordLocation {
        RecordLocation {
            segment,
            offset,
            payload_bytes: 10,
        }
    }

    #[test]
    fn a_segment_goes_when_every_region_has_persisted_its_entries() {
        let mut r = WalIndex::new();
        r.insert(A, 1, 10, at(1, 0));
        r.insert(B, 1, 5, at(1, 64));
        r.insert(A, 11, 20, at(2, 0));
        r.insert(B, 6, 9, at(3, 0));
        let persisted = |a: u64, b: u64| move |region| LogIndex(if region == A { a } else { b });
        assert_eq!(r.first_needed(4, persisted(0, 0)), 1);
        assert_eq!(r.first_needed(4, persisted(10, 4)), 1, "B's 5 in segment 1");
        assert_eq!(
            r.first_needed(4, persisted(10, 5)),
            2,
            "A's 20 in segment 2"
        );
        assert_eq!(r.first_needed(4, persisted(20, 5)), 3, "B's 9 in segment 3");
        assert_eq!(
            r.first_needed(4, persisted(20, 9)),
            4,
            "never past the active one"
        );
        assert_eq!(r.first_needed(3, persisted(20, 9)), 3);
        r.forget_before(3);
        assert_eq!(r.len(), 1);
        assert_eq!(r.first_needed(4, persisted(0, 0)), 3);
        r.forget_region(B);
        assert!(r.is_empty());
        assert_eq!(r.first_needed(4, persisted(0, 0)), 4);
    }

    #[test]
    fn later_runs_supersede_and_lookups_stop_at_gaps() {
        let mut r = WalIndex::new();
        r.insert(A, 1, 10, at(1, 0));
        r.insert(A, 11, 20, at(1, 100));
        // A new leader overwrote from 15.
        r.insert(A, 15, 16, at(2, 0));
        let got = r.locate(A, 3, 17);
        let spans: Vec<_> = got
            .iter()
            .map(|x| (x.first, x.last, x.location.segment))
            .collect();
        assert_eq!(spans, vec![(1, 10, 1), (11, 14, 1), (15, 16, 2)]);
        assert!(r.locate(A, 17, 18).is_empty(), "17.. was superseded");
        assert!(r.locate(B, 1, 2).is_empty());
        r.forget_before(2);
        assert!(r.locate(A, 3, 17).is_empty(), "a gap at 3");
        assert_eq!(r.locate(A, 15, 17).len(), 1);
    }

    proptest! {
        /// Against a model log per region: index → (segment, offset).
        #[test]
        fn matches_a_model(
            writes in proptest::collection::vec((0u64..2, 1u64..30, 1u64..5, 1u64..6), 1..40),
            persisted in proptest::collection::vec(0u64..40, 2),
        ) {
            let mut r = WalIndex::new();
            let mut model: Vec<BTreeMap<u64, (u64, u64)>> = vec![BTreeMap::new(), BTreeMap::new()];
            for (n, (region, first, len, seq)) in writes.into_iter().enumerate() {
                let last = first + len - 1;
                let loc = at(seq, n as u64);
                r.insert(RegionId(region), first, last, loc);
                let m = &mut model[region as usize];
                m.split_off(&first);
                for i in first..=last {
                    m.insert(i, (seq, n as u64));
                }
            }
            for (region, m) in model.iter().enumerate() {
                for low in 1..40u64 {
                    let runs = r.locate(RegionId(region as u64), low, low + 1);
                    let want = m.get(&low).copied();
                    let got = runs.first().map(|x| (x.location.segment, x.location.offset));
                    // A lookup finds exactly the last record written for an index.
                    prop_assert_eq!(got, want, "region {} index {}", region, low);
                }
            }
            let active = 6;
            let got = r.first_needed(active, |region| LogIndex(persisted[region.get() as usize]));
            let want = model
                .iter()
                .enumerate()
                .flat_map(|(region, m)| {
                    let p = persisted[region];
                    m.iter().filter(move |(i, _)| **i > p).map(|(_, (seq, _))| *seq)
                })
                .min()
                .unwrap_or(active)
                .min(active);
            prop_assert_eq!(got, want);
        }
    }
}
