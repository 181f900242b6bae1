//! PNG charts of a run (plotters, bitmap backend): lb's ratios, throughput
//! relative to a direct connection, latency, and CPU / memory relative to
//! HAProxy. Text is drawn with a TrueType font read at run time (Debian's
//! fonts-dejavu-core), so no system font library is involved.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use super::report::{Row, Stats};
use super::targets::Target;
use super::workloads::{fig, Workload};

pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One bar: a value and an optional min-max whisker.
#[derive(Clone, Copy, Debug)]
struct Bar {
    value: f64,
    range: Option<(f64, f64)>,
}

struct Series {
    name: String,
    color: RGBColor,
    /// One per category.
    bars: Vec<Option<Bar>>,
}

/// Horizontal grouped bars, one group per category.
struct HBars {
    title: String,
    x_desc: String,
    categories: Vec<String>,
    series: Vec<Series>,
    /// Log10 x axis (ratios).
    log: bool,
    /// A vertical line (and the bars' base on a log axis), e.g. 1.0.
    reference: Option<f64>,
}

fn target_color(t: Target) -> RGBColor {
    match t {
        Target::Direct => RGBColor(140, 140, 140),
        Target::Haproxy => RGBColor(31, 119, 180),
        Target::Lb => RGBColor(255, 127, 14),
        Target::LbNoSplice => RGBColor(44, 160, 44),
        Target::LbNat => RGBColor(214, 39, 40),
        Target::Nftables => RGBColor(148, 103, 189),
        Target::LbConnect => RGBColor(140, 86, 75),
    }
}

/// Register the font under "sans-serif" (once).
fn load_font() -> Result<()> {
    static LOADED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT)
                .map_err(|e| format!("cannot read {FONT} (package fonts-dejavu-core): {e}"))?;
            // plotters keeps a &'static reference: the font lives as long as the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT} is not a usable font"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Draw every chart into `dir` (created); returns the files written.
pub fn draw_all(dir: &Path, rows: &[Row], title_suffix: &str) -> Result<Vec<PathBuf>> {
    load_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, chart) in [
        ("ratios.png", ratios(rows)),
        (
            "throughput.png",
            relative(rows, &THROUGHPUT, Target::Direct, false),
        ),
        ("latency.png", latency(rows)),
        ("cost.png", relative(rows, &COST, Target::Haproxy, true)),
    ] {
        let Some(mut chart) = chart else { continue };
        chart.title = format!("{}{title_suffix}", chart.title);
        let path = dir.join(name);
        draw(&path, &chart).with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// lb's advantage over haproxy and over direct per figure (the inverse
/// ratio where lower is better), on a log axis around 1.
fn ratios(rows: &[Row]) -> Option<HBars> {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.chart.is_some()).collect();
    let advantage = |r: &Row, vs: Option<f64>| -> Option<Bar> {
        let x = vs.filter(|x| *x > 0.0 && x.is_finite())?;
        Some(Bar {
            value: if r.lower_is_better { 1.0 / x } else { x },
            range: None,
        })
    };
    let chart = HBars {
        title: "lb compared (×, right of 1 = lb better)".into(),
        x_desc: "lb's advantage (log scale; inverse ratio for latency, CPU, memory)".into(),
        categories: rows
            .iter()
            .map(|r| r.chart.unwrap_or(r.label).into())
            .collect(),
        series: vec![
            Series {
                name: "lb vs haproxy".into(),
                color: target_color(Target::Haproxy),
                bars: rows
                    .iter()
                    .map(|r| advantage(r, r.lb_over_haproxy))
                    .collect(),
            },
            Series {
                name: "lb vs direct".into(),
                color: target_color(Target::Direct),
                bars: rows
                    .iter()
                    .map(|r| advantage(r, r.lb_over_direct))
                    .collect(),
            },
        ],
        log: true,
        reference: Some(1.0),
    };
    has_bars(&chart).then_some(chart)
}

const THROUGHPUT: [(Workload, &str); 6] = [
    (Workload::Pgbench8, fig::TPS),
    (Workload::Pgbench64, fig::TPS),
    (Workload::PgbenchConnect, fig::TPS),
    (Workload::Iperf1, fig::GBIT_S),
    (Workload::Iperf4, fig::GBIT_S),
    (Workload::ShortConns, fig::CONNS_PER_S),
];

const COST: [(Workload, &str); 6] = [
    (Workload::Iperf1, fig::CPU_S_PER_GB),
    (Workload::Iperf4, fig::CPU_S_PER_GB),
    (Workload::Pgbench8, fig::CPU_MS_PER_1K),
    (Workload::ShortConns, fig::CPU_MS_PER_1K),
    (Workload::IdleConns, fig::RSS_B_PER_CONN),
    (Workload::IdleConns, fig::SLAB_B_PER_CONN),
];

/// Every target's figures divided by `base`'s median (with min-max).
fn relative(rows: &[Row], which: &[(Workload, &str)], base: Target, cost: bool) -> Option<HBars> {
    let rows: Vec<&Row> = which
        .iter()
        .filter_map(|&(w, f)| rows.iter().find(|r| r.workload == w && r.figure == f))
        .collect();
    let scaled = |r: &Row, t: Target| -> Option<Bar> {
        let b = r.median(base).filter(|b| *b > 0.0)?;
        let s: Stats = r.stats(t)?;
        (s.median > 0.0).then_some(Bar {
            value: s.median / b,
            range: (s.n > 1).then_some((s.min / b, s.max / b)),
        })
    };
    let chart = HBars {
        title: if cost {
            "CPU and memory relative to haproxy (lower is better)".into()
        } else {
            "Throughput relative to a direct connection (higher is better)".into()
        },
        x_desc: format!(
            "× {} (median, min–max whiskers{})",
            base.label(),
            if cost { "; log scale" } else { "" }
        ),
        categories: rows
            .iter()
            .map(|r| r.chart.unwrap_or(r.label).into())
            .collect(),
        series: Target::ALL
            .iter()
            .map(|&t| Series {
                name: t.label().into(),
                color: target_color(t),
                bars: rows.iter().map(|r| scaled(r, t)).collect(),
            })
            .collect(),
        log: cost,
        reference: Some(1.0),
    };
    has_bars(&chart).then_some(chart)
}

/// Round-trip latency of every target, µs.
fn latency(rows: &[Row]) -> Option<HBars> {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.workload, Workload::LatencyPinned | Workload::Latency))
        .collect();
    let chart = HBars {
        title: "sockperf 64 B round trip (lower is better)".into(),
        x_desc: "µs (median, min–max whiskers)".into(),
        categories: rows
            .iter()
            .map(|r| r.chart.unwrap_or(r.label).into())
            .collect(),
        series: Target::ALL
            .iter()
            .map(|&t| Series {
                name: t.label().into(),
                color: target_color(t),
                bars: rows
                    .iter()
                    .map(|r| {
                        let s = r.stats(t)?;
                        Some(Bar {
                            value: s.median,
                            range: (s.n > 1).then_some((s.min, s.max)),
                        })
                    })
                    .collect(),
            })
            .collect(),
        log: false,
        reference: None,
    };
    has_bars(&chart).then_some(chart)
}

fn has_bars(c: &HBars) -> bool {
    c.series.iter().any(|s| s.bars.iter().any(Option::is_some))
}

/// x in axis units (log10 on a log axis).
fn tx(c: &HBars, x: f64) -> f64 {
    if c.log {
        x.max(1e-6).log10()
    } else {
        x
    }
}

/// The x range to show, in axis units, with room for the value labels.
fn x_range(c: &HBars) -> (f64, f64) {
    let mut lo = c.reference.map_or(0.0, |r| tx(c, r));
    let mut hi = lo;
    if !c.log {
        lo = lo.min(0.0);
    }
    for b in c.series.iter().flat_map(|s| s.bars.iter().flatten()) {
        let (a, z) = b.range.unwrap_or((b.value, b.value));
        for v in [b.value, a, z] {
            lo = lo.min(tx(c, v));
            hi = hi.max(tx(c, v));
        }
    }
    let span = (hi - lo).max(if c.log { 0.3 } else { 1e-9 });
    let pad_lo = if c.log { span * 0.08 } else { 0.0 };
    (lo - pad_lo, hi + span * 0.12)
}

fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn draw(path: &Path, c: &HBars) -> Result<()> {
    const W: u32 = 1100;
    const LABEL_W: u32 = 190;
    let ns = c.series.len().max(1) as u32;
    let group_px = ns * 16 + 14;
    let h = 130 + group_px * c.categories.len() as u32;
    let root = BitMapBackend::new(path, (W, h)).into_drawing_area();
    let e = |e: &dyn std::fmt::Debug| anyhow!("{e:?}");
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (x0, x1) = x_range(c);
    let n = c.categories.len() as f64;
    let log = c.log;
    // Title and legend are drawn by hand above the plot.
    root.draw(&Text::new(
        c.title.clone(),
        (W as i32 / 2, 20),
        TextStyle::from(("sans-serif", 22).into_font()).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(14)
        .margin_top(72)
        .x_label_area_size(46)
        .y_label_area_size(LABEL_W)
        .build_cartesian_2d(x0..x1, 0f64..n)
        .map_err(|x| e(&x))?;
    // On a log axis, ticks at 1-2-5 values, drawn below; plotters' own
    // would fall on odd values.
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(1)
        .y_label_formatter(&|_| String::new())
        .x_labels(if log { 0 } else { 10 })
        .x_label_formatter(&|v| fmt_value(*v))
        .x_desc(c.x_desc.as_str())
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    if log {
        let ticks: Vec<f64> = (-3..=4)
            .flat_map(|p| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(p)))
            .filter(|v| (x0..=x1).contains(&v.log10()))
            .collect();
        chart
            .draw_series(ticks.iter().map(|v| {
                PathElement::new(
                    vec![(v.log10(), 0.0), (v.log10(), n)],
                    RGBColor(215, 215, 215),
                )
            }))
            .map_err(|x| e(&x))?;
        let tick_style =
            TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for v in ticks {
            let (px, py) = chart.backend_coord(&(v.log10(), 0.0));
            root.draw(&Text::new(
                format!("{}×", fmt_value(v)),
                (px, py + 8),
                tick_style.clone(),
            ))
            .map_err(|x| e(&x))?;
        }
    }

    // Category i occupies [n-1-i, n-i]: the first at the top. Bars start
    // at 0, or at the reference on a log axis.
    let base = match (c.log, c.reference) {
        (true, Some(r)) => tx(c, r).max(x0),
        _ => 0f64.max(x0),
    };
    let band = 0.8 / ns as f64;
    for (j, s) in c.series.iter().enumerate() {
        let color = s.color;
        let mut rects = Vec::new();
        let mut whiskers = Vec::new();
        let mut labels = Vec::new();
        for (i, bar) in s.bars.iter().enumerate() {
            let Some(b) = bar else { continue };
            let top = n - i as f64 - 0.1 - band * j as f64;
            let bottom = top - band * 0.9;
            let v = tx(c, b.value);
            rects.push(Rectangle::new([(base, bottom), (v, top)], color.filled()));
            let mid = (top + bottom) / 2.0;
            let mut end = v;
            if let Some((lo, hi)) = b.range {
                let (lo, hi) = (tx(c, lo), tx(c, hi));
                end = end.max(hi);
                whiskers.push(PathElement::new(vec![(lo, mid), (hi, mid)], BLACK));
                for x in [lo, hi] {
                    whiskers.push(PathElement::new(
                        vec![(x, mid - band * 0.25), (x, mid + band * 0.25)],
                        BLACK,
                    ));
                }
            }
            labels.push(Text::new(
                format!(" {}", fmt_value(b.value)),
                (end.max(base), mid),
                TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ));
        }
        chart.draw_series(rects).map_err(|x| e(&x))?;
        chart.draw_series(whiskers).map_err(|x| e(&x))?;
        chart.draw_series(labels).map_err(|x| e(&x))?;
    }
    if let Some(r) = c.reference {
        let r = tx(c, r);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(r, 0.0), (r, n)],
                BLACK.stroke_width(2),
            )))
            .map_err(|x| e(&x))?;
    }
    // Legend: one row under the title, left to right.
    let legend_style =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = LABEL_W as i32 + 20;
    for s in &c.series {
        let y = 56;
        root.draw(&Rectangle::new(
            [(x, y - 7), (x + 16, y + 7)],
            s.color.filled(),
        ))
        .map_err(|x| e(&x))?;
        root.draw(&Text::new(
            s.name.clone(),
            (x + 22, y),
            legend_style.clone(),
        ))
        .map_err(|x| e(&x))?;
        x += 40 + 9 * s.name.chars().count() as i32;
    }

    // Category names, right-aligned left of the plot.
    let style =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, name) in c.categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(x0, n - i as f64 - 0.5));
        root.draw(&Text::new(name.clone(), (px - 8, py), style.clone()))
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::report::{summarize, Sample};
    use super::super::workloads::Measurement;
    use super::*;

    /// Draws every chart from made-up figures (needs the font; without it
    /// only the error is checked).
    #[test]
    fn draws_every_chart() {
        let mut samples = Vec::new();
        for rep in 1..=3 {
            for (t, k) in [
                (Target::Direct, 2.0),
                (Target::Haproxy, 1.0),
                (Target::Lb, 1.4),
                (Target::LbNoSplice, 1.1),
            ] {
                for w in Workload::ALL {
                    let mut m = Measurement::default();
                    let jitter = 1.0 + rep as f64 * 0.03;
                    for (f, v) in [
                        (fig::TPS, 20_000.0 * k),
                        (fig::GBIT_S, 10.0 * k),
                        (fig::P50_US, 40.0 / k),
                        (fig::P99_US, 90.0 / k),
                        (fig::CONNS_PER_S, 9000.0 * k),
                        (fig::SETUP_P99_US, 900.0 / k),
                        (fig::CPU_S_PER_GB, 1.0 / k),
                        (fig::CPU_MS_PER_1K, 50.0 / k),
                        (fig::RSS_B_PER_CONN, 3000.0 / k / k),
                        (fig::SLAB_B_PER_CONN, 9000.0),
                    ] {
                        if t == Target::Direct && f == fig::RSS_B_PER_CONN {
                            continue;
                        }
                        m.figures.insert(f, v * jitter);
                    }
                    samples.push(Sample {
                        target: t,
                        workload: w,
                        rep,
                        measurement: Some(m),
                        lb_stats_delta: None,
                        error: None,
                    });
                }
            }
        }
        let rows = summarize(&samples, &Workload::ALL);
        let dir = std::env::temp_dir().join(format!("xtask-chart-test-{}", std::process::id()));
        match draw_all(&dir, &rows, " — test") {
            Ok(files) => {
                assert_eq!(files.len(), 4, "{files:?}");
                for f in &files {
                    let len = std::fs::metadata(f).unwrap().len();
                    assert!(len > 5_000, "{} is only {len} bytes", f.display());
                }
                if std::env::var_os("KEEP_CHARTS").is_none() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            Err(e) if !Path::new(FONT).exists() => {
                assert!(format!("{e:#}").contains("fonts-dejavu-core"), "{e:#}");
            }
            Err(e) => panic!("{e:#}"),
        }
    }
}
