//! `rwkv-lab ablate`: train the variants of an ablation study from its YAML spec, and the
//! ablation side of `rwkv-lab report` (merging shard folders).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use burn::backend::Autodiff;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lab_records::StudyDir;
use lab_records::provenance::git_rev;
use rwkv_lab_core::ablation::{
    AblationSpec, Context, Event, RunEnd, Shard, StudyOutcome, run_study,
};

use crate::backend::{BackendKind, Dtype, Job, dispatch};

#[derive(Debug, Args)]
#[command(after_help = "\
Trains every run of the study's grid (variants × seeds × swept settings, in the spec's \
order), one after the other, and appends one row per evaluation to OUT/records.csv, flushed \
before the run's checkpoint (OUT/checkpoints/<run-id>/) is written. A run whose loss becomes \
NaN or infinite is recorded as diverged and the study goes on; a run that fails is recorded \
as an error (exit code 1 at the end). Ctrl-C stops at the next step: what was recorded stays, \
and --resume continues (finished and diverged runs are skipped, unfinished ones continue \
from their checkpoint). Then summary.md and the plots are rendered from the records.

Training runs on flex unless --backend says otherwise (fastest on CPUs, bit-identical \
reruns). Each step cuts its batch into `train.micro_batches` row slices (default 4) whose \
forward and backward run side by side on their own threads; the summed gradients are the \
batch's, and the records depend on the spec alone, not on the machine's core count.

--shard K/N (K from 0, K < N) trains only the runs whose grid index is K modulo N, for a \
job array on shared storage; `rwkv-lab report DIR` on the folder of the shard folders merges \
them and lists the runs still missing.

Examples:
  rwkv-lab ablate --config experiments/ablation-mqar.yaml --quick
  rwkv-lab ablate --config experiments/ablation-shakespeare.yaml --out reports/ablation-shakespeare
  rwkv-lab ablate --config experiments/ablation-mqar.yaml --resume
  rwkv-lab ablate --config experiments/ablation-mqar-zoology.yaml --shard 3/16 --out runs/zoology/shard-3")]
pub struct AblateArgs {
    /// The study spec (YAML).
    #[arg(long)]
    pub config: PathBuf,
    /// Output folder (default: reports/<study>[-quick][/shard-K-of-N]).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use the spec's `quick:` overrides (minutes).
    #[arg(long)]
    pub quick: bool,
    /// Continue an interrupted study in OUT.
    #[arg(long)]
    pub resume: bool,
    /// Train only the K-th of N slices of the grid (K from 0).
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Compute backend (default: flex, the fastest CPU backend for training, and the one
    /// whose reruns are bit-identical; ndarray where flex is not compiled in).
    #[arg(long, value_enum, default_value_t = BackendKind::TRAINING_DEFAULT)]
    pub backend: BackendKind,
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse()
}

#[derive(Debug, Args)]
#[command(after_help = "\
Writes summary.md and the plots into a study folder written by rwkv-lab, from its records \
(any other folder is refused). For ablation studies, several folders (or one folder holding \
shard folders) are merged into one study in --out (default: DIR/merged for one DIR): its \
records are the union of the shards', and its summary lists the grid runs none recorded.

Examples:
  rwkv-lab report reports/scaling/ndarray-amd-epyc-2c
  rwkv-lab report runs/zoology                      (shard folders inside; writes runs/zoology/merged)
  rwkv-lab report a/shard-0 a/shard-1 --out a/all")]
pub struct ReportArgs {
    /// Study folder(s): one study, or shards of one ablation study.
    #[arg(required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged study goes (ablation shards only).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

struct AblateJob<'a> {
    spec: &'a AblationSpec,
    shard: Option<Shard>,
    ctx: &'a Context,
    study: &'a StudyDir,
    resume: bool,
    stop: Arc<AtomicBool>,
}

impl Job for AblateJob<'_> {
    type Output = StudyOutcome;

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<StudyOutcome> {
        let bars = MultiProgress::new();
        let study_bar = bars.add(ProgressBar::new(0));
        study_bar.set_style(
            ProgressStyle::with_template("study {bar:25} {pos}/{len} runs [{elapsed}] {msg}")
                .expect("valid template"),
        );
        let run_bar = bars.add(ProgressBar::new(0));
        run_bar.set_style(
            ProgressStyle::with_template(
                "run   {bar:25} {pos}/{len} steps [{elapsed}<{eta}] {msg}",
            )
            .expect("valid template"),
        );
        let say = |line: &str| {
            if study_bar.is_hidden() {
                eprintln!("{line}");
            } else {
                let _ = bars.println(line);
            }
        };
        let mut current = String::new();
        let mut progress = |e: Event<'_>| match e {
            Event::Warning(w) => say(&format!("warning: {w}")),
            Event::Planned { runs, to_train } => {
                study_bar.set_length(runs as u64);
                study_bar.set_position((runs - to_train) as u64);
                say(&format!(
                    "{runs} runs in this study{}, {to_train} to train",
                    self.shard
                        .map(|s| format!(" (shard {s})"))
                        .unwrap_or_default()
                ));
            }
            Event::RunStarted { run, resumed_from } => {
                current = run.id.clone();
                run_bar.reset();
                run_bar.set_length(run.steps);
                run_bar.set_position(resumed_from.unwrap_or(0));
                study_bar.set_message(run.id.clone());
                if let Some(s) = resumed_from {
                    say(&format!("{}: continuing after step {s}", run.id));
                }
            }
            Event::Step { step, loss, .. } => {
                run_bar.set_position(step);
                run_bar.set_message(format!("loss {loss:.4}"));
            }
            Event::Eval(row) => say(&format!(
                "{current}: step {:>6}  train loss {:.4}  val loss {:.4}  {} {:.4}  {:.0} tok/s",
                row.step,
                row.train_loss.unwrap_or(f64::NAN),
                row.val_loss.unwrap_or(f64::NAN),
                row.metric_name,
                row.val_metric.unwrap_or(f64::NAN),
                row.tokens_per_s.unwrap_or(f64::NAN)
            )),
            Event::RunEnded { run, end } => {
                match &end {
                    RunEnd::Finished => {}
                    RunEnd::Diverged { step, loss } => say(&format!(
                        "{}: DIVERGED at step {step} (loss {loss}); recorded, the study goes on",
                        run.id
                    )),
                    RunEnd::Failed(e) => say(&format!(
                        "{}: FAILED: {e}; recorded, the study goes on",
                        run.id
                    )),
                    RunEnd::Interrupted { .. } => {}
                }
                if !matches!(end, RunEnd::Interrupted { .. }) {
                    study_bar.inc(1);
                }
            }
        };
        let outcome = run_study::<Autodiff<B>>(
            self.study,
            self.spec,
            self.shard,
            self.ctx,
            self.resume,
            &self.stop,
            &device,
            &mut progress,
        )?;
        run_bar.finish_and_clear();
        study_bar.finish_and_clear();
        Ok(outcome)
    }
}

/// The source tree this binary was built from.
fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Default output folder of a study.
fn default_out(spec: &AblationSpec, quick: bool, shard: Option<Shard>) -> PathBuf {
    let mut p = PathBuf::from("reports").join(format!(
        "{}{}",
        spec.study,
        if quick { "-quick" } else { "" }
    ));
    if let Some(s) = shard {
        p = p.join(format!("shard-{}-of-{}", s.index, s.count));
    }
    p
}

/// Ctrl-C sets the flag (the study stops at the next step); a second Ctrl-C ends the
/// process at once.
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    {
        use signal_hook::consts::SIGINT;
        let _ = signal_hook::flag::register_conditional_shutdown(SIGINT, 130, flag.clone());
        let _ = signal_hook::flag::register(SIGINT, flag.clone());
    }
    flag
}

/// Runs a study from a parsed spec into `out`; returns the folder and the outcome.
pub fn run_spec(
    spec: &AblationSpec,
    out: &Path,
    shard: Option<Shard>,
    resume: bool,
    backend: BackendKind,
    stop: Arc<AtomicBool>,
) -> Result<StudyOutcome> {
    let ctx = Context {
        backend: backend.name().into(),
        git_rev: git_rev(repo_dir()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let study = StudyDir::for_writing(out)?;
    let job = AblateJob {
        spec,
        shard,
        ctx: &ctx,
        study: &study,
        resume,
        stop,
    };
    dispatch(backend, Dtype::F32, job)
}

/// `rwkv-lab ablate`; true when every run finished or diverged.
pub fn run(args: &AblateArgs) -> Result<bool> {
    crate::backend::ensure_available(args.backend, Dtype::F32)?;
    let mut spec = AblationSpec::load(&args.config)?;
    let name = args.config.display().to_string();
    if args.quick {
        spec = spec.quick(&name)?;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&spec, args.quick, args.shard));
    eprintln!("ablation study `{}` -> {}", spec.study, out.display());
    let outcome = run_spec(
        &spec,
        &out,
        args.shard,
        args.resume,
        args.backend,
        stop_flag(),
    )?;
    crate::cmd_scale::render(&out)?;
    println!(
        "\n{} of {} runs finished, {} diverged, {} failed",
        outcome.finished,
        outcome.runs,
        outcome.diverged.len(),
        outcome.failed.len()
    );
    for (id, e) in &outcome.failed {
        println!("  failed: {id}: {e}");
    }
    if outcome.interrupted {
        let mut cmd = format!(
            "rwkv-lab ablate --config {} --out {} --resume",
            args.config.display(),
            out.display()
        );
        if args.quick {
            cmd.push_str(" --quick");
        }
        if let Some(s) = args.shard {
            cmd.push_str(&format!(" --shard {s}"));
        }
        if args.backend != BackendKind::TRAINING_DEFAULT {
            cmd.push_str(&format!(" --backend {}", args.backend.name()));
        }
        println!("interrupted: everything recorded so far is kept; continue with\n  {cmd}");
        return Ok(false);
    }
    Ok(outcome.failed.is_empty())
}

/// `rwkv-lab report DIR...`: one study folder re-rendered, or ablation shards merged.
pub fn report(args: &ReportArgs) -> Result<()> {
    if let [dir] = args.dirs.as_slice()
        && args.out.is_none()
        && StudyDir::open(dir).is_ok()
    {
        return crate::cmd_scale::render(dir);
    }
    let sources = rwkv_report::ablation::find_studies(&args.dirs)?;
    let out = match (&args.out, args.dirs.as_slice()) {
        (Some(o), _) => o.clone(),
        (None, [dir]) => dir.join("merged"),
        (None, _) => bail!("several folders are merged into one study: give --out DIR"),
    };
    let out_dir = StudyDir::for_writing(&out)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let names: Vec<String> = sources
        .iter()
        .filter(|s| s.path() != out_dir.path())
        .map(|s| s.path().display().to_string())
        .collect();
    eprintln!(
        "merging {} study folder(s) into {}:",
        names.len(),
        out.display()
    );
    for n in &names {
        eprintln!("  {n}");
    }
    let output = rwkv_report::ablation::merge(&sources, &out_dir, &command)?;
    for w in &output.warnings {
        eprintln!("warning: {w}");
    }
    println!("\nwritten from {} records:", output.n_records);
    for f in output.files() {
        println!("  {}", f.display());
    }
    Ok(())
}
