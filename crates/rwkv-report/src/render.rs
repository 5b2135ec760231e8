//! Reading a study's folder and writing its report.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::Analysis;
use crate::claims::FitRow;
use crate::crossover::Crossover;
use crate::error::ReportError;
use crate::plots::plot_all;
use crate::record::{Meta, Record};
use crate::summary::render_summary;

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

/// Reads every row of a records CSV, with errors that name the file and the line.
/// Fails on a missing file, a malformed row, and a file without rows.
pub fn load_records(path: &Path) -> Result<Vec<Record>, ReportError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReportError::MissingRecords {
                path: path.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(ReportError::Io {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    let mut reader = csv::Reader::from_reader(std::io::BufReader::new(file));
    let headers = reader
        .headers()
        .map_err(|e| csv_error(path, e, None))?
        .clone();
    let mut records = Vec::new();
    for row in reader.deserialize::<Record>() {
        records.push(row.map_err(|e| csv_error(path, e, Some(&headers)))?);
    }
    if records.is_empty() {
        return Err(ReportError::EmptyRecords {
            path: path.to_path_buf(),
        });
    }
    Ok(records)
}

fn csv_error(path: &Path, e: csv::Error, headers: Option<&csv::StringRecord>) -> ReportError {
    let line = e.position().map(|p| p.line());
    let reason = match e.kind() {
        csv::ErrorKind::Io(io) => {
            return ReportError::Io {
                path: path.to_path_buf(),
                reason: io.to_string(),
            };
        }
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields (as in the header), found {len}")
        }
        csv::ErrorKind::Deserialize { err, .. } => {
            let field = err.field().map(|i| {
                let name = headers.and_then(|h| h.get(i as usize)).unwrap_or("?");
                format!("field {} (`{name}`): ", i + 1)
            });
            format!("{}{}", field.unwrap_or_default(), err.kind())
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8: {err}"),
        _ => e.to_string(),
    };
    ReportError::Csv {
        path: path.to_path_buf(),
        line,
        reason,
    }
}

/// Reads `meta.json`: None when the file is not there, an error when it is malformed.
pub fn load_meta(path: &Path) -> Result<Option<Meta>, ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ReportError::Io {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ReportError::Meta {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Renders the report of the study in `dir`: reads `dir/records.csv` and (when there)
/// `dir/meta.json`; writes `dir/summary.md` and the eight plot files; returns what it wrote
/// with the fits and crossovers.
pub fn render(dir: &Path) -> Result<RenderOutput, ReportError> {
    let records = load_records(&dir.join("records.csv"))?;
    let meta = load_meta(&dir.join("meta.json"))?;
    let analysis = Analysis::new(&records);
    let plots = plot_all(dir, &analysis.series, &analysis.fits)?;
    let summary = dir.join("summary.md");
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
        fits: analysis.fits,
        crossovers: analysis.crossovers,
    })
}
