//! Errors of report rendering. Each names the file it concerns.

use std::path::PathBuf;

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `records.csv` is not there.
    #[error("{}: not found (a study writes records.csv into its output folder; is this the right folder?)", path.display())]
    MissingRecords {
        /// The file looked for.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A malformed CSV row (or header).
    #[error("{}: {}{reason}", path.display(), line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line of the file, where known.
        line: Option<u64>,
        /// What is wrong (the field and the problem).
        reason: String,
    },
    /// `records.csv` has a header but no rows.
    #[error("{}: no records (only a header, or an empty file)", path.display())]
    EmptyRecords {
        /// The file.
        path: PathBuf,
    },
    /// `meta.json` exists but could not be parsed.
    #[error("{}: {reason}", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Drawing a plot failed.
    #[error("{}: drawing failed: {reason}", path.display())]
    Plot {
        /// The plot file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The bundled font could not be loaded.
    #[error("bundled font {name}: not a usable TrueType font")]
    Font {
        /// The font file name.
        name: &'static str,
    },
}
