//! The PNG of a serving benchmark: total generated tokens/s, and the medians of time to first
//! token and time per output token, against the number of concurrent clients; one line per
//! labelled run. Text is drawn with DejaVu Sans compiled into the binary, so the plot needs no
//! system fonts.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::stats::LevelRow;

/// Line colors, one per labelled run.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Draws `rows` (grouped by their label, in order of first appearance) into a PNG at `path`.
pub fn draw(path: &Path, rows: &[LevelRow]) -> Result<()> {
    font()?;
    let runs = by_label(rows);
    if runs.is_empty() {
        return Err(anyhow!("nothing to plot: no rows"));
    }
    let mut xs: Vec<f64> = rows.iter().map(|r| r.concurrency as f64).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let x_range = (xs[0] / 1.5)..(xs[xs.len() - 1] * 1.5);
    let tps_max = rows.iter().map(|r| r.tokens_per_second).fold(0.0, f64::max);
    let lat: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.ttft_p50_ms, r.tpot_p50_ms])
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    let (lat_lo, lat_hi) = match (
        lat.iter().copied().reduce(f64::min),
        lat.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) => (lo / 1.5, hi * 1.5),
        _ => (1.0, 1000.0),
    };
    let fail = |e: &dyn std::fmt::Display| anyhow!("drawing the plot {}: {e}", path.display());

    let root = BitMapBackend::new(path, (1280, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (left, right) = root.split_horizontally(640);

    let mut chart = ChartBuilder::on(&left)
        .caption("Generated tokens/s (all clients)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            x_range.clone().log_scale().with_key_points(xs.clone()),
            0.0..(tps_max * 1.15).max(1.0),
        )
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("concurrent clients")
        .y_desc("tokens/s")
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, (label, run)) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = run
            .iter()
            .map(|r| (r.concurrency as f64, r.tokens_per_second))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| fail(&e))?;

    let mut chart = ChartBuilder::on(&right)
        .caption("Median TTFT (●) and TPOT (▲), ms", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            x_range.log_scale().with_key_points(xs),
            (lat_lo..lat_hi).log_scale(),
        )
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("concurrent clients")
        .y_desc("milliseconds")
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, (label, run)) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let ttft: Vec<(f64, f64)> = run
            .iter()
            .filter_map(|r| Some((r.concurrency as f64, r.ttft_p50_ms?)))
            .collect();
        let tpot: Vec<(f64, f64)> = run
            .iter()
            .filter_map(|r| Some((r.concurrency as f64, r.tpot_p50_ms?)))
            .collect();
        chart
            .draw_series(LineSeries::new(ttft.clone(), color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(format!("{label} TTFT"))
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
        chart
            .draw_series(ttft.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(LineSeries::new(tpot.clone(), color.stroke_width(1)))
            .map_err(|e| fail(&e))?
            .label(format!("{label} TPOT"))
            .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 5, color.filled()));
        chart
            .draw_series(
                tpot.iter()
                    .map(|&p| TriangleMarker::new(p, 5, color.filled())),
            )
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present()
        .with_context(|| format!("writing the plot {}", path.display()))?;
    Ok(())
}

/// Registers the embedded DejaVu Sans as plotters' sans-serif font, once.
fn font() -> Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "the embedded DejaVu Sans font could not be read".to_owned())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Rows grouped by label, in the order labels first appear, each sorted by concurrency.
fn by_label(rows: &[LevelRow]) -> Vec<(String, Vec<&LevelRow>)> {
    let mut runs: Vec<(String, Vec<&LevelRow>)> = Vec::new();
    for r in rows {
        let label = if r.label.is_empty() { "run" } else { &r.label };
        match runs.iter_mut().find(|(l, _)| l == label) {
            Some((_, v)) => v.push(r),
            None => runs.push((label.to_owned(), vec![r])),
        }
    }
    for (_, v) in &mut runs {
        v.sort_by_key(|r| r.concurrency);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn draws_a_png_with_two_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let mut rows = Vec::new();
        for (label, speed) in [("a", 10.0), ("b", 15.0)] {
            for c in [1usize, 2, 4] {
                let mut r = LevelRow::summarize(label, c, &[], Duration::from_secs(1));
                r.tokens_per_second = speed * c as f64;
                r.ttft_p50_ms = Some(100.0 * c as f64);
                r.tpot_p50_ms = Some(20.0);
                rows.push(r);
            }
        }
        // A level where every request failed has no latencies; it is left out of that panel.
        rows[1].ttft_p50_ms = None;
        draw(&path, &rows).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(draw(&path, &[]).is_err());
    }
}
