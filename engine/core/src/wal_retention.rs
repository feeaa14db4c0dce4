//! `WalRetention`: which WAL segments a shard still needs.
//!
//! A shard's WAL segments hold the Raft entries of all its regions. A
//! segment may be deleted once, for every region, each of its entries in
//! that segment (and in every older one) is at or below the region's
//! `persisted_applied` index in the store: recovery replays only entries
//! after that. This type remembers, per region, the highest entry index
//! written into each segment, and answers where the needed log begins.
//!
//! Invariants: marks only over-estimate (an index noted for a segment is ≥
//! every entry of the region written there), so a segment is never judged
//! deletable while it holds an entry recovery needs; the answer of
//! `first_needed` never exceeds the active segment (the one being written).
//! No I/O: the shell notes writes and performs deletions.

use golem_wire::{LogIndex, RegionId};
use std::collections::{BTreeMap, HashMap};

/// Per-region marks of what each WAL segment holds.
#[derive(Clone, Debug, Default)]
pub struct WalRetention {
    /// region → (segment seq → highest entry index written there).
    marks: HashMap<RegionId, BTreeMap<u64, u64>>,
}

impl WalRetention {
    /// No marks.
    pub fn new() -> WalRetention {
        WalRetention::default()
    }

    /// Notes that entries of `region` up to `last_index` were written into
    /// segment `seq` (or may have been: marks may over-estimate).
    pub fn note(&mut self, region: RegionId, seq: u64, last_index: u64) {
        let slot = self
            .marks
            .entry(region)
            .or_default()
            .entry(seq)
            .or_default();
        *slot = (*slot).max(last_index);
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
        for (&region, segs) in &self.marks {
            let p = persisted(region).get();
            if let Some((&seq, _)) = segs.iter().find(|(_, &max)| max > p) {
                first = first.min(seq);
            }
        }
        first
    }

    /// Forgets the marks of segments before `seq` (they were deleted).
    pub fn forget_before(&mut self, seq: u64) {
        self.marks.retain(|_, segs| {
            *segs = segs.split_off(&seq);
            !segs.is_empty()
        });
    }

    /// Forgets a region (it left this shard; its data range is deleted).
    pub fn forget_region(&mut self, region: RegionId) {
        self.marks.remove(&region);
    }

    /// Segments noted for any region (for tests and metrics).
    pub fn segments(&self) -> usize {
        let mut all: Vec<u64> = self
            .marks
            .values()
            .flat_map(|s| s.keys().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: RegionId = RegionId(1);
    const B: RegionId = RegionId(2);

    #[test]
    fn a_segment_goes_when_every_region_has_persisted_its_entries() {
        let mut r = WalRetention::new();
        r.note(A, 1, 10);
        r.note(B, 1, 5);
        r.note(A, 2, 20);
        r.note(B, 3, 9);
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
        assert_eq!(r.segments(), 1);
        assert_eq!(r.first_needed(4, persisted(0, 0)), 3);
        r.forget_region(B);
        assert_eq!(r.first_needed(4, persisted(0, 0)), 4);
    }

    proptest! {
        /// Against brute force over the written entries.
        #[test]
        fn matches_brute_force(
            writes in proptest::collection::vec((0u64..3, 1u64..6, 1u64..50), 1..40),
            persisted in proptest::collection::vec(0u64..50, 3),
        ) {
            let mut r = WalRetention::new();
            let mut written: Vec<(u64, u64, u64)> = Vec::new();
            for (region, seq, index) in writes {
                r.note(RegionId(region), seq, index);
                written.push((region, seq, index));
            }
            let active = 6;
            let got = r.first_needed(active, |region| LogIndex(persisted[region.get() as usize]));
            let want = written
                .iter()
                .filter(|(region, _, index)| *index > persisted[*region as usize])
                .map(|(_, seq, _)| *seq)
                .min()
                .unwrap_or(active)
                .min(active);
            prop_assert_eq!(got, want);
        }
    }
}
