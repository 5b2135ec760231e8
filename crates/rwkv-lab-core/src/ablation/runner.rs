//! Running an ablation study: the planned runs trained one after the other with
//! `lab_train::train`, every evaluation appended (and flushed) to `records.csv` before its
//! checkpoint is written.
//!
//! - Everything that can be checked is checked before the first step: every task is
//!   loaded (missing corpus, MQAR parameters) and every variant built for its task.
//! - `--resume`: runs whose final row (or `diverged` row) is recorded are skipped; the
//!   others continue from their checkpoint under `checkpoints/<run-id>/`, and the rows the
//!   engine re-emits after it that are already recorded are not written again.
//! - A run whose loss becomes NaN or infinite gets a `diverged` row; a run that fails gets
//!   an `error` row with the message (and runs again on `--resume`); the study goes on.
//! - A stop request (Ctrl-C sets the flag) ends the current run at its next step and the
//!   study there: every row so far is recorded, `--resume` continues.
//!
//! The library never prints: the caller follows the study through [`Event`]s.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::backend::AutodiffBackend;
use lab_records::{AblationRow, GridRun, Meta, RunState, Status, StudyDir, run_state};
use lab_train::{Control, EvalPoint, Observer, Outcome, Task, TrainError};
use rwkv::WkvBackend;
use serde::Serialize;

use super::grid::{RunPlan, Shard, grid, select};
use super::spec::AblationSpec;

/// Why a study could not run (a single run's failure is recorded, not returned).
#[derive(Debug, thiserror::Error)]
pub enum AblationError {
    /// The study folder or its records.
    #[error(transparent)]
    Records(#[from] lab_records::RecordsError),
    /// The grid could not be built.
    #[error("{0}")]
    Grid(String),
    /// A run cannot be trained as specified; found before any training.
    #[error("run {run}: {source}")]
    Plan {
        /// The run id.
        run: String,
        /// Why.
        source: TrainError,
    },
}

/// Where and how the study runs, for its records and `meta.json`.
#[derive(Debug, Clone)]
pub struct Context {
    /// Backend name.
    pub backend: String,
    /// Git revision of the code.
    pub git_rev: String,
    /// The command line.
    pub command: String,
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// Every step trained.
    Finished,
    /// Loss NaN or infinite at `step`.
    Diverged {
        /// The step.
        step: u64,
        /// The loss.
        loss: f64,
    },
    /// An error (recorded as an `error` row).
    Failed(String),
    /// Stopped on request; resumes from the checkpoint at `step`.
    Interrupted {
        /// The last checkpoint's step.
        step: u64,
    },
}

/// What the study reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// Something to tell the user (a dropped torn line, ...).
    Warning(String),
    /// The plan: runs of this shard, of which `to_train` still need training.
    Planned {
        /// Runs in this shard.
        runs: usize,
        /// Runs to train now (the others are recorded as finished or diverged).
        to_train: usize,
    },
    /// A run starts (or resumes: `resumed_from` is the last recorded step).
    RunStarted {
        /// The run.
        run: &'a GridRun,
        /// The last step recorded before, when continuing.
        resumed_from: Option<u64>,
    },
    /// A training step finished.
    Step {
        /// Steps done.
        step: u64,
        /// Steps of the run.
        steps: u64,
        /// Its loss.
        loss: f64,
    },
    /// An evaluation was recorded.
    Eval(&'a AblationRow),
    /// A run ended.
    RunEnded {
        /// The run.
        run: &'a GridRun,
        /// How.
        end: RunEnd,
    },
}

/// How the study ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudyOutcome {
    /// Runs of the shard.
    pub runs: usize,
    /// Runs finished (now or before).
    pub finished: usize,
    /// Runs diverged (now or before).
    pub diverged: Vec<String>,
    /// Runs that failed now, with the error.
    pub failed: Vec<(String, String)>,
    /// Stopped on request: the study is incomplete, `--resume` continues it.
    pub interrupted: bool,
}

/// What `meta.json` keeps as the resolved spec: the shard, the whole grid, the spec.
#[derive(Serialize)]
struct Plan<'a> {
    shard: Option<String>,
    grid: Vec<&'a GridRun>,
    spec: &'a AblationSpec,
}

/// The resolved plan of `spec` (and `shard`) as `meta.json` keeps it.
pub fn plan_yaml(spec: &AblationSpec, plans: &[RunPlan], shard: Option<Shard>) -> String {
    // the micro-batches are recorded as trained, also where the spec left them to the default
    let mut spec = spec.clone();
    spec.train.micro_batches = Some(spec.train.resolved_micro_batches());
    let plan = Plan {
        shard: shard.map(|s| s.to_string()),
        grid: plans.iter().map(|p| &p.grid).collect(),
        spec: &spec,
    };
    serde_yaml::to_string(&plan).unwrap_or_else(|e| format!("# not serialisable: {e}\n"))
}

/// The observer of one run: rows to the records, steps to the caller, the stop flag.
struct RunObserver<'a, 'b> {
    run: &'a RunPlan,
    spec: &'a AblationSpec,
    ctx: &'a Context,
    metric: &'static str,
    writer: &'a mut lab_records::Run<AblationRow>,
    done: &'a HashSet<String>,
    stop: &'a AtomicBool,
    progress: &'a mut dyn FnMut(Event<'_>),
    last_step: u64,
    _b: std::marker::PhantomData<&'b ()>,
}

impl RunObserver<'_, '_> {
    fn row(&self, step: u64, status: Status) -> AblationRow {
        let k = &self.run.grid.key;
        AblationRow {
            study: self.spec.study.clone(),
            task: k.task.clone(),
            variant: k.variant.clone(),
            setting: k.setting.clone(),
            seed: k.seed,
            step,
            tokens_seen: step * (self.run.train.batch * self.run.train.seq_len) as u64,
            train_loss: None,
            val_loss: None,
            val_metric: None,
            metric_name: self.metric.into(),
            tokens_per_s: None,
            wall_s: 0.0,
            backend: self.ctx.backend.clone(),
            git_rev: self.ctx.git_rev.clone(),
            status,
            note: String::new(),
        }
    }

    fn record(&mut self, row: &AblationRow) -> Result<(), lab_records::RecordsError> {
        if !self.done.contains(&lab_records::Row::key(row)) {
            self.writer.write(row)?;
        }
        (self.progress)(Event::Eval(row));
        Ok(())
    }
}

impl Observer for RunObserver<'_, '_> {
    fn on_step(&mut self, step: u64, steps: u64, loss: f64) -> Control {
        (self.progress)(Event::Step { step, steps, loss });
        if self.stop.load(Ordering::SeqCst) {
            Control::Stop
        } else {
            Control::Continue
        }
    }

    fn on_eval(&mut self, p: &EvalPoint) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut row = self.row(p.step, Status::Ok);
        row.tokens_seen = p.tokens_seen;
        row.train_loss = Some(p.train_loss);
        row.val_loss = Some(p.val_loss);
        row.val_metric = Some(p.val_metric);
        row.tokens_per_s = Some(p.tokens_per_s);
        row.wall_s = p.wall_s;
        self.last_step = p.step;
        self.record(&row)?;
        Ok(())
    }
}

/// Runs the study of `spec` (the runs of `shard`, or all) in `study`: plans and checks
/// every run, writes `meta.json` (with `resume`: checks it against the recorded run),
/// trains every run not recorded as finished or diverged, and stamps the end time unless
/// stopped. `stop` is polled after every step.
#[allow(clippy::too_many_arguments)]
pub fn run_study<B>(
    study: &StudyDir,
    spec: &AblationSpec,
    shard: Option<Shard>,
    ctx: &Context,
    resume: bool,
    stop: &AtomicBool,
    device: &B::Device,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<StudyOutcome, AblationError>
where
    B: AutodiffBackend + WkvBackend,
    B::InnerBackend: WkvBackend,
{
    let all = grid(spec).map_err(AblationError::Grid)?;
    let meta = Meta {
        kind: lab_records::StudyKind::Ablation,
        command: ctx.command.clone(),
        spec: plan_yaml(spec, &all, shard),
        seed: spec.seeds.0[0],
        backend: ctx.backend.clone(),
        device: ctx.backend.clone(),
        memory: String::new(),
        dtype: "f32".into(),
        git_rev: ctx.git_rev.clone(),
        versions: crate::scaling::versions(),
        machine: lab_records::provenance::machine_line(),
        started: lab_records::provenance::utc_now(),
        finished: String::new(),
    };
    let plans = select(all, shard);
    // every task loaded and every variant built before the first step
    let mut tasks: Vec<(String, Task)> = Vec::new();
    let mut archs = Vec::with_capacity(plans.len());
    for p in &plans {
        let plan_err = |source| AblationError::Plan {
            run: p.grid.id.clone(),
            source,
        };
        let key = format!("{:?}|{}", p.task, p.train.seq_len);
        if !tasks.iter().any(|(k, _)| *k == key) {
            let task = p.task.load(p.train.seq_len).map_err(plan_err)?;
            tasks.push((key, task));
        }
        p.train.validate().map_err(plan_err)?;
        archs.push(
            lab_train::variant_arch(&p.variant_name, &p.base, p.train.seq_len).map_err(plan_err)?,
        );
    }
    let recorded: Vec<AblationRow> = if resume && study.records_path().is_file() {
        match study.read_rows() {
            Ok(r) => r,
            Err(lab_records::RecordsError::Empty { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        }
    } else {
        Vec::new()
    };
    let mut run = study.start::<AblationRow>(meta, resume, &lab_records::text_differences)?;
    for w in std::mem::take(&mut run.warnings) {
        progress(Event::Warning(w));
    }
    let done = run.done.clone();
    let states: Vec<RunState> = plans
        .iter()
        .map(|p| run_state(&p.grid, &recorded))
        .collect();
    let mut outcome = StudyOutcome {
        runs: plans.len(),
        ..Default::default()
    };
    progress(Event::Planned {
        runs: plans.len(),
        to_train: states.iter().filter(|s| s.needs_training()).count(),
    });
    for ((p, arch), state) in plans.iter().zip(&archs).zip(states) {
        match state {
            RunState::Finished => {
                outcome.finished += 1;
                continue;
            }
            RunState::Diverged => {
                outcome.diverged.push(p.grid.id.clone());
                continue;
            }
            _ => {}
        }
        let resumed_from = match state {
            RunState::Unfinished { step } => Some(step),
            _ => None,
        };
        progress(Event::RunStarted {
            run: &p.grid,
            resumed_from,
        });
        let key = format!("{:?}|{}", p.task, p.train.seq_len);
        let task = &tasks
            .iter()
            .find(|(k, _)| *k == key)
            .expect("loaded above")
            .1;
        let ckpt = study.path().join("checkpoints").join(&p.grid.id);
        let metric = p.task.metric_name();
        let mut obs = RunObserver {
            run: p,
            spec,
            ctx,
            metric,
            writer: &mut run,
            done: &done,
            stop,
            progress: &mut *progress,
            last_step: resumed_from.unwrap_or(0),
            _b: std::marker::PhantomData,
        };
        let result = lab_train::train::<B>(arch, task, &p.train, &ckpt, resume, device, &mut obs);
        let end = match result {
            Ok(Outcome::Finished) => {
                outcome.finished += 1;
                RunEnd::Finished
            }
            Ok(Outcome::Diverged { step, loss }) => {
                let mut row = obs.row(step, Status::Diverged);
                row.note = format!("training loss {loss} at step {step}");
                obs.record(&row)?;
                outcome.diverged.push(p.grid.id.clone());
                RunEnd::Diverged { step, loss }
            }
            Ok(Outcome::Interrupted { step }) => {
                outcome.interrupted = true;
                RunEnd::Interrupted { step }
            }
            Err(e) => {
                let mut row = obs.row(obs.last_step, Status::Error);
                row.note = e.to_string();
                obs.writer.write(&row)?;
                outcome.failed.push((p.grid.id.clone(), e.to_string()));
                RunEnd::Failed(e.to_string())
            }
        };
        progress(Event::RunEnded {
            run: &p.grid,
            end: end.clone(),
        });
        if outcome.interrupted {
            return Ok(outcome);
        }
    }
    run.finish()?;
    Ok(outcome)
}
