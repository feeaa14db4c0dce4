//! At most one leader per (region, term), ever.
//!
//! Owns the record of which node was seen leading each region in each
//! term. The simulator observes every peer after every event, so a second
//! leader of a term is seen while both exist or after the first stepped
//! down: either way it is reported. Invariant: an entry, once recorded,
//! never changes (a node leading again in the same term after a crash is
//! the same leader, not a second one).

use golem_wire::RegionId;
use std::collections::BTreeMap;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct LeaderChecker {
    leaders: BTreeMap<(RegionId, u64), usize>,
}

impl LeaderChecker {
    /// Records that `node` leads `region` in `term` (Ok(true) the first
    /// time); an error names both leaders if another node led that term.
    pub fn observe(&mut self, region: RegionId, term: u64, node: usize) -> Result<bool, String> {
        if let Some(&first) = self.leaders.get(&(region, term)) {
            if first == node {
                return Ok(false);
            }
            return Err(format!(
                "two leaders of region {region} in term {term}: node {first} and node {node}"
            ));
        }
        self.leaders.insert((region, term), node);
        Ok(true)
    }

    /// Number of (region, term) pairs that had a leader: elections won.
    pub fn elections(&self) -> usize {
        self.leaders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_per_term_and_region() {
        let mut c = LeaderChecker::default();
        assert!(c.observe(RegionId(1), 1, 0).unwrap());
        assert!(!c.observe(RegionId(1), 1, 0).unwrap());
        c.observe(RegionId(1), 2, 1).unwrap();
        c.observe(RegionId(2), 1, 2).unwrap();
        assert_eq!(c.elections(), 3);
        let err = c.observe(RegionId(1), 2, 0).unwrap_err();
        assert!(err.contains("node 1 and node 0"), "{err}");
    }
}
