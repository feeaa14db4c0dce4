//! `Memtable`: the newest writes, in memory, in key order.
//!
//! Owns: point entries (a value or a point tombstone), the layer's range
//! tombstones, and the highest applied index of each region written into it
//! (recorded in the footer of the segment it is flushed to).
//!
//! Invariants: a range delete removes the memtable's own keys in the range
//! before recording the tombstone, so a tombstone here hides only older
//! layers (see `range`); `bytes` over-approximates the heap held, so the
//! `memtable_bytes_max` limit holds.

use crate::batch::{WriteBatch, WriteOp};
use crate::range::RangeTombstones;
use golem_wire::{LogIndex, RegionId};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Per-entry bookkeeping charged on top of key and value bytes.
const ENTRY_OVERHEAD_BYTES: usize = 48;

/// The newest writes of a shard.
#[derive(Clone, Debug, Default)]
pub(crate) struct Memtable {
    /// `None` is a point tombstone.
    pub(crate) points: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(crate) ranges: RangeTombstones,
    /// Highest applied index per region written here.
    pub(crate) applied: BTreeMap<RegionId, LogIndex>,
    bytes: usize,
}

impl Memtable {
    /// Applies a (validated) batch and records `applied`.
    pub(crate) fn apply(&mut self, batch: WriteBatch, applied: (RegionId, LogIndex)) {
        for op in batch.ops {
            match op {
                WriteOp::Put { key, value } => self.set(key, Some(value)),
                WriteOp::Delete { key } => self.set(key, None),
                WriteOp::DeleteRange { start, end } => {
                    let upper = if end.is_empty() {
                        Bound::Unbounded
                    } else {
                        Bound::Excluded(end.clone())
                    };
                    let doomed: Vec<Vec<u8>> = self
                        .points
                        .range((Bound::Included(start.clone()), upper))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        if let Some(v) = self.points.remove(&k) {
                            self.bytes -= entry_bytes(&k, &v);
                        }
                    }
                    self.bytes -= self.ranges.bytes();
                    self.ranges.insert(start, end);
                    self.bytes += self.ranges.bytes();
                }
            }
        }
        let (region, index) = applied;
        let slot = self.applied.entry(region).or_insert(index);
        if index > *slot {
            *slot = index;
        }
    }

    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let added = entry_bytes(&key, &value);
        if let Some(old) = self.points.insert(key.clone(), value) {
            self.bytes -= entry_bytes(&key, &old);
        }
        self.bytes += added;
    }

    /// The newest state of `key` in this layer: `Some(Some(v))` a value,
    /// `Some(None)` deleted (point or range tombstone), `None` unknown here.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        if let Some(v) = self.points.get(key) {
            return Some(v.as_deref());
        }
        if self.ranges.covers(key) {
            return Some(None);
        }
        None
    }

    /// Approximate heap bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing (no write and no applied index) was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.points.is_empty() && self.ranges.is_empty() && self.applied.is_empty()
    }

    /// Points with keys in `[start, end)` in key order (for scans and flush).
    pub(crate) fn range<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> impl DoubleEndedIterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let it = if end.is_empty() || start < end {
            Some(
                self.points
                    .range::<[u8], _>((Bound::Included(start), upper))
                    .map(|(k, v)| (k.as_slice(), v.as_deref())),
            )
        } else {
            None
        };
        it.into_iter().flatten()
    }
}

fn entry_bytes(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn recount(m: &Memtable) -> usize {
        m.points
            .iter()
            .map(|(k, v)| entry_bytes(k, v))
            .sum::<usize>()
            + m.ranges.bytes()
    }

    proptest! {
        #[test]
        fn byte_accounting_matches_a_recount(
            ops in proptest::collection::vec((0u8..3, 0u8..20, 0u8..20, 0usize..40), 1..200)
        ) {
            let mut m = Memtable::default();
            for (i, (kind, a, b, len)) in ops.into_iter().enumerate() {
                let mut batch = WriteBatch::new();
                match kind {
                    0 => { batch.put(vec![b'k', a], vec![0; len]); }
                    1 => { batch.delete(vec![b'k', a]); }
                    _ => {
                        let (s, e) = (a.min(b), a.max(b));
                        let end = if s == e { Vec::new() } else { vec![b'k', e] };
                        batch.delete_range(vec![b'k', s], end);
                    }
                }
                m.apply(batch, (RegionId(1), LogIndex(i as u64)));
                prop_assert_eq!(m.bytes(), recount(&m));
            }
        }
    }

    #[test]
    fn range_delete_removes_own_keys_then_newer_puts_win() {
        let mut m = Memtable::default();
        let mut b = WriteBatch::new();
        b.put("a", "1").put("b", "2").put("c", "3");
        m.apply(b, (RegionId(1), LogIndex(5)));
        let mut b = WriteBatch::new();
        b.delete_range("a", "c").put("b", "new");
        m.apply(b, (RegionId(1), LogIndex(6)));
        assert_eq!(m.get(b"a"), Some(None));
        assert_eq!(m.get(b"b"), Some(Some(&b"new"[..])));
        assert_eq!(m.get(b"c"), Some(Some(&b"3"[..])));
        assert_eq!(m.get(b"d"), None);
        assert_eq!(m.applied[&RegionId(1)], LogIndex(6));
        let all: Vec<_> = m.range(b"", b"").map(|(k, _)| k.to_vec()).collect();
        assert_eq!(all, vec![b"b".to_vec(), b"c".to_vec()]);
    }
}
