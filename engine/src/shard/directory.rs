//! Which shard of this node owns which region.
//!
//! Owns the region → shard placement. For the walking skeleton the node
//! hosts exactly one region (id 1, the whole key space) on shard 0; #5 makes
//! placement dynamic (a new region may go to another shard). Invariant: a
//! region is owned by exactly one shard; every other shard forwards.

use golem_wire::{RegionId, ShardId};

/// The region every new node bootstraps: the whole key space.
pub const FIRST_REGION: RegionId = RegionId(1);

/// Region → owning shard.
#[derive(Clone, Debug)]
pub struct RegionDirectory {
    first_region_shard: ShardId,
}

impl RegionDirectory {
    /// The skeleton's placement: the first region on shard 0.
    pub fn single_region() -> RegionDirectory {
        RegionDirectory {
            first_region_shard: ShardId(0),
        }
    }

    /// The shard that owns `region`, if this node hosts it.
    pub fn owner(&self, region: RegionId) -> Option<ShardId> {
        (region == FIRST_REGION).then_some(self.first_region_shard)
    }
}
