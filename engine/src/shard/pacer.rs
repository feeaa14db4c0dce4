//! A byte-rate limit for a shard's outgoing snapshot streams.
//!
//! Owns one virtual clock per shard: each chunk reserves `bytes / rate` of
//! send time after the previous reservation, and its sender waits until its
//! slot. Every stream of the shard shares the pacer, so the shard sends
//! snapshots at most `rate` bytes per second in total, however many
//! followers catch up at once (a repair after a node loss), and foreground
//! requests keep their share of the disk and network (TiKV's
//! `snap-io-max-bytes-per-sec`). No I/O and no clock: times come in.
//!
//! Invariants:
//! - Over any interval, the bytes reserved exceed `rate × interval` by at
//!   most one burst (`burst_bytes`): an idle pacer does not bank credit
//!   beyond that.
//! - A rate of 0 means unlimited: every reservation starts at once.

use std::time::{Duration, Instant};

/// The shard's snapshot send pacer.
#[derive(Debug)]
pub struct Pacer {
    bytes_per_sec: u64,
    burst_bytes: u64,
    /// When the bytes reserved so far will have been sent at the rate.
    free_at: Option<Instant>,
}

impl Pacer {
    /// A pacer of `bytes_per_sec` (0: unlimited) that lets `burst_bytes`
    /// go at once after an idle time.
    pub fn new(bytes_per_sec: u64, burst_bytes: u64) -> Pacer {
        Pacer {
            bytes_per_sec,
            burst_bytes,
            free_at: None,
        }
    }

    /// Reserves `bytes` at `now`; returns how long to wait before sending.
    pub fn reserve(&mut self, bytes: u64, now: Instant) -> Duration {
        if self.bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        let cost = |b: u64| Duration::from_secs_f64(b as f64 / self.bytes_per_sec as f64);
        // `free_at`: when everything reserved would have been sent at the
        // rate (a token bucket of `burst_bytes`, full again then). An idle
        // pacer starts from now: it banks no more than the full bucket.
        let start = self.free_at.map_or(now, |f| f.max(now));
        let end = start + cost(bytes);
        self.free_at = Some(end);
        // The chunk may go once the bucket's debt is at most one burst.
        end.saturating_duration_since(now)
            .saturating_sub(cost(self.burst_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn unlimited_never_waits() {
        let mut p = Pacer::new(0, MIB);
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(p.reserve(64 * MIB, t), Duration::ZERO);
        }
    }

    #[test]
    fn a_burst_goes_at_once_then_the_rate_holds() {
        let mut p = Pacer::new(10 * MIB, MIB);
        let t = Instant::now();
        assert_eq!(
            p.reserve(MIB, t),
            Duration::ZERO,
            "the first chunk is the burst"
        );
        // Ten more MiB at 10 MiB/s: the last one waits about 1 s.
        let mut wait = Duration::ZERO;
        for _ in 0..10 {
            wait = p.reserve(MIB, t);
        }
        let ms = wait.as_millis();
        assert!((990..=1010).contains(&ms), "waited {ms} ms");
    }

    #[test]
    fn concurrent_streams_share_the_rate() {
        // Two streams reserving alternately at the same instants get one
        // schedule: 20 chunks of 1 MiB at 10 MiB/s end about 1.9 s later.
        let mut p = Pacer::new(10 * MIB, MIB);
        let t = Instant::now();
        let waits: Vec<Duration> = (0..20).map(|_| p.reserve(MIB, t)).collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        let last = waits.last().unwrap().as_millis();
        assert!((1890..=1910).contains(&last), "last waited {last} ms");
    }

    #[test]
    fn idle_time_banks_at_most_one_burst() {
        let mut p = Pacer::new(10 * MIB, MIB);
        let t = Instant::now();
        p.reserve(MIB, t);
        // A minute idle, then five MiB at once: one goes free (the burst),
        // the others wait at the rate.
        let later = t + Duration::from_secs(60);
        let waits: Vec<u128> = (0..5).map(|_| p.reserve(MIB, later).as_millis()).collect();
        assert_eq!(waits[0], 0);
        assert!((390..=410).contains(&waits[4]), "{waits:?}");
    }
}
