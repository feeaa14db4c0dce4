//! The `.hgrm` percentile-distribution text of HdrHistogram
//! (`outputPercentileDistribution`), readable by HdrHistogram's plotter and
//! by wrk2-style tooling.
//!
//! Owns the format only. Invariant: values are written in milliseconds (the
//! histograms hold microseconds; scale 1000), percentiles ascend to 1.0, and
//! the footer carries mean, standard deviation, max and total count.

use hdrhistogram::Histogram;
use std::fmt::Write as _;

/// Percentile ticks per half distance to 100% (HdrHistogram's default).
const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Microseconds per written unit (milliseconds).
const SCALE_US: f64 = 1000.0;

/// The percentile distribution of `h` (microseconds) in `.hgrm` form.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        let q = v.quantile_iterated_to();
        let value = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE_US;
        if q < 1.0 {
            let _ = writeln!(
                s,
                "{:>12.3} {:>2.12} {:>10} {:>14.2}",
                value,
                q,
                cumulative(h, v.value_iterated_to()),
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(
                s,
                "{:>12.3} {:>2.12} {:>10}",
                value,
                q,
                cumulative(h, v.value_iterated_to())
            );
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / SCALE_US,
        h.stdev() / SCALE_US
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / SCALE_US,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
    );
    s
}

fn cumulative(h: &Histogram<u64>, upto: u64) -> u64 {
    h.count_between(0, upto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{new_histogram, record};

    #[test]
    fn hgrm_ascends_to_the_whole_count() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            record(&mut h, v);
        }
        let text = percentile_distribution(&h);
        let rows: Vec<Vec<f64>> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains("Value"))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .collect();
        assert!(rows.len() > 20, "{text}");
        assert!(rows
            .windows(2)
            .all(|w| w[0][1] <= w[1][1] && w[0][0] <= w[1][0]));
        let last = rows.last().expect("rows");
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 10_000.0);
        assert!((last[0] - 10.0).abs() < 0.02, "max ≈ 10 ms: {}", last[0]);
        assert!(text.contains("Total count    =        10000"));
    }
}
