//! Appending rows to `records.csv`, one flushed row at a time, so an interrupted run keeps
//! everything it measured; reopening a file for `--resume`, repairing a torn last line.

use std::fs::{File, OpenOptions};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use crate::error::RecordsError;
use crate::read::parse_rows;
use crate::row::Row;

/// A records file open for appending rows of type `R`.
pub struct RecordWriter<R> {
    path: PathBuf,
    writer: csv::Writer<File>,
    _rows: PhantomData<fn(&R)>,
}

/// What a records file held when it was opened.
#[derive(Debug)]
pub struct Recorded<R> {
    /// Every complete row already in the file.
    pub rows: Vec<R>,
    /// Things the caller should tell the user (e.g. a dropped incomplete last line).
    pub warnings: Vec<String>,
}

impl<R: Row> RecordWriter<R> {
    /// Opens `path` for a new run (refusing to add to a file with rows) or, with `resume`,
    /// for appending to it; returns the writer and the rows already recorded.
    ///
    /// Every row is written whole and flushed, so a file can only end mid-line if the
    /// process died during a write. On `resume` such a last line is cut off (the file
    /// belongs to the run being resumed) and reported in the warnings; its measurement is
    /// not among the recorded rows, so it runs again.
    pub fn open(path: &Path, resume: bool) -> Result<(Self, Recorded<R>), RecordsError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(RecordsError::io(path, e)),
        };
        if !bytes.is_empty() && !resume {
            return Err(RecordsError::Exists {
                path: path.to_path_buf(),
            });
        }
        let mut warnings = Vec::new();
        let keep = complete_prefix(&bytes);
        if keep < bytes.len() {
            warnings.push(format!(
                "{}: the last line was incomplete (the run was stopped while writing it); \
                 dropped its {} byte(s), that measurement runs again",
                path.display(),
                bytes.len() - keep
            ));
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(keep as u64))
                .map_err(|e| RecordsError::io(path, e))?;
        }
        let rows = parse_rows(&bytes[..keep], path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| RecordsError::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| RecordsError::io(path, e))?;
        let writer = csv::WriterBuilder::new()
            .has_headers(keep == 0)
            .from_writer(file);
        Ok((
            Self {
                path: path.to_path_buf(),
                writer,
                _rows: PhantomData,
            },
            Recorded { rows, warnings },
        ))
    }

    /// Appends one row and flushes it to disk.
    pub fn write(&mut self, row: &R) -> Result<(), RecordsError> {
        self.writer
            .serialize(row)
            .map_err(|e| RecordsError::io(&self.path, e))?;
        self.writer
            .flush()
            .map_err(|e| RecordsError::io(&self.path, e))
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The length of `bytes` without an unterminated last CSV record (the start of that
/// record; the whole length when the file ends with a newline).
fn complete_prefix(bytes: &[u8]) -> usize {
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return bytes.len();
    }
    // The reader knows where quoted fields (which may hold newlines) end; the start of the
    // last record it reads is where the torn line begins.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut last_start = 0;
    while let Ok(true) = reader.read_byte_record(&mut record) {
        last_start = record.position().map_or(last_start, |p| p.byte() as usize);
    }
    last_start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScalingRecord;

    fn row(t: usize, note: &str) -> ScalingRecord {
        crate::scaling::test_row(t, crate::Status::Ok, note)
    }

    #[test]
    fn new_file_refuses_existing_rows_and_resume_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/records.csv");
        let (mut w, rec) = RecordWriter::<ScalingRecord>::open(&path, false).unwrap();
        assert!(rec.rows.is_empty() && rec.warnings.is_empty());
        w.write(&row(1, "")).unwrap();
        drop(w);
        assert!(matches!(
            RecordWriter::<ScalingRecord>::open(&path, false),
            Err(RecordsError::Exists { .. })
        ));
        let (mut w, rec) = RecordWriter::<ScalingRecord>::open(&path, true).unwrap();
        assert_eq!(rec.rows, vec![row(1, "")]);
        w.write(&row(2, "")).unwrap();
        drop(w);
        let all = crate::read_rows::<ScalingRecord>(&path).unwrap();
        assert_eq!(all, vec![row(1, ""), row(2, "")]);
    }

    #[test]
    fn torn_last_line_is_dropped_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.csv");
        let (mut w, _) = RecordWriter::<ScalingRecord>::open(&path, false).unwrap();
        // a note with a newline and a comma: the torn line is found by CSV records, not lines
        w.write(&row(1, "two\nlines, quoted")).unwrap();
        w.write(&row(2, "")).unwrap();
        drop(w);
        let whole = std::fs::read(&path).unwrap();
        for cut in [1usize, 5, 20, 40] {
            std::fs::write(&path, &whole[..whole.len() - cut]).unwrap();
            let (w, rec) = RecordWriter::<ScalingRecord>::open(&path, true).unwrap();
            drop(w);
            assert_eq!(rec.rows, vec![row(1, "two\nlines, quoted")], "cut {cut}");
            assert!(rec.warnings[0].contains("incomplete"), "{:?}", rec.warnings);
            assert!(std::fs::read(&path).unwrap().ends_with(b"\n"));
        }
        // a torn header: the file starts again with a header
        std::fs::write(&path, b"study,kind,mo").unwrap();
        let (mut w, rec) = RecordWriter::<ScalingRecord>::open(&path, true).unwrap();
        assert!(rec.rows.is_empty() && rec.warnings.len() == 1);
        w.write(&row(3, "")).unwrap();
        drop(w);
        assert_eq!(
            crate::read_rows::<ScalingRecord>(&path).unwrap(),
            vec![row(3, "")]
        );
        // a malformed complete line is an error, not a crash to repair
        std::fs::write(&path, [&whole[..], b"x,y\n"].concat()).unwrap();
        let e = RecordWriter::<ScalingRecord>::open(&path, true)
            .err()
            .unwrap();
        assert!(e.to_string().contains("line 5"), "{e}");
    }
}
