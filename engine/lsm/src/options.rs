//! `LsmOptions`: every limit of the LSM, named with its unit last, and
//! checked once by [`LsmOptions::validate`] before anything uses them.

use crate::error::LsmError;

/// The largest key the LSM accepts (bytes). Matches the wire's limit order
/// of magnitude; the segment format itself allows up to `u32::MAX`.
pub const KEY_BYTES_MAX: usize = 64 * 1024;
/// The largest value the LSM accepts (bytes).
pub const VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;

// A committed Raft entry must never fail validation at apply (every replica
// would stop at the same entry): the LSM accepts everything the wire does.
const _: () = assert!(KEY_BYTES_MAX >= golem_wire::limits::KEY_BYTES_MAX);
const _: () = assert!(VALUE_BYTES_MAX >= golem_wire::limits::VALUE_BYTES_MAX);

/// Tuning and limits of one `Lsm`.
#[derive(Clone, Debug)]
pub struct LsmOptions {
    /// The active memtable is frozen (and queued for flush) once its
    /// approximate size reaches this.
    pub memtable_bytes_max: usize,
    /// Frozen memtables that may wait for flush; past this `apply` returns
    /// `WriteStall` without applying (backpressure, never blocking).
    pub frozen_memtables_max: usize,
    /// Target size of a data block before its trailer (a block holds at
    /// least one entry, so a large entry makes a larger block).
    pub block_bytes: usize,
    /// Bloom filter bits per key (10 ≈ 1% false positives).
    pub bloom_bits_per_key: usize,
    /// Size-tiered compaction: a run of this many adjacent segments of
    /// similar size is merged into one.
    pub segments_per_tier_max: usize,
    /// Segments of similar size: the next (older) segment joins a candidate
    /// run when its size is at most this percentage of the run's total.
    pub tier_size_ratio_percent: u64,
    /// Hard cap on live segments: past it, the newest
    /// `segments_per_tier_max` segments are merged whatever their sizes.
    pub segments_max: usize,
    /// Test hook: the background thread stops dead at this point, as if the
    /// process crashed there. `None` in production.
    #[doc(hidden)]
    pub crash_point: Option<CrashPoint>,
    /// Test hook: hits of `crash_point` to let pass before stopping.
    #[doc(hidden)]
    pub crash_point_skip: u32,
}

impl Default for LsmOptions {
    fn default() -> Self {
        LsmOptions {
            memtable_bytes_max: 64 * 1024 * 1024,
            frozen_memtables_max: 4,
            block_bytes: 4096,
            bloom_bits_per_key: 10,
            segments_per_tier_max: 4,
            tier_size_ratio_percent: 100,
            segments_max: 24,
            crash_point: None,
            crash_point_skip: 0,
        }
    }
}

/// Where the background thread may be stopped by the `crash_point` test
/// hook. Each is a step of "write a file atomically": after it, the thread
/// stops and does nothing more (no cleanup), like a killed process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum CrashPoint {
    /// A new segment's temp file is written and fsynced, not renamed.
    SegmentTempWritten,
    /// The new segment is renamed into place, the manifest not yet written.
    SegmentRenamed,
    /// The manifest's temp file is written and fsynced, not renamed.
    ManifestTempWritten,
    /// The manifest is renamed, its directory not yet fsynced.
    ManifestRenamed,
    /// Like the others but only during compaction (after the output
    /// segment is renamed, before the manifest).
    CompactionSegmentRenamed,
}

impl LsmOptions {
    /// Checks every limit.
    pub fn validate(&self) -> Result<(), LsmError> {
        let bad = |name, why: &str| {
            Err(LsmError::InvalidOption {
                name,
                why: why.to_string(),
            })
        };
        if self.memtable_bytes_max < 1024 {
            return bad("memtable_bytes_max", "must be at least 1024");
        }
        if self.frozen_memtables_max == 0 {
            return bad("frozen_memtables_max", "must be at least 1");
        }
        if !(256..=1024 * 1024).contains(&self.block_bytes) {
            return bad("block_bytes", "must be in 256..=1 MiB");
        }
        if !(1..=32).contains(&self.bloom_bits_per_key) {
            return bad("bloom_bits_per_key", "must be in 1..=32");
        }
        if self.segments_per_tier_max < 2 {
            return bad("segments_per_tier_max", "must be at least 2");
        }
        if self.tier_size_ratio_percent == 0 {
            return bad("tier_size_ratio_percent", "must be positive");
        }
        if self.segments_max < self.segments_per_tier_max {
            return bad("segments_max", "must be at least segments_per_tier_max");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_limits_are_checked() {
        LsmOptions::default().validate().unwrap();
        let o = LsmOptions {
            block_bytes: 10,
            ..LsmOptions::default()
        };
        assert!(matches!(
            o.validate(),
            Err(LsmError::InvalidOption {
                name: "block_bytes",
                ..
            })
        ));
        let o = LsmOptions {
            segments_per_tier_max: 1,
            ..LsmOptions::default()
        };
        assert!(o.validate().is_err());
    }
}
