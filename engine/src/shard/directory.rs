//! Which shard of this node owns which region: each shard's copy.
//!
//! Owns the region → (shard, range) placements as one shard knows them.
//! Every shard keeps its own copy (nothing is shared between shards but
//! messages): a shard that creates, removes or re-ranges its replica of a
//! region updates its copy and sends the change to every other shard's
//! inbox (`ShardMsg::Placements`, batched per raft-loop pass, never
//! dropped). A copy may lag by one inbox hop; a request forwarded on a
//! stale copy is answered by the receiving shard (`RegionNotFound`,
//! `NotLeader` or `EpochNotMatch`: all retryable), never served by the
//! wrong region.
//!
//! Placement rule (docs/ARCHITECTURE.md, "Regions on shards"): a region's
//! replica lives on the shard its `PeerMeta` names. The first region goes
//! to shard 0; a replica added by a membership change goes where the
//! change placed it (the PD picks the target store's least-loaded shard);
//! a region made by a split stays on its parent's shard (its data is
//! already in that shard's store); the PD's balance-shard scheduler moves
//! a replica to another shard of its store by adding a new peer there and
//! removing the old one (docs/scheduling.md).
//!
//! Invariants: a region has at most one replica per shard here, and at
//! most `PEERS_PER_STORE_MAX` (2) on the node, both only while a replica
//! moves between shards; each is recorded under its own shard, so
//! removing one never forgets the other. A lookup picks this shard's own
//! replica if it has one (served or answered here, no hop), else the one
//! placed most recently (during a move: the new replica, which will stay).

use crate::node::identity::HostedRegion;
use golem_wire::{RegionId, ShardId};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

/// The shard that hosts the node's first region.
pub const HOSTING_SHARD: ShardId = ShardId(0);

/// Where one replica of a region of this node lives, and its range (for
/// requests routed by key with no region knowledge).
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
    /// The shard this copy belongs to (its own replicas are preferred).
    me: ShardId,
    /// Each region's replicas here, oldest placement first (one, or two
    /// on different shards while one moves).
    placements: RefCell<HashMap<RegionId, Vec<Placement>>>,
    /// Start key → region, for lookups by key in O(log n).
    by_start: RefCell<BTreeMap<Vec<u8>, RegionId>>,
}

impl RegionDirectory {
    /// An empty directory of shard `me`; `hosted` is the node's first
    /// region (from its identity), which shard 0 bootstraps.
    pub fn new(hosted: Option<HostedRegion>, me: ShardId) -> RegionDirectory {
        RegionDirectory {
            hosted,
            me,
            placements: RefCell::new(HashMap::new()),
            by_start: RefCell::new(BTreeMap::new()),
        }
    }

    /// The node's first region, if its identity names one.
    pub fn hosted(&self) -> Option<HostedRegion> {
        self.hosted
    }

    /// The shard to route a request for `region` to, if this node hosts it
    /// (as far as this copy knows): this shard if it holds a replica, else
    /// the most recently placed replica.
    pub fn owner(&self, region: RegionId) -> Option<ShardId> {
        let placements = self.placements.borrow();
        self.pick(placements.get(&region)?.iter()).map(|p| p.shard)
    }

    /// The region of this node whose range holds `key`, and the shard to
    /// route to (chosen as by `owner`, among replicas whose range holds it).
    pub fn covering(&self, key: &[u8]) -> Option<(RegionId, ShardId)> {
        let by_start = self.by_start.borrow();
        let (_, id) = by_start.range(..=key.to_vec()).next_back()?;
        let placements = self.placements.borrow();
        let p = self.pick(placements.get(id)?.iter().filter(|p| p.contains(key)))?;
        Some((*id, p.shard))
    }

    /// The region of this node holding the keys just below `end` (empty:
    /// the end of the key space), where a reverse scan starts; and the shard
    /// to route to (chosen as by `owner`).
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
        let holds = |p: &&Placement| {
            if end.is_empty() {
                p.end.is_empty()
            } else {
                p.end.is_empty() || end <= p.end.as_slice()
            }
        };
        let p = self.pick(placements.get(id)?.iter().filter(holds))?;
        Some((*id, p.shard))
    }

    fn pick<'a>(&self, mut replicas: impl Iterator<Item = &'a Placement>) -> Option<&'a Placement> {
        let mut newest = None;
        for p in replicas.by_ref() {
            if p.shard == self.me {
                return Some(p);
            }
            newest = Some(p);
        }
        newest
    }

    /// Records a change of the replica of `region` on `shard`: `Some`
    /// places (or re-ranges) it, `None` forgets it (the region's replica
    /// on another shard, if any, stays).
    pub fn update(&self, region: RegionId, shard: ShardId, placement: Option<Placement>) {
        if let Some(p) = &placement {
            assert_eq!(p.shard, shard, "a placement recorded under another shard");
        }
        let mut map = self.placements.borrow_mut();
        let mut by_start = self.by_start.borrow_mut();
        let replicas = map.entry(region).or_default();
        for old in replicas.iter() {
            if by_start.get(&old.start) == Some(&region) {
                by_start.remove(&old.start);
            }
        }
        match replicas.iter().position(|p| p.shard == shard) {
            Some(i) => match placement {
                // A re-range keeps its place in the order.
                Some(p) => replicas[i] = p,
                None => {
                    replicas.remove(i);
                }
            },
            None => replicas.extend(placement),
        }
        // A region that shrank or moved may still be indexed under a start
        // another region now uses: the newest update wins.
        for p in replicas.iter() {
            by_start.insert(p.start.clone(), region);
        }
        if replicas.is_empty() {
            map.remove(&region);
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

    fn put(d: &RegionDirectory, region: u64, p: Option<Placement>) {
        let shard = p.as_ref().expect("a placement").shard;
        d.update(RegionId(region), shard, p);
    }

    #[test]
    fn placements_route_by_id_and_by_key() {
        let d = RegionDirectory::new(None, ShardId(0));
        assert!(d.is_empty());
        put(&d, 1, at(0, b"", b"m"));
        put(&d, 2, at(1, b"m", b""));
        assert_eq!(d.owner(RegionId(2)), Some(ShardId(1)));
        assert_eq!(d.covering(b"a"), Some((RegionId(1), ShardId(0))));
        assert_eq!(d.covering(b"m"), Some((RegionId(2), ShardId(1))));
        assert_eq!(d.covering(b"zz"), Some((RegionId(2), ShardId(1))));
        assert_eq!(d.covering_before(b""), Some((RegionId(2), ShardId(1))));
        assert_eq!(d.covering_before(b"m"), Some((RegionId(1), ShardId(0))));
        assert_eq!(d.covering_before(b"ma"), Some((RegionId(2), ShardId(1))));
        assert_eq!(d.covering_before(b"b"), Some((RegionId(1), ShardId(0))));
        d.update(RegionId(2), ShardId(1), None);
        assert_eq!(d.covering_before(b""), None, "the last region is not here");
        assert_eq!(d.owner(RegionId(2)), None);
        assert_eq!(d.covering(b"zz"), None);
        assert_eq!(d.len(), 1);
    }

    /// Region 2 moves from shard 0 to shard 1 of the node: both replicas
    /// are known while it moves, and removing the old one leaves the new.
    #[test]
    fn a_region_moving_between_shards_stays_routable() {
        // (the copy's shard, owner while both are placed)
        for (me, while_moving) in [(0, 0), (1, 1), (2, 1)] {
            let d = RegionDirectory::new(None, ShardId(me));
            put(&d, 1, at(0, b"", b"m"));
            put(&d, 2, at(0, b"m", b""));
            put(&d, 2, at(1, b"m", b""));
            assert_eq!(
                d.owner(RegionId(2)),
                Some(ShardId(while_moving)),
                "copy of {me}"
            );
            assert_eq!(
                d.covering(b"x"),
                Some((RegionId(2), ShardId(while_moving))),
                "copy of {me}"
            );
            assert_eq!(
                d.covering_before(b""),
                Some((RegionId(2), ShardId(while_moving))),
                "copy of {me}"
            );
            d.update(RegionId(2), ShardId(0), None);
            assert_eq!(d.owner(RegionId(2)), Some(ShardId(1)), "copy of {me}");
            assert_eq!(d.covering(b"x"), Some((RegionId(2), ShardId(1))));
            assert_eq!(d.covering(b"a"), Some((RegionId(1), ShardId(0))));
            assert_eq!(d.len(), 2);
            d.update(RegionId(2), ShardId(1), None);
            assert_eq!((d.owner(RegionId(2)), d.covering(b"x")), (None, None));
        }
    }

    /// Replicas of one region with different ranges (one has applied a
    /// split the other has not yet): a key goes to a replica holding it.
    #[test]
    fn a_key_goes_to_a_replica_whose_range_holds_it() {
        let d = RegionDirectory::new(None, ShardId(0));
        put(&d, 2, at(0, b"m", b"t"));
        put(&d, 2, at(1, b"m", b""));
        assert_eq!(d.covering(b"n"), Some((RegionId(2), ShardId(0))));
        assert_eq!(d.covering(b"u"), Some((RegionId(2), ShardId(1))));
        // A re-range of one replica keeps the other indexed.
        put(&d, 2, at(0, b"m", b"p"));
        assert_eq!(d.covering(b"n"), Some((RegionId(2), ShardId(0))));
        assert_eq!(d.covering(b"u"), Some((RegionId(2), ShardId(1))));
    }
}
