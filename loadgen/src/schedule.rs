//! Pacing of the open-loop driver and the coordinated-omission correction.
//!
//! Open loop: each worker owns a fixed schedule of intended send times
//! (`start + k × interval`), and an operation's latency is measured from its
//! *intended* send time, not from when the worker got round to sending it.
//! A stall therefore shows up in every operation that should have been sent
//! during it, as it would for real users arriving at a fixed rate, instead
//! of in one sample (coordinated omission). Closed loop: the intended time
//! is the actual send time, so both measures agree.
//!
//! The harness's own timer lateness is not charged to the system: when the
//! worker was idle at the intended time (its previous answer had come) and
//! its timer woke it late (tokio's timers have millisecond granularity),
//! the operation is measured from the actual send. Waiting behind a slow
//! previous answer is charged, from the intended time.
//!
//! Owns pure arithmetic on `Duration`s since the phase start (no clock), so
//! the correction is testable without sleeping. Invariant: intended times
//! never depend on when earlier operations completed.

use std::time::Duration;

/// One worker's open-loop schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    interval_nanos: u128,
    offset: Duration,
    sent: u64,
}

impl Schedule {
    /// `workers` workers sharing `ops_per_s` between them; this one is
    /// number `worker` (its sends are staggered by `worker / workers` of an
    /// interval so that the workers do not fire together).
    pub fn new(ops_per_s: u64, workers: usize, worker: usize) -> Schedule {
        let workers = workers.max(1) as u128;
        let interval_nanos = 1_000_000_000 * workers / u128::from(ops_per_s.max(1));
        let offset_nanos = interval_nanos * (worker as u128 % workers) / workers;
        Schedule {
            interval_nanos,
            offset: nanos(offset_nanos),
            sent: 0,
        }
    }

    /// The intended send time of the next operation, since the phase start.
    pub fn next_intended(&mut self) -> Duration {
        let t = self.offset + nanos(self.interval_nanos * u128::from(self.sent));
        self.sent += 1;
        t
    }

    #[cfg(test)]
    pub fn interval(&self) -> Duration {
        nanos(self.interval_nanos)
    }
}

/// A duration of `n` nanoseconds, saturating at about 584 years.
fn nanos(n: u128) -> Duration {
    Duration::from_nanos(n.min(u128::from(u64::MAX)) as u64)
}

/// The latencies recorded for one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    /// From the intended send time to completion (what a user would see).
    pub corrected: Duration,
    /// From the actual send time to completion (the service time).
    pub service: Duration,
}

/// Both latencies of an operation intended at `intended`, sent at `sent`
/// (never earlier than intended) and completed at `done`, by a worker whose
/// previous operation completed at `free_at`.
pub fn measure(intended: Duration, sent: Duration, done: Duration, free_at: Duration) -> Measured {
    let sent = sent.max(intended);
    // Busy at the intended time: the system delayed this send. Idle: any
    // lateness is the harness's timer, not the system.
    let from = if free_at > intended { intended } else { sent };
    Measured {
        corrected: done.saturating_sub(from),
        service: done.saturating_sub(sent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{new_histogram, record};

    /// Simulates one open-loop worker against a server whose answers take
    /// `service(k)` for operation k, and returns (corrected, service)
    /// histograms in µs.
    fn simulate(
        ops: u64,
        rate: u64,
        service: impl Fn(u64) -> Duration,
    ) -> (hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>) {
        let mut s = Schedule::new(rate, 1, 0);
        let (mut corrected, mut serviced) = (new_histogram(), new_histogram());
        let mut free_at = Duration::ZERO; // when the worker can send again
        for k in 0..ops {
            let intended = s.next_intended();
            let sent = intended.max(free_at);
            let done = sent + service(k);
            let m = measure(intended, sent, done, free_at);
            free_at = done;
            record(&mut corrected, m.corrected.as_micros() as u64);
            record(&mut serviced, m.service.as_micros() as u64);
        }
        (corrected, serviced)
    }

    #[test]
    fn schedule_spreads_the_rate_over_workers() {
        let mut a = Schedule::new(1000, 4, 0);
        let mut b = Schedule::new(1000, 4, 1);
        assert_eq!(a.interval(), Duration::from_millis(4));
        assert_eq!(a.next_intended(), Duration::ZERO);
        assert_eq!(a.next_intended(), Duration::from_millis(4));
        assert_eq!(b.next_intended(), Duration::from_millis(1));
        // Far into a long run, the arithmetic neither wraps nor saturates.
        let mut c = Schedule::new(10_000_000, 1, 0);
        c.sent = 10_000_000_000;
        assert_eq!(c.next_intended(), Duration::from_secs(1000));
    }

    #[test]
    fn a_stall_is_charged_to_every_operation_it_delayed() {
        // 1,000 ops/s for 10 s; every answer takes 100 µs except one that
        // stalls for 1 s at t = 5 s.
        let stall = Duration::from_secs(1);
        let (corrected, service) = simulate(10_000, 1000, |k| {
            if k == 5000 {
                stall
            } else {
                Duration::from_micros(100)
            }
        });
        // Service time sees one slow sample out of 10,000: p99 stays at 100 µs.
        assert_eq!(service.value_at_quantile(0.99), 100);
        assert_eq!(service.count_between(1000, u64::MAX), 1);
        // Corrected: the operations intended during the stall, and those
        // queued behind it until the worker caught up (sending every 100 µs
        // against a 1 ms schedule), all waited: from 1 s down to 1 ms, for
        // j = 0..=1110 operations after the stalled one (1 s - 0.9 ms × j).
        let slow = corrected.count_between(1000, u64::MAX);
        assert!((1100..=1115).contains(&slow), "slow samples {slow}");
        assert!(
            corrected.value_at_quantile(0.99) > 800_000,
            "p99 shows the stall"
        );
        assert!(corrected.max() >= 999_000);
    }

    #[test]
    fn without_stalls_both_measures_agree() {
        let (corrected, service) = simulate(1000, 1000, |_| Duration::from_micros(200));
        assert_eq!(corrected.max(), service.max());
        assert_eq!(corrected.mean(), service.mean());
    }

    #[test]
    fn a_late_send_is_never_measured_before_its_intended_time() {
        let ms = Duration::from_millis;
        let m = measure(ms(5), ms(3), ms(6), ms(7));
        assert_eq!(m.corrected, ms(1));
        assert_eq!(m.service, ms(1));
    }

    #[test]
    fn timer_lateness_of_an_idle_worker_is_not_charged() {
        let us = Duration::from_micros;
        // Idle since 0; intended at 1,000 µs; the timer woke it at 1,900 µs.
        let m = measure(us(1000), us(1900), us(2000), us(0));
        assert_eq!(m.corrected, us(100));
        // Busy until 1,900 µs with the previous answer: charged from 1,000.
        let m = measure(us(1000), us(1900), us(2000), us(1900));
        assert_eq!(m.corrected, us(1000));
        assert_eq!(m.service, us(100));
    }
}
