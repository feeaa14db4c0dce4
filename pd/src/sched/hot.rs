//! Hot-region statistics: which regions carry heavy read or write flow, from
//! their leaders' heartbeats (TiKV PD's hot cache, simplified).
//!
//! Owns `HotCache`: per region and per flow kind (read, write), the byte
//! and key rates of its reports, smoothed (each report moves the rate
//! halfway to its own), and a **degree** counting consecutive hot reports.
//! A report is hot when its byte rate is at least `hot_region_bytes_per_sec`
//! or its key rate at least `hot_region_keys_per_sec`; a cold report takes
//! one off the degree. A region counts as hot once its degree
//! reaches `hot_region_cache_hits_threshold` (anti-noise: one burst is not
//! enough), and stays hot through up to `HOT_ANTI_COUNT` cold reports after
//! (so a region hovering at the threshold does not flap in and out).
//!
//! Invariants: no I/O, no clock (report time comes in as an argument);
//! only reports over at least `HOT_INTERVAL_MS_MIN` count (a report after
//! an epoch change may cover a few ms and its rate is noise); a region in
//! the cache has a nonzero degree in some kind, and one not reported for
//! `HOT_STAT_EXPIRE_MS` is dropped (its leader stopped reporting, or it
//! merged away); at most one entry per region, so the cache never holds
//! more entries than regions reported.

use super::config::SchedConfig;
use golem_wire::pd::RegionStats;
use golem_wire::RegionId;
use std::collections::BTreeMap;

/// Shortest report interval that counts, in ms.
pub const HOT_INTERVAL_MS_MIN: u32 = 500;
/// Cold reports a hot region survives before it stops counting as hot.
pub const HOT_ANTI_COUNT: u32 = 2;
/// A region not reported for this long leaves the cache, in ms (three
/// periodic region heartbeats of an idle region).
pub const HOT_STAT_EXPIRE_MS: u64 = 30_000;

/// Read or write flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowKind {
    Read,
    Write,
}

impl FlowKind {
    /// Both kinds.
    pub const ALL: [FlowKind; 2] = [FlowKind::Read, FlowKind::Write];

    /// The name `ctl operator list` and the docs use.
    pub fn name(self) -> &'static str {
        match self {
            FlowKind::Read => "read",
            FlowKind::Write => "write",
        }
    }
}

/// A rate of flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub bytes_per_sec: u64,
    pub keys_per_sec: u64,
}

/// One kind of flow of one region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStat {
    /// Smoothed: each report moves it halfway to the report's rate.
    pub flow: Flow,
    /// Consecutive hot reports, at most `threshold + HOT_ANTI_COUNT`; a
    /// cold report takes one off.
    pub degree: u32,
}

/// The statistics of one region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HotStat {
    pub read: FlowStat,
    pub write: FlowStat,
    /// When it was last reported.
    pub reported_ms: u64,
}

impl HotStat {
    /// The stat of one kind.
    pub fn get(&self, kind: FlowKind) -> &FlowStat {
        match kind {
            FlowKind::Read => &self.read,
            FlowKind::Write => &self.write,
        }
    }

    fn get_mut(&mut self, kind: FlowKind) -> &mut FlowStat {
        match kind {
            FlowKind::Read => &mut self.read,
            FlowKind::Write => &mut self.write,
        }
    }
}

/// The hot cache (leader-local soft state, like operators).
#[derive(Clone, Debug, Default)]
pub struct HotCache {
    regions: BTreeMap<RegionId, HotStat>,
}

/// The report's rate of one kind.
fn rate(stats: &RegionStats, kind: FlowKind) -> Flow {
    let (bytes, keys) = match kind {
        FlowKind::Read => (stats.read_bytes, stats.read_keys),
        FlowKind::Write => (stats.written_bytes, stats.written_keys),
    };
    let per_sec = |n: u64| n.saturating_mul(1000) / u64::from(stats.interval_ms.max(1));
    Flow {
        bytes_per_sec: per_sec(bytes),
        keys_per_sec: per_sec(keys),
    }
}

/// Whether a (smoothed) rate is hot.
pub fn is_hot_flow(flow: Flow, cfg: &SchedConfig) -> bool {
    flow.bytes_per_sec >= cfg.hot_region_bytes_per_sec
        || flow.keys_per_sec >= cfg.hot_region_keys_per_sec
}

impl HotCache {
    /// Takes a region leader's report at `now_ms`.
    pub fn observe(
        &mut self,
        region: RegionId,
        stats: &RegionStats,
        now_ms: u64,
        cfg: &SchedConfig,
    ) {
        if stats.interval_ms < HOT_INTERVAL_MS_MIN {
            return;
        }
        let known = self.regions.contains_key(&region);
        let fresh = HotStat::default();
        let mut stat = self.regions.get(&region).copied().unwrap_or(fresh);
        let degree_max = cfg.hot_region_cache_hits_threshold + HOT_ANTI_COUNT;
        for kind in FlowKind::ALL {
            let now = rate(stats, kind);
            let s = stat.get_mut(kind);
            s.flow = if s.degree == 0 {
                now // no history worth keeping: start from this report
            } else {
                Flow {
                    bytes_per_sec: s.flow.bytes_per_sec / 2 + now.bytes_per_sec / 2,
                    keys_per_sec: s.flow.keys_per_sec / 2 + now.keys_per_sec / 2,
                }
            };
            // The degree counts hot reports (one burst raises it by one
            // only); the smoothed flow is what schedulers move.
            s.degree = if is_hot_flow(now, cfg) {
                (s.degree + 1).min(degree_max)
            } else {
                s.degree.saturating_sub(1)
            };
        }
        stat.reported_ms = now_ms;
        if stat.read.degree == 0 && stat.write.degree == 0 {
            if known {
                self.regions.remove(&region);
            }
            return;
        }
        self.regions.insert(region, stat);
    }

    /// Drops regions not reported for `HOT_STAT_EXPIRE_MS`.
    pub fn expire(&mut self, now_ms: u64) {
        self.regions
            .retain(|_, s| now_ms < s.reported_ms.saturating_add(HOT_STAT_EXPIRE_MS));
    }

    /// The region's statistics, if it is in the cache.
    pub fn get(&self, region: RegionId) -> Option<&HotStat> {
        self.regions.get(&region)
    }

    /// The regions hot in `kind`, with their smoothed flow.
    pub fn hot(
        &self,
        kind: FlowKind,
        cfg: &SchedConfig,
    ) -> impl Iterator<Item = (RegionId, Flow)> + '_ {
        let threshold = cfg.hot_region_cache_hits_threshold;
        self.regions
            .iter()
            .map(move |(id, s)| (*id, *s.get(kind)))
            .filter(move |(_, s)| s.degree >= threshold)
            .map(|(id, s)| (id, s.flow))
    }

    /// Whether the region is hot in either kind.
    pub fn is_hot(&self, region: RegionId, cfg: &SchedConfig) -> bool {
        self.regions.get(&region).is_some_and(|s| {
            FlowKind::ALL
                .iter()
                .any(|k| s.get(*k).degree >= cfg.hot_region_cache_hits_threshold)
        })
    }

    /// Regions in the cache (hot or warming up).
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SchedConfig {
        SchedConfig {
            hot_region_bytes_per_sec: 1000,
            hot_region_keys_per_sec: 100,
            hot_region_cache_hits_threshold: 3,
            ..SchedConfig::default()
        }
    }

    fn report(written_bytes: u64, read_keys: u64, interval_ms: u32) -> RegionStats {
        RegionStats {
            written_bytes,
            written_keys: 1,
            read_keys,
            read_bytes: read_keys,
            interval_ms,
            ..RegionStats::default()
        }
    }

    /// Feeds reports one second apart; the write degree and whether the
    /// region counts as write-hot after each.
    fn run(reports: &[RegionStats]) -> Vec<(u32, bool)> {
        let cfg = cfg();
        let mut c = HotCache::default();
        let r = RegionId(1);
        reports
            .iter()
            .enumerate()
            .map(|(i, s)| {
                c.observe(r, s, 1000 * (i as u64 + 1), &cfg);
                let degree = c.get(r).map_or(0, |s| s.write.degree);
                (degree, c.hot(FlowKind::Write, &cfg).any(|(id, _)| id == r))
            })
            .collect()
    }

    #[test]
    fn a_region_is_hot_after_consecutive_hot_reports_only() {
        let hot = report(2000, 0, 1000); // 2000 B/s written
        let cold = report(0, 0, 1000);
        let short = report(1_000_000, 0, 100); // a 100 ms report: ignored
                                               // (reports, (degree, hot) after each)
        type Row = (Vec<RegionStats>, Vec<(u32, bool)>);
        let table: Vec<Row> = vec![
            // Three hot reports in a row: hot at the third.
            (
                vec![hot.clone(), hot.clone(), hot.clone()],
                vec![(1, false), (2, false), (3, true)],
            ),
            // A burst: one hot report, then cold: never hot, forgotten.
            (
                vec![report(100_000, 0, 1000), cold.clone(), cold.clone()],
                vec![(1, false), (0, false), (0, false)],
            ),
            // Hot, cold, hot: the count starts over.
            (
                vec![
                    hot.clone(),
                    hot.clone(),
                    cold.clone(),
                    hot.clone(),
                    hot.clone(),
                ],
                vec![(1, false), (2, false), (1, false), (2, false), (3, true)],
            ),
            // Short intervals do not count either way.
            (
                vec![hot.clone(), short.clone(), short.clone(), hot.clone()],
                vec![(1, false), (1, false), (1, false), (2, false)],
            ),
            // Anti-noise: a hot region survives two cold reports (its
            // degree is capped at 3 + 2) and stops being hot at the third.
            (
                vec![
                    hot.clone(),
                    hot.clone(),
                    hot.clone(),
                    hot.clone(),
                    hot.clone(),
                    hot.clone(),
                    cold.clone(),
                    cold.clone(),
                    cold.clone(),
                ],
                vec![
                    (1, false),
                    (2, false),
                    (3, true),
                    (4, true),
                    (5, true),
                    (5, true), // capped at 3 + 2
                    (4, true),
                    (3, true),
                    (2, false),
                ],
            ),
        ];
        for (i, (reports, want)) in table.into_iter().enumerate() {
            assert_eq!(run(&reports), want, "row {i}");
        }
    }

    #[test]
    fn kinds_are_separate_and_stale_regions_expire() {
        let cfg = cfg();
        let mut c = HotCache::default();
        let reads = report(0, 500, 1000); // 500 keys/s read, no writes
        for t in 1..=3 {
            c.observe(RegionId(7), &reads, t * 1000, &cfg);
        }
        assert_eq!(
            c.hot(FlowKind::Read, &cfg).collect::<Vec<_>>(),
            vec![(
                RegionId(7),
                Flow {
                    bytes_per_sec: 500,
                    keys_per_sec: 500
                }
            )]
        );
        assert_eq!(c.hot(FlowKind::Write, &cfg).count(), 0);
        assert!(c.is_hot(RegionId(7), &cfg));
        // A cold region never enters the cache.
        c.observe(RegionId(8), &report(10, 1, 1000), 3000, &cfg);
        assert_eq!(c.len(), 1);
        c.expire(3000 + HOT_STAT_EXPIRE_MS - 1);
        assert_eq!(c.len(), 1);
        c.expire(3000 + HOT_STAT_EXPIRE_MS);
        assert!(c.is_empty());
    }
}
