//! Latency histograms and the run's report.
//!
//! Owns merging per-worker hdrhistograms and rendering the summary as a
//! go-ycsb style table and as JSON. Invariant: latencies are recorded in
//! microseconds, clamped to the histogram's range (1 µs – 60 s), so
//! recording never fails.

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

/// Adds `from` into `into` (both made by `new_histogram`, so bounds match).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from).expect("histograms share bounds");
}

/// Latency summary of one operation kind, in microseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            mean_us: h.mean(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
        }
    }
}

/// One operation kind's results in one phase.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    /// go-ycsb's name (`READ`, `UPDATE`, …); `…-SERVICE` rows are the
    /// open loop's service times (from the actual send).
    pub op: String,
    pub takes_s: f64,
    pub ops_per_s: f64,
    pub errors: u64,
    /// The first error's text, if any.
    pub first_error: Option<String>,
    pub latency: Latency,
}

/// One phase (`load` or `run`).
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub phase: &'static str,
    pub takes_s: f64,
    pub total_ops_per_s: f64,
    pub ops: Vec<OpReport>,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub backend: &'static str,
    pub workload: crate::workload::Workload,
    pub mode: &'static str,
    pub connections: usize,
    pub workers: usize,
    /// Kept for older readers: workers per connection (rounded up).
    pub in_flight_per_connection: usize,
    pub value_bytes: usize,
    pub keys: u64,
    /// `closed` (each worker sends when its last answer came) or `open`
    /// (fixed rate; latency from the intended send time).
    pub driver: &'static str,
    pub warmup_s: f64,
    /// Measured duration of the run phase (the last phase when no run).
    pub duration_s: f64,
    /// Of the run phase (the last phase when no run).
    pub total_ops_per_s: f64,
    /// The run phase's rows (the last phase when no run).
    pub ops: Vec<OpReport>,
    pub phases: Vec<PhaseReport>,
}

const COLUMNS: [&str; 13] = [
    "Operation",
    "Takes(s)",
    "Count",
    "OPS",
    "Avg(us)",
    "Min(us)",
    "Max(us)",
    "50th(us)",
    "90th(us)",
    "95th(us)",
    "99th(us)",
    "99.9th(us)",
    "99.99th(us)",
];

impl PhaseReport {
    /// go-ycsb's table, plus an `Errors` column and the first error per row.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<Vec<String>> = vec![COLUMNS
            .iter()
            .map(|c| c.to_string())
            .chain(std::iter::once("Errors".into()))
            .collect()];
        for o in &self.ops {
            let l = &o.latency;
            rows.push(vec![
                o.op.clone(),
                format!("{:.2}", o.takes_s),
                l.count.to_string(),
                format!("{:.1}", o.ops_per_s),
                format!("{:.0}", l.mean_us),
                l.min_us.to_string(),
                l.max_us.to_string(),
                l.p50_us.to_string(),
                l.p90_us.to_string(),
                l.p95_us.to_string(),
                l.p99_us.to_string(),
                l.p999_us.to_string(),
                l.p9999_us.to_string(),
                o.errors.to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let line = |r: &Vec<String>| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (v, w))| {
                    if i == 0 {
                        format!(" {v:<w$} ")
                    } else {
                        format!(" {v:>w$} ")
                    }
                })
                .collect();
            format!("|{}|\n", cells.join("|"))
        };
        let rule = format!(
            "+{}+\n",
            widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("+")
        );
        let mut s = format!(
            "{} phase: {:.2} s, {:.1} ops/s\n",
            self.phase, self.takes_s, self.total_ops_per_s
        );
        s += &rule;
        s += &line(&rows[0]);
        s += &rule;
        for r in &rows[1..] {
            s += &line(r);
        }
        s += &rule;
        for o in &self.ops {
            if let Some(e) = &o.first_error {
                s += &format!("{} first error: {e}\n", o.op);
            }
        }
        s
    }
}

impl Report {
    /// A human-readable summary: one line of setup, one table per phase.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "target {} ({}) | workload {} | {} conns, {} workers | {} B values, {} records | {} loop, warm-up {:.0} s\n",
            self.target,
            self.backend,
            self.workload.name,
            self.connections,
            self.workers,
            self.value_bytes,
            self.keys,
            self.driver,
            self.warmup_s,
        );
        if self.driver == "open" {
            s += &format!(
                "open loop at {} ops/s: latencies are from the intended send time (coordinated omission corrected); *-SERVICE rows are from the actual send\n",
                self.workload.target
            );
        }
        for p in &self.phases {
            s += &p.to_table();
        }
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

    #[test]
    fn table_has_go_ycsb_columns() {
        let mut h = new_histogram();
        for v in 1..=1000 {
            record(&mut h, v);
        }
        let p = PhaseReport {
            phase: "run",
            takes_s: 1.0,
            total_ops_per_s: 1000.0,
            ops: vec![OpReport {
                op: "READ".into(),
                takes_s: 1.0,
                ops_per_s: 1000.0,
                errors: 0,
                first_error: None,
                latency: Latency::of(&h),
            }],
        };
        let t = p.to_table();
        for c in COLUMNS {
            assert!(t.contains(c), "{c} missing from\n{t}");
        }
        assert!(t.contains("| READ "), "{t}");
        assert!(t.contains(" 500 "), "p50 of 1..=1000: {t}");
    }
}
