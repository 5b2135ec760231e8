//! Records of rwkv-lab studies, shared by the measuring side (`rwkv-lab-core`) and the
//! reporting side (`rwkv-report`), which do not depend on each other.
//!
//! - [`Row`]: one CSV row type per study kind ([`ScalingRecord`] for the scaling study,
//!   [`AblationRow`] for the ablation study with its planned [`GridRun`]s),
//!   with the key that identifies a measurement for `--resume`.
//! - [`Meta`]: what a run was (`meta.json`): the resolved spec, backend, precision and the
//!   provenance gathered by [`provenance`] (git revision, machine, UTC times).
//! - [`StudyDir`]: a study folder. Commands write only into folders they made (marked by
//!   [`MARKER`]) or into new or empty ones, never delete anything, and check on `--resume`
//!   that the run continued is the run asked for.
//! - [`RecordWriter`]: appends rows one at a time and flushes each, so an interrupted run
//!   keeps what it measured.
//!
//! Library code returns typed errors ([`RecordsError`]) and never prints; warnings (such
//! as a dropped incomplete last line) are returned for the caller to show.
//!
//! # Adding a study kind
//!
//! A kind of study needs a row type, a [`StudyKind`] variant for `meta.json`, and nothing
//! else from this crate (a sketch like the shipped [`AblationRow`]):
//!
//! ```
//! use lab_records::{Row, StudyKind};
//! use serde::{Deserialize, Serialize};
//!
//! /// One evaluation point of one training run.
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! pub struct AblationRow {
//!     pub study: String,
//!     pub task: String,
//!     /// The ablation switch (an `rwkv::Variant` name).
//!     pub variant: String,
//!     pub seed: u64,
//!     pub step: u64,
//!     pub tokens_seen: u64,
//!     pub train_loss: Option<f64>,
//!     pub val_loss: Option<f64>,
//!     pub val_metric: Option<f64>,
//!     pub metric_name: String,
//!     pub tokens_per_s: Option<f64>,
//!     pub wall_s: f64,
//!     pub backend: String,
//!     pub git_rev: String,
//!     pub status: lab_records::Status,
//! }
//!
//! impl Row for AblationRow {
//!     const KIND: StudyKind = StudyKind::Ablation;
//!     fn key(&self) -> String {
//!         format!("{}|{}|{}|{}|{}", self.task, self.variant, self.seed, self.step, self.backend)
//!     }
//!     fn counts_as_done(&self) -> bool {
//!         self.status != lab_records::Status::Error
//!     }
//! }
//!
//! # fn main() -> Result<(), lab_records::RecordsError> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let out = tmp.path().join("ablation");
//! // A run: a safe folder, meta.json with `kind: ablation`, rows appended and flushed.
//! let dir = lab_records::StudyDir::for_writing(&out)?;
//! let meta = lab_records::Meta { kind: StudyKind::Ablation, ..Default::default() };
//! let mut run = dir.start::<AblationRow>(meta, false, &lab_records::text_differences)?;
//! // run.done holds the keys already recorded (with --resume); skip those.
//! # let row = AblationRow { study: "a".into(), task: "copy".into(), variant: "full".into(),
//! #     seed: 0, step: 10, tokens_seen: 640, train_loss: Some(1.0), val_loss: None,
//! #     val_metric: None, metric_name: "acc".into(), tokens_per_s: None, wall_s: 0.1,
//! #     backend: "ndarray".into(), git_rev: "x".into(), status: lab_records::Status::Ok };
//! run.write(&row)?;
//! run.finish()?;
//! assert_eq!(dir.read_rows::<AblationRow>()?, vec![row]);
//! # Ok(())
//! # }
//! ```
//!
//! `rwkv-lab report DIR` reads `meta.json`'s `kind` (absent in folders written before it
//! existed: `scaling`) to choose the renderer.

mod ablation;
mod backends;
mod error;
mod meta;
pub mod provenance;
mod read;
mod row;
mod scaling;
mod study;
mod writer;

pub use ablation::{AblationRow, GridRun, RunKey, RunState, run_state};
pub use backends::{BackendRow, Measured, backend_label};
pub use error::RecordsError;
pub use meta::{Meta, text_differences, value_differences};
pub use read::read_rows;
pub use row::{Row, Status, StudyKind};
pub use scaling::{Conditions, Kind, Measurement, Model, ParamCount, ScalingRecord};
pub use study::{MARKER, META_FILE, RECORDS_FILE, Run, StudyDir, read_meta};
pub use writer::RecordWriter;
