//! Errors of report rendering. Each names the file it concerns.

use std::path::PathBuf;

use lab_records::{RecordsError, StudyKind};

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The study folder, its records or its `meta.json` could not be read (a missing or
    /// malformed file, a folder that is not a study).
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// Writing a file failed.
    #[error("{}: {reason}", path.display())]
    Io {
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
    /// A study kind this version cannot render.
    #[error("{}: no report for `{kind}` studies in this version", path.display())]
    UnsupportedKind {
        /// The folder.
        path: PathBuf,
        /// The kind `meta.json` states.
        kind: StudyKind,
    },
}
