//! Size-tiered compaction: which segments to merge (`pick`, pure) and the
//! merge itself (`write_merged`). Runs on the background thread only.
//!
//! Segments are layers ordered by seq (newest first); only a contiguous run
//! of them may be merged, and the output takes the run's highest seq, so
//! the layer order of everything else is unchanged. The output keeps the
//! newest visible version of each key. Above the bottom it keeps point
//! tombstones and the union of the run's range tombstones (they still hide
//! older segments); when the run includes the oldest segment (the bottom)
//! both are dropped, together with everything they hid.

use crate::error::LsmError;
use crate::options::LsmOptions;
use crate::segment::{SegmentInfo, SegmentWriter};
use crate::view::{merge, Layer, LayerKind, Tombstones};
use std::ops::Range;
use std::path::Path;

/// Picks a run of segments to merge, given their file sizes newest first.
///
/// Like RocksDB's universal compaction: starting from each segment (newest
/// first), a candidate run grows while the next older segment is at most
/// `tier_size_ratio_percent` of the run's total size; the first run of
/// `segments_per_tier_max` segments is merged. Tiers therefore grow
/// geometrically, and each byte is rewritten about once per tier. Past
/// `segments_max` segments the newest `segments_per_tier_max` are merged
/// whatever their sizes.
pub(crate) fn pick(sizes: &[u64], o: &LsmOptions) -> Option<Range<usize>> {
    let width = o.segments_per_tier_max;
    for i in 0..sizes.len() {
        let mut total = u128::from(sizes[i]);
        let mut j = i + 1;
        while j < sizes.len() && j - i < width {
            if u128::from(sizes[j]) * 100 > total * u128::from(o.tier_size_ratio_percent) {
                break;
            }
            total += u128::from(sizes[j]);
            j += 1;
        }
        if j - i >= width {
            return Some(i..j);
        }
    }
    (sizes.len() > o.segments_max).then_some(0..width)
}

/// Entries merged between two calls of the `yield_to` hook.
const YIELD_EVERY_ENTRIES: u64 = 4096;

/// Merges `run` (segments, newest first) into a new segment at `path`.
/// `bottom`: no older segment exists, so tombstones are dropped.
/// `yield_to` is called every `YIELD_EVERY_ENTRIES` entries (the background
/// thread flushes waiting memtables there, so a long merge never holds
/// flushes back); when it returns `false` the merge is abandoned and
/// `Ok(None)` returned (the caller keeps the reason).
pub(crate) fn write_merged(
    run: &[Layer],
    bottom: bool,
    path: &Path,
    o: &LsmOptions,
    yield_to: &mut dyn FnMut() -> bool,
) -> Result<Option<SegmentInfo>, LsmError> {
    let mut w = SegmentWriter::create(path, o.block_bytes, o.bloom_bits_per_key)?;
    let refs: Vec<&Layer> = run.iter().collect();
    let mut failed = None;
    let mut abandoned = false;
    let mut entries = 0u64;
    let tombstones = if bottom {
        Tombstones::Hide
    } else {
        Tombstones::Keep
    };
    merge(&refs, b"", b"", false, tombstones, &mut |k, v| {
        if let Err(e) = w.add(k, v) {
            failed = Some(e);
            return false;
        }
        entries += 1;
        if entries.is_multiple_of(YIELD_EVERY_ENTRIES) && !yield_to() {
            abandoned = true;
            return false;
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if abandoned {
        return Ok(None);
    }
    for layer in run {
        let LayerKind::Seg(s) = &layer.kind else {
            unreachable!("compaction merges segments only")
        };
        if !bottom {
            for (start, end) in s.ranges().iter() {
                w.add_range_tombstone(start, end)?;
            }
        }
        for (r, i) in s.applied() {
            w.set_applied(*r, *i);
        }
    }
    w.finish().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o() -> LsmOptions {
        LsmOptions {
            segments_per_tier_max: 4,
            tier_size_ratio_percent: 100,
            segments_max: 10,
            ..LsmOptions::default()
        }
    }

    /// Simulates `flushes` equal flushes with compaction after each, as the
    /// background thread does; returns (live segments, write amplification).
    fn simulate(flushes: u64, o: &LsmOptions) -> (usize, f64) {
        let mut sizes: Vec<u64> = Vec::new(); // Newest first.
        let (mut flushed, mut compacted) = (0u64, 0u64);
        for _ in 0..flushes {
            sizes.insert(0, 1);
            flushed += 1;
            while let Some(run) = pick(&sizes, o) {
                assert!(run.end <= sizes.len() && run.len() >= 2);
                let merged: u64 = sizes[run.clone()].iter().sum();
                compacted += merged;
                sizes.splice(run, [merged]);
            }
            assert!(sizes.len() <= o.segments_max);
        }
        (sizes.len(), (flushed + compacted) as f64 / flushed as f64)
    }

    #[test]
    fn tiers_bound_the_runs_and_the_write_amplification() {
        let o = LsmOptions::default();
        for flushes in [10u64, 100, 1000, 4096] {
            let (runs, wa) = simulate(flushes, &o);
            // About one rewrite per tier: log4(flushes) + 1.
            let tiers = (flushes as f64).log(4.0).ceil();
            assert!(
                wa <= tiers + 1.0,
                "{flushes} flushes: write amplification {wa}"
            );
            // At most segments_per_tier_max - 1 runs per tier.
            assert!(
                runs as f64 <= 3.0 * (tiers + 1.0),
                "{flushes} flushes: {runs} runs"
            );
        }
    }

    #[test]
    fn picks_runs_of_similar_sizes() {
        assert_eq!(pick(&[1, 1, 1], &o()), None);
        assert_eq!(pick(&[1, 1, 1, 1], &o()), Some(0..4));
        // A big old segment stays out of a run of small ones.
        assert_eq!(pick(&[1, 1, 1, 40], &o()), None);
        assert_eq!(pick(&[1, 1, 1, 1, 40], &o()), Some(0..4));
        // Tiers: four 4s merge into a 16 later.
        assert_eq!(pick(&[1, 4, 4, 4, 4], &o()), Some(1..5));
        // Too many segments: merge the newest whatever their sizes.
        let many: Vec<u64> = (0..11).map(|i| 1u64 << (2 * i)).collect();
        assert_eq!(pick(&many, &o()), Some(0..4));
    }
}
