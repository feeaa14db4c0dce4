//! The merge checker: small, cold, settled regions merge into a neighbour.
//!
//! Owns `refusal`, the PD's copy of golem-core's `region::merge::merge_refusal`
//! (the PD never links the engine's crates): a source merges into a target
//! only if they are adjacent and their replicas sit on exactly the same
//! (store, shard) pairs, all voters. The nodes check it again when they
//! propose and when they apply.
//!
//! And `check` (TiKV's merge checker, no I/O, time as an argument): a source
//! is due when its approximate size is at most `max_merge_region_bytes` and
//! its keys at most `max_merge_region_keys` (0 bytes: merging is off), it is
//! cold (requests per second below `max_merge_region_qps`), and neither it
//! nor its neighbour changed version within `split_merge_interval_ms` (a
//! region just split is not merged back). Its target is the smaller
//! adjacent neighbour such that the merged region stays within the split
//! thresholds (`split_region_bytes`, `split_region_keys`: so the split
//! checker never splits it again — no split/merge flapping). With the
//! peers aligned the plan is the `Merge` step; otherwise first an operator
//! moving the source's replicas onto the target's (store, shard) pairs
//! (add learner, promote, remove the peer it replaces, per differing
//! pair); the merge comes on a later run. A store holding a replica of
//! both on different shards (balance-shard puts neighbours on different
//! shards) is aligned as balance-shard moves a replica: a learner on the
//! target's shard of that store, then one joint `ReplacePeer` of the
//! source's peer there.

use super::config::SchedConfig;
use golem_wire::pd::{Peer, PeerRole, Region, RegionRoute};
use golem_wire::{PeerId, RegionId};

/// Running merge operators (alignments and merges), at most.
pub const MERGE_OPERATORS_MAX: usize = 4;

/// What the merge checker wants for a source region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergePlan {
    /// Merge the source into `target` now (aligned).
    Merge { target: RegionId },
    /// First move the source's replicas: add a learner on each of
    /// `adds` (store, shard) pairs — peer ids are the caller's — and remove
    /// the peer each replaces (`removes`, same order).
    Align {
        target: RegionId,
        adds: Vec<Peer>,
        removes: Vec<PeerId>,
    },
}

fn requests_per_sec(r: &RegionRoute) -> u64 {
    let s = &r.stats;
    if s.interval_ms == 0 {
        return 0;
    }
    (s.read_keys + s.written_keys) * 1000 / s.interval_ms as u64
}

/// The plan for `source` given its neighbours (`left` ends where it starts,
/// `right` starts where it ends) and whether each of the three is settled
/// (no version change within `split_merge_interval_ms`: the caller tracks
/// it). None: no merge.
pub fn check(
    source: &RegionRoute,
    left: Option<&RegionRoute>,
    right: Option<&RegionRoute>,
    settled: impl Fn(RegionId) -> bool,
    cfg: &SchedConfig,
) -> Option<MergePlan> {
    let s = &source.stats;
    if cfg.max_merge_region_bytes == 0
        || s.approximate_size_bytes > cfg.max_merge_region_bytes
        || s.approximate_keys > cfg.max_merge_region_keys
        || requests_per_sec(source) >= cfg.max_merge_region_qps
        || source.leader.is_none()
        || !settled(source.region.id)
    {
        return None;
    }
    let fits = |t: &&RegionRoute| {
        t.leader.is_some()
            && settled(t.region.id)
            && requests_per_sec(t) < cfg.max_merge_region_qps
            && s.approximate_size_bytes + t.stats.approximate_size_bytes <= cfg.split_region_bytes
            && s.approximate_keys + t.stats.approximate_keys <= cfg.split_region_keys
            && t.region.peers.len() == source.region.peers.len()
    };
    let target = [left, right]
        .into_iter()
        .flatten()
        .filter(fits)
        .min_by_key(|t| (t.stats.approximate_size_bytes, t.region.id))?;
    let (src, tgt) = (&source.region, &target.region);
    if refusal(src, tgt).is_none() {
        return Some(MergePlan::Merge { target: tgt.id });
    }
    if src
        .peers
        .iter()
        .chain(&tgt.peers)
        .any(|p| p.role != PeerRole::Voter)
    {
        return None; // a change in flight: wait for it
    }
    let missing: Vec<Peer> = tgt
        .peers
        .iter()
        .filter(|t| {
            !src.peers
                .iter()
                .any(|p| (p.store, p.shard) == (t.store, t.shard))
        })
        .copied()
        .collect();
    let mut extra: Vec<Peer> = src
        .peers
        .iter()
        .filter(|p| {
            !tgt.peers
                .iter()
                .any(|t| (t.store, t.shard) == (p.store, p.shard))
        })
        .copied()
        .collect();
    if missing.len() != extra.len() {
        return None;
    }
    // A missing pair on a store the source holds on another shard replaces
    // that peer (the caller makes it one joint `ReplacePeer`: balance-shard's
    // move between a store's shards); the other pairs in order.
    let mut removes = Vec::with_capacity(missing.len());
    for t in &missing {
        let i = extra.iter().position(|p| p.store == t.store).or_else(|| {
            extra
                .iter()
                .position(|p| !missing.iter().any(|m| m.store == p.store))
        })?;
        removes.push(extra.remove(i).id);
    }
    let extra = removes;
    Some(MergePlan::Align {
        target: tgt.id,
        adds: missing
            .iter()
            .map(|t| Peer {
                role: PeerRole::Learner,
                ..*t
            })
            .collect(),
        removes: extra,
    })
}

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

#[cfg(test)]
mod tests {
    use super::super::operator::OpSource;
    use super::super::Scheduler;
    use super::*;
    use golem_wire::pd::RegionStats;
    use golem_wire::{RegionEpoch, ShardId, StoreId};

    const MIB: u64 = 1024 * 1024;

    fn cfg() -> SchedConfig {
        SchedConfig {
            split_region_bytes: 96 * MIB,
            split_region_keys: 960_000,
            max_merge_region_bytes: 20 * MIB,
            max_merge_region_keys: 200_000,
            max_merge_region_qps: 100,
            split_merge_interval_ms: 1000,
            ..SchedConfig::default()
        }
    }

    /// Region `id` over `[start, end)` with voters on `stores` (shard 0
    /// unless given as `store * 10 + shard`), `size_mib` MiB, 10 keys per
    /// MiB, `qps` requests per second.
    fn route(
        id: u64,
        start: &str,
        end: &str,
        stores: &[u64],
        size_mib: u64,
        qps: u64,
    ) -> RegionRoute {
        let peers: Vec<Peer> = stores
            .iter()
            .enumerate()
            .map(|(i, &s)| Peer {
                id: PeerId(id * 100 + i as u64),
                store: StoreId(if s >= 10 { s / 10 } else { s }),
                shard: ShardId(if s >= 10 { (s % 10) as u16 } else { 0 }),
                role: PeerRole::Voter,
            })
            .collect();
        RegionRoute {
            region: Region {
                id: RegionId(id),
                start: start.as_bytes().to_vec(),
                end: end.as_bytes().to_vec(),
                epoch: RegionEpoch {
                    conf_ver: 1,
                    version: 2,
                },
                peers: peers.clone(),
            },
            leader: Some(peers[0]),
            term: 6,
            stats: RegionStats {
                approximate_size_bytes: size_mib * MIB,
                approximate_keys: size_mib * 10,
                read_keys: qps,
                interval_ms: 1000,
                ..RegionStats::default()
            },
        }
    }

    fn plan(rs: &[RegionRoute], i: usize, settled: bool) -> Option<MergePlan> {
        let left = i.checked_sub(1).map(|j| &rs[j]);
        check(&rs[i], left, rs.get(i + 1), |_| settled, &cfg())
    }

    #[test]
    fn the_merge_checker_table() {
        let aligned = [1, 2, 3];
        // (name, regions in key order, the source's index, settled, plan)
        type Case = (
            &'static str,
            Vec<RegionRoute>,
            usize,
            bool,
            Option<MergePlan>,
        );
        let cases: Vec<Case> = vec![
            (
                "a stable cluster of big regions gets nothing",
                vec![
                    route(1, "", "m", &aligned, 60, 0),
                    route(2, "m", "", &aligned, 60, 0),
                ],
                0,
                true,
                None,
            ),
            (
                "small, cold, settled, aligned: merge into the smaller neighbour",
                vec![
                    route(1, "", "f", &aligned, 30, 0),
                    route(2, "f", "m", &aligned, 1, 0),
                    route(3, "m", "", &aligned, 5, 0),
                ],
                1,
                true,
                Some(MergePlan::Merge {
                    target: RegionId(3),
                }),
            ),
            (
                "just split (not settled): nothing",
                vec![
                    route(1, "", "f", &aligned, 30, 0),
                    route(2, "f", "m", &aligned, 1, 0),
                ],
                1,
                false,
                None,
            ),
            (
                "hot: nothing",
                vec![
                    route(1, "", "f", &aligned, 1, 0),
                    route(2, "f", "m", &aligned, 1, 500),
                ],
                1,
                true,
                None,
            ),
            (
                "too big to merge",
                vec![
                    route(1, "", "f", &aligned, 1, 0),
                    route(2, "f", "m", &aligned, 21, 0),
                ],
                1,
                true,
                None,
            ),
            (
                "the merged region would be split again: nothing (no flapping)",
                vec![
                    route(1, "", "f", &aligned, 90, 0),
                    route(2, "f", "", &aligned, 10, 0),
                ],
                1,
                true,
                None,
            ),
            (
                "peers differ: move the source's replica from store 4 to 3",
                vec![
                    route(1, "", "f", &[1, 2, 4], 1, 0),
                    route(2, "f", "", &[1, 2, 3], 1, 0),
                ],
                0,
                true,
                Some(MergePlan::Align {
                    target: RegionId(2),
                    adds: vec![Peer {
                        id: PeerId(202),
                        store: StoreId(3),
                        shard: ShardId(0),
                        role: PeerRole::Learner,
                    }],
                    removes: vec![PeerId(102)],
                }),
            ),
            (
                "same store, another shard: the source's peer there is replaced",
                vec![
                    route(1, "", "f", &[1, 2, 31], 1, 0),
                    route(2, "f", "", &[1, 2, 3], 1, 0),
                ],
                0,
                true,
                Some(MergePlan::Align {
                    target: RegionId(2),
                    adds: vec![Peer {
                        id: PeerId(202),
                        store: StoreId(3),
                        shard: ShardId(0),
                        role: PeerRole::Learner,
                    }],
                    removes: vec![PeerId(102)],
                }),
            ),
            (
                "one store's shard and another store: each paired with its own store",
                vec![
                    route(1, "", "f", &[4, 2, 31], 1, 0),
                    route(2, "f", "", &[1, 2, 3], 1, 0),
                ],
                0,
                true,
                Some(MergePlan::Align {
                    target: RegionId(2),
                    adds: vec![
                        Peer {
                            id: PeerId(200),
                            store: StoreId(1),
                            shard: ShardId(0),
                            role: PeerRole::Learner,
                        },
                        Peer {
                            id: PeerId(202),
                            store: StoreId(3),
                            shard: ShardId(0),
                            role: PeerRole::Learner,
                        },
                    ],
                    removes: vec![PeerId(100), PeerId(102)],
                }),
            ),
        ];
        for (name, rs, i, settled, want) in cases {
            assert_eq!(plan(&rs, i, settled), want, "{name}");
        }
    }

    #[test]
    fn a_merged_region_is_never_due_for_a_size_split() {
        // Every pair the checker merges stays within the split thresholds.
        let cfg = cfg();
        for a in [0, 1, 5, 10, 20] {
            for b in [0, 1, 10, 50, 76, 90, 96] {
                let rs = [
                    route(1, "", "m", &[1, 2, 3], a, 0),
                    route(2, "m", "", &[1, 2, 3], b, 0),
                ];
                if let Some(MergePlan::Merge { .. }) =
                    check(&rs[0], None, Some(&rs[1]), |_| true, &cfg)
                {
                    let mut merged = rs[1].clone();
                    merged.region.start.clear();
                    merged.stats.approximate_size_bytes += rs[0].stats.approximate_size_bytes;
                    merged.stats.approximate_keys += rs[0].stats.approximate_keys;
                    merged.stats.split_key = Some(b"m".to_vec());
                    assert_eq!(
                        super::super::split::check(&merged.region, &merged.stats, &cfg),
                        None
                    );
                }
            }
        }
    }

    #[test]
    fn the_scheduler_merges_only_after_the_split_merge_interval() {
        let mut s = Scheduler::new(cfg(), 0);
        s.on_ids(1000, 256);
        let rs = [
            route(1, "", "m", &[1, 2, 3], 1, 0),
            route(2, "m", "", &[1, 2, 3], 1, 0),
        ];
        let routes: Vec<&RegionRoute> = rs.iter().collect();
        s.merge(&routes, 10_000);
        assert_eq!(
            s.controller().count(OpSource::Merge),
            0,
            "versions just seen"
        );
        s.merge(&routes, 10_500);
        assert_eq!(s.controller().count(OpSource::Merge), 0);
        s.merge(&routes, 11_000);
        // One merge: region 1 into 2 (equal sizes: the lower id is the
        // target of 2, but 1 was planned first and 2 is then busy).
        assert_eq!(s.controller().count(OpSource::Merge), 1);
        let op = s.controller().get(RegionId(1)).expect("an operator for 1");
        assert_eq!(
            op.info().steps,
            vec![golem_wire::pd::OperatorStep::Merge {
                target: RegionId(2)
            }]
        );
        assert!(s.controller().get(RegionId(2)).is_none());
    }
}
