//! The ablation study (issue 7): which part of RWKV matters, with error bars.
//!
//! - [`spec`]: `experiments/ablation-*.yaml`, checked while parsing (errors name the file,
//!   line, column and field).
//! - [`grid`]: every (variant × seed × setting) run in a fixed order, run ids, shards.
//! - [`runner`]: trains the runs of a study (or of one shard) with `lab_train`, appending one
//!   flushed `records.csv` row per evaluation; resume, divergence, errors, Ctrl-C.
//!
//! The report (`summary.md`, plots) is rendered by `rwkv-report` from the records alone.

pub mod grid;
pub mod runner;
pub mod spec;

pub use grid::{RunPlan, Setting, Shard, grid, run_id, select};
pub use runner::{AblationError, Context, Event, RunEnd, StudyOutcome, run_study};
pub use spec::{AblationSpec, VARIANT_NAMES};
