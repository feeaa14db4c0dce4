//! Which shard of this node owns which region.
//!
//! Owns the region → shard placement. For now the node hosts at most one
//! region (stand-alone: id 1, the whole key space; with a PD: the region id
//! the PD handed out, or none for a node that joined an existing cluster),
//! always on shard 0; #5 makes placement dynamic (a new region may go to
//! another shard). Invariant: a region is owned by exactly one shard; every
//! other shard forwards.

use crate::node::identity::HostedRegion;
use golem_wire::{RegionId, ShardId};

/// The shard that hosts the node's region.
pub const HOSTING_SHARD: ShardId = ShardId(0);

/// Region → owning shard.
#[derive(Clone, Debug)]
pub struct RegionDirectory {
    hosted: Option<HostedRegion>,
}

impl RegionDirectory {
    /// The placement of the node's one region (if any) on shard 0.
    pub fn new(hosted: Option<HostedRegion>) -> RegionDirectory {
        RegionDirectory { hosted }
    }

    /// The region this node hosts, if any.
    pub fn hosted(&self) -> Option<HostedRegion> {
        self.hosted
    }

    /// The shard that owns `region`, if this node hosts it.
    pub fn owner(&self, region: RegionId) -> Option<ShardId> {
        self.hosted
            .filter(|h| h.region == region)
            .map(|_| HOSTING_SHARD)
    }
}
