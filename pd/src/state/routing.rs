//! The routing table: which region owns which key range.
//!
//! Owns `RoutingTable`: regions by id and by start key. Region metadata
//! changes only through `apply_heartbeat` (from the Raft log, so every member
//! gets the same table); statistics may be refreshed leader-locally with
//! `update_stats` (soft state, rebuilt by the next heartbeats after a leader
//! change).
//!
//! Invariants (checked by `check_invariants`, and by the property test):
//! - ranges never overlap: for consecutive start keys, the earlier region
//!   ends at or before the next one starts;
//! - the two maps agree (`by_start[r.start] == r.id` for every region);
//! - a region's epoch never goes back: a report whose `version` or
//!   `conf_ver` is below the known one is rejected (`StaleEpoch`);
//! - overlaps resolve to the newer `version`: a report overlapping a region
//!   with a larger version is stale; otherwise the regions it overlaps are
//!   removed (they were split or merged away);
//! - for one epoch, the leader reported in a newer term wins;
//! - a region removed by an overlap never comes back with an older epoch
//!   than the one it was removed with (`removed`).

use golem_wire::pd::{Peer, Region, RegionHeartbeat, RegionRoute, RegionStats};
use golem_wire::{GolemError, RegionEpoch, RegionId};
use std::collections::BTreeMap;
use std::ops::Bound;

/// What a heartbeat would change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatEffect {
    /// Only statistics change: no Raft entry needed.
    StatsOnly,
    /// Metadata (range, epoch, peers, leader) changes: goes through Raft.
    Meta,
}

/// Regions by id and by start key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingTable {
    regions: BTreeMap<RegionId, RegionRoute>,
    by_start: BTreeMap<Vec<u8>, RegionId>,
    /// Last epoch of each region removed because a newer report overlapped
    /// it (split reported right-side first, merged away): a late report of
    /// an older epoch of that region must not bring it back. One small entry
    /// per merged-away region id.
    removed: BTreeMap<RegionId, RegionEpoch>,
}

/// `a` is older than `b` in at least one component.
fn is_stale(a: RegionEpoch, b: RegionEpoch) -> bool {
    a.version < b.version || a.conf_ver < b.conf_ver
}

impl RoutingTable {
    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether there is no region.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// A region by id.
    pub fn get(&self, id: RegionId) -> Option<&RegionRoute> {
        self.regions.get(&id)
    }

    /// Every region, by id.
    pub fn iter(&self) -> impl Iterator<Item = &RegionRoute> {
        self.regions.values()
    }

    /// The region whose range contains `key`.
    pub fn find(&self, key: &[u8]) -> Option<&RegionRoute> {
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        let route = &self.regions[id];
        route.region.contains(key).then_some(route)
    }

    /// Regions overlapping `[start, end)` (empty end: unbounded), in key
    /// order, at most `limit` and about `bytes_max` bytes of routes (at
    /// least one); the caller continues from the last region's end.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        bytes_max: usize,
    ) -> Vec<RegionRoute> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // The region containing `start` may begin before it.
        let first = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(start)))
            .next_back()
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        for (s, id) in self
            .by_start
            .range::<[u8], _>((Bound::Included(first.as_slice()), Bound::Unbounded))
        {
            if out.len() >= limit || (!end.is_empty() && s.as_slice() >= end) {
                break;
            }
            let route = &self.regions[id];
            let r = &route.region;
            if !r.end.is_empty() && r.end.as_slice() <= start {
                continue;
            }
            // Keys, peers and fixed fields, roughly as archived.
            bytes += r.start.len() + r.end.len() + r.peers.len() * 32 + 128;
            if bytes > bytes_max && !out.is_empty() {
                break;
            }
            out.push(route.clone());
        }
        out
    }

    /// Ids of regions other than `id` overlapping `[start, end)`.
    fn overlapping(&self, id: RegionId, start: &[u8], end: &[u8]) -> Vec<RegionId> {
        let end_bound = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let mut out = Vec::new();
        if let Some((_, prev)) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start)))
            .next_back()
        {
            let r = &self.regions[prev].region;
            if (r.end.is_empty() || r.end.as_slice() > start) && *prev != id {
                out.push(*prev);
            }
        }
        for (_, other) in self
            .by_start
            .range::<[u8], _>((Bound::Included(start), end_bound))
        {
            if *other != id {
                out.push(*other);
            }
        }
        out
    }

    /// Checks a heartbeat without changing anything: `Err(StaleEpoch)` if
    /// it is older than what is known, else what it would change.
    pub fn check_heartbeat(&self, hb: &RegionHeartbeat) -> Result<HeartbeatEffect, GolemError> {
        let r = &hb.region;
        let stale = |current: RegionEpoch| GolemError::StaleEpoch {
            region: r.id,
            reported: r.epoch,
            current,
        };
        if let Some(&gone) = self.removed.get(&r.id) {
            if is_stale(r.epoch, gone) {
                return Err(stale(gone));
            }
        }
        if let Some(cur) = self.regions.get(&r.id) {
            if is_stale(r.epoch, cur.region.epoch) {
                return Err(stale(cur.region.epoch));
            }
            if r.epoch == cur.region.epoch {
                if r.start != cur.region.start || r.end != cur.region.end {
                    // The same epoch with another range cannot come from a
                    // correct node; keep what is known.
                    return Err(stale(cur.region.epoch));
                }
                let leader_same = cur.leader.map(|p| p.id) == Some(hb.leader);
                // The same leader in a newer term goes through Raft once, so
                // that the recorded term keeps up with the leader's.
                let known_leader = leader_same && hb.term <= cur.term;
                if r.peers == cur.region.peers && (known_leader || hb.term < cur.term) {
                    return Ok(HeartbeatEffect::StatsOnly);
                }
                return Ok(HeartbeatEffect::Meta);
            }
        }
        for other in self.overlapping(r.id, &r.start, &r.end) {
            let o = &self.regions[&other].region;
            if o.epoch.version > r.epoch.version {
                return Err(stale(o.epoch));
            }
        }
        Ok(HeartbeatEffect::Meta)
    }

    /// Applies a heartbeat (from the Raft log). Deterministic.
    pub fn apply_heartbeat(&mut self, hb: &RegionHeartbeat) -> Result<(), GolemError> {
        let effect = self.check_heartbeat(hb)?;
        let r = &hb.region;
        let leader = r.peers.iter().copied().find(|p| p.id == hb.leader);
        if effect == HeartbeatEffect::StatsOnly {
            self.update_stats_unchecked(r.id, hb.stats.clone());
            return Ok(());
        }
        for other in self.overlapping(r.id, &r.start, &r.end) {
            let removed = self.regions.remove(&other).expect("overlap is indexed");
            self.by_start.remove(&removed.region.start);
            self.removed.insert(other, removed.region.epoch);
        }
        self.removed.remove(&r.id);
        let (leader, term) = match self.regions.get(&r.id) {
            // Same epoch, older term: keep the newer term's leader.
            Some(cur) if cur.region.epoch == r.epoch && hb.term < cur.term => {
                (cur.leader.filter(|l| r.peers.contains(l)), cur.term)
            }
            _ => (leader, hb.term),
        };
        if let Some(old) = self.regions.get(&r.id) {
            let old_start = old.region.start.clone();
            self.by_start.remove(&old_start);
        }
        self.by_start.insert(r.start.clone(), r.id);
        self.regions.insert(
            r.id,
            RegionRoute {
                region: r.clone(),
                leader,
                term,
                stats: hb.stats.clone(),
            },
        );
        Ok(())
    }

    /// Leader-local refresh of a region's statistics after `check_heartbeat`
    /// said `StatsOnly`.
    pub fn update_stats(&mut self, hb: &RegionHeartbeat) -> Result<(), GolemError> {
        match self.check_heartbeat(hb)? {
            HeartbeatEffect::StatsOnly => {
                self.update_stats_unchecked(hb.region.id, hb.stats.clone());
                Ok(())
            }
            HeartbeatEffect::Meta => Err(GolemError::Internal {
                reason: "a metadata change must go through the Raft log".into(),
            }),
        }
    }

    fn update_stats_unchecked(&mut self, id: RegionId, stats: RegionStats) {
        if let Some(route) = self.regions.get_mut(&id) {
            route.stats = stats;
        }
    }

    /// Inserts a region with no check (bootstrap of an empty table, and
    /// restore from a snapshot, which `check_invariants` verifies).
    pub fn insert_unchecked(&mut self, route: RegionRoute) {
        self.by_start
            .insert(route.region.start.clone(), route.region.id);
        self.regions.insert(route.region.id, route);
    }

    /// Regions removed by overlaps, with their last epochs.
    pub fn removed(&self) -> impl Iterator<Item = (RegionId, RegionEpoch)> + '_ {
        self.removed.iter().map(|(id, e)| (*id, *e))
    }

    /// Restores a removed-region record (snapshot restore).
    pub fn insert_removed(&mut self, id: RegionId, epoch: RegionEpoch) {
        self.removed.insert(id, epoch);
    }

    /// Every peer of every region (for id high-water marks).
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.regions.values().flat_map(|r| r.region.peers.iter())
    }

    /// Verifies the invariants of the module doc; `Err` names the first
    /// broken one.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.by_start.len() != self.regions.len() {
            return Err(format!(
                "{} start keys for {} regions",
                self.by_start.len(),
                self.regions.len()
            ));
        }
        let mut prev: Option<&Region> = None;
        for (start, id) in &self.by_start {
            let r = &self
                .regions
                .get(id)
                .ok_or_else(|| format!("start key indexes unknown region {id}"))?
                .region;
            if &r.start != start || r.id != *id {
                return Err(format!("index of region {id} disagrees with its range"));
            }
            if !r.end.is_empty() && r.start >= r.end {
                return Err(format!("region {id} has an empty or inverted range"));
            }
            if let Some(p) = prev {
                if p.end.is_empty() || p.end > r.start {
                    return Err(format!("regions {} and {} overlap", p.id, r.id));
                }
            }
            prev = Some(r);
        }
        Ok(())
    }
}
