//! Committed entries are never lost or changed: every replica applies, at
//! each index of a region, the same entry (term and payload), across
//! crashes and restarts.
//!
//! Owns the first entry seen applied at every (region, index) and, per
//! (node, region), the last index applied since the node's last restart.
//! Invariants checked: the entry at an index is the same whoever applies
//! it and however often (a restarted node applies again from its store's
//! durable index); a replica applies indexes in order without gaps.

use golem_wire::RegionId;
use std::collections::BTreeMap;

/// An entry's identity: its term and a hash of its type and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryId {
    pub term: u64,
    pub hash: u64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct AppliedChecker {
    first: BTreeMap<(RegionId, u64), (EntryId, usize)>,
    last: BTreeMap<(usize, RegionId), u64>,
    applied: u64,
}

impl AppliedChecker {
    /// `node` restarted: its next apply of `region` follows `from` (the
    /// store's durable applied index).
    pub fn restarted(&mut self, node: usize, region: RegionId, from: u64) {
        self.last.insert((node, region), from);
    }

    /// `node` applied `entry` at `index` of `region`.
    pub fn applied(
        &mut self,
        node: usize,
        region: RegionId,
        index: u64,
        entry: EntryId,
    ) -> Result<(), String> {
        self.applied += 1;
        let last = self.last.entry((node, region)).or_insert(0);
        if index != *last + 1 {
            return Err(format!(
                "node {node} applied index {index} of region {region} after {last}"
            ));
        }
        *last = index;
        let (first, by) = *self.first.entry((region, index)).or_insert((entry, node));
        if first != entry {
            return Err(format!(
                "region {region} index {index}: node {node} applied {entry:?}, node {by} applied {first:?} before"
            ));
        }
        Ok(())
    }

    /// Applies recorded (every replica and restart counted).
    pub fn applies(&self) -> u64 {
        self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: RegionId = RegionId(1);

    fn e(term: u64, hash: u64) -> EntryId {
        EntryId { term, hash }
    }

    #[test]
    fn the_same_entry_everywhere_and_again_after_a_restart() {
        let mut c = AppliedChecker::default();
        c.applied(0, R, 1, e(1, 10)).unwrap();
        c.applied(1, R, 1, e(1, 10)).unwrap();
        c.applied(0, R, 2, e(1, 11)).unwrap();
        c.restarted(0, R, 1);
        c.applied(0, R, 2, e(1, 11)).unwrap();
        assert_eq!(c.applies(), 4);
    }

    #[test]
    fn a_changed_entry_is_reported() {
        let mut c = AppliedChecker::default();
        c.applied(0, R, 1, e(1, 10)).unwrap();
        c.restarted(0, R, 0);
        let err = c.applied(0, R, 1, e(2, 12)).unwrap_err();
        assert!(err.contains("index 1"), "{err}");
        assert!(
            c.applied(1, R, 1, e(1, 11)).is_err(),
            "same term, other payload"
        );
    }

    #[test]
    fn a_gap_or_a_repeat_is_reported() {
        let mut c = AppliedChecker::default();
        assert!(c.applied(0, R, 2, e(1, 1)).is_err());
        let mut c = AppliedChecker::default();
        c.applied(0, R, 1, e(1, 1)).unwrap();
        assert!(c.applied(0, R, 1, e(1, 1)).is_err());
    }
}
