//! Latency histograms and the run's report.
//!
//! Owns merging per-worker hdrhistograms and rendering the summary as text
//! and JSON. Invariant: latencies are recorded in microseconds, clamped to
//! the histogram's range (1 µs – 60 s), so recording never fails.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram tracks, in microseconds.
pub const LATENCY_US_MAX: u64 = 60_000_000;

/// A new latency histogram (3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// Records one latency.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.clamp(1, LATENCY_US_MAX));
}

/// Latency summary of one operation kind, in microseconds.
#[derive(Debug, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// One operation kind's results.
#[derive(Debug, Serialize)]
pub struct OpReport {
    pub op: &'static str,
    pub ops_per_s: f64,
    pub errors: u64,
    pub latency: Latency,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub mode: crate::args::Mode,
    pub connections: usize,
    pub in_flight_per_connection: usize,
    pub value_bytes: usize,
    pub keys: u64,
    pub duration_s: f64,
    pub total_ops_per_s: f64,
    pub ops: Vec<OpReport>,
}

impl Report {
    /// A human-readable table.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "target {} | mode {:?} | {} conns × {} in flight | {} B values | {:.1} s\n",
            self.target,
            self.mode,
            self.connections,
            self.in_flight_per_connection,
            self.value_bytes,
            self.duration_s
        );
        s += &format!(
            "{:<6} {:>12} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "op", "ops/s", "errors", "mean µs", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"
        );
        for o in &self.ops {
            let l = &o.latency;
            s += &format!(
                "{:<6} {:>12.0} {:>8} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                o.op,
                o.ops_per_s,
                o.errors,
                l.mean_us,
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p999_us,
                l.max_us
            );
        }
        s += &format!("total  {:>12.0} ops/s\n", self.total_ops_per_s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_histograms_keep_every_sample() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=100 {
            record(&mut a, v);
            record(&mut b, v * 1000);
        }
        record(&mut b, u64::MAX);
        a.add(&b).unwrap();
        let l = Latency::of(&a);
        assert_eq!(l.count, 201);
        // 100 samples of 1..=100 µs, 100 of 1..=100 ms, one clamped outlier:
        // the median is the smallest of the second hundred.
        assert_eq!(l.p50_us, 1000, "p50");
        assert_eq!(a.value_at_quantile(0.49), 99);
        assert!(l.max_us >= LATENCY_US_MAX - LATENCY_US_MAX / 1000);
    }
}
