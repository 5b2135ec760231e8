//! Appending records to `records.csv`, one flushed row at a time, so an interrupted run
//! keeps everything it measured.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rwkv_report::{Record, read_records};

/// Errors writing records.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// I/O or CSV error, with the file.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file exists and `--resume` was not given.
    #[error("{path} already exists; pass --resume to continue that run, or choose another --out")]
    Exists {
        /// The file.
        path: String,
    },
}

/// A records file open for appending.
pub struct RecordWriter {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl RecordWriter {
    /// Opens `path` for a new run (refusing to overwrite) or, with `resume`, for appending;
    /// returns the writer and the keys of the measurements already recorded.
    pub fn open(path: &Path, resume: bool) -> Result<(Self, HashSet<String>), RecordsError> {
        let shown = path.display().to_string();
        let io = |e: &dyn std::fmt::Display| RecordsError::Io {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let exists = path.is_file()
            && std::fs::metadata(path)
                .map(|m| m.len() > 0)
                .unwrap_or(false);
        if exists && !resume {
            return Err(RecordsError::Exists { path: shown });
        }
        let done: HashSet<String> = if exists {
            read_records(path)
                .map_err(|e| io(&e))?
                .iter()
                .filter(|r| r.status != "error")
                .map(Record::key)
                .collect()
        } else {
            HashSet::new()
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(&e))?;
        let writer = csv::WriterBuilder::new()
            .has_headers(!exists)
            .from_writer(file);
        Ok((
            Self {
                path: path.to_path_buf(),
                writer,
            },
            done,
        ))
    }

    /// Appends one row and flushes it to disk.
    pub fn write(&mut self, record: &Record) -> Result<(), RecordsError> {
        let io = |e: &dyn std::fmt::Display| RecordsError::Io {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        self.writer.serialize(record).map_err(|e| io(&e))?;
        self.writer.flush().map_err(|e| io(&e))
    }
}
