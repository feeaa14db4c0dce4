//! The split checker: regions above the size or key-count threshold.
//!
//! Owns the decision to split one region from its leader's heartbeat:
//! approximate size above `split_region_bytes` or approximate keys above
//! `split_region_keys`. Nodes cannot compute a middle key on demand; the
//! split key is the one the heartbeat carries (`RegionStats::split_key`,
//! from the LSM's indexes). Guards: no key, or a key not strictly inside
//! the region (stale after an earlier split), means no split.

use super::config::SchedConfig;
use golem_wire::pd::{Region, RegionStats};

/// The key to split `region` at, if it is due.
pub fn check(region: &Region, stats: &RegionStats, cfg: &SchedConfig) -> Option<Vec<u8>> {
    let due = stats.approximate_size_bytes > cfg.split_region_bytes
        || stats.approximate_keys > cfg.split_region_keys;
    if !due {
        return None;
    }
    let key = stats.split_key.as_ref()?;
    let inside = key.as_slice() > region.start.as_slice()
        && (region.end.is_empty() || key.as_slice() < region.end.as_slice());
    inside.then(|| key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use golem_wire::{RegionEpoch, RegionId};

    #[test]
    fn splits_only_big_regions_with_a_key_inside() {
        let cfg = SchedConfig {
            split_region_bytes: 1000,
            split_region_keys: 10,
            ..SchedConfig::default()
        };
        let region = Region {
            id: RegionId(1),
            start: b"b".to_vec(),
            end: b"x".to_vec(),
            epoch: RegionEpoch::default(),
            peers: vec![],
        };
        let stats = |size: u64, keys: u64, key: Option<&[u8]>| RegionStats {
            approximate_size_bytes: size,
            approximate_keys: keys,
            split_key: key.map(<[u8]>::to_vec),
            ..RegionStats::default()
        };
        // (stats, split key expected)
        let table: Vec<(RegionStats, Option<&[u8]>)> = vec![
            (stats(1000, 10, Some(b"m")), None), // at the thresholds: not above
            (stats(1001, 0, Some(b"m")), Some(b"m")), // size
            (stats(0, 11, Some(b"m")), Some(b"m")), // keys
            (stats(5000, 50, None), None),       // no key reported
            (stats(5000, 50, Some(b"b")), None), // on the start boundary
            (stats(5000, 50, Some(b"x")), None), // on the end boundary
            (stats(5000, 50, Some(b"a")), None), // outside (stale)
            (stats(5000, 50, Some(b"z")), None),
        ];
        for (i, (s, want)) in table.into_iter().enumerate() {
            assert_eq!(check(&region, &s, &cfg).as_deref(), want, "row {i}");
        }
        let open = Region {
            end: vec![],
            ..region
        };
        assert_eq!(
            check(&open, &stats(5000, 0, Some(b"zz")), &cfg).as_deref(),
            Some(&b"zz"[..])
        );
    }
}
