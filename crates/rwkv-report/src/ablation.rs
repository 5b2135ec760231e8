//! The ablation study's report, from its records alone: final metric per variant (and
//! setting) as mean ± std over seeds, the paired difference from `full` over the same
//! seeds with a 95% Student-t confidence interval, throughput, diverged / failed /
//! missing runs; learning curves and, for a width sweep, the metric versus d_model.
//! Shards of one study (folders written with `--shard K/N`) merge into one study
//! ([`merge`]), which lists the grid runs none of them recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lab_records::{AblationRow, GridRun, Meta, RunKey, RunState, Status, StudyDir, run_state};
use serde::Deserialize;

use crate::error::ReportError;
use crate::plots::{PlotLine, plot_lines};
use crate::render::RenderOutput;

/// What the runner keeps of its plan in `meta.json`'s `spec` (YAML): the shard it ran and
/// the whole grid (every shard's runs), so a report knows which runs are missing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PlanView {
    /// `K/N` of the shard, absent for a whole study.
    #[serde(default)]
    pub shard: Option<String>,
    /// Every run of the study.
    #[serde(default)]
    pub grid: Vec<GridRun>,
}

impl PlanView {
    /// The plan in a `meta.json` (empty when absent or not readable).
    pub fn of(meta: Option<&Meta>) -> PlanView {
        meta.and_then(|m| serde_yaml::from_str(&m.spec).ok())
            .unwrap_or_default()
    }
}

/// Mean and sample standard deviation (n − 1; 0 for one value).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The 97.5% quantile of Student's t with `dof` degrees of freedom (two-sided 95%):
/// tabulated to 3 decimals for 1..=30, the Cornish-Fisher expansion beyond (error below
/// 1e-3 there).
pub fn t975(dof: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match dof {
        0 => f64::NAN,
        1..=30 => TABLE[dof - 1],
        _ => {
            let (z, n) = (1.959_963_985_f64, dof as f64);
            z + (z.powi(3) + z) / (4.0 * n)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

/// A paired difference `variant − full` over the seeds both finished.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Seeds in the pair.
    pub n: usize,
    /// Mean difference.
    pub mean: f64,
    /// Half-width of the 95% confidence interval (Student t, n − 1 dof); None for n < 2.
    pub half_width: Option<f64>,
}

/// The paired difference of `pairs` `(variant, full)` values.
pub fn paired(pairs: &[(f64, f64)]) -> Option<Paired> {
    if pairs.is_empty() {
        return None;
    }
    let d: Vec<f64> = pairs.iter().map(|(a, b)| a - b).collect();
    let (mean, sd) = mean_std(&d);
    let n = d.len();
    let half_width = (n >= 2).then(|| t975(n - 1) * sd / (n as f64).sqrt());
    Some(Paired {
        n,
        mean,
        half_width,
    })
}

/// The final point of every finished run, and the state of every run of the grid (or of
/// the records, without a grid).
struct Runs {
    /// Final metric by run.
    finals: BTreeMap<RunKey, f64>,
    /// Mean training tokens/s by run.
    speed: BTreeMap<RunKey, f64>,
    /// Runs not finished: key, state, note.
    open: Vec<(RunKey, RunState, String)>,
    /// Runs planned.
    planned: usize,
}

fn runs(rows: &[AblationRow], plan: &PlanView) -> Runs {
    let mut by_run: BTreeMap<RunKey, Vec<&AblationRow>> = BTreeMap::new();
    for r in rows {
        by_run.entry(r.run_key()).or_default().push(r);
    }
    // without a grid (no meta.json), a run's planned length is the longest of its setting
    let grid: Vec<GridRun> = if plan.grid.is_empty() {
        let mut longest: BTreeMap<(String, String), u64> = BTreeMap::new();
        for r in rows {
            let e = longest
                .entry((r.task.clone(), r.setting.clone()))
                .or_default();
            *e = (*e).max(r.step);
        }
        by_run
            .keys()
            .enumerate()
            .map(|(index, k)| GridRun {
                index,
                id: String::new(),
                key: k.clone(),
                steps: longest[&(k.task.clone(), k.setting.clone())],
            })
            .collect()
    } else {
        plan.grid.clone()
    };
    let owned: Vec<AblationRow> = rows.to_vec();
    let mut out = Runs {
        finals: BTreeMap::new(),
        speed: BTreeMap::new(),
        open: Vec::new(),
        planned: grid.len(),
    };
    for g in &grid {
        let state = run_state(g, &owned);
        let mine = by_run.get(&g.key).cloned().unwrap_or_default();
        let speeds: Vec<f64> = mine
            .iter()
            .filter(|r| r.status == Status::Ok)
            .filter_map(|r| r.tokens_per_s)
            .collect();
        if !speeds.is_empty() {
            out.speed.insert(g.key.clone(), mean_std(&speeds).0);
        }
        match state {
            RunState::Finished => {
                let last = mine
                    .iter()
                    .filter(|r| r.status == Status::Ok)
                    .max_by_key(|r| r.step);
                if let Some(m) = last.and_then(|r| r.val_metric) {
                    out.finals.insert(g.key.clone(), m);
                }
            }
            other => {
                let note = mine
                    .iter()
                    .filter(|r| r.status != Status::Ok)
                    .map(|r| r.note.clone())
                    .next_back()
                    .unwrap_or_default();
                out.open.push((g.key.clone(), other, note));
            }
        }
    }
    out
}

fn describe_state(s: RunState) -> String {
    match s {
        RunState::Missing => "missing (not run)".into(),
        RunState::Unfinished { step } => format!("unfinished (last evaluation at step {step})"),
        RunState::Diverged => "diverged".into(),
        RunState::Failed => "failed".into(),
        RunState::Finished => "finished".into(),
    }
}

/// Renders `summary.md` and the plots of the ablation study in `study`.
pub fn render_ablation(study: &StudyDir, meta: Option<Meta>) -> Result<RenderOutput, ReportError> {
    let rows: Vec<AblationRow> = study.read_rows()?;
    let plan = PlanView::of(meta.as_ref());
    let runs = runs(&rows, &plan);
    let mut warnings = Vec::new();
    if meta.is_none() {
        warnings.push(format!(
            "{}: not found; the report is rendered from records.csv alone (no grid: missing \
             runs cannot be listed)",
            study.meta_path().display()
        ));
    }
    for (k, s, _) in &runs.open {
        warnings.push(format!("run {}: {}", k.describe(), describe_state(*s)));
    }
    let plots = plot_ablation(study.path(), &rows, &runs)?;
    let summary = study.file("summary.md");
    let text = summary_text(&rows, meta.as_ref(), &plan, &runs, &plots, study.path());
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

/// The first row's value of `f`, or `unknown`.
fn first<'a>(rows: &'a [AblationRow], f: impl Fn(&'a AblationRow) -> &'a str) -> &'a str {
    rows.first().map(f).unwrap_or("unknown")
}

fn fmt_metric(v: f64) -> String {
    format!("{v:.4}")
}

fn summary_text(
    rows: &[AblationRow],
    meta: Option<&Meta>,
    plan: &PlanView,
    runs: &Runs,
    plots: &[PathBuf],
    dir: &Path,
) -> String {
    let mut md = String::new();
    let study = first(rows, |r| r.study.as_str());
    let metric = first(rows, |r| r.metric_name.as_str());
    let better = if metric == "bits_per_char" {
        "lower is better"
    } else {
        "higher is better"
    };
    let unknown = "unknown".to_string();
    let m = |f: fn(&Meta) -> &String| meta.map(f).unwrap_or(&unknown).clone();
    crate::summary::study_head(
        &mut md,
        &format!("Ablation study `{study}`"),
        meta,
        &[format!(
            "- backend: {} ({})",
            m(|m| &m.backend),
            m(|m| &m.device)
        )],
    );
    if let Some(s) = &plan.shard {
        let _ = writeln!(md, "- shard {s} of the grid (`--shard K/N`, K from 0)");
    }
    let _ = writeln!(
        md,
        "- {} records; {} planned runs, {} finished",
        rows.len(),
        runs.planned,
        runs.finals.len()
    );
    let _ = writeln!(md, "\nThe resolved spec is `meta.json`'s `spec`.\n");

    let _ = writeln!(md, "## Final {metric} ({better})\n");
    let _ = writeln!(
        md,
        "Per variant: the validation metric at the last step of each finished run, mean ± \
         sample standard deviation over seeds (n: seeds). Δ vs `full`: the paired difference \
         variant − full over the seeds both finished (same seeds, hence the same \
         initialisation seed and data order), mean and 95% confidence interval (Student t, \
         n − 1 degrees of freedom; none for n = 1). tokens/s: training throughput, mean \
         over evaluations and seeds.\n"
    );
    let settings: BTreeSet<(String, String)> = runs
        .finals
        .keys()
        .chain(runs.open.iter().map(|o| &o.0))
        .map(|k| (k.task.clone(), k.setting.clone()))
        .collect();
    // numbers in their numeric order: d_model=16 before d_model=128
    let mut settings: Vec<(String, String)> = settings.into_iter().collect();
    settings.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| natural_cmp(&a.1, &b.1)));
    // variants in the grid's order (full first), then any others
    let mut variants: Vec<String> = Vec::new();
    for g in &plan.grid {
        if !variants.contains(&g.key.variant) {
            variants.push(g.key.variant.clone());
        }
    }
    for r in rows {
        if !variants.contains(&r.variant) {
            variants.push(r.variant.clone());
        }
    }
    for (task, setting) in &settings {
        if !setting.is_empty() || settings.len() > 1 {
            let _ = writeln!(md, "### {task} {setting}\n");
        }
        let _ = writeln!(
            md,
            "| variant | n | {metric} mean ± std | Δ vs full (95% CI) | tokens/s |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        let of = |v: &str| -> BTreeMap<u64, f64> {
            runs.finals
                .iter()
                .filter(|(k, _)| k.task == *task && k.setting == *setting && k.variant == v)
                .map(|(k, x)| (k.seed, *x))
                .collect()
        };
        let full = of("full");
        for v in &variants {
            let mine = of(v);
            let speeds: Vec<f64> = runs
                .speed
                .iter()
                .filter(|(k, _)| k.task == *task && k.setting == *setting && k.variant == *v)
                .map(|(_, s)| *s)
                .collect();
            if mine.is_empty() && speeds.is_empty() {
                continue;
            }
            let values: Vec<f64> = mine.values().copied().collect();
            let stat = if values.is_empty() {
                "—".to_string()
            } else {
                let (mean, sd) = mean_std(&values);
                format!("{} ± {}", fmt_metric(mean), fmt_metric(sd))
            };
            let delta = if v == "full" {
                "(reference)".to_string()
            } else {
                let pairs: Vec<(f64, f64)> = mine
                    .iter()
                    .filter_map(|(s, x)| full.get(s).map(|f| (*x, *f)))
                    .collect();
                match paired(&pairs) {
                    None => "— (no common finished seed)".into(),
                    Some(p) => match p.half_width {
                        Some(h) => format!(
                            "{:+.4} [{:+.4}, {:+.4}] (n={})",
                            p.mean,
                            p.mean - h,
                            p.mean + h,
                            p.n
                        ),
                        None => format!("{:+.4} (n=1, no CI)", p.mean),
                    },
                }
            };
            let speed = if speeds.is_empty() {
                "—".into()
            } else {
                format!("{:.0}", mean_std(&speeds).0)
            };
            let _ = writeln!(
                md,
                "| {v} | {} | {stat} | {delta} | {speed} |",
                values.len()
            );
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Runs not finished\n");
    if runs.open.is_empty() {
        let _ = writeln!(md, "None: every planned run finished.\n");
    } else {
        let _ = writeln!(md, "| run | state | note |");
        let _ = writeln!(md, "|---|---|---|");
        for (k, s, note) in &runs.open {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                k.describe(),
                describe_state(*s),
                note.replace('|', "\\|").replace('\n', " ")
            );
        }
        let _ = writeln!(
            md,
            "\nMissing and unfinished runs (and failed ones) run on `rwkv-lab ablate --resume` \
             with the same spec and `--out`; diverged runs stay diverged.\n"
        );
    }
    let _ = writeln!(md, "## Plots\n");
    for p in plots
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
    {
        let name = p.strip_prefix(dir).unwrap_or(p).display().to_string();
        let _ = writeln!(md, "- ![{name}]({name})");
    }
    md
}

/// Orders settings (`key=value` pairs joined by commas) pair by pair: keys as text, values
/// as numbers when both parse (`d_model=16` < `d_model=128`, `lr=0.05` < `lr=0.1`), as text
/// otherwise.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<(String, String)> {
        s.split(',')
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect()
    };
    let (pa, pb) = (parts(a), parts(b));
    for ((ka, va), (kb, vb)) in pa.iter().zip(&pb) {
        let o = ka
            .cmp(kb)
            .then_with(|| match (va.parse::<f64>(), vb.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => va.cmp(vb),
            });
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len()).then_with(|| a.cmp(b))
}

/// A file-name-safe form of a setting.
fn stem_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Learning curves (metric vs tokens, mean over seeds, per variant) per task and setting;
/// the metric versus d_model per variant when the settings sweep d_model.
fn plot_ablation(
    dir: &Path,
    rows: &[AblationRow],
    runs: &Runs,
) -> Result<Vec<PathBuf>, ReportError> {
    let metric = first(rows, |r| r.metric_name.as_str()).to_string();
    let mut groups: BTreeMap<(String, String), BTreeMap<String, BTreeMap<u64, Vec<f64>>>> =
        BTreeMap::new();
    for r in rows.iter().filter(|r| r.status == Status::Ok) {
        if let Some(m) = r.val_metric {
            groups
                .entry((r.task.clone(), r.setting.clone()))
                .or_default()
                .entry(r.variant.clone())
                .or_default()
                .entry(r.tokens_seen)
                .or_default()
                .push(m);
        }
    }
    let mut out = Vec::new();
    for ((task, setting), variants) in &groups {
        let lines: Vec<PlotLine> = variants
            .iter()
            .map(|(v, points)| PlotLine {
                label: v.clone(),
                points: points
                    .iter()
                    .map(|(t, ms)| (*t as f64, mean_std(ms).0))
                    .collect(),
                baseline: v == "transformer",
            })
            .collect();
        let stem = if setting.is_empty() {
            format!("curves_{task}")
        } else {
            format!("curves_{task}_{}", stem_part(setting))
        };
        let title = if setting.is_empty() {
            format!("{task}: validation {metric} during training")
        } else {
            format!("{task} ({setting}): validation {metric}")
        };
        out.extend(plot_lines(
            dir,
            &stem,
            &title,
            "training tokens seen",
            &format!("{metric} (mean over seeds)"),
            Some("each line: one variant, mean over its seeds at each evaluation"),
            &lines,
        )?);
    }
    // width sweep: final metric vs d_model, one line per variant (and the other settings)
    let width = |setting: &str| -> Option<(usize, String)> {
        let mut d = None;
        let mut rest = Vec::new();
        for part in setting.split(',') {
            match part.strip_prefix("d_model=") {
                Some(v) => d = v.parse().ok(),
                None if !part.is_empty() => rest.push(part),
                None => {}
            }
        }
        d.map(|d| (d, rest.join(",")))
    };
    let mut sweep: BTreeMap<(String, String, String), BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    for (k, v) in &runs.finals {
        if let Some((d, rest)) = width(&k.setting) {
            sweep
                .entry((k.task.clone(), rest, k.variant.clone()))
                .or_default()
                .entry(d)
                .or_default()
                .push(*v);
        }
    }
    if !sweep.is_empty() {
        let tasks: BTreeSet<String> = sweep.keys().map(|k| k.0.clone()).collect();
        for task in tasks {
            let lines: Vec<PlotLine> = sweep
                .iter()
                .filter(|(k, _)| k.0 == task)
                .map(|((_, rest, v), pts)| PlotLine {
                    label: if rest.is_empty() {
                        v.clone()
                    } else {
                        format!("{v} {rest}")
                    },
                    points: pts
                        .iter()
                        .map(|(d, xs)| (*d as f64, mean_std(xs).0))
                        .collect(),
                    baseline: v == "transformer",
                })
                .collect();
            out.extend(plot_lines(
                dir,
                &format!("{task}_{}_vs_d_model", stem_part(&metric)),
                &format!("{task}: final {metric} vs model width"),
                "d_model",
                &format!("final {metric} (mean over seeds)"),
                Some("each line: one architecture (variant); finished runs only"),
                &lines,
            )?);
        }
    }
    Ok(out)
}

/// The study folders among `dirs`: each that is a study, and the study folders one level
/// inside each that is not (a folder of shard folders).
pub fn find_studies(dirs: &[PathBuf]) -> Result<Vec<StudyDir>, ReportError> {
    let mut out = Vec::new();
    for d in dirs {
        if let Ok(s) = StudyDir::open(d) {
            out.push(s);
            continue;
        }
        let entries = std::fs::read_dir(d).map_err(|e| ReportError::Io {
            path: d.clone(),
            reason: e.to_string(),
        })?;
        let mut inner: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        inner.sort();
        let found: Vec<StudyDir> = inner
            .iter()
            .filter_map(|p| StudyDir::open(p).ok())
            .filter(|s| s.records_path().is_file())
            .collect();
        if found.is_empty() {
            // the folder's own error says why it is not a study
            StudyDir::open(d)?;
        }
        out.extend(found);
    }
    Ok(out)
}

/// Merges the records of `sources` (shards of one ablation study) into the study folder
/// `out`: rows not yet there are appended (so a merge can be repeated as shards finish),
/// `meta.json` is the first source's with `shard` removed and the command replaced by
/// `command`; then the merged study is rendered.
pub fn merge(
    sources: &[StudyDir],
    out: &StudyDir,
    command: &str,
) -> Result<RenderOutput, ReportError> {
    let mut rows: Vec<AblationRow> = Vec::new();
    let mut metas = Vec::new();
    for s in sources {
        if s.path() == out.path() {
            continue;
        }
        let meta = s.read_meta()?;
        if let Some(m) = &meta
            && m.kind != lab_records::StudyKind::Ablation
        {
            return Err(ReportError::UnsupportedKind {
                path: s.path().to_path_buf(),
                kind: m.kind,
            });
        }
        rows.extend(s.read_rows::<AblationRow>()?);
        metas.extend(meta);
    }
    let mut meta = metas.first().cloned().unwrap_or_default();
    // the grid: the union over the sources (shards of one study share it)
    let mut spec: serde_yaml::Value =
        serde_yaml::from_str(&meta.spec).unwrap_or(serde_yaml::Value::Null);
    if let serde_yaml::Value::Mapping(map) = &mut spec {
        map.remove("shard");
    }
    meta.spec = serde_yaml::to_string(&spec).unwrap_or_default();
    meta.command = command.to_string();
    let grids: BTreeSet<String> = metas
        .iter()
        .map(|m| {
            let mut v: serde_yaml::Value =
                serde_yaml::from_str(&m.spec).unwrap_or(serde_yaml::Value::Null);
            if let serde_yaml::Value::Mapping(map) = &mut v {
                map.remove("shard");
            }
            serde_yaml::to_string(&v).unwrap_or_default()
        })
        .collect();
    let mut run = out.start::<AblationRow>(meta, true, &lab_records::text_differences)?;
    let mut warnings = std::mem::take(&mut run.warnings);
    if grids.len() > 1 {
        warnings.push(format!(
            "the {} folders merged hold {} different specs: they are not shards of one study; \
             the first one's grid is used",
            sources.len(),
            grids.len()
        ));
    }
    let mut seen = run.done.clone();
    for r in &rows {
        if seen.insert(lab_records::Row::key(r)) {
            run.write(r)?;
        }
    }
    let mut merged = run.finish()?;
    // the study's own times, not the merge's: the earliest shard's start and, when every
    // shard finished, the last one's end
    if let Some(start) = metas
        .iter()
        .map(|m| &m.started)
        .filter(|s| !s.is_empty())
        .min()
    {
        merged.started = start.clone();
    }
    merged.finished = if metas.iter().all(|m| !m.finished.is_empty()) {
        metas
            .iter()
            .map(|m| m.finished.clone())
            .max()
            .unwrap_or_default()
    } else {
        String::new()
    };
    out.write_meta(&merged)?;
    let mut output = render_ablation(out, out.read_meta()?)?;
    warnings.append(&mut output.warnings);
    output.warnings = warnings;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_sort_with_numbers_in_numeric_order() {
        let mut v = vec![
            "d_model=128",
            "d_model=16",
            "d_model=64,lr=0.1",
            "d_model=64,lr=0.05",
            "",
            "d_model=32",
            "seq_len_kv_pairs=x",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "",
                "d_model=16",
                "d_model=32",
                "d_model=64,lr=0.05",
                "d_model=64,lr=0.1",
                "d_model=128",
                "seq_len_kv_pairs=x"
            ]
        );
    }

    #[test]
    fn paired_difference_on_known_numbers() {
        // differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.303, half-width 4.303/sqrt(3)
        let p = paired(&[(2.0, 1.0), (4.0, 2.0), (6.0, 3.0)]).unwrap();
        assert_eq!(p.n, 3);
        assert!((p.mean - 2.0).abs() < 1e-12);
        assert!((p.half_width.unwrap() - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(paired(&[(1.0, 0.5)]).unwrap().half_width, None);
        assert!(paired(&[]).is_none());
        assert_eq!(mean_std(&[1.0, 2.0, 3.0, 4.0]).1, (5.0f64 / 3.0).sqrt());
        // the expansion meets the table's end and tends to the normal quantile
        assert!((t975(31) - 2.040).abs() < 2e-3 && (t975(1000) - 1.962).abs() < 1e-3);
    }
}
