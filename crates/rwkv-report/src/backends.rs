//! The report of a backend comparison (`rwkv-lab compare-backends`): `summary.md` with the
//! prefill times side by side, the speedups over the reference backend, decode latency,
//! the largest output differences and what was skipped; plots of prefill time and speedup
//! against T. Everything comes from `records.csv` and `meta.json`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use lab_records::{BackendRow, Measured, Meta, Status, StudyDir};

use crate::error::ReportError;
use crate::plots::{PlotLine, plot_lines_loglog};
use crate::render::RenderOutput;
use crate::summary::cell;

/// Renders `summary.md` and the plots of the comparison in `study`.
pub fn render_backends(study: &StudyDir, meta: Option<Meta>) -> Result<RenderOutput, ReportError> {
    let rows: Vec<BackendRow> = study.read_rows()?;
    let mut warnings = Vec::new();
    if meta.is_none() {
        warnings.push(format!(
            "{}: not found; the report is rendered from records.csv alone",
            study.meta_path().display()
        ));
    }
    let view = View::new(&rows);
    let mut plots = Vec::new();
    plots.extend(plot_lines_loglog(
        study.path(),
        "prefill_time",
        "Prefill time vs sequence length, per backend (log-log)",
        "sequence length T (tokens)",
        "median ms per forward",
        Some(&format!("reference (dashed): {}", view.reference)),
        &view.time_lines(),
    )?);
    plots.extend(plot_lines_loglog(
        study.path(),
        "prefill_speedup",
        "Prefill speedup over the reference backend (log-log)",
        "sequence length T (tokens)",
        &format!("time on {} / time on the backend", view.reference),
        Some("same formulation, same weights and tokens, one run"),
        &view.speedup_lines(),
    )?);
    let summary = study.file("summary.md");
    let text = summary_text(&rows, meta.as_ref(), &view);
    std::fs::write(&summary, text).map_err(|e| ReportError::Io {
        path: summary.clone(),
        reason: e.to_string(),
    })?;
    Ok(RenderOutput {
        summary,
        plots,
        n_records: rows.len(),
        has_meta: meta.is_some(),
        warnings,
        fits: Vec::new(),
        crossovers: Vec::new(),
    })
}

/// The rows arranged for tables and plots.
struct View<'a> {
    rows: &'a [BackendRow],
    /// Backend labels in the order they ran (the reference first).
    backends: Vec<String>,
    reference: String,
    /// Formulations in the order first seen.
    modes: Vec<String>,
    seq_lens: Vec<usize>,
}

impl<'a> View<'a> {
    fn new(rows: &'a [BackendRow]) -> Self {
        let mut backends: Vec<String> = Vec::new();
        let mut modes: Vec<String> = Vec::new();
        for r in rows {
            if !backends.contains(&r.label()) {
                backends.push(r.label());
            }
            if r.measured == Measured::Prefill && !modes.contains(&r.method) {
                modes.push(r.method.clone());
            }
        }
        let seq_lens: BTreeSet<usize> = rows
            .iter()
            .filter(|r| r.measured == Measured::Prefill)
            .map(|r| r.seq_len)
            .collect();
        let reference = rows
            .first()
            .map(|r| r.reference.clone())
            .unwrap_or_else(|| "unknown".into());
        View {
            rows,
            backends,
            reference,
            modes,
            seq_lens: seq_lens.into_iter().collect(),
        }
    }

    fn prefill(&self, backend: &str, mode: &str, t: usize) -> Option<&'a BackendRow> {
        self.rows.iter().find(|r| {
            r.measured == Measured::Prefill
                && r.label() == backend
                && r.method == mode
                && r.seq_len == t
        })
    }

    fn median(&self, backend: &str, mode: &str, t: usize) -> Option<f64> {
        self.prefill(backend, mode, t).and_then(|r| r.median_s)
    }

    fn time_lines(&self) -> Vec<PlotLine> {
        let mut out = Vec::new();
        for b in &self.backends {
            for m in &self.modes {
                let points: Vec<(f64, f64)> = self
                    .seq_lens
                    .iter()
                    .filter_map(|&t| self.median(b, m, t).map(|s| (t as f64, s * 1e3)))
                    .collect();
                out.push(PlotLine {
                    label: format!("{b} {m}"),
                    points,
                    baseline: *b == self.reference,
                });
            }
        }
        out
    }

    fn speedup_lines(&self) -> Vec<PlotLine> {
        let mut out = Vec::new();
        for b in self.backends.iter().filter(|b| **b != self.reference) {
            for m in &self.modes {
                let points: Vec<(f64, f64)> = self
                    .seq_lens
                    .iter()
                    .filter_map(|&t| {
                        let (r, s) = (self.median(&self.reference, m, t)?, self.median(b, m, t)?);
                        Some((t as f64, r / s))
                    })
                    .collect();
                out.push(PlotLine {
                    label: format!("{b} {m}"),
                    points,
                    baseline: false,
                });
            }
        }
        out
    }
}

fn ms(s: f64) -> String {
    let ms = s * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

fn sci(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_nan() => "**NaN**".into(),
        Some(v) => format!("{v:.2e}"),
        None => "—".into(),
    }
}

fn status_cell(r: &BackendRow) -> String {
    match r.status {
        Status::Ok => r.median_s.map(ms).unwrap_or_else(|| "—".into()),
        Status::Skipped => "skipped".into(),
        _ => "**error**".into(),
    }
}

fn shape(r: &BackendRow) -> String {
    format!(
        "vocabulary {}, d_model {}, {} layers ({:.1}M parameters)",
        r.vocab,
        r.d_model,
        r.n_layers,
        r.params as f64 / 1e6
    )
}

/// What a row measured, in words.
fn place(r: &BackendRow) -> String {
    match r.measured {
        Measured::Prefill => format!("prefill T={} {}", r.seq_len, r.method),
        Measured::Decode => format!("decode {}", r.method),
        Measured::Matmul => format!("matmul {}", r.method),
    }
}

/// The dense products: time, GFLOP/s and the difference from the reference per backend.
fn matmul_section(md: &mut String, rows: &[BackendRow], v: &View<'_>) {
    let products: Vec<&BackendRow> = rows
        .iter()
        .filter(|r| r.measured == Measured::Matmul)
        .collect();
    if products.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Matrix products\n");
    let _ = writeln!(
        md,
        "One dense product `[m, k] × [k, n]` of seeded operands in [−1, 1) (the same f32 values \
         everywhere), compared whole with {}. f32 arithmetic stays within about 1e-6 of float64 (relative to \
         the largest entry) at these sizes; TF32 tensor cores, which round every operand to a \
         10-bit mantissa, land near 1e-3: these rows tell which kind a backend's products are.\n",
        v.reference
    );
    let _ = writeln!(
        md,
        "| m × k × n | backend | ms | GFLOP/s | max \\|Δ\\| | relative |\n|---|---|---:|---:|---:|---:|"
    );
    for r in products {
        let (time, rate) = match r.median_s {
            Some(s) => (
                ms(s),
                format!(
                    "{:.1}",
                    2.0 * r.seq_len as f64 * r.d_model as f64 * r.vocab as f64 / s / 1e9
                ),
            ),
            None => (status_cell(r), String::new()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {time} | {rate} | {} | {} |",
            r.method.replace('x', " × "),
            r.label(),
            sci(r.max_abs_diff),
            sci(r.max_rel_diff)
        );
    }
    let _ = writeln!(md);
}

fn summary_text(rows: &[BackendRow], meta: Option<&Meta>, v: &View<'_>) -> String {
    let mut md = String::new();
    let study = rows.first().map(|r| r.study.as_str()).unwrap_or("backends");
    let unknown = "unknown".to_string();
    let mut lines = vec![format!(
        "- backends, in the order run: {}",
        v.backends.join(", ")
    )];
    if let Some(device) = meta.map(|m| &m.device).filter(|d| !d.is_empty()) {
        lines.push(format!("- devices: {device}"));
    }
    crate::summary::study_head(
        &mut md,
        &format!("Backend comparison `{study}`"),
        meta,
        &lines,
    );
    let _ = writeln!(
        md,
        "- versions: {}",
        meta.map(|m| m.versions.join(", "))
            .unwrap_or(unknown.clone())
    );
    let _ = writeln!(
        md,
        "\nEvery backend ran the same model (the same seeded random weights, rounded to f32, so \
         f64 runs compute the same function) on the same tokens. Times are medians after \
         warm-up, each run ending with a device sync; ratios compare rows of this one run. \
         **Output difference**: the largest `|y − y_ref|` over the compared logits (prefill: \
         the last position's; decode: the last step's), against the reference backend \
         **{}** (the first one run); *relative* divides it by the largest `|y_ref|`.\n",
        v.reference
    );

    matmul_section(&mut md, rows, v);

    // prefill
    if let Some(first) = rows.iter().find(|r| r.measured == Measured::Prefill) {
        let _ = writeln!(md, "## Prefill\n");
        let _ = writeln!(
            md,
            "One whole-sequence forward (GPT mode, one sequence, logits at every position) of a \
             model of {}: median ms per forward; *×* columns are the speedup over {} \
             (its time / the backend's).\n",
            shape(first),
            v.reference
        );
        let others: Vec<&String> = v.backends.iter().filter(|b| **b != v.reference).collect();
        let mut head = String::from("| T | formulation |");
        let mut rule = String::from("|---:|---|");
        for b in &v.backends {
            let _ = write!(head, " {b} ms |");
            rule.push_str("---:|");
        }
        for b in &others {
            let _ = write!(head, " {b} × |");
            rule.push_str("---:|");
        }
        let _ = writeln!(md, "{head}\n{rule}");
        for &t in &v.seq_lens {
            for mode in &v.modes {
                let mut line = format!("| {t} | {mode} |");
                for b in &v.backends {
                    let c = v
                        .prefill(b, mode, t)
                        .map(status_cell)
                        .unwrap_or_else(|| "—".into());
                    let _ = write!(line, " {c} |");
                }
                for b in &others {
                    let c = match (v.median(&v.reference, mode, t), v.median(b, mode, t)) {
                        (Some(r), Some(s)) => format!("{:.2}×", r / s),
                        _ => "—".into(),
                    };
                    let _ = write!(line, " {c} |");
                }
                let _ = writeln!(md, "{line}");
            }
        }
        let _ = writeln!(md);
        // the best formulation per backend at the largest T each ran
        let _ = writeln!(
            md,
            "Fastest formulation per backend at each T (tokens/s):\n"
        );
        let mut head = String::from("| T |");
        let mut rule = String::from("|---:|");
        for b in &v.backends {
            let _ = write!(head, " {b} |");
            rule.push_str("---|");
        }
        let _ = writeln!(md, "{head}\n{rule}");
        for &t in &v.seq_lens {
            let mut line = format!("| {t} |");
            for b in &v.backends {
                let best = v
                    .modes
                    .iter()
                    .filter_map(|mode| v.median(b, mode, t).map(|s| (mode, s)))
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                let c = best
                    .map(|(mode, s)| format!("{:.0} ({mode})", t as f64 / s))
                    .unwrap_or_else(|| "—".into());
                let _ = write!(line, " {c} |");
            }
            let _ = writeln!(md, "{line}");
        }
        let _ = writeln!(md);
    }

    // decode
    let decode: Vec<&BackendRow> = rows
        .iter()
        .filter(|r| r.measured == Measured::Decode)
        .collect();
    if let Some(first) = decode.first() {
        let _ = writeln!(md, "## Decode\n");
        let _ = writeln!(
            md,
            "RNN-mode steps of a model of {}, one sequence: each step timed from the token id to \
             its logits on the host; median of {} timed steps after warm-up. `model`: the \
             model's own step on the backend (the WKV recurrence); `model-scan`: the same step \
             with the WKV operator as the fused scan (one kernel per layer on a GPU); \
             `cpu-decoder`: the CPU decoder (f32 CPU backends).\n",
            shape(first),
            first.repeats
        );
        let reference_ms = decode
            .iter()
            .find(|r| r.label() == v.reference && r.method == "model")
            .and_then(|r| r.median_s);
        let _ = writeln!(
            md,
            "| backend | engine | ms/token | [min, max] | tokens/s | × vs {} model | max \\|Δ\\| | relative |\n|---|---|---:|---:|---:|---:|---:|---:|",
            v.reference
        );
        for r in &decode {
            let (time, range, rate, speed) = match (r.median_s, r.min_s, r.max_s) {
                (Some(s), Some(lo), Some(hi)) => (
                    ms(s),
                    format!("[{}, {}]", ms(lo), ms(hi)),
                    format!("{:.1}", 1.0 / s),
                    reference_ms
                        .map(|r| format!("{:.2}×", r / s))
                        .unwrap_or_else(|| "—".into()),
                ),
                _ => (status_cell(r), String::new(), String::new(), String::new()),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {time} | {range} | {rate} | {speed} | {} | {} |",
                r.label(),
                r.method,
                sci(r.max_abs_diff),
                sci(r.max_rel_diff)
            );
        }
        let _ = writeln!(md);
    }

    // output differences: the largest per backend (products apart: they measure the
    // arithmetic of one operation, the model rows what a user gets)
    let _ = writeln!(md, "## Output differences from {}\n", v.reference);
    let compared: Vec<&BackendRow> = rows
        .iter()
        .filter(|r| r.max_abs_diff.is_some() && r.measured != Measured::Matmul)
        .collect();
    if compared.is_empty() {
        let _ = writeln!(
            md,
            "No output was compared (a single backend, or the reference ran nothing the others did).\n"
        );
    } else {
        let _ = writeln!(
            md,
            "Model outputs (the products have their own section above):\n\n| backend | largest \\|Δ\\| | relative | where | compared rows |\n|---|---:|---:|---|---:|"
        );
        for b in v.backends.iter().filter(|b| **b != v.reference) {
            let of_b: Vec<&&BackendRow> = compared.iter().filter(|r| r.label() == *b).collect();
            let worst = of_b.iter().max_by(|a, c| {
                let (x, y) = (a.max_abs_diff.unwrap_or(0.0), c.max_abs_diff.unwrap_or(0.0));
                // NaN is the worst of all
                x.is_nan().cmp(&y.is_nan()).then(x.total_cmp(&y))
            });
            if let Some(w) = worst {
                let place = place(w);
                let _ = writeln!(
                    md,
                    "| {b} | {} | {} | {place} | {} |",
                    sci(w.max_abs_diff),
                    sci(w.max_rel_diff),
                    of_b.len()
                );
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "Per prefill (max \\|Δ\\| of the last position's logits):\n"
        );
        let _ = writeln!(
            md,
            "| backend | T | formulation | compared with | max \\|Δ\\| | relative |\n|---|---:|---|---|---:|---:|"
        );
        for r in compared.iter().filter(|r| r.measured == Measured::Prefill) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                r.label(),
                r.seq_len,
                r.method,
                cell(&r.reference),
                sci(r.max_abs_diff),
                sci(r.max_rel_diff)
            );
        }
        let _ = writeln!(md);
    }

    // skipped and failed
    let not_run: Vec<&BackendRow> = rows.iter().filter(|r| r.status != Status::Ok).collect();
    if !not_run.is_empty() {
        let _ = writeln!(md, "## Skipped and failed\n");
        let _ = writeln!(
            md,
            "| backend | measurement | status | why |\n|---|---|---|---|"
        );
        for r in not_run {
            let what = place(r);
            let _ = writeln!(
                md,
                "| {} | {what} | {} | {} |",
                r.label(),
                r.status,
                cell(&r.note)
            );
        }
        let _ = writeln!(md);
    }
    let notes: Vec<&BackendRow> = rows
        .iter()
        .filter(|r| r.status == Status::Ok && !r.note.is_empty())
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "Notes:\n");
        for r in notes {
            let _ = writeln!(
                md,
                "- {} {} T={}: {}",
                r.label(),
                r.method,
                r.seq_len,
                r.note
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Plots\n");
    let _ = writeln!(
        md,
        "- `prefill_time.svg` (and `.png`): median time per forward against T, one line per backend and formulation (the reference dashed)."
    );
    let _ = writeln!(
        md,
        "- `prefill_speedup.svg` (and `.png`): the reference's time over each backend's, same formulation and T."
    );
    if let Some(spec) = meta.map(|m| m.spec.as_str()).filter(|s| !s.is_empty()) {
        let _ = writeln!(md, "\n## Spec\n\n```yaml\n{}```", spec);
    }
    md
}
