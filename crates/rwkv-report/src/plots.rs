//! Plots with plotters, each as PNG and SVG. PNG text is rasterised with ab_glyph from the
//! bundled DejaVu Sans (no system fonts, no fontconfig); SVG text names `sans-serif`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::claims::FitRow;
use crate::error::ReportError;
use crate::series::{Quantity, Series};
use lab_util::{fmt_bytes, fmt_count, fmt_seconds};

/// The bundled font: DejaVu Sans 2.37 (Bitstream Vera license; see `assets/`).
pub const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FONT_NAME: &str = "DejaVuSans.ttf";
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1100, 700);

/// Registers the bundled font as plotters' `sans-serif` (once per process).
pub fn register_font() -> Result<(), ReportError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ]
        .into_iter()
        .all(|style| plotters::style::register_font(FAMILY, style, FONT).is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Font { name: FONT_NAME })
    }
}

/// How one plot looks.
struct PlotSpec {
    title: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    log: bool,
    bytes: bool,
    empty: &'static str,
}

fn spec(quantity: Quantity) -> PlotSpec {
    match quantity {
        Quantity::PrefillTime => PlotSpec {
            title: "Prefill time vs sequence length (log-log)",
            x_desc: "sequence length T (tokens)",
            y_desc: "median time per forward (s)",
            log: true,
            bytes: false,
            empty: "no prefill timings",
        },
        Quantity::PrefillMemory => PlotSpec {
            title: "Prefill peak memory vs sequence length (log-log)",
            x_desc: "sequence length T (tokens)",
            y_desc: "peak memory allocated (bytes)",
            log: true,
            bytes: true,
            empty: "no prefill memory measurements",
        },
        Quantity::GenerationLatency => PlotSpec {
            title: "Per-token generation latency",
            x_desc: "position of the new token (tokens generated)",
            y_desc: "median latency of that token (s)",
            log: false,
            bytes: false,
            empty: "no generation timings",
        },
        Quantity::GenerationCumulative => PlotSpec {
            title: "Cumulative generation time",
            x_desc: "tokens generated",
            y_desc: "cumulative time (s)",
            log: false,
            bytes: false,
            empty: "no generation timings",
        },
        Quantity::StateBytes => PlotSpec {
            title: "State / KV-cache size vs context",
            x_desc: "tokens in context",
            y_desc: "state / KV cache (bytes)",
            log: true,
            bytes: true,
            empty: "no state sizes",
        },
    }
}

/// The plot files written by [`plot_all`], by stem (`prefill_time` → `.png` and `.svg`).
pub const PLOT_QUANTITIES: [(&str, Quantity); 4] = [
    ("prefill_time", Quantity::PrefillTime),
    ("prefill_memory", Quantity::PrefillMemory),
    ("generation_latency", Quantity::GenerationLatency),
    ("generation_cumulative", Quantity::GenerationCumulative),
];

/// Writes the four plots, each as PNG and SVG, into `dir`; returns the paths written.
/// A plot without data is still written, with a "no data" note.
pub fn plot_all(
    dir: &Path,
    series: &[Series],
    fits: &[FitRow],
) -> Result<Vec<PathBuf>, ReportError> {
    let mut out = Vec::with_capacity(8);
    for (stem, q) in PLOT_QUANTITIES {
        let s: Vec<&Series> = series.iter().filter(|s| s.quantity == q).collect();
        out.extend(plot(dir, stem, q, &s, fits)?);
    }
    Ok(out)
}

/// Writes one plot of `series` (all of one quantity) as `dir/stem.png` and `dir/stem.svg`.
/// Log-log plots label each series with its fitted exponent from `fits`.
pub fn plot(
    dir: &Path,
    stem: &str,
    quantity: Quantity,
    series: &[&Series],
    fits: &[FitRow],
) -> Result<Vec<PathBuf>, ReportError> {
    register_font()?;
    let spec = spec(quantity);
    let mut per_model: std::collections::HashMap<lab_records::Model, usize> =
        std::collections::HashMap::new();
    let lines: Vec<Line> = series
        .iter()
        .map(|s| {
            let i = {
                let n = per_model.entry(s.key.model).or_insert(0);
                *n += 1;
                *n - 1
            };
            let k = fits
                .iter()
                .find(|f| f.quantity == s.quantity && f.key == s.key)
                .and_then(|f| f.fit);
            let label = match k {
                Some(f) if spec.log => format!("{}  (k = {:.2})", s.label, f.slope),
                _ => s.label.clone(),
            };
            Line {
                label,
                points: s
                    .points
                    .iter()
                    .copied()
                    .filter(|&(x, y)| !spec.log || (x > 0.0 && y > 0.0))
                    .collect(),
                color: color(s, i),
                rwkv: s.key.is_rwkv(),
            }
        })
        .filter(|l| !l.points.is_empty())
        .collect();

    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |reason: String| ReportError::Plot { path, reason }
    };
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, &spec, &lines).map_err(fail(&png))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, &spec, &lines).map_err(fail(&svg))?;
    }
    Ok(vec![png, svg])
}

struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    rwkv: bool,
}

const RWKV_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(23, 190, 207),
    RGBColor(148, 103, 189),
    RGBColor(0, 64, 128),
    RGBColor(140, 86, 75),
];
const TRANSFORMER_COLORS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(127, 127, 127),
];

fn color(s: &Series, i: usize) -> RGBColor {
    if s.key.is_rwkv() {
        RWKV_COLORS[i % RWKV_COLORS.len()]
    } else {
        TRANSFORMER_COLORS[i % TRANSFORMER_COLORS.len()]
    }
}

/// Axis bounds: data range padded (multiplicatively on log axes), never empty.
fn bounds(values: impl Iterator<Item = f64>, log: bool, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return if log { (1.0, 10.0) } else { (0.0, 10.0) };
    }
    if log {
        if lo == hi {
            return (lo / 2.0, hi * 2.0);
        }
        let pad = (hi / lo).powf(0.05);
        return (lo / pad, hi * pad);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    if lo == hi {
        hi = lo + lo.abs().max(1.0);
    }
    let pad = 0.04 * (hi - lo);
    (
        if from_zero && lo >= 0.0 {
            0.0
        } else {
            lo - pad
        },
        hi + pad,
    )
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &PlotSpec,
    lines: &[Line],
) -> Result<(), String> {
    let xs = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    if spec.log {
        let (x0, x1) = bounds(xs(), true, false);
        let (y0, y1) = bounds(ys(), true, false);
        // Token counts and bytes are ticked at powers of 2, seconds at powers of 10.
        let x: LogCoord<f64> = (x0..x1).log_scale().base(2.0).into();
        let y: LogCoord<f64> = if spec.bytes {
            (y0..y1).log_scale().base(2.0).into()
        } else {
            (y0..y1).log_scale().into()
        };
        let sy = if spec.bytes {
            None
        } else {
            sparse_log_labels(y0, y1)
        };
        let sx = None;
        draw_chart(root, spec, lines, x, y, sx, sy)
    } else {
        let (x0, x1) = bounds(xs(), false, true);
        let (y0, y1) = bounds(ys(), false, true);
        draw_chart(
            root,
            spec,
            lines,
            RangedCoordf64::from(x0..x1),
            RangedCoordf64::from(y0..y1),
            None,
            None,
        )
    }
}

/// On a log axis spanning more than a decade, plotters places a label at every 1..9 × 10^k,
/// which collide; keep the mantissas returned (None: keep all).
fn sparse_log_labels(lo: f64, hi: f64) -> Option<&'static [u32]> {
    let decades = (hi / lo).log10();
    if decades > 2.5 {
        Some(&[1])
    } else if decades > 1.0 {
        Some(&[1, 2, 5])
    } else {
        None
    }
}

/// Whether a tick value's leading digit is one of `keep`.
fn keep_label(v: f64, keep: Option<&[u32]>) -> bool {
    let Some(keep) = keep else { return true };
    if v <= 0.0 || !v.is_finite() {
        return false;
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    keep.iter()
        .any(|&m| (mantissa - m as f64).abs() < 1e-6 * m as f64 + 1e-9)
}

fn draw_chart<DB, X, Y>(
    root: &DrawingArea<DB, Shift>,
    spec: &PlotSpec,
    lines: &[Line],
    x: X,
    y: Y,
    x_keep: Option<&'static [u32]>,
    y_keep: Option<&'static [u32]>,
) -> Result<(), String>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(root)
        .caption(spec.title, (FAMILY, 28))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(100)
        .build_cartesian_2d(x, y)
        .map_err(e)?;
    let bytes = spec.bytes;
    // x counts tokens: label whole numbers only.
    let x_fmt = |v: &f64| {
        if keep_label(*v, x_keep) && (v - v.round()).abs() < 1e-6 {
            fmt_count(v.round().max(0.0) as u64)
        } else {
            String::new()
        }
    };
    let y_fmt = move |v: &f64| {
        if !keep_label(*v, y_keep) {
            String::new()
        } else if bytes {
            fmt_bytes(*v)
        } else {
            fmt_seconds(*v)
        }
    };
    chart
        .configure_mesh()
        .x_desc(spec.x_desc)
        .y_desc(spec.y_desc)
        .axis_desc_style((FAMILY, 20))
        .label_style((FAMILY, 16))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()
        .map_err(e)?;

    if lines.is_empty() {
        let area = chart.plotting_area().strip_coord_spec();
        let (w, h) = area.dim_in_pixel();
        let style = TextStyle::from((FAMILY, 24).into_font())
            .color(&RGBColor(120, 120, 120))
            .pos(Pos::new(HPos::Center, VPos::Center));
        area.draw(&Text::new(
            spec.empty.to_string(),
            (w as i32 / 2, h as i32 / 2),
            style,
        ))
        .map_err(e)?;
        root.present().map_err(e)?;
        return Ok(());
    }

    for line in lines {
        let color = line.color;
        let style = color.stroke_width(if line.rwkv { 3 } else { 2 });
        if line.rwkv {
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), style))
                .map_err(e)?
        } else {
            chart
                .draw_series(DashedLineSeries::new(
                    line.points.iter().copied(),
                    10,
                    6,
                    style,
                ))
                .map_err(e)?
        }
        .label(line.label.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
        if line.points.len() <= 64 {
            if line.rwkv {
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|&p| Circle::new(p, 4, color.filled())),
                    )
                    .map_err(e)?;
            } else {
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|&p| TriangleMarker::new(p, 5, color.filled())),
                    )
                    .map_err(e)?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_registers() {
        register_font().unwrap();
        register_font().unwrap();
    }

    #[test]
    fn log_labels() {
        assert_eq!(sparse_log_labels(10.0, 50.0), None);
        assert_eq!(sparse_log_labels(60.0, 5000.0), Some(&[1u32, 2, 5][..]));
        assert_eq!(sparse_log_labels(1e-4, 10.0), Some(&[1u32][..]));
        assert!(keep_label(1000.0, Some(&[1])) && keep_label(0.001, Some(&[1])));
        assert!(!keep_label(800.0, Some(&[1, 2, 5])) && keep_label(500.0, Some(&[1, 2, 5])));
        assert!(keep_label(700.0, None));
    }

    #[test]
    fn axis_bounds() {
        assert_eq!(bounds(std::iter::empty(), true, false), (1.0, 10.0));
        assert_eq!(bounds([4.0].into_iter(), true, false), (2.0, 8.0));
        let (lo, hi) = bounds([10.0, 1000.0].into_iter(), true, false);
        assert!(lo < 10.0 && lo > 5.0 && hi > 1000.0 && hi < 2000.0);
        assert_eq!(bounds([3.0, 5.0].into_iter(), false, true).0, 0.0);
        assert_eq!(bounds([2.0].into_iter(), false, true), (0.0, 2.0 * 1.04));
    }
}
