//! SVG charts drawn on the server for the console's dashboards: a line (or area) chart over
//! time buckets, a horizontal bar chart and a funnel. Pure functions from numbers to markup:
//! every text is escaped, empty data draws a "no data" panel, a single point is drawn at the
//! middle, and the number of points and bars is bounded (`MAX_POINTS`, `MAX_BARS`).
//!
//! Every drawn value carries its exact number in a `data-value` attribute (and the bucket's
//! start in `data-x`), so a test or a script reads the same integers the API answered,
//! never a position on the screen.

use std::fmt::Write as _;

/// The most points a time chart draws per series; the dashboards coarsen the interval before
/// asking for more (see `dashboards.rs`), and a longer input is summed into this many.
pub const MAX_POINTS: usize = 400;
/// The most bars a bar chart draws; the rest are summed into one "others" bar.
pub const MAX_BARS: usize = 12;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 52.0;

/// Text for SVG/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A number for people: 1234567 → "1,234,567".
pub fn group_digits(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A short axis label: 1200 → "1.2k", 3000000 → "3M".
fn short_number(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = format!("{x:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s);
    format!("{s}{suffix}")
}

/// "Nice" ticks (1, 2 or 5 × 10ⁿ apart) from 0 covering `max`, about `target` of them.
/// With `max` ≤ 0 the axis is 0…1. Ticks are whole numbers: the charts count messages.
pub fn ticks(max: f64, target: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let target = target.max(1) as f64;
    let raw = max / target;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
        .max(1.0)
        .ceil();
    let mut out = vec![0.0];
    let mut t = 0.0;
    while t < max {
        t += step;
        out.push(t);
    }
    out
}

/// A linear scale from a domain to a range.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    pub fn at(&self, v: f64) -> f64 {
        if self.d1 == self.d0 {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// One line of a time chart: a value per bucket.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// A stable key (`sent`), used for the CSS class and `data-series`.
    pub key: String,
    pub values: Vec<i64>,
}

/// A chart over time buckets: `x` holds each bucket's start (RFC 3339, in `data-x`) and its
/// short label for the axis.
#[derive(Debug, Clone)]
pub struct TimeChart {
    pub id: String,
    pub title: String,
    pub x: Vec<(String, String)>,
    pub series: Vec<Series>,
    /// Fill the area under each line.
    pub area: bool,
    /// A horizontal line to compare against (e.g. the messaging limit), with its label.
    pub threshold: Option<(i64, String)>,
}

/// Sums consecutive buckets so that at most `MAX_POINTS` remain (the first bucket of each
/// group names it).
fn bound_points(chart: &TimeChart) -> (Vec<(String, String)>, Vec<Vec<i64>>) {
    let n = chart.x.len();
    let group = n.div_ceil(MAX_POINTS).max(1);
    let x: Vec<_> = chart.x.iter().step_by(group).cloned().collect();
    let values = chart
        .series
        .iter()
        .map(|s| {
            s.values
                .chunks(group)
                .map(|c| c.iter().sum::<i64>())
                .collect()
        })
        .collect();
    (x, values)
}

fn open_svg(out: &mut String, id: &str, title: &str, kind: &str, height: f64) {
    let _ = write!(
        out,
        r#"<figure class="chart" id="{id}" data-chart="{kind}"><figcaption>{title}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{title}" preserveAspectRatio="xMidYMid meet">"#,
        id = escape(id),
        title = escape(title),
    );
}

fn empty_panel(out: &mut String, height: f64) {
    let _ = write!(
        out,
        r#"<text class="empty" x="{}" y="{}" text-anchor="middle">No data for this period</text>"#,
        WIDTH / 2.0,
        height / 2.0
    );
}

fn legend(out: &mut String, items: &[(String, String)], y: f64) {
    let mut x = LEFT;
    for (i, (key, label)) in items.iter().enumerate() {
        let _ = write!(
            out,
            r#"<g class="legend s{n} k-{key}"><rect x="{x}" y="{y0}" width="10" height="10"/><text x="{tx}" y="{ty}">{label}</text></g>"#,
            n = i % 6,
            key = escape(key),
            y0 = y - 9.0,
            tx = x + 14.0,
            ty = y,
            label = escape(label),
        );
        x += 24.0 + 7.0 * label.chars().count() as f64;
    }
}

/// A line (or area) chart over time.
pub fn time_chart(chart: &TimeChart) -> String {
    let (x, values) = bound_points(chart);
    let mut out = String::new();
    let total: i64 = values.iter().flatten().map(|v| v.abs()).sum();
    let empty =
        x.is_empty() || chart.series.is_empty() || (total == 0 && chart.threshold.is_none());
    open_svg(&mut out, &chart.id, &chart.title, "time", HEIGHT);
    if empty {
        empty_panel(&mut out, HEIGHT);
        out.push_str("</svg></figure>");
        return out;
    }
    let max = values
        .iter()
        .flatten()
        .copied()
        .chain(chart.threshold.as_ref().map(|t| t.0))
        .max()
        .unwrap_or(0) as f64;
    let yt = ticks(max, 5);
    let ymax = *yt.last().unwrap_or(&1.0);
    let plot_bottom = HEIGHT - BOTTOM;
    let y = Scale {
        d0: 0.0,
        d1: ymax,
        r0: plot_bottom,
        r1: TOP,
    };
    let n = x.len();
    let xs = Scale {
        d0: 0.0,
        d1: (n.saturating_sub(1)) as f64,
        r0: LEFT + 8.0,
        r1: WIDTH - RIGHT - 8.0,
    };
    // Axes and horizontal grid lines with their labels.
    out.push_str(r#"<g class="axis y">"#);
    for t in &yt {
        let py = y.at(*t);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{py:.1}" y2="{py:.1}"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = py + 4.0,
            label = short_number(*t),
        );
    }
    out.push_str("</g>");
    out.push_str(r#"<g class="axis x">"#);
    let _ = write!(
        out,
        r#"<line x1="{LEFT}" x2="{x2}" y1="{plot_bottom}" y2="{plot_bottom}"/>"#,
        x2 = WIDTH - RIGHT
    );
    let label_every = n.div_ceil(8).max(1);
    for (i, (_, short)) in x.iter().enumerate() {
        if !i.is_multiple_of(label_every) && i != n - 1 {
            continue;
        }
        if i == n - 1 && !i.is_multiple_of(label_every) && (i % label_every) * 2 < label_every {
            // Too close to the previous label.
            continue;
        }
        let px = xs.at(i as f64);
        // The last label ends at its tick, inside the drawing.
        let anchor = if i == n - 1 && n > 1 { "end" } else { "middle" };
        let _ = write!(
            out,
            r#"<line x1="{px:.1}" x2="{px:.1}" y1="{plot_bottom}" y2="{y2}"/><text x="{px:.1}" y="{ty}" text-anchor="{anchor}">{label}</text>"#,
            y2 = plot_bottom + 4.0,
            ty = plot_bottom + 16.0,
            label = escape(short),
        );
    }
    out.push_str("</g>");
    if let Some((limit, label)) = &chart.threshold {
        let py = y.at(*limit as f64);
        let _ = write!(
            out,
            r#"<g class="threshold" data-value="{limit}"><line x1="{LEFT}" x2="{x2}" y1="{py:.1}" y2="{py:.1}"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text></g>"#,
            x2 = WIDTH - RIGHT,
            tx = WIDTH - RIGHT,
            ty = py - 4.0,
            label = escape(label),
        );
    }
    for (si, (s, vals)) in chart.series.iter().zip(&values).enumerate() {
        let pts: Vec<(f64, f64)> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| (xs.at(i as f64), y.at(*v as f64)))
            .collect();
        let _ = write!(
            out,
            r#"<g class="series s{n} k-{key}" data-series="{key}" data-total="{total}">"#,
            n = si % 6,
            key = escape(&s.key),
            total = vals.iter().sum::<i64>(),
        );
        let mut d = String::new();
        for (i, (px, py)) in pts.iter().enumerate() {
            let _ = write!(d, "{}{px:.1},{py:.1}", if i == 0 { "M" } else { "L" });
        }
        if chart.area && pts.len() > 1 {
            let _ = write!(
                out,
                r#"<path class="area" d="{d}L{lx:.1},{plot_bottom}L{fx:.1},{plot_bottom}Z"/>"#,
                lx = pts[pts.len() - 1].0,
                fx = pts[0].0,
            );
        }
        if pts.len() > 1 {
            let _ = write!(out, r#"<path class="line" d="{d}"/>"#);
        }
        for ((px, py), (v, (start, short))) in pts.iter().zip(vals.iter().zip(&x)) {
            let _ = write!(
                out,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="{r}" data-x="{start}" data-value="{v}"><title>{label} {short}: {vs}</title></circle>"#,
                r = if pts.len() > 60 { 1.5 } else { 3.0 },
                start = escape(start),
                label = escape(&s.label),
                short = escape(short),
                vs = group_digits(*v),
            );
        }
        out.push_str("</g>");
    }
    let items: Vec<(String, String)> = chart
        .series
        .iter()
        .map(|s| (s.key.clone(), s.label.clone()))
        .collect();
    legend(&mut out, &items, HEIGHT - 10.0);
    out.push_str("</svg></figure>");
    out
}

/// One bar: its label, a stable key and its value.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub key: String,
    pub value: i64,
}

/// Keeps the `MAX_BARS - 1` largest bars and sums the rest into "others".
fn bound_bars(bars: &[Bar]) -> Vec<Bar> {
    if bars.len() <= MAX_BARS {
        return bars.to_vec();
    }
    let mut sorted = bars.to_vec();
    sorted.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.key.cmp(&b.key)));
    let rest: i64 = sorted[MAX_BARS - 1..].iter().map(|b| b.value).sum();
    sorted.truncate(MAX_BARS - 1);
    sorted.push(Bar {
        label: "others".into(),
        key: "others".into(),
        value: rest,
    });
    sorted
}

fn bars_svg(id: &str, title: &str, kind: &str, bars: &[Bar], percent_of_first: bool) -> String {
    let bars = bound_bars(bars);
    let row = 30.0;
    let height = (TOP + row * bars.len().max(1) as f64 + 28.0).max(90.0);
    let mut out = String::new();
    open_svg(&mut out, id, title, kind, height);
    if bars.is_empty() || bars.iter().all(|b| b.value == 0) {
        empty_panel(&mut out, height);
        out.push_str("</svg></figure>");
        return out;
    }
    let label_width = 190.0;
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(0) as f64;
    let xt = ticks(max, 5);
    let xmax = *xt.last().unwrap_or(&1.0);
    let x = Scale {
        d0: 0.0,
        d1: xmax,
        r0: label_width,
        r1: WIDTH - RIGHT - 70.0,
    };
    let axis_y = TOP + row * bars.len() as f64;
    out.push_str(r#"<g class="axis x">"#);
    for t in &xt {
        let px = x.at(*t);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{axis_y}"/><text x="{px:.1}" y="{ty}" text-anchor="middle">{label}</text>"#,
            ty = axis_y + 16.0,
            label = short_number(*t),
        );
    }
    out.push_str("</g>");
    let first = bars.first().map_or(0, |b| b.value);
    for (i, b) in bars.iter().enumerate() {
        let top = TOP + row * i as f64 + 4.0;
        let w = (x.at(b.value.max(0) as f64) - label_width).max(0.0);
        let pct = if percent_of_first && first > 0 && i > 0 {
            format!(" ({:.1} %)", b.value as f64 * 100.0 / first as f64)
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"<g class="hbar s{n} k-{key}" data-key="{key}" data-value="{v}"><text class="label" x="{lx}" y="{ty:.1}" text-anchor="end">{label}</text><rect x="{label_width}" y="{top:.1}" width="{w:.1}" height="{h}"><title>{label}: {vs}</title></rect><text class="value" x="{vx:.1}" y="{ty:.1}">{vs}{pct}</text></g>"#,
            n = i % 6,
            key = escape(&b.key),
            v = b.value,
            lx = label_width - 8.0,
            ty = top + 15.0,
            label = escape(&truncate(&b.label, 28)),
            h = row - 8.0,
            vx = label_width + w + 6.0,
            vs = group_digits(b.value),
        );
    }
    out.push_str("</svg></figure>");
    out
}

fn truncate(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(chars - 1).collect();
        t.push('…');
        t
    }
}

/// A horizontal bar chart.
pub fn bar_chart(id: &str, title: &str, bars: &[Bar]) -> String {
    bars_svg(id, title, "bar", bars, false)
}

/// A funnel: bars in the given order, each with its share of the first step.
pub fn funnel(id: &str, title: &str, steps: &[Bar]) -> String {
    bars_svg(
        id,
        title,
        "funnel",
        &steps[..steps.len().min(MAX_BARS)],
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(values: Vec<i64>) -> TimeChart {
        TimeChart {
            id: "t".into(),
            title: "Sent <per> day".into(),
            x: (0..values.len())
                .map(|i| {
                    (
                        format!("2026-12-{:02}T00:00:00Z", i + 1),
                        format!("12-{:02}", i + 1),
                    )
                })
                .collect(),
            series: vec![Series {
                label: "Sent".into(),
                key: "sent".into(),
                values,
            }],
            area: true,
            threshold: None,
        }
    }

    fn values(svg: &str) -> Vec<i64> {
        svg.match_indices("data-value=\"")
            .map(|(i, m)| {
                let rest = &svg[i + m.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn scales_map_domain_to_range_and_a_point_domain_to_the_middle() {
        let s = Scale {
            d0: 0.0,
            d1: 100.0,
            r0: 200.0,
            r1: 0.0,
        };
        assert_eq!(s.at(0.0), 200.0);
        assert_eq!(s.at(100.0), 0.0);
        assert_eq!(s.at(25.0), 150.0);
        let flat = Scale {
            d0: 3.0,
            d1: 3.0,
            r0: 10.0,
            r1: 30.0,
        };
        assert_eq!(flat.at(3.0), 20.0);
    }

    #[test]
    fn ticks_are_nice_whole_and_cover_the_maximum() {
        assert_eq!(ticks(0.0, 5), vec![0.0, 1.0]);
        assert_eq!(ticks(-3.0, 5), vec![0.0, 1.0]);
        assert_eq!(ticks(f64::NAN, 5), vec![0.0, 1.0]);
        assert_eq!(ticks(3.0, 5), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(ticks(10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(87.0, 5), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        for max in [1.0, 7.0, 99.0, 101.0, 250.0, 12_345.0, 1e9] {
            let t = ticks(max, 5);
            assert!(*t.last().unwrap() >= max, "{max}: {t:?}");
            assert!(t.len() <= 12, "{max}: {t:?}");
            let step = t[1] - t[0];
            let mag = 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0, 10.0].contains(&(step / mag)),
                "{max}: {t:?}"
            );
            assert!(t.iter().all(|v| v.fract() == 0.0));
        }
        assert_eq!(short_number(1200.0), "1.2k");
        assert_eq!(short_number(3_000_000.0), "3M");
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(group_digits(-1000), "-1,000");
    }

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{0}b"), "a\u{FFFD}b");
        let mut c = chart(vec![1, 2]);
        c.series[0].label = "<b>\"x\"</b>".into();
        c.series[0].key = "k\"><script>".into();
        c.x[0].1 = "<i>".into();
        let svg = time_chart(&c);
        assert!(!svg.contains("<script>") && !svg.contains("<b>") && !svg.contains("<i>"));
        assert!(svg.contains("Sent &lt;per&gt; day"));
        let bars = bar_chart(
            "b",
            "t",
            &[Bar {
                label: "</text><script>alert(1)</script>".into(),
                key: "x".into(),
                value: 3,
            }],
        );
        assert!(!bars.contains("<script>"));
    }

    #[test]
    fn empty_data_draws_a_no_data_panel() {
        for svg in [
            time_chart(&chart(vec![])),
            time_chart(&chart(vec![0, 0, 0])),
            bar_chart("b", "Failures", &[]),
            funnel(
                "f",
                "Funnel",
                &[Bar {
                    label: "Sent".into(),
                    key: "sent".into(),
                    value: 0,
                }],
            ),
        ] {
            assert!(svg.contains("No data for this period"), "{svg}");
            assert!(svg.starts_with("<figure") && svg.ends_with("</svg></figure>"));
            assert!(!svg.contains("NaN") && !svg.contains("inf"));
        }
    }

    #[test]
    fn a_single_point_is_drawn_in_the_middle_without_a_path() {
        let svg = time_chart(&chart(vec![5]));
        assert_eq!(values(&svg), vec![5]);
        assert!(svg.contains(&format!(
            r#"cx="{:.1}""#,
            (LEFT + 8.0 + WIDTH - RIGHT - 8.0) / 2.0
        )));
        assert!(!svg.contains("class=\"line\""));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn every_point_carries_its_exact_value_and_bucket() {
        let svg = time_chart(&chart(vec![3, 0, 12, 7]));
        assert_eq!(values(&svg), vec![3, 0, 12, 7]);
        assert!(svg.contains(r#"data-x="2026-12-03T00:00:00Z" data-value="12""#));
        assert!(svg.contains(r#"data-series="sent" data-total="22""#));
        // The y axis reaches at least the maximum.
        assert!(svg.contains(">12<") || svg.contains(">15<") || svg.contains(">14<"));
    }

    #[test]
    fn points_are_bounded_by_summing_neighbours() {
        let n = MAX_POINTS * 2 + 1;
        let svg = time_chart(&chart(vec![1; n]));
        let v = values(&svg);
        assert!(v.len() <= MAX_POINTS, "{}", v.len());
        assert_eq!(v.iter().sum::<i64>(), n as i64);
    }

    #[test]
    fn bars_are_bounded_and_funnels_show_shares() {
        let many: Vec<Bar> = (0..30)
            .map(|i| Bar {
                label: format!("code {i}"),
                key: i.to_string(),
                value: i,
            })
            .collect();
        let svg = bar_chart("b", "Failures", &many);
        let v = values(&svg);
        assert_eq!(v.len(), MAX_BARS);
        assert_eq!(v.iter().sum::<i64>(), (0..30).sum::<i64>());
        assert!(svg.contains(r#"data-key="others""#));
        let steps = [("Sent", 200), ("Delivered", 150), ("Read", 75)].map(|(l, v)| Bar {
            label: l.into(),
            key: l.to_lowercase(),
            value: v,
        });
        let svg = funnel("f", "Funnel", &steps);
        assert_eq!(values(&svg), vec![200, 150, 75]);
        assert!(svg.contains("(75.0 %)") && svg.contains("(37.5 %)"));
    }

    #[test]
    fn a_threshold_is_drawn_even_over_zero_use() {
        let mut c = chart(vec![0, 0]);
        c.threshold = Some((250, "limit 250".into()));
        let svg = time_chart(&c);
        assert!(svg.contains(r#"class="threshold" data-value="250""#));
        assert!(!svg.contains("No data"));
    }
}
