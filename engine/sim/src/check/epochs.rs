//! Region metadata stays consistent across membership changes: epochs
//! only grow, replicas at one `conf_ver` agree on the members, and region
//! ranges never overlap.
//!
//! Owns, per replica `(node, peer)`, the last `(applied index, epoch)` it
//! was seen with; per `(region, conf_ver)`, the members and roles (and
//! version and range) first seen at it; per region, the range of the
//! newest metadata seen. The simulator shows it every initialized replica
//! after every event (not one installing a snapshot: its metadata is
//! ahead of its applied index until the data is in).
//!
//! Invariants checked:
//! - **epochs only grow**: a replica's `conf_ver` and `version` never go
//!   down while its applied index does not (a restarted replica replays
//!   from its store's durable index, with the metadata as of that index,
//!   so only a replay may show an older epoch);
//! - **agreement at equal epoch**: every replica of a region that is at
//!   one `(conf_ver, version)` has the same peers with the same roles (and
//!   placement) and the same range (a split moves `version` at the same
//!   `conf_ver`, so the range is compared at equal epochs);
//! - **no overlap**: the ranges of the regions' newest metadata are
//!   disjoint (a split's new region takes the range its parent gives up:
//!   the parent's newer metadata must shrink before or when the new
//!   region's appears).

use golem_core::region::{PeerRole, RegionMeta};
use golem_wire::{PeerId, RegionEpoch, RegionId, StoreId};
use std::collections::BTreeMap;

/// The members a metadata names: `(peer, store, role)`, sorted by peer.
type Members = Vec<(PeerId, StoreId, PeerRole)>;

fn members(meta: &RegionMeta) -> Members {
    let mut m: Members = meta.peers.iter().map(|p| (p.id, p.store, p.role)).collect();
    m.sort_unstable_by_key(|(id, _, _)| *id);
    m
}

/// What replicas at one `conf_ver` must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AtConfVer {
    version: u64,
    start: Vec<u8>,
    end: Vec<u8>,
    members: Members,
}

/// Whether `[a0, a1)` and `[b0, b1)` share a key (an empty end is
/// unbounded).
pub fn overlaps(a0: &[u8], a1: &[u8], b0: &[u8], b1: &[u8]) -> bool {
    let below = |key: &[u8], end: &[u8]| end.is_empty() || key < end;
    below(a0, b1) && below(b0, a1)
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct MetaChecker {
    last: BTreeMap<(usize, PeerId), (u64, RegionEpoch)>,
    at_conf_ver: BTreeMap<(RegionId, u64, u64), (AtConfVer, usize)>,
    /// `(region, conf_ver)` pairs seen.
    seen_conf_vers: std::collections::BTreeSet<(RegionId, u64)>,
    newest: BTreeMap<RegionId, (RegionEpoch, Vec<u8>, Vec<u8>)>,
    /// Distinct `(region, conf_ver)` pairs seen.
    conf_vers: u64,
}

impl MetaChecker {
    /// `node`'s replica `peer` has applied up to `applied` and holds
    /// `meta`.
    pub fn observe(
        &mut self,
        node: usize,
        peer: PeerId,
        applied: u64,
        meta: &RegionMeta,
    ) -> Result<(), String> {
        let epoch = meta.epoch;
        if let Some(&(last_applied, last)) = self.last.get(&(node, peer)) {
            if last == epoch && applied >= last_applied {
                self.last.insert((node, peer), (applied, epoch));
                return Ok(()); // nothing new to check
            }
            if applied >= last_applied
                && (epoch.conf_ver < last.conf_ver || epoch.version < last.version)
            {
                return Err(format!(
                    "region {} epoch went back on node {node} (peer {peer}): {last:?} at applied index {last_applied}, then {epoch:?} at {applied}",
                    meta.id
                ));
            }
        }
        self.last.insert((node, peer), (applied, epoch));
        let now = AtConfVer {
            version: epoch.version,
            start: meta.start.clone(),
            end: meta.end.clone(),
            members: members(meta),
        };
        let at = (meta.id, epoch.conf_ver, epoch.version);
        match self.at_conf_ver.get(&at) {
            Some((first, by)) if *first != now => {
                return Err(format!(
                    "region {} at conf_ver {} version {}: node {node} has {now:?} but node {by} had {first:?}",
                    meta.id, epoch.conf_ver, epoch.version
                ));
            }
            Some(_) => {}
            None => {
                if self.seen_conf_vers.insert((meta.id, epoch.conf_ver)) {
                    self.conf_vers += 1;
                }
                self.at_conf_ver.insert(at, (now, node));
            }
        }
        let newer = self
            .newest
            .get(&meta.id)
            .is_none_or(|(e, _, _)| (epoch.version, epoch.conf_ver) > (e.version, e.conf_ver));
        if newer {
            self.newest
                .insert(meta.id, (epoch, meta.start.clone(), meta.end.clone()));
            for (other, (_, s, e)) in &self.newest {
                if *other != meta.id && overlaps(&meta.start, &meta.end, s, e) {
                    return Err(format!(
                        "region {} {:?}..{:?} (epoch {epoch:?}) overlaps region {other} {s:?}..{e:?}",
                        meta.id, meta.start, meta.end
                    ));
                }
            }
        }
        Ok(())
    }

    /// Distinct `(region, conf_ver)` pairs seen: 1 per region without
    /// membership changes.
    pub fn conf_vers(&self) -> u64 {
        self.conf_vers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golem_core::region::PeerMeta;
    use golem_wire::ShardId;

    fn meta(region: u64, conf_ver: u64, peers: &[(u64, PeerRole)]) -> RegionMeta {
        RegionMeta {
            id: RegionId(region),
            start: Vec::new(),
            end: Vec::new(),
            epoch: RegionEpoch {
                conf_ver,
                version: 1,
            },
            peers: peers
                .iter()
                .map(|&(id, role)| PeerMeta {
                    role,
                    ..PeerMeta::new(PeerId(id), StoreId(id), ShardId(0))
                })
                .collect(),
        }
    }

    use PeerRole::{Learner, Voter};

    #[test]
    fn growing_epochs_and_agreeing_replicas_pass() {
        let mut c = MetaChecker::default();
        let m1 = meta(1, 1, &[(1, Voter), (2, Voter)]);
        let m2 = meta(1, 2, &[(1, Voter), (2, Voter), (3, Learner)]);
        c.observe(0, PeerId(1), 10, &m1).unwrap();
        c.observe(1, PeerId(2), 9, &m1).unwrap();
        c.observe(0, PeerId(1), 12, &m2).unwrap();
        // Peers listed in another order are the same members.
        let mut m2b = m2.clone();
        m2b.peers.reverse();
        c.observe(1, PeerId(2), 12, &m2b).unwrap();
        // A restart replays from a lower applied index with the older epoch.
        c.observe(0, PeerId(1), 5, &m1).unwrap();
        c.observe(0, PeerId(1), 12, &m2).unwrap();
        assert_eq!(c.conf_vers(), 2);
    }

    #[test]
    fn an_epoch_going_back_is_reported() {
        let mut c = MetaChecker::default();
        c.observe(0, PeerId(1), 10, &meta(1, 2, &[(1, Voter)]))
            .unwrap();
        let err = c
            .observe(0, PeerId(1), 11, &meta(1, 1, &[(1, Voter)]))
            .unwrap_err();
        assert!(err.contains("epoch went back"), "{err}");
    }

    #[test]
    fn disagreement_at_one_conf_ver_is_reported() {
        let mut c = MetaChecker::default();
        c.observe(0, PeerId(1), 10, &meta(1, 2, &[(1, Voter), (2, Voter)]))
            .unwrap();
        let err = c
            .observe(1, PeerId(2), 10, &meta(1, 2, &[(1, Voter), (2, Learner)]))
            .unwrap_err();
        assert!(err.contains("conf_ver 2"), "{err}");
    }

    #[test]
    fn overlapping_ranges_are_reported() {
        assert!(overlaps(b"", b"", b"a", b"b"));
        assert!(!overlaps(b"", b"b", b"b", b""));
        assert!(overlaps(b"a", b"c", b"b", b"d"));
        assert!(!overlaps(b"a", b"b", b"c", b""));
        let mut c = MetaChecker::default();
        let mut left = meta(1, 1, &[(1, Voter)]);
        left.end = b"m".to_vec();
        let mut right = meta(2, 1, &[(2, Voter)]);
        right.start = b"m".to_vec();
        c.observe(0, PeerId(1), 6, &left).unwrap();
        c.observe(0, PeerId(2), 6, &right).unwrap();
        let mut wide = meta(3, 1, &[(3, Voter)]);
        wide.start = b"k".to_vec();
        wide.end = b"n".to_vec();
        let err = c.observe(0, PeerId(3), 6, &wide).unwrap_err();
        assert!(err.contains("overlaps"), "{err}");
    }
}
