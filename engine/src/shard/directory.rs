//! Which shard of this node owns which region: each shard's copy.
//!
//! Owns the region → (shard, range) placement as one shard knows it. Every
//! shard keeps its own copy (nothing is shared between shards but
//! messages): a shard that creates, removes or re-ranges a region updates
//! its copy and sends the change to every other shard's inbox
//! (`ShardMsg::Placements`, batched per raft-loop pass, never dropped). A copy may lag by one inbox hop; a request
//! forwarded on a stale copy is answered by the receiving shard
//! (`RegionNotFound` or `EpochNotMatch`), never served by the wrong region.
//!
//! Placement rule (docs/ARCHITECTURE.md, "Regions on shards"): a region's
//! replica lives on the shard its `PeerMeta` names. The first region goes
//! to shard 0; a replica added by a membership change goes where the
//! change placed it (by default the target store's shard `region id mod
//! shard count`); a region made by a split stays on its parent's shard
//! (its data is already in that shard's store).
//!
//! Invariant: a region is owned by at most one shard of this node.

use crate::node::identity::HostedRegion;
use golem_wire::{RegionId, ShardId};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

/// The shard that hosts the node's first region.
pub const HOSTING_SHARD: ShardId = ShardId(0);

/// Where one region of this node lives, and its range (for requests routed
/// by key with no region knowledge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub shard: ShardId,
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl Placement {
    fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// One shard's copy of the node's region placements.
#[derive(Debug)]
pub struct RegionDirectory {
    hosted: Option<HostedRegion>,
    placements: RefCell<HashMap<RegionId, Placement>>,
    /// Start key → region, for lookups by key in O(log n).
    by_start: RefCell<BTreeMap<Vec<u8>, RegionId>>,
}

impl RegionDirectory {
    /// An empty directory; `hosted` is the node's first region (from its
    /// identity), which shard 0 bootstraps.
    pub fn new(hosted: Option<HostedRegion>) -> RegionDirectory {
        RegionDirectory {
            hosted,
            placements: RefCell::new(HashMap::new()),
            by_start: RefCell::new(BTreeMap::new()),
        }
    }

    /// The node's first region, if its identity names one.
    pub fn hosted(&self) -> Option<HostedRegion> {
        self.hosted
    }

    /// The shard that owns `region`, if this node hosts it (as far as this
    /// copy knows).
    pub fn owner(&self, region: RegionId) -> Option<ShardId> {
        self.placements.borrow().get(&region).map(|p| p.shard)
    }

    /// The region of this node whose range holds `key`, and its shard.
    pub fn covering(&self, key: &[u8]) -> Option<(RegionId, ShardId)> {
        let by_start = self.by_start.borrow();
        let (_, id) = by_start.range(..=key.to_vec()).next_back()?;
        let placements = self.placements.borrow();
        let p = placements.get(id)?;
        p.contains(key).then_some((*id, p.shard))
    }

    /// The region of this node holding the keys just below `end` (empty:
    /// the end of the key space), where a reverse scan starts; and its shard.
    pub fn covering_before(&self, end: &[u8]) -> Option<(RegionId, ShardId)> {
        let by_start = self.by_start.borrow();
        let (_, id) = if end.is_empty() {
            by_start.last_key_value()?
        } else {
            by_start
                .range::<[u8], _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(end)))
                .next_back()?
        };
        let placements = self.placements.borrow();
        let p = placements.get(id)?;
        let holds = if end.is_empty() {
            p.end.is_empty()
        } else {
            p.end.is_empty() || end <= p.end.as_slice()
        };
        holds.then_some((*id, p.shard))
    }

    /// Records a change: `Some` places (or re-ranges) the region, `None`
    /// forgets it.
    pub fn update(&self, region: RegionId, placement: Option<Placement>) {
        let mut map = self.placements.borrow_mut();
        let mut by_start = self.by_start.borrow_mut();
        if let Some(old) = map.remove(&region) {
            if by_start.get(&old.start) == Some(&region) {
                by_start.remove(&old.start);
            }
        }
        if let Some(p) = placement {
            // A region that shrank or moved may still be indexed under a
            // start another region now uses: the newest update wins.
            by_start.insert(p.start.clone(), region);
            map.insert(region, p);
        }
    }

    /// How many regions this copy knows.
    pub fn len(&self) -> usize {
        self.placements.borrow().len()
    }

    /// Whether this copy knows no region.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(shard: u16, start: &[u8], end: &[u8]) -> Option<Placement> {
        Some(Placement {
            shard: ShardId(shard),
            start: start.to_vec(),
            end: end.to_vec(),
        })
    }

    #[test]
    fn placements_route_by_id_and_by_key() {
        let d = RegionDirectory::new(None);
        assert!(d.is_empty());
        d.update(RegionId(1), at(0, b"", b"m"));
        d.update(RegionId(2), at(1, b"m", b""));
        assert_eq!(d.owner(RegionId(2)), Some(ShardId(1)));
        assert_eq!(d.covering(b"a"), Some((RegionId(1), ShardId(0))));
        assert_eq!(d.covering(b"m"), Some((RegionId(2), ShardId(1))));
        assert_eq!(d.covering(b"zz"), Some((RegionId(2), ShardId(1))));
        assert_eq!(d.covering_before(b""), Some((RegionId(2), ShardId(1))));
        assert_eq!(d.covering_before(b"m"), Some((RegionId(1), ShardId(0))));
        assert_eq!(d.covering_before(b"ma"), Some((RegionId(2), ShardId(1))));
        assert_eq!(d.covering_before(b"b"), Some((RegionId(1), ShardId(0))));
        d.update(RegionId(2), None);
        assert_eq!(d.covering_before(b""), None, "the last region is not here");
        assert_eq!(d.owner(RegionId(2)), None);
        assert_eq!(d.covering(b"zz"), None);
        assert_eq!(d.len(), 1);
    }
}
