//! `TermRuns`: the term of every entry of a region's log, in a few words.
//!
//! Terms never decrease along a Raft log and change rarely, so the log's
//! terms are kept as runs `(first index, term)`. This answers "what is the
//! term of entry i" for entries long gone from the entry cache, which a
//! region needs when it moves its log start forward (the `LogStart` record
//! names the index and the term of the entry before the first kept one).
//!
//! Invariants: runs are sorted by first index with strictly increasing
//! terms; the first run starts at `start`, the log start (an entry that
//! itself may be gone); the runs cover `start ..= last appended index`.

use raft::eraftpb::Entry;

/// Term runs of one region's log. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermRuns {
    /// `(first index, term)`, ascending; `runs[0].0 == start`.
    runs: Vec<(u64, u64)>,
    /// Index of the last entry covered.
    last: u64,
}

impl Default for TermRuns {
    fn default() -> Self {
        TermRuns::new(0, 0)
    }
}

impl TermRuns {
    /// Runs for a log that starts after entry `(index, term)` and is empty.
    pub fn new(index: u64, term: u64) -> TermRuns {
        TermRuns {
            runs: vec![(index, term)],
            last: index,
        }
    }

    /// The log start: `(index, term)` of the entry before the first kept.
    pub fn start(&self) -> (u64, u64) {
        self.runs[0]
    }

    /// Index of the last covered entry.
    pub fn last_index(&self) -> u64 {
        self.last
    }

    /// Records appended entries; a run starting at index `i` replaces every
    /// entry at or after `i` (as a Raft log append does).
    ///
    /// # Panics
    /// If the entries are not consecutive, leave a gap after the last
    /// covered entry, replace the log start, or have decreasing terms: the
    /// caller checks input from disk before (`recover`), raft-rs never does.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        let start = self.runs[0].0;
        assert!(
            first.index > start && first.index <= self.last + 1,
            "append at {} outside {}..={}",
            first.index,
            start + 1,
            self.last + 1
        );
        // Drop runs that begin at or after the first replaced index.
        let keep = self.runs.partition_point(|&(i, _)| i < first.index);
        self.runs.truncate(keep.max(1));
        for e in ents {
            let (_, term) = *self.runs.last().expect("never empty");
            assert!(e.term >= term, "term decreases at index {}", e.index);
            if e.term > term {
                self.runs.push((e.index, e.term));
            }
        }
        self.last = ents.last().expect("not empty").index;
        for w in ents.windows(2) {
            assert_eq!(w[0].index + 1, w[1].index, "entries not consecutive");
        }
    }

    /// The term of entry `index`, if it is covered (`start ..= last`).
    pub fn term(&self, index: u64) -> Option<u64> {
        if index < self.runs[0].0 || index > self.last {
            return None;
        }
        let at = self.runs.partition_point(|&(i, _)| i <= index);
        Some(self.runs[at - 1].1)
    }

    /// Moves the log start forward to `index` (no-op if not past the
    /// current start), forgetting the runs before it.
    ///
    /// # Panics
    /// If `index` is past the last covered entry.
    pub fn set_start(&mut self, index: u64) {
        if index <= self.runs[0].0 {
            return;
        }
        let term = self
            .term(index)
            .unwrap_or_else(|| panic!("log start {index} past the last entry {}", self.last));
        let at = self.runs.partition_point(|&(i, _)| i <= index);
        self.runs.drain(..at);
        self.runs.insert(0, (index, term));
    }

    /// Number of runs (memory use is proportional to it).
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Always false: there is at least the start's run.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ents(first: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                index: first + i as u64,
                term,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn terms_of_appended_and_overwritten_entries() {
        let mut r = TermRuns::new(0, 0);
        r.append(&ents(1, &[1, 1, 2, 2, 2, 5]));
        assert_eq!(r.term(0), Some(0));
        assert_eq!(r.term(2), Some(1));
        assert_eq!(r.term(3), Some(2));
        assert_eq!(r.term(6), Some(5));
        assert_eq!(r.term(7), None);
        // A new leader overwrites from index 4.
        r.append(&ents(4, &[6, 6]));
        assert_eq!(r.term(3), Some(2));
        assert_eq!(r.term(4), Some(6));
        assert_eq!(r.last_index(), 5);
        assert_eq!(r.term(6), None);
        r.set_start(3);
        assert_eq!(r.start(), (3, 2));
        assert_eq!(r.term(2), None);
        assert_eq!(r.term(5), Some(6));
        assert_eq!(r.len(), 2);
        // Moving back is a no-op.
        r.set_start(1);
        assert_eq!(r.start(), (3, 2));
    }

    proptest! {
        /// Against a plain vector of terms.
        #[test]
        fn matches_a_vector(ops in proptest::collection::vec((0u64..20, 1usize..6, 0u64..3, any::<bool>()), 1..30)) {
            let mut r = TermRuns::new(0, 0);
            // model[i] = term of entry i; model[0] is the start.
            let mut model: Vec<u64> = vec![0];
            let mut start = 0u64;
            for (at, n, bump, compact) in ops {
                let last = model.len() as u64 - 1;
                if compact && last > start {
                    let to = start + at % (last - start + 1);
                    r.set_start(to);
                    start = start.max(to);
                    continue;
                }
                let first = start + 1 + at % (last - start + 1);
                let base = model[(first - 1) as usize];
                let terms: Vec<u64> = (0..n as u64).map(|i| base + bump * (i / 2)).collect();
                r.append(&ents(first, &terms));
                model.truncate(first as usize);
                model.extend(&terms);
                for i in 0..model.len() as u64 + 2 {
                    let want = (i >= start && i < model.len() as u64).then(|| model[i as usize]);
                    prop_assert_eq!(r.term(i), want, "index {}", i);
                }
            }
        }
    }
}
