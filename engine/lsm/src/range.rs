//! Key ranges `[start, end)` with an empty `end` meaning unbounded, and
//! `RangeTombstones`: a layer's set of deleted ranges.
//!
//! Invariant kept by every layer (memtable or segment): a range tombstone
//! hides only data in **older** layers. A memtable removes its own covered
//! keys when a range delete is applied, and compaction keeps in its output
//! only points that no newer tombstone covers, so a point and a tombstone of
//! the same layer never conflict.

/// Whether `key` lies in `[start, end)` (empty `end`: unbounded).
pub(crate) fn contains(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

/// A layer's deleted ranges, kept sorted by start and coalesced (disjoint,
/// non-adjacent), so a lookup is a binary search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeTombstones {
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RangeTombstones {
    /// Adds `[start, end)`, merging it with every range it overlaps or touches.
    pub(crate) fn insert(&mut self, start: Vec<u8>, end: Vec<u8>) {
        let mut start = start;
        let mut end = end;
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        for (s, e) in self.ranges.drain(..) {
            // Disjoint and not touching: e < start, or end < s.
            let before = !e.is_empty() && e < start;
            let after = !end.is_empty() && end < s;
            if before || after {
                kept.push((s, e));
            } else {
                if s < start {
                    start = s;
                }
                if e.is_empty() || (!end.is_empty() && e > end) {
                    end = e;
                }
            }
        }
        let at = kept.partition_point(|(s, _)| *s < start);
        kept.insert(at, (start, end));
        self.ranges = kept;
    }

    /// Whether some range covers `key`.
    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        let i = self.ranges.partition_point(|(s, _)| s.as_slice() <= key);
        i > 0 && {
            let (s, e) = &self.ranges[i - 1];
            contains(s, e, key)
        }
    }

    /// The ranges, sorted and disjoint.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.ranges
            .iter()
            .map(|(s, e)| (s.as_slice(), e.as_slice()))
    }

    /// The number of ranges.
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bytes held (for memtable accounting).
    pub(crate) fn bytes(&self) -> usize {
        self.ranges
            .iter()
            .map(|(s, e)| s.len() + e.len() + 16)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(list: &[(&str, &str)]) -> RangeTombstones {
        let mut r = RangeTombstones::default();
        for (s, e) in list {
            r.insert(s.as_bytes().to_vec(), e.as_bytes().to_vec());
        }
        r
    }

    #[test]
    fn coalesces_and_covers() {
        let r = rt(&[("c", "e"), ("a", "b"), ("d", "g"), ("x", "")]);
        let got: Vec<_> = r.iter().map(|(s, e)| (s.to_vec(), e.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), b"b".to_vec()),
                (b"c".to_vec(), b"g".to_vec()),
                (b"x".to_vec(), b"".to_vec())
            ]
        );
        assert!(r.covers(b"a") && !r.covers(b"b") && r.covers(b"f") && !r.covers(b"g"));
        assert!(r.covers(b"zzz"));
        let r = rt(&[("b", "c"), ("", "")]);
        assert_eq!(r.len(), 1);
        assert!(r.covers(b"") && r.covers(b"q"));
    }
}
