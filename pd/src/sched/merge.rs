//! The merge rule of the PD: which two regions may merge.
//!
//! Owns `refusal`, the PD's copy of golem-core's `region::merge::merge_refusal`
//! (the PD never links the engine's crates): a source merges into a target
//! only if they are adjacent and their replicas sit on exactly the same
//! (store, shard) pairs, all voters. The nodes check it again when they
//! propose and when they apply.

use golem_wire::pd::{PeerRole, Region};

/// Why `source` cannot merge into `target` as they are (None: it can).
pub fn refusal(source: &Region, target: &Region) -> Option<String> {
    if source.id == target.id {
        return Some("a region cannot merge into itself".into());
    }
    let adjacent = (!source.end.is_empty() && source.end == target.start)
        || (!target.end.is_empty() && target.end == source.start);
    if !adjacent {
        return Some(format!(
            "regions {} and {} are not adjacent",
            source.id, target.id
        ));
    }
    if let Some(p) = source
        .peers
        .iter()
        .chain(&target.peers)
        .find(|p| p.role != PeerRole::Voter)
    {
        return Some(format!("peer {} is not a voter", p.id));
    }
    if placement(source) != placement(target) {
        return Some(format!(
            "regions {} and {} are not on the same (store, shard) pairs",
            source.id, target.id
        ));
    }
    None
}

/// The region's (store, shard) pairs, sorted.
pub fn placement(r: &Region) -> Vec<(golem_wire::StoreId, golem_wire::ShardId)> {
    let mut v: Vec<_> = r.peers.iter().map(|p| (p.store, p.shard)).collect();
    v.sort();
    v
}
