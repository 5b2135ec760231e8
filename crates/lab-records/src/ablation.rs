//! The ablation study's rows: one CSV row per evaluation of one training run, and the
//! grid of runs a study plans (kept in `meta.json`'s resolved spec, so that a report can
//! say which runs are missing from the records alone).

use serde::{Deserialize, Serialize};

use crate::row::{Row, Status, StudyKind};

/// One evaluation point of one training run (or the `diverged` / `error` end of a run).
///
/// A run is identified by (`task`, `variant`, `setting`, `seed`); its rows are its
/// evaluation points in step order. A finished run's last row has `step == steps` of its
/// budget and status `ok`; a run whose loss became NaN or infinite ends with one
/// `diverged` row (its `train_loss` the offending loss); a run that failed ends with an
/// `error` row whose `note` holds the error (it runs again on `--resume`).
///
/// The field order is the CSV's column order (stable: add columns only at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationRow {
    /// Study name (the spec's `study`).
    pub study: String,
    /// Task: `corpus` or `mqar`.
    pub task: String,
    /// The variant's label (its name, e.g. `no_bonus`, unless the spec gives a label).
    pub variant: String,
    /// The swept settings of this run, `key=value` joined by `,` (e.g. `d_model=128`);
    /// empty without a sweep.
    pub setting: String,
    /// Training seed (initialisation and data order).
    pub seed: u64,
    /// Optimizer steps done.
    pub step: u64,
    /// Training tokens seen (batch × sequence length × steps).
    pub tokens_seen: u64,
    /// Mean training loss since the previous evaluation (nats per token).
    pub train_loss: Option<f64>,
    /// Validation loss (nats per predicted token).
    pub val_loss: Option<f64>,
    /// The task's validation metric (`metric_name`).
    pub val_metric: Option<f64>,
    /// `bits_per_char` (corpus) or `query_accuracy` (MQAR).
    pub metric_name: String,
    /// Training throughput since the previous evaluation.
    pub tokens_per_s: Option<f64>,
    /// Training wall time so far (evaluation excluded).
    pub wall_s: f64,
    /// Backend name.
    pub backend: String,
    /// Git revision of the code that trained.
    pub git_rev: String,
    /// `ok`, `diverged` or `error`.
    pub status: Status,
    /// Why (`diverged`, `error`); empty otherwise.
    #[serde(default)]
    pub note: String,
}

impl AblationRow {
    /// The run this row belongs to.
    pub fn run_key(&self) -> RunKey {
        RunKey {
            task: self.task.clone(),
            variant: self.variant.clone(),
            setting: self.setting.clone(),
            seed: self.seed,
        }
    }
}

impl Row for AblationRow {
    const KIND: StudyKind = StudyKind::Ablation;

    /// Run and step: a resumed run re-emits the points after its checkpoint, and those
    /// already recorded are not written again.
    fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.task, self.variant, self.setting, self.seed, self.step
        )
    }

    fn counts_as_done(&self) -> bool {
        self.status != Status::Error
    }
}

/// What identifies a training run in the records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunKey {
    /// Task name.
    pub task: String,
    /// Variant label.
    pub variant: String,
    /// Swept settings (`key=value,...`), empty without a sweep.
    pub setting: String,
    /// Training seed.
    pub seed: u64,
}

impl RunKey {
    /// `variant`, `variant [setting]`, with ` seed N`: for messages.
    pub fn describe(&self) -> String {
        let setting = if self.setting.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.setting)
        };
        format!("{}{setting} seed {}", self.variant, self.seed)
    }
}

/// One run of a study's grid, as planned: its id (the folder of its checkpoints) and its
/// key, with the step count a finished run reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridRun {
    /// Position in the whole grid (0-based, the documented order).
    pub index: usize,
    /// Stable id, safe as a folder name.
    pub id: String,
    /// Task, variant, setting, seed.
    #[serde(flatten)]
    pub key: RunKey,
    /// Steps of a finished run.
    pub steps: u64,
}

/// How a run stands in a set of records: its last row decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// No rows.
    Missing,
    /// Rows, but the last is neither the final step nor an end (interrupted).
    Unfinished {
        /// The last recorded step.
        step: u64,
    },
    /// The final step is recorded.
    Finished,
    /// Ended with a `diverged` row.
    Diverged,
    /// Ended with an `error` row.
    Failed,
}

impl RunState {
    /// Whether a resumed study needs to train this run (again).
    pub fn needs_training(self) -> bool {
        matches!(
            self,
            RunState::Missing | RunState::Unfinished { .. } | RunState::Failed
        )
    }
}

/// The state of `run` in `rows` (in file order; rows of other runs are ignored): diverged
/// if a `diverged` row is there; finished if its final step is recorded `ok`; failed if its
/// last row is an `error`; unfinished if it has other rows; missing without rows.
pub fn run_state(run: &GridRun, rows: &[AblationRow]) -> RunState {
    let mine: Vec<&AblationRow> = rows.iter().filter(|r| r.run_key() == run.key).collect();
    if mine.iter().any(|r| r.status == Status::Diverged) {
        return RunState::Diverged;
    }
    if mine
        .iter()
        .any(|r| r.status == Status::Ok && r.step >= run.steps)
    {
        return RunState::Finished;
    }
    match mine.last() {
        None => RunState::Missing,
        Some(r) if r.status != Status::Ok => RunState::Failed,
        Some(_) => RunState::Unfinished {
            step: mine
                .iter()
                .filter(|r| r.status == Status::Ok)
                .map(|r| r.step)
                .max()
                .unwrap_or(0),
        },
    }
}

#[cfg(test)]
pub(crate) fn test_row(variant: &str, seed: u64, step: u64, status: Status) -> AblationRow {
    AblationRow {
        study: "s".into(),
        task: "mqar".into(),
        variant: variant.into(),
        setting: String::new(),
        seed,
        step,
        tokens_seen: step * 64,
        train_loss: Some(1.0),
        val_loss: Some(1.5),
        val_metric: Some(0.25),
        metric_name: "query_accuracy".into(),
        tokens_per_s: Some(1000.0),
        wall_s: 0.5,
        backend: "ndarray".into(),
        git_rev: "abc".into(),
        status,
        note: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StudyDir;

    #[test]
    fn rows_round_trip_with_stable_columns_and_states() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::for_writing(&tmp.path().join("a")).unwrap();
        let mut run = dir
            .start::<AblationRow>(Default::default(), false, &crate::text_differences)
            .unwrap();
        let mut d = test_row("no_decay", 1, 20, Status::Diverged);
        d.train_loss = None;
        d.note = "loss NaN at step 20".into();
        let rows = vec![
            test_row("full", 0, 10, Status::Ok),
            test_row("full", 0, 20, Status::Ok),
            test_row("full", 1, 10, Status::Ok),
            d,
        ];
        for r in &rows {
            run.write(r).unwrap();
        }
        run.finish().unwrap();
        let text = std::fs::read_to_string(dir.records_path()).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "study,task,variant,setting,seed,step,tokens_seen,train_loss,val_loss,val_metric,\
             metric_name,tokens_per_s,wall_s,backend,git_rev,status,note"
        );
        assert!(text.contains(",diverged,loss NaN at step 20"), "{text}");
        assert_eq!(dir.read_rows::<AblationRow>().unwrap(), rows);
        let grid = |variant: &str, seed| GridRun {
            index: 0,
            id: "x".into(),
            key: RunKey {
                task: "mqar".into(),
                variant: variant.into(),
                setting: String::new(),
                seed,
            },
            steps: 20,
        };
        assert_eq!(run_state(&grid("full", 0), &rows), RunState::Finished);
        assert_eq!(
            run_state(&grid("full", 1), &rows),
            RunState::Unfinished { step: 10 }
        );
        assert_eq!(run_state(&grid("no_decay", 1), &rows), RunState::Diverged);
        assert_eq!(run_state(&grid("full", 2), &rows), RunState::Missing);
        assert!(!RunState::Diverged.needs_training() && RunState::Failed.needs_training());
        // an error after the last evaluation: failed; evaluations after it: unfinished
        let mut more = rows.clone();
        more.push(test_row("full", 1, 10, Status::Error));
        assert_eq!(run_state(&grid("full", 1), &more), RunState::Failed);
        more.push(test_row("full", 1, 15, Status::Ok));
        assert_eq!(
            run_state(&grid("full", 1), &more),
            RunState::Unfinished { step: 15 }
        );
        assert_eq!(grid("full", 2).key.describe(), "full seed 2");
    }
}
