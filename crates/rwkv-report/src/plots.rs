//! Plots with plotters, each as PNG and SVG. PNG text is rasterised with ab_glyph from the
//! bundled DejaVu Sans (no system fonts, no fontconfig); SVG text names `sans-serif`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::DrawingErrorKind;

use crate::claims::FitRow;
use crate::error::ReportError;
use crate::series::{Quantity, Series};
use lab_util::fmt_count;

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
struct PlotSpec<'a> {
    title: &'a str,
    x_desc: &'a str,
    /// What y is, without its unit (the unit is chosen from the data: [`axis_unit`]).
    y_desc: &'a str,
    log: bool,
    bytes: bool,
    empty: &'a str,
}

fn spec(quantity: Quantity) -> PlotSpec<'static> {
    match quantity {
        Quantity::PrefillTime => PlotSpec {
            title: "Prefill time vs sequence length (log-log)",
            x_desc: "sequence length T (tokens)",
            y_desc: "median time per forward",
            log: true,
            bytes: false,
            empty: "no prefill timings",
        },
        Quantity::PrefillMemory => PlotSpec {
            title: "Prefill peak memory vs sequence length (log-log)",
            x_desc: "sequence length T (tokens)",
            y_desc: "peak memory",
            log: true,
            bytes: true,
            empty: "no prefill memory measurements",
        },
        Quantity::GenerationLatency => PlotSpec {
            title: "Per-token generation latency",
            x_desc: "position of the new token (tokens generated)",
            y_desc: "median latency of that token",
            log: false,
            bytes: false,
            empty: "no generation timings",
        },
        Quantity::GenerationCumulative => PlotSpec {
            title: "Cumulative generation time",
            x_desc: "tokens generated",
            y_desc: "cumulative time",
            log: false,
            bytes: false,
            empty: "no generation timings",
        },
        Quantity::StateBytes => PlotSpec {
            title: "State / KV-cache size vs context",
            x_desc: "tokens in context",
            y_desc: "state / KV cache",
            log: true,
            bytes: true,
            empty: "no state sizes",
        },
    }
}

/// A unit of an axis: its symbol and its size in seconds or bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    /// `ms`, `MiB`, ...
    pub symbol: &'static str,
    /// Seconds or bytes per unit.
    pub size: f64,
}

const TIME_UNITS: [Unit; 4] = [
    Unit {
        symbol: "s",
        size: 1.0,
    },
    Unit {
        symbol: "ms",
        size: 1e-3,
    },
    Unit {
        symbol: "µs",
        size: 1e-6,
    },
    Unit {
        symbol: "ns",
        size: 1e-9,
    },
];

const BYTE_UNITS: [Unit; 5] = [
    Unit {
        symbol: "TiB",
        size: 1_099_511_627_776.0,
    },
    Unit {
        symbol: "GiB",
        size: 1_073_741_824.0,
    },
    Unit {
        symbol: "MiB",
        size: 1_048_576.0,
    },
    Unit {
        symbol: "KiB",
        size: 1024.0,
    },
    Unit {
        symbol: "bytes",
        size: 1.0,
    },
];

/// The one unit of a y axis showing `values` (seconds or bytes): the largest unit not
/// above the typical value (the geometric middle of the range on a log axis, the top on a
/// linear one), so tick labels are plain numbers mostly ≥ 1 and the axis title states the
/// unit once.
pub fn axis_unit(values: &[f64], bytes: bool, log: bool) -> Unit {
    let units: &[Unit] = if bytes { &BYTE_UNITS } else { &TIME_UNITS };
    let positive = values.iter().copied().filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = positive.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let typical = if !lo.is_finite() {
        return if bytes { BYTE_UNITS[4] } else { TIME_UNITS[0] };
    } else if log {
        (lo * hi).sqrt()
    } else {
        hi
    };
    *units
        .iter()
        .find(|u| typical >= u.size)
        .unwrap_or(&units[units.len() - 1])
}

/// A tick label in the axis unit: whole numbers with thousands separators, others with
/// three significant digits and no trailing zeros (`0.125`, `2.5`).
pub fn fmt_tick(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v.abs() >= 1.0 && (v - v.round()).abs() < 1e-6 * v.abs() {
        let n = fmt_count(v.abs().round() as u64);
        return if v < 0.0 { format!("-{n}") } else { n };
    }
    if v == 0.0 {
        return "0".into();
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    let t = format!("{v:.decimals$}");
    if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
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
/// A plot without data is still written, with a "no data" note. `memory` says what the
/// memory figures count (the meter's description from `meta.json`); the memory plot
/// states it.
pub fn plot_all(
    dir: &Path,
    series: &[Series],
    fits: &[FitRow],
    memory: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut out = Vec::with_capacity(8);
    let memory_note = format!("measured: {memory}");
    for (stem, q) in PLOT_QUANTITIES {
        let s: Vec<&Series> = series.iter().filter(|s| s.quantity == q).collect();
        let note = (q == Quantity::PrefillMemory).then_some(memory_note.as_str());
        out.extend(plot(dir, stem, q, &s, fits, note)?);
    }
    Ok(out)
}

/// Whether two series have the same points (they would hide each other on a plot).
fn coincide(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    let same = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(p, q)| same(p.0, q.0) && same(p.1, q.1))
}

/// Writes one plot of `series` (all of one quantity) as `dir/stem.png` and `dir/stem.svg`,
/// with `note` (if any) under the title. Log-log plots label each series with its fitted
/// exponent from `fits`. Each series has its own marker and line pattern, and a series
/// with the same points as an earlier one says so in the legend (it is drawn on top).
pub fn plot(
    dir: &Path,
    stem: &str,
    quantity: Quantity,
    series: &[&Series],
    fits: &[FitRow],
    note: Option<&str>,
) -> Result<Vec<PathBuf>, ReportError> {
    register_font()?;
    let spec = spec(quantity);
    let kept = |s: &Series| -> Vec<(f64, f64)> {
        s.points
            .iter()
            .copied()
            .filter(|&(x, y)| !spec.log || (x > 0.0 && y > 0.0))
            .collect()
    };
    let shown: Vec<(&Series, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| (*s, kept(s)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let ys: Vec<f64> = shown
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .collect();
    let unit = axis_unit(&ys, spec.bytes, spec.log);
    let mut per_model: std::collections::HashMap<lab_records::Model, usize> =
        std::collections::HashMap::new();
    let mut lines: Vec<Line> = Vec::with_capacity(shown.len());
    for (s, points) in &shown {
        let i = {
            let n = per_model.entry(s.key.model).or_insert(0);
            *n += 1;
            *n - 1
        };
        let mut notes = Vec::new();
        if let Some(f) = fits
            .iter()
            .find(|f| f.quantity == s.quantity && f.key == s.key)
            .and_then(|f| f.fit)
            .filter(|_| spec.log)
        {
            notes.push(format!("k = {:.2}", f.slope));
        }
        if let Some((twin, _)) = shown[..lines.len()]
            .iter()
            .find(|(_, p)| coincide(p, points))
        {
            notes.push(format!("same values as {}", twin.label));
        }
        let label = if notes.is_empty() {
            s.label.clone()
        } else {
            format!("{}  ({})", s.label, notes.join("; "))
        };
        lines.push(Line {
            label,
            points: points.iter().map(|&(x, y)| (x, y / unit.size)).collect(),
            color: color(s, i),
            look: look(s.key.is_rwkv(), i),
        });
    }
    let y_desc = format!("{} ({})", spec.y_desc, unit.symbol);

    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |reason: String| ReportError::Plot { path, reason }
    };
    let text = Texts {
        y_desc: &y_desc,
        note,
    };
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, &spec, &text, &lines).map_err(fail(&png))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, &spec, &text, &lines).map_err(fail(&svg))?;
    }
    Ok(vec![png, svg])
}

/// One line of a [`plot_lines`] plot.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotLine {
    /// Legend label.
    pub label: String,
    /// (x, y) in the axis units, sorted by x.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed in the transformer colours (the baseline), else solid in RWKV colours.
    pub baseline: bool,
}

/// A plot of plain numbers on linear axes (the ablation study's learning curves and
/// sweeps), in the style of the scaling plots: titles, note, markers, line patterns and
/// legend; written as `dir/stem.png` and `dir/stem.svg`.
pub fn plot_lines(
    dir: &Path,
    stem: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    note: Option<&str>,
    lines: &[PlotLine],
) -> Result<Vec<PathBuf>, ReportError> {
    plot_lines_on(dir, stem, [title, x_desc, y_desc], note, lines, false)
}

/// [`plot_lines`] on log-log axes (base 2 on x); points at or below zero are left out.
pub fn plot_lines_loglog(
    dir: &Path,
    stem: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    note: Option<&str>,
    lines: &[PlotLine],
) -> Result<Vec<PathBuf>, ReportError> {
    let positive: Vec<PlotLine> = lines
        .iter()
        .map(|l| PlotLine {
            points: l
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| x > 0.0 && y > 0.0)
                .collect(),
            ..l.clone()
        })
        .collect();
    plot_lines_on(dir, stem, [title, x_desc, y_desc], note, &positive, true)
}

fn plot_lines_on(
    dir: &Path,
    stem: &str,
    [title, x_desc, y_desc]: [&str; 3],
    note: Option<&str>,
    lines: &[PlotLine],
    log: bool,
) -> Result<Vec<PathBuf>, ReportError> {
    register_font()?;
    let spec = PlotSpec {
        title,
        x_desc,
        y_desc,
        log,
        bytes: false,
        empty: "no data",
    };
    let (mut n_rwkv, mut n_base) = (0, 0);
    let drawn: Vec<Line> = lines
        .iter()
        .filter(|l| !l.points.is_empty())
        .map(|l| {
            let n = if l.baseline { &mut n_base } else { &mut n_rwkv };
            let i = *n;
            *n += 1;
            Line {
                label: l.label.clone(),
                points: l.points.clone(),
                color: if l.baseline {
                    TRANSFORMER_COLORS[i % TRANSFORMER_COLORS.len()]
                } else {
                    RWKV_COLORS[i % RWKV_COLORS.len()]
                },
                look: look(!l.baseline, i),
            }
        })
        .collect();
    let text = Texts { y_desc, note };
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |reason: String| ReportError::Plot { path, reason }
    };
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, &spec, &text, &drawn).map_err(fail(&png))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, &spec, &text, &drawn).map_err(fail(&svg))?;
    }
    Ok(vec![png, svg])
}

/// The texts of a plot that depend on its data.
struct Texts<'a> {
    /// The y axis title with its unit.
    y_desc: &'a str,
    /// A line under the title (what the figures measure).
    note: Option<&'a str>,
}

/// A point marker.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mark {
    Dot,
    Square,
    Diamond,
    Triangle,
    OpenSquare,
    OpenCircle,
    Cross,
}

/// How a series is drawn: line pattern and width, marker and its radius in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Look {
    /// (dash, gap) in pixels; None: solid.
    dash: Option<(u32, u32)>,
    width: u32,
    mark: Mark,
    size: i32,
}

/// RWKV series are solid with filled markers; transformer series dashed, each with another
/// pattern, the first with large open squares and the next with small filled triangles, so
/// that two series with the same values both stay visible (a triangle inside a square).
fn look(rwkv: bool, i: usize) -> Look {
    if rwkv {
        const MARKS: [(Mark, i32); 5] = [
            (Mark::Dot, 4),
            (Mark::Square, 4),
            (Mark::Diamond, 5),
            (Mark::Cross, 5),
            (Mark::OpenCircle, 6),
        ];
        let (mark, size) = MARKS[i % MARKS.len()];
        Look {
            dash: None,
            width: 3,
            mark,
            size,
        }
    } else {
        const LOOKS: [((u32, u32), Mark, i32); 4] = [
            ((10, 6), Mark::OpenSquare, 7),
            ((3, 4), Mark::Triangle, 5),
            ((16, 5), Mark::OpenCircle, 7),
            ((6, 3), Mark::Cross, 5),
        ];
        let (dash, mark, size) = LOOKS[i % LOOKS.len()];
        Look {
            dash: Some(dash),
            width: 2,
            mark,
            size,
        }
    }
}

/// What a [`Glyph`] draws.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GlyphKind {
    /// The series' marker at a data point.
    Marker,
    /// The legend entry: a 24-pixel stretch of the line pattern (the room plotters leaves
    /// before the label), with the marker when the plotted line has markers.
    Legend { marked: bool },
}

/// A series' marker or legend entry at one point (data coordinates for markers, pixels
/// for the legend); its shape is drawn in pixels.
struct Glyph<C> {
    at: C,
    look: Look,
    color: RGBColor,
    kind: GlyphKind,
}

impl<'a, C> PointCollection<'a, C> for &'a Glyph<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Glyph<C> {
    fn draw<I: Iterator<Item = (i32, i32)>>(
        &self,
        mut pos: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = pos.next() else {
            return Ok(());
        };
        match self.kind {
            GlyphKind::Marker => draw_mark(backend, (x, y), self.look, self.color),
            GlyphKind::Legend { marked } => {
                const LEN: i32 = 24;
                let style = self.color.stroke_width(self.look.width);
                // a solid line is one dash as long as the stretch
                let (dash, gap) = self.look.dash.unwrap_or((LEN as u32, 0));
                let (dash, period) = (dash.min(10) as i32, (dash.min(10) + gap) as i32);
                let mut a = 0;
                while a < LEN {
                    let b = if gap == 0 { LEN } else { (a + dash).min(LEN) };
                    backend.draw_line((x + a, y), (x + b, y), &style)?;
                    a = if gap == 0 { LEN } else { a + period };
                }
                if marked {
                    draw_mark(backend, (x + LEN / 2, y), self.look, self.color)?;
                }
                Ok(())
            }
        }
    }
}

fn draw_mark<DB: DrawingBackend>(
    backend: &mut DB,
    (x, y): (i32, i32),
    look: Look,
    color: RGBColor,
) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
    let s = look.size;
    let (filled, open) = (color.filled(), color.stroke_width(2));
    match look.mark {
        Mark::Dot => backend.draw_circle((x, y), s as u32, &filled, true),
        Mark::OpenCircle => backend.draw_circle((x, y), s as u32, &open, false),
        Mark::Square => backend.draw_rect((x - s, y - s), (x + s, y + s), &filled, true),
        Mark::OpenSquare => backend.draw_rect((x - s, y - s), (x + s, y + s), &open, false),
        Mark::Triangle => {
            let h = (s as f64 * 0.87).round() as i32;
            backend.fill_polygon(
                [(x, y - s), (x - h, y + s / 2), (x + h, y + s / 2)],
                &filled,
            )
        }
        Mark::Diamond => {
            backend.fill_polygon([(x, y - s), (x + s, y), (x, y + s), (x - s, y)], &filled)
        }
        Mark::Cross => {
            backend.draw_line((x - s, y - s), (x + s, y + s), &open)?;
            backend.draw_line((x - s, y + s), (x + s, y - s), &open)
        }
    }
}

const NOTE_GRAY: RGBColor = RGBColor(90, 90, 90);
const EMPTY_GRAY: RGBColor = RGBColor(120, 120, 120);

struct Line {
    label: String,
    /// In the axis units (y divided by the unit's size).
    points: Vec<(f64, f64)>,
    color: RGBColor,
    look: Look,
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
    spec: &PlotSpec<'_>,
    text: &Texts<'_>,
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
        draw_chart(root, spec, text, lines, x, y, None, sy)
    } else {
        let (x0, x1) = bounds(xs(), false, true);
        let (y0, y1) = bounds(ys(), false, true);
        draw_chart(
            root,
            spec,
            text,
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

#[allow(clippy::too_many_arguments)]
fn draw_chart<DB, X, Y>(
    root: &DrawingArea<DB, Shift>,
    spec: &PlotSpec<'_>,
    text: &Texts<'_>,
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
    // the title, and under it the note on what is measured
    let (header, body) = root.split_vertically(if text.note.is_some() { 84 } else { 56 });
    let (w, _) = header.dim_in_pixel();
    let centered = |size: u32, color: &'static RGBColor| {
        TextStyle::from((FAMILY, size).into_font())
            .color(color)
            .pos(Pos::new(HPos::Center, VPos::Center))
    };
    header
        .draw(&Text::new(
            spec.title,
            (w as i32 / 2, 32),
            centered(28, &BLACK),
        ))
        .map_err(e)?;
    if let Some(note) = text.note {
        header
            .draw(&Text::new(
                note,
                (w as i32 / 2, 68),
                centered(16, &NOTE_GRAY),
            ))
            .map_err(e)?;
    }
    let mut chart = ChartBuilder::on(&body)
        .margin(20)
        .margin_top(4)
        .x_label_area_size(60)
        .y_label_area_size(100)
        .build_cartesian_2d(x, y)
        .map_err(e)?;
    // x counts tokens: label whole numbers only; y is in the axis unit
    let x_fmt = |v: &f64| {
        if keep_label(*v, x_keep) && (v - v.round()).abs() < 1e-6 {
            fmt_count(v.round().max(0.0) as u64)
        } else {
            String::new()
        }
    };
    let y_fmt = move |v: &f64| {
        if keep_label(*v, y_keep) {
            fmt_tick(*v)
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc(spec.x_desc)
        .y_desc(text.y_desc)
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
        area.draw(&Text::new(
            spec.empty.to_string(),
            (w as i32 / 2, h as i32 / 2),
            centered(24, &EMPTY_GRAY),
        ))
        .map_err(e)?;
        root.present().map_err(e)?;
        return Ok(());
    }

    for line in lines {
        let (color, look) = (line.color, line.look);
        // markers on up to 64 points; more would hide the line
        let marked = line.points.len() <= 64;
        let style = color.stroke_width(look.width);
        let points = line.points.iter().copied();
        match look.dash {
            None => chart.draw_series(LineSeries::new(points, style)),
            Some((dash, gap)) => chart.draw_series(DashedLineSeries::new(points, dash, gap, style)),
        }
        .map_err(e)?
        .label(line.label.clone())
        .legend(move |at| Glyph {
            at,
            look,
            color,
            kind: GlyphKind::Legend { marked },
        });
        if marked {
            chart
                .draw_series(line.points.iter().map(|&at| Glyph {
                    at,
                    look,
                    color,
                    kind: GlyphKind::Marker,
                }))
                .map_err(e)?;
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
    fn one_unit_per_axis() {
        let mib = 1_048_576.0;
        // prefill memory from 8 MiB to 4 GiB: MiB, ticks 8 ... 4,096
        assert_eq!(
            axis_unit(&[8.0 * mib, 4096.0 * mib], true, true).symbol,
            "MiB"
        );
        assert_eq!(axis_unit(&[100.0, 2000.0], true, true).symbol, "bytes");
        // prefill time from 47 ms to 30 s (log): s; generation latency up to 43 ms: ms
        assert_eq!(axis_unit(&[0.047, 30.4], false, true).symbol, "s");
        assert_eq!(axis_unit(&[0.0, 0.012, 0.043], false, false).symbol, "ms");
        assert_eq!(axis_unit(&[2e-6, 9e-6], false, true).symbol, "µs");
        assert_eq!(axis_unit(&[], false, true).symbol, "s");
        for (v, text) in [
            (4096.0, "4,096"),
            (8.0, "8"),
            (0.5, "0.5"),
            (0.125, "0.125"),
            (2.5, "2.5"),
            (12.5, "12.5"),
            (0.0, "0"),
            (1e-3, "0.001"),
        ] {
            assert_eq!(fmt_tick(v), text);
        }
    }

    #[test]
    fn series_have_their_own_look_and_coinciding_ones_are_found() {
        let looks: Vec<Look> = (0..4)
            .map(|i| look(true, i))
            .chain((0..4).map(|i| look(false, i)))
            .collect();
        for (i, a) in looks.iter().enumerate() {
            for b in &looks[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let a = [(128.0, 1e6), (256.0, 2e6)];
        assert!(coincide(&a, &a.clone()));
        assert!(!coincide(&a, &a[..1]));
        assert!(!coincide(&a, &[(128.0, 1e6), (256.0, 2.1e6)]));
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
