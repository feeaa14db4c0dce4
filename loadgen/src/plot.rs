//! The SVG latency plot: latency by percentile, one line per operation row,
//! on HdrHistogram's usual axes (x: percentile on a "nines" scale, so 90%,
//! 99%, 99.9% and 99.99% are evenly spaced; y: latency, logarithmic).
//!
//! Owns the drawing only (plotters with its SVG backend, no fonts loaded).
//! Invariant: an empty histogram draws no line; the plot always renders.

use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::Path;

/// Plot size, in pixels.
const WIDTH_PX: u32 = 960;
const HEIGHT_PX: u32 = 540;
/// Rightmost percentile shown: 99.999% (five nines).
const NINES_MAX: f64 = 5.0;

/// `-log10(1 - q)`: 0 at 0%, 1 at 90%, 2 at 99%…
fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(1e-9).log10()).min(NINES_MAX)
}

/// Writes the plot of `rows` (name, histogram in µs) to `path`.
pub fn write_svg(
    path: &Path,
    title: &str,
    rows: &[(String, Histogram<u64>)],
) -> Result<(), String> {
    let y_max = rows.iter().map(|(_, h)| h.max()).max().unwrap_or(1).max(10) as f64 * 1.5;
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..NINES_MAX, (1f64..y_max).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_labels(6)
        .x_label_formatter(&|x| {
            let p = format!("{:.3}", 100.0 * (1.0 - 10f64.powf(-x)));
            format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, h)) in rows.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = h
            .iter_quantiles(5)
            .map(|v| {
                (
                    nines(v.quantile_iterated_to()),
                    v.value_iterated_to().max(1) as f64,
                )
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{new_histogram, record};

    #[test]
    fn plot_renders_an_svg_with_a_line_per_row() {
        let mut h = new_histogram();
        for v in 1..=1000 {
            record(&mut h, v * 10);
        }
        let dir = std::env::temp_dir().join(format!("golem-loadgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("latency.svg");
        let rows = vec![
            ("READ".to_string(), h),
            ("EMPTY".to_string(), new_histogram()),
        ];
        write_svg(&path, "test", &rows).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(
            svg.contains("READ") && svg.contains("<polyline"),
            "line and legend"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nines_scale() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), NINES_MAX);
    }
}
