//! Study folders: where a run writes, and the rules that keep other files safe.
//!
//! A command writes only into a folder it made: a new folder, an empty one, or one that
//! carries the [`MARKER`] file (or, for folders written before markers existed, holds a
//! `records.csv` and a readable `meta.json`). It never deletes a file, and it overwrites
//! only the files of a study (`meta.json`, `summary.md`, the plots). Anything else is
//! refused before a byte is written, so `--out .` or `--out ~/thesis` cannot harm a
//! user's files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::RecordsError;
use crate::meta::Meta;
use crate::provenance::utc_stamp;
use crate::read::read_rows;
use crate::row::{Row, StudyKind};
use crate::writer::RecordWriter;

/// The file that marks a folder as made by rwkv-lab.
pub const MARKER: &str = ".rwkv-lab-study";
/// The rows of a study.
pub const RECORDS_FILE: &str = "records.csv";
/// What the run was.
pub const META_FILE: &str = "meta.json";

const MARKER_TEXT: &str = "This folder was made by rwkv-lab. It writes its records, meta.json, \
summary and plots here, may overwrite those on a later report, and never deletes anything.\n";

/// A study folder: owns `meta.json`, the marker, `records.csv` and what a report renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyDir {
    path: PathBuf,
}

impl StudyDir {
    /// The folder for a run to write into: created (with its marker) when it does not
    /// exist or is empty; a study folder is reused (`--resume`, or a new run where no rows
    /// were recorded yet); any other folder is refused.
    pub fn for_writing(path: &Path) -> Result<Self, RecordsError> {
        let dir = StudyDir {
            path: path.to_path_buf(),
        };
        match std::fs::read_dir(path).map(|mut entries| entries.next().is_none()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path).map_err(|e| RecordsError::io(path, e))?;
                dir.mark()?;
            }
            Err(e) => return Err(RecordsError::io(path, e)),
            Ok(_) if is_study(path) => {}
            Ok(true) => dir.mark()?,
            Ok(false) => {
                return Err(RecordsError::NotAStudy {
                    path: path.to_path_buf(),
                    reason: format!(
                        "the folder is not empty and was not made by rwkv-lab (no {MARKER} file); \
                         nothing is written into it: choose a new or an empty folder"
                    ),
                });
            }
        }
        Ok(dir)
    }

    /// A new folder `parent/<prefix>-<UTC time>` (`-2`, `-3`, ... appended when that name
    /// is taken), with its marker. `parent` is created if missing; nothing else in it is
    /// touched.
    pub fn fresh(parent: &Path, prefix: &str) -> Result<Self, RecordsError> {
        std::fs::create_dir_all(parent).map_err(|e| RecordsError::io(parent, e))?;
        let stem = format!("{prefix}-{}", utc_stamp());
        for n in 1.. {
            let name = if n == 1 {
                stem.clone()
            } else {
                format!("{stem}-{n}")
            };
            let path = parent.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let dir = StudyDir { path };
                    dir.mark()?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RecordsError::io(&path, e)),
            }
        }
        unreachable!("some suffix is free")
    }

    /// An existing study folder, to read and re-render; refuses a folder rwkv-lab did not
    /// make, so a report never writes its files among someone else's.
    pub fn open(path: &Path) -> Result<Self, RecordsError> {
        if !path.is_dir() {
            return Err(RecordsError::NotAStudy {
                path: path.to_path_buf(),
                reason: "no such folder".into(),
            });
        }
        if !is_study(path) {
            return Err(RecordsError::NotAStudy {
                path: path.to_path_buf(),
                reason: format!(
                    "not a study folder (no {MARKER} file, and no {RECORDS_FILE} with a readable \
                     {META_FILE} of an older run); nothing is written into it"
                ),
            });
        }
        Ok(StudyDir {
            path: path.to_path_buf(),
        })
    }

    fn mark(&self) -> Result<(), RecordsError> {
        let marker = self.path.join(MARKER);
        std::fs::write(&marker, MARKER_TEXT).map_err(|e| RecordsError::io(&marker, e))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `records.csv`.
    pub fn records_path(&self) -> PathBuf {
        self.path.join(RECORDS_FILE)
    }

    /// `meta.json`.
    pub fn meta_path(&self) -> PathBuf {
        self.path.join(META_FILE)
    }

    /// A file of the study (a summary, a plot) by name.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `meta.json`: None when the file is not there, an error when it is malformed.
    pub fn read_meta(&self) -> Result<Option<Meta>, RecordsError> {
        read_meta(&self.meta_path())
    }

    /// The study kind `meta.json` states (`scaling` without a `meta.json`).
    pub fn kind(&self) -> Result<StudyKind, RecordsError> {
        Ok(self.read_meta()?.map(|m| m.kind).unwrap_or_default())
    }

    /// Writes `meta.json` whole: to a temporary file first, then renamed over the old one,
    /// so a crash never leaves half a file.
    pub fn write_meta(&self, meta: &Meta) -> Result<(), RecordsError> {
        let path = self.meta_path();
        let tmp = self.path.join(format!("{META_FILE}.tmp"));
        let text = serde_json::to_string_pretty(meta).map_err(|e| RecordsError::io(&path, e))?;
        std::fs::write(&tmp, text + "\n").map_err(|e| RecordsError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| RecordsError::io(&path, e))
    }

    /// Every row of `records.csv` (errors name the line and the field).
    pub fn read_rows<R: Row>(&self) -> Result<Vec<R>, RecordsError> {
        read_rows(&self.records_path())
    }

    /// Starts a run of rows `R` described by `meta` (its `kind` is set to `R::KIND`).
    ///
    /// A new run refuses a folder that already holds rows. With `resume`, the recorded run
    /// must match `meta` (study kind, backend, precision, and the spec as compared by
    /// `spec_diff`, which names the differing fields); a mismatch is refused with every
    /// difference, before anything is written. Then `records.csv` is opened for appending
    /// (a torn last line dropped, see [`RecordWriter::open`]) and `meta.json` written,
    /// with the start time of the first run kept.
    pub fn start<R: Row>(
        &self,
        mut meta: Meta,
        resume: bool,
        spec_diff: &dyn Fn(&str, &str) -> Vec<String>,
    ) -> Result<Run<R>, RecordsError> {
        meta.kind = R::KIND;
        let records = self.records_path();
        let has_rows = std::fs::metadata(&records).is_ok_and(|m| m.len() > 0);
        if has_rows && !resume {
            return Err(RecordsError::Exists { path: records });
        }
        if has_rows {
            let recorded = self.read_meta()?.ok_or_else(|| RecordsError::Mismatch {
                path: self.path.clone(),
                differences: vec![format!(
                    "{META_FILE} is missing, so the recorded run's settings cannot be checked"
                )],
            })?;
            let differences = recorded.differences(&meta, spec_diff);
            if !differences.is_empty() {
                return Err(RecordsError::Mismatch {
                    path: self.path.clone(),
                    differences,
                });
            }
            meta.started = format!("{} (resumed {})", recorded.started, meta.started);
        }
        let (writer, recorded) = RecordWriter::<R>::open(&records, resume)?;
        self.write_meta(&meta)?;
        let done = recorded
            .rows
            .iter()
            .filter(|r| r.counts_as_done())
            .map(Row::key)
            .collect();
        Ok(Run {
            dir: self.clone(),
            meta,
            writer,
            done,
            warnings: recorded.warnings,
        })
    }
}

/// A run in progress: rows go through [`Run::write`] (or `writer`), and [`Run::finish`]
/// stamps the end time into `meta.json`.
pub struct Run<R> {
    dir: StudyDir,
    meta: Meta,
    /// The records file, open for appending.
    pub writer: RecordWriter<R>,
    /// Keys of the measurements already recorded (empty for a new run): skip these.
    pub done: HashSet<String>,
    /// What the caller should tell the user (a dropped torn line, ...).
    pub warnings: Vec<String>,
}

impl<R: Row> Run<R> {
    /// Appends one row and flushes it.
    pub fn write(&mut self, row: &R) -> Result<(), RecordsError> {
        self.writer.write(row)
    }

    /// The folder.
    pub fn dir(&self) -> &StudyDir {
        &self.dir
    }

    /// `meta.json` as written at the start.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Records the end time in `meta.json`; returns the final meta.
    pub fn finish(mut self) -> Result<Meta, RecordsError> {
        self.meta.finished = crate::provenance::utc_now();
        self.dir.write_meta(&self.meta)?;
        Ok(self.meta)
    }
}

/// Reads a `meta.json`: None when the file is not there, an error when it is malformed.
pub fn read_meta(path: &Path) -> Result<Option<Meta>, RecordsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RecordsError::io(path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| RecordsError::Meta {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Whether rwkv-lab made the folder: the marker, or (older runs) `records.csv` next to a
/// `meta.json` that reads as one.
fn is_study(path: &Path) -> bool {
    path.join(MARKER).is_file()
        || (path.join(RECORDS_FILE).is_file()
            && matches!(read_meta(&path.join(META_FILE)), Ok(Some(_))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::text_differences;
    use crate::{ScalingRecord, Status};

    fn thesis(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let t = dir.join("thesis.tex");
        std::fs::write(&t, "\\section{mine}").unwrap();
        t
    }

    #[test]
    fn foreign_folders_are_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let mine = tmp.path().join("mine");
        let t = thesis(&mine);
        let e = StudyDir::for_writing(&mine).unwrap_err();
        assert!(
            e.to_string()
                .contains("not empty and was not made by rwkv-lab"),
            "{e}"
        );
        let e = StudyDir::open(&mine).unwrap_err();
        assert!(e.to_string().contains("not a study folder"), "{e}");
        // a fresh run folder inside it is fine, and touches nothing else
        let a = StudyDir::fresh(&mine, "run").unwrap();
        let b = StudyDir::fresh(&mine, "run").unwrap();
        assert_ne!(a, b);
        assert!(a.path().join(MARKER).is_file() && a.path().starts_with(&mine));
        assert_eq!(std::fs::read_to_string(&t).unwrap(), "\\section{mine}");
        let names: Vec<_> = std::fs::read_dir(&mine).unwrap().collect();
        assert_eq!(names.len(), 3);
        // new and empty folders are made studies; a study folder is reused
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        for p in [tmp.path().join("new/deep"), empty] {
            let d = StudyDir::for_writing(&p).unwrap();
            assert!(p.join(MARKER).is_file());
            assert_eq!(StudyDir::for_writing(&p).unwrap(), d);
            assert_eq!(StudyDir::open(&p).unwrap(), d);
        }
        // an older study folder (records.csv + meta.json, no marker) is recognised
        let old = tmp.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join(RECORDS_FILE), "x\n").unwrap();
        std::fs::write(old.join(META_FILE), "{ not json").unwrap();
        assert!(StudyDir::open(&old).is_err());
        StudyDir { path: old.clone() }
            .write_meta(&Meta::default())
            .unwrap();
        StudyDir::open(&old).unwrap();
        assert!(!old.join(MARKER).exists());
    }

    fn row(t: usize, status: Status) -> ScalingRecord {
        crate::scaling::test_row(t, status, "")
    }

    #[test]
    fn resume_checks_the_run_and_keeps_meta_on_refusal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::for_writing(&tmp.path().join("s")).unwrap();
        let meta = Meta {
            backend: "ndarray".into(),
            dtype: "f32".into(),
            spec: "a: 1\n".into(),
            started: "T0".into(),
            ..Default::default()
        };
        let mut run = dir
            .start::<ScalingRecord>(meta.clone(), false, &text_differences)
            .unwrap();
        run.write(&row(1, Status::Ok)).unwrap();
        run.write(&row(2, Status::Error)).unwrap();
        drop(run);
        let before = std::fs::read(dir.meta_path()).unwrap();
        // a new run over recorded rows is refused
        assert!(matches!(
            dir.start::<ScalingRecord>(meta.clone(), false, &text_differences),
            Err(RecordsError::Exists { .. })
        ));
        // a resume with other settings names each difference and writes nothing
        let other = Meta {
            dtype: "f64".into(),
            spec: "a: 2\n".into(),
            ..meta.clone()
        };
        let e = dir
            .start::<ScalingRecord>(other, true, &text_differences)
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("cannot resume")
                && msg.contains("dtype is f32 in the recorded run, f64 now")
                && msg.contains("`a: 1` in the recorded run, `a: 2` now"),
            "{msg}"
        );
        assert_eq!(std::fs::read(dir.meta_path()).unwrap(), before);
        // the matching resume: error rows are not done, the start time is kept
        let now = Meta {
            started: "T1".into(),
            ..meta
        };
        let run = dir
            .start::<ScalingRecord>(now, true, &text_differences)
            .unwrap();
        assert_eq!(run.done.len(), 1);
        assert_eq!(run.meta().started, "T0 (resumed T1)");
        let finished = run.finish().unwrap();
        assert!(finished.finished.ends_with('Z'));
        assert_eq!(dir.read_meta().unwrap(), Some(finished));
        assert!(!dir.file("meta.json.tmp").exists());
    }
}
