//! Reading a study's folder and writing its report.

use std::path::{Path, PathBuf};

use lab_records::{Meta, ScalingRecord, StudyDir, StudyKind};
use serde::Serialize;

use crate::analysis::Analysis;
use crate::claims::FitRow;
use crate::crossover::Crossover;
use crate::error::ReportError;
use crate::plots::plot_all;
use crate::summary::{memory_description, render_summary};

/// What [`render`] wrote and found.
#[derive(Debug, Clone, Serialize)]
pub struct RenderOutput {
    /// `DIR/summary.md`.
    pub summary: PathBuf,
    /// The plots, PNG and SVG of each: `prefill_time`, `prefill_memory`,
    /// `generation_latency`, `generation_cumulative`.
    pub plots: Vec<PathBuf>,
    /// Records read.
    pub n_records: usize,
    /// Whether `meta.json` was there.
    pub has_meta: bool,
    /// What the caller should tell the user (a missing `meta.json`, ...); the library
    /// never prints.
    pub warnings: Vec<String>,
    /// One fit per series, with its claim and verdict (`Display` gives a terminal line).
    pub fits: Vec<FitRow>,
    /// RWKV's best prefill against each transformer prefill series.
    pub crossovers: Vec<Crossover>,
}

impl RenderOutput {
    /// Every file written: the summary, then the plots.
    pub fn files(&self) -> Vec<&Path> {
        std::iter::once(self.summary.as_path())
            .chain(self.plots.iter().map(PathBuf::as_path))
            .collect()
    }
}

/// Reads every row of a scaling study's records CSV, with errors that name the file and
/// the line. Fails on a missing file, a malformed row, and a file without rows.
pub fn load_records(path: &Path) -> Result<Vec<ScalingRecord>, ReportError> {
    Ok(lab_records::read_rows(path)?)
}

/// Renders the report of the study in `dir`: reads `dir/records.csv` and (when there)
/// `dir/meta.json`; writes `dir/summary.md` and the eight plot files; returns what it wrote
/// with the fits and crossovers.
///
/// `dir` must be a study folder (see [`StudyDir::open`]): a report never writes its files
/// into a folder rwkv-lab did not make.
pub fn render(dir: &Path) -> Result<RenderOutput, ReportError> {
    let study = StudyDir::open(dir)?;
    let meta = study.read_meta()?;
    match meta.as_ref().map(|m| m.kind).unwrap_or_default() {
        StudyKind::Scaling => render_scaling(&study, meta),
        StudyKind::Ablation => crate::ablation::render_ablation(&study, meta),
        StudyKind::Backends => crate::backends::render_backends(&study, meta),
    }
}

fn render_scaling(study: &StudyDir, meta: Option<Meta>) -> Result<RenderOutput, ReportError> {
    let records: Vec<ScalingRecord> = study.read_rows()?;
    let analysis = Analysis::new(&records);
    let memory = memory_description(meta.as_ref());
    let plots = plot_all(study.path(), &analysis.series, &analysis.fits, &memory)?;
    let mut warnings = Vec::new();
    if meta.is_none() {
        warnings.push(format!(
            "{}: not found; the report is rendered from records.csv alone, and its provenance \
             (command, spec, backend, machine, what the memory figures count) reads \"unknown\"",
            study.meta_path().display()
        ));
    }
    let summary = study.file("summary.md");
    let text = render_summary(&records, meta.as_ref(), &analysis);
    std::fs::write(&summary, text).map_err(|e| ReportError::Io {
        path: summary.clone(),
        reason: e.to_string(),
    })?;
    Ok(RenderOutput {
        summary,
        plots,
        n_records: records.len(),
        has_meta: meta.is_some(),
        warnings,
        fits: analysis.fits,
        crossovers: analysis.crossovers,
    })
}
