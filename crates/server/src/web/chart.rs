//! Charts drawn on the server as SVG: no script, no charting library, nothing the
//! Content-Security-Policy has to allow (colours are presentation attributes, not styles).
//!
//! A chart is an image with a `<title>` and a `<desc>` (named by `aria-labelledby`), each bar has
//! its own `<title>` (a tooltip), and the caller puts the same figures in a table beside it.

use maud::{Markup, html};

/// Fill colours of the series, in order; the last one is for "the rest".
pub const PALETTE: [&str; 8] = ["#1f5fbf", "#1a7f37", "#b35900", "#7b3fb5", "#0f7b8a", "#a51d2d", "#6b7280", "#9aa3af"];

/// One stacked series: its name and one value per column.
pub struct Series {
    pub name: String,
    pub values: Vec<i64>,
}

/// A stacked bar chart.
pub struct Stacked<'a> {
    /// The `id` of the `<svg>`; its title and desc get `{id}-title` and `{id}-desc`.
    pub id: &'a str,
    pub title: &'a str,
    pub desc: &'a str,
    /// One label per column (the x axis).
    pub columns: &'a [String],
    pub series: &'a [Series],
    /// Formats a value for the axis and the tooltips.
    pub format: &'a dyn Fn(i64) -> String,
}

const WIDTH: i64 = 720;
const HEIGHT: i64 = 260;
const LEFT: i64 = 80;
const RIGHT: i64 = 10;
const TOP: i64 = 10;
const BOTTOM: i64 = 30;

/// The smallest "nice" step (1, 2 or 5 × 10ⁿ) that covers `max` in at most 4 steps.
pub fn nice_step(max: i64) -> i64 {
    let max = max.max(1);
    let mut unit = 1i64;
    loop {
        for m in [1, 2, 5] {
            let step = unit.saturating_mul(m);
            if step.saturating_mul(4) >= max {
                return step;
            }
        }
        unit = unit.saturating_mul(10);
    }
}

/// The column totals (the height of each stack).
pub fn totals(columns: usize, series: &[Series]) -> Vec<i64> {
    (0..columns).map(|c| series.iter().map(|s| s.values.get(c).copied().unwrap_or(0).max(0)).sum()).collect()
}

struct Rect {
    column: usize,
    series: usize,
    x: i64,
    y: i64,
    h: i64,
    value: i64,
}

pub fn stacked(c: &Stacked) -> Markup {
    let n = c.columns.len().max(1) as i64;
    let sums = totals(c.columns.len(), c.series);
    let step = nice_step(sums.iter().copied().max().unwrap_or(0));
    let top = step * 4;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / n;
    let bar = (slot * 7 / 10).max(1);
    let y = |v: i64| TOP + plot_h - v.saturating_mul(plot_h) / top;
    // Every label when they fit, else every few days.
    let every = (n / 16 + 1) as usize;
    // The rectangles, stacked bottom up in series order; a zero value draws nothing.
    let mut rects = Vec::new();
    for i in 0..c.columns.len() {
        let x = LEFT + slot * i as i64 + (slot - bar) / 2;
        let mut base = 0i64;
        for (k, s) in c.series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(0).max(0);
            if v > 0 {
                let (y0, y1) = (y(base), y(base + v));
                rects.push(Rect { column: i, series: k, x, y: y1, h: (y0 - y1).max(1), value: v });
                base += v;
            }
        }
    }
    let title_id = format!("{}-title", c.id);
    let desc_id = format!("{}-desc", c.id);
    html! {
        svg id=(c.id) class="chart" role="img" aria-labelledby={(title_id) " " (desc_id)}
            viewBox={"0 0 " (WIDTH) " " (HEIGHT)} width=(WIDTH) height=(HEIGHT) xmlns="http://www.w3.org/2000/svg" {
            title id=(title_id) { (c.title) }
            desc id=(desc_id) { (c.desc) }
            g class="axis" {
                @for k in 0..=4i64 {
                    @let v = step * k;
                    line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(v)) y2=(y(v)) stroke="#d8dde6" stroke-width="1" {}
                    text x=(LEFT - 6) y=(y(v) + 4) text-anchor="end" font-size="11" fill="#5b6472" { ((c.format)(v)) }
                }
                @for (i, label) in c.columns.iter().enumerate() {
                    @if i % every == 0 {
                        text x=(LEFT + slot * i as i64 + slot / 2) y=(HEIGHT - BOTTOM + 16) text-anchor="middle" font-size="11" fill="#5b6472" { (label) }
                    }
                }
            }
            @for (i, label) in c.columns.iter().enumerate() {
                g class="bar" data-column=(label) data-total=(sums[i]) {
                    @for r in rects.iter().filter(|r| r.column == i) {
                        rect x=(r.x) y=(r.y) width=(bar) height=(r.h) fill=(PALETTE[r.series.min(PALETTE.len() - 1)])
                            data-series=(c.series[r.series].name) {
                            title { (label) " · " (c.series[r.series].name) ": " ((c.format)(r.value)) }
                        }
                    }
                }
            }
        }
    }
}

/// A small colour square for a legend entry (an SVG too: a `style` attribute would break the CSP).
pub fn swatch(k: usize) -> Markup {
    html! {
        svg class="swatch" width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" xmlns="http://www.w3.org/2000/svg" {
            rect width="12" height="12" fill=(PALETTE[k.min(PALETTE.len() - 1)]) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice_and_cover_the_maximum() {
        assert_eq!(nice_step(0), 1);
        assert_eq!(nice_step(4), 1);
        assert_eq!(nice_step(5), 2);
        assert_eq!(nice_step(9), 5);
        assert_eq!(nice_step(21), 10);
        assert_eq!(nice_step(1234), 500);
        for m in [1, 7, 99, 100, 101, 123_456, 9_999_999] {
            assert!(nice_step(m) * 4 >= m, "{m}");
        }
    }

    #[test]
    fn bars_stack_the_series_and_names_are_escaped() {
        let columns: Vec<String> = ["1", "2"].iter().map(|s| s.to_string()).collect();
        let series = [
            Series { name: "<b>web</b>".into(), values: vec![10, 0] },
            Series { name: "db".into(), values: vec![5, 20] },
        ];
        let fmt = |v: i64| format!("₩{v}");
        let svg = stacked(&Stacked {
            id: "c",
            title: "Cost",
            desc: "Daily cost",
            columns: &columns,
            series: &series,
            format: &fmt,
        })
        .into_string();
        assert_eq!(totals(2, &series), vec![15, 20]);
        assert!(svg.contains("data-total=\"15\"") && svg.contains("data-total=\"20\""), "{svg}");
        assert!(svg.contains("&lt;b&gt;web&lt;/b&gt;") && !svg.contains("<b>"), "{svg}");
        assert!(
            svg.contains("<title id=\"c-title\">Cost</title>") && svg.contains("aria-labelledby=\"c-title c-desc\"")
        );
        // Three rectangles: a zero value draws nothing.
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
    }
}
