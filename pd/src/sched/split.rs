//! The split checker: regions above the size or key-count threshold, and
//! hot regions (load-based split, as TiKV's).
//!
//! Owns the decision to split one region from its leader's heartbeat:
//! approximate size above `split_region_bytes` or approximate keys above
//! `split_region_keys`. Nodes cannot compute a middle key on demand; the
//! split key is the one the heartbeat carries (`RegionStats::split_key`,
//! from the LSM's indexes). Guards: no key, or a key not strictly inside
//! the region (stale after an earlier split), means no split.
//!
//! Load: a region whose leader served at least `split_region_qps`
//! requests per second, or at least `split_region_bytes_per_sec` bytes
//! read and written per second, over its last report's interval is split
//! at the sampled request key that best balances the samples on both sides
//! (`RegionStats::sampled_keys`; the sample is uniform over requests, so
//! for a byte-hot region it balances bytes as far as request sizes are
//! alike on both sides). Guards: at least `LOAD_SAMPLES_MIN`
//! samples, an interval of at least `LOAD_INTERVAL_MS_MIN`, and each side
//! holding at least a quarter of the samples — a single hot key (or a
//! narrow hot range) is never split, so hot regions do not split forever.

use super::config::SchedConfig;
use golem_wire::pd::{Region, RegionStats};

/// The key to split `region` at, if it is due.
pub fn check(region: &Region, stats: &RegionStats, cfg: &SchedConfig) -> Option<Vec<u8>> {
    let due = stats.approximate_size_bytes > cfg.split_region_bytes
        || stats.approximate_keys > cfg.split_region_keys;
    if !due {
        return check_load(region, stats, cfg);
    }
    let key = stats.split_key.as_ref()?;
    inside(region, key).then(|| key.clone())
}

/// Fewest sampled keys a load-based split decides on.
pub const LOAD_SAMPLES_MIN: usize = 8;
/// Shortest report interval a load-based split trusts, in ms.
pub const LOAD_INTERVAL_MS_MIN: u32 = 500;

fn inside(region: &Region, key: &[u8]) -> bool {
    key > region.start.as_slice() && (region.end.is_empty() || key < region.end.as_slice())
}

/// The load-based split key, if the region is hot and its load divides.
fn check_load(region: &Region, stats: &RegionStats, cfg: &SchedConfig) -> Option<Vec<u8>> {
    if stats.interval_ms < LOAD_INTERVAL_MS_MIN || stats.sampled_keys.len() < LOAD_SAMPLES_MIN {
        return None;
    }
    let per_sec = |n: u64| n.saturating_mul(1000) / u64::from(stats.interval_ms);
    let qps = per_sec(stats.read_keys.saturating_add(stats.written_keys));
    let bytes_per_sec = per_sec(stats.read_bytes.saturating_add(stats.written_bytes));
    let hot = |rate: u64, threshold: u64| threshold != 0 && rate >= threshold;
    if !hot(qps, cfg.split_region_qps) && !hot(bytes_per_sec, cfg.split_region_bytes_per_sec) {
        return None;
    }
    let mut keys: Vec<&[u8]> = stats.sampled_keys.iter().map(Vec::as_slice).collect();
    keys.sort_unstable();
    let n = keys.len();
    // The candidate splitting the samples most evenly: samples below it go
    // left, samples at or above it go right.
    let mut best: Option<(usize, &[u8])> = None;
    for k in &keys {
        let left = keys.partition_point(|x| x < k);
        let imbalance = left.abs_diff(n - left);
        if inside(region, k) && best.is_none_or(|(b, _)| imbalance < b) {
            best = Some((imbalance, k));
        }
    }
    let (_, key) = best?;
    let left = keys.partition_point(|x| *x < key);
    (left * 4 >= n && (n - left) * 4 >= n).then(|| key.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use golem_wire::{RegionEpoch, RegionId};

    #[test]
    fn splits_hot_regions_at_a_key_dividing_their_load() {
        let cfg = SchedConfig {
            split_region_qps: 1000,
            ..SchedConfig::default()
        };
        let region = Region {
            id: RegionId(1),
            start: b"b".to_vec(),
            end: b"x".to_vec(),
            epoch: RegionEpoch::default(),
            peers: vec![],
        };
        let stats = |requests: u64, interval_ms: u32, keys: &[&str]| RegionStats {
            read_keys: requests / 2,
            written_keys: requests - requests / 2,
            interval_ms,
            sampled_keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            ..RegionStats::default()
        };
        let spread = ["c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
        let hot_key = ["q"; 10];
        let narrow = ["q", "q", "q", "q", "q", "q", "q", "q", "r", "s"];
        // (stats, split key expected)
        let table: Vec<(RegionStats, Option<&[u8]>)> = vec![
            (stats(2000, 1000, &spread), Some(b"h")), // 2000 qps, even spread: the middle
            (stats(999, 1000, &spread), None),        // below the threshold
            (stats(2000, 2000, &spread), Some(b"h")), // 1000 qps: at the threshold
            (stats(2000, 100, &spread), None),        // interval too short to trust
            (stats(2000, 1000, &spread[..7]), None),  // too few samples
            (stats(5000, 1000, &hot_key), None),      // one hot key: never split
            (stats(5000, 1000, &narrow), None),       // a side would hold < 1/4
            (
                stats(
                    5000,
                    1000,
                    &["a", "a", "a", "a", "a", "y", "y", "y", "y", "y"],
                ),
                None,
            ), // samples outside the range (stale): no key inside
        ];
        for (i, (s, want)) in table.into_iter().enumerate() {
            assert_eq!(check(&region, &s, &cfg).as_deref(), want, "row {i}");
        }
        // Off when the threshold is 0 (and bytes are not hot).
        let off = SchedConfig {
            split_region_qps: 0,
            ..cfg
        };
        assert_eq!(check(&region, &stats(99_999, 1000, &spread), &off), None);
    }

    #[test]
    fn splits_regions_hot_by_bytes_per_second() {
        let cfg = SchedConfig {
            split_region_qps: 1000,
            split_region_bytes_per_sec: 1 << 20,
            ..SchedConfig::default()
        };
        let region = Region {
            id: RegionId(1),
            start: vec![],
            end: vec![],
            epoch: RegionEpoch::default(),
            peers: vec![],
        };
        // Few large requests: 100 requests per second, well below the qps
        // threshold; the bytes decide.
        let stats =
            |read_bytes: u64, written_bytes: u64, interval_ms: u32, keys: &[&str]| RegionStats {
                read_keys: 50,
                written_keys: 50,
                read_bytes,
                written_bytes,
                interval_ms,
                sampled_keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
                ..RegionStats::default()
            };
        let mib = 1u64 << 20;
        // Load on the left: most samples below "d"; the split balances them.
        let skewed = ["a", "a", "b", "b", "c", "c", "d", "e", "f", "g", "h", "i"];
        let spread = ["c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
        // (stats, split key expected)
        let table: Vec<(RegionStats, Option<&[u8]>)> = vec![
            (stats(mib, 0, 1000, &spread), Some(b"h")), // reads at the threshold
            (stats(0, mib, 1000, &spread), Some(b"h")), // writes at the threshold
            (stats(mib / 2, mib / 2, 1000, &spread), Some(b"h")), // both count
            (stats(mib - 1, 0, 1000, &spread), None),   // below
            (stats(mib, 0, 2000, &spread), None),       // the same bytes over 2 s: half the rate
            (stats(4 * mib, 0, 1000, &skewed), Some(b"d")), // balances the samples (6 | 6)
            (stats(4 * mib, 0, 1000, &["q"; 12]), None), // one hot key: never split
            (stats(4 * mib, 0, 100, &spread), None),    // interval too short to trust
        ];
        for (i, (s, want)) in table.into_iter().enumerate() {
            assert_eq!(check(&region, &s, &cfg).as_deref(), want, "row {i}");
        }
        // 0 turns the byte rule off; the request rule is separate.
        let off = SchedConfig {
            split_region_bytes_per_sec: 0,
            ..cfg.clone()
        };
        assert_eq!(
            check(&region, &stats(100 * mib, 0, 1000, &spread), &off),
            None
        );
        let qps_off = SchedConfig {
            split_region_qps: 0,
            ..cfg
        };
        assert_eq!(
            check(&region, &stats(mib, 0, 1000, &spread), &qps_off).as_deref(),
            Some(&b"h"[..])
        );
    }

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
