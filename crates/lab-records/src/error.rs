//! Errors of reading and writing study folders. Each names the file or folder it concerns.

use std::path::PathBuf;

/// Why a study folder, its records or its `meta.json` could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// `records.csv` is not there.
    #[error("{}: not found (a study writes records.csv into its output folder; is this the right folder?)", path.display())]
    NotFound {
        /// The file looked for.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file or folder.
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
    /// The records file has a header but no rows.
    #[error("{}: no records (only a header, or an empty file)", path.display())]
    Empty {
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
    /// Records exist and `--resume` was not given.
    #[error("{} already exists; pass --resume to continue that run, or choose another --out", path.display())]
    Exists {
        /// The records file.
        path: PathBuf,
    },
    /// The folder was not made by rwkv-lab (no marker, not an older study folder): nothing
    /// is written into it.
    #[error("{}: {reason}", path.display())]
    NotAStudy {
        /// The folder.
        path: PathBuf,
        /// What was found and what to do.
        reason: String,
    },
    /// `--resume` asked for another run than the one in the folder.
    #[error("{}: cannot resume: {}", path.display(), differences.join("; "))]
    Mismatch {
        /// The folder.
        path: PathBuf,
        /// Each difference, naming the setting and both values.
        differences: Vec<String>,
    },
}

impl RecordsError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        RecordsError::Io {
            path: path.into(),
            reason: e.to_string(),
        }
    }
}
