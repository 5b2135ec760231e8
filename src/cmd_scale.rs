//! `rwkv-lab scale`, `rwkv-lab report` and `rwkv-lab reproduce`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lab_records::provenance::{default_memory_budget, git_rev};
use lab_records::{Kind, ScalingRecord, Status, StudyDir};
use lab_util::fmt_bytes;
use rwkv_lab_core::ScalingSpec;
use rwkv_lab_core::scaling::{self, Context, Progress};

use rwkv_checkpoint::{Checkpoint, Reference};
use rwkv_lab_core::verify::{
    Inputs, RandomModel, TokenChoice, VerifyOptions, VerifyReport, verify_checkpoint, verify_random,
};

use crate::backend::{BackendKind, Dtype, Job, dispatch};
use crate::cmd_verify;
use crate::util::memory_budget;

#[derive(Debug, Args)]
#[command(after_help = "\
Measures, for every sequence length T of the spec: prefill (one whole-sequence forward) of RWKV \
in each listed WKV formulation and of the transformer with explicit and fused attention; and \
generation after a short prompt (RWKV in RNN mode, the transformer with a KV cache), per-token \
latency and cumulative time. Each measurement: warm-up, device sync before the clock stops, \
median/min/max of the spec's repeats, peak memory allocated during the call (CPU: counting \
allocator), state or KV-cache size. Measurements estimated above the memory budget, or beyond a \
variant's max_seq_len in the spec, are recorded as skipped, never run.

Rows are appended to OUT/records.csv and flushed one at a time: an interrupted run keeps what it \
measured, and --resume continues it. OUT must be new, empty, or a study folder written by \
rwkv-lab (it carries a .rwkv-lab-study file); any other folder is refused, and nothing is ever \
deleted. When the run ends, plots and summary.md are rendered into \
OUT from the records (`rwkv-lab report OUT` re-renders them).

Examples:
  rwkv-lab scale --config experiments/scaling.yaml --quick
  rwkv-lab scale --config experiments/scaling.yaml --out reports/scaling/ndarray-mybox
  rwkv-lab scale --config experiments/scaling.yaml --resume")]
pub struct ScaleArgs {
    /// The study spec (YAML); default: the shipped experiments/scaling.yaml, built into the
    /// binary (so the command works from any folder).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output folder (default: reports/scaling/<backend>-<machine>[-quick]).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use the spec's `quick` overrides (a few minutes on a laptop).
    #[arg(long)]
    pub quick: bool,
    /// Continue an interrupted run in OUT, skipping measurements already recorded.
    #[arg(long)]
    pub resume: bool,
    /// Skip measurements estimated above this (e.g. 8G); overrides the spec; default half of RAM.
    #[arg(long, value_parser = memory_budget)]
    pub memory_budget: Option<u64>,
    /// Precision.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Runs the quick equivalence check (verify --random in f32 and f64, and the shipped reference \
checkpoint against its third-party outputs), the quick scaling study and an ablation smoke \
test (two variants, a few training steps; records and plots written), then prints where the \
reports are. Each run writes a new folder OUT/run-<UTC time>/ (the studies in its \
scaling-quick/ and ablation-smoke/); nothing in OUT is deleted or overwritten.

Example:
  cargo run --release -- reproduce")]
pub struct ReproduceArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
    /// Where the run folders go.
    #[arg(long, default_value = "target/rwkv-lab/reproduce")]
    pub out: PathBuf,
    /// The scaling spec whose `quick:` section runs (default: the shipped
    /// experiments/scaling.yaml, built into the binary).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

struct ScaleJob<'a> {
    spec: &'a ScalingSpec,
    ctx: &'a Context,
    study: &'a StudyDir,
    resume: bool,
}

fn describe(r: &ScalingRecord) -> String {
    let what = match r.kind {
        Kind::Prefill => format!(
            "prefill  {:<11} {:<10} T={:<6}",
            r.model.as_str(),
            r.method,
            r.seq_len
        ),
        Kind::Generate => format!(
            "generate {:<11} {:<10} {} tokens",
            r.model.as_str(),
            r.method,
            r.position
        ),
    };
    match (r.status, r.median_s) {
        (Status::Ok, Some(m)) => {
            let peak = r
                .peak_bytes
                .map(|p| format!(", peak {}", fmt_bytes(p as f64)))
                .unwrap_or_default();
            let cum = r
                .cumulative_s
                .map(|c| format!(", cumulative {c:.3} s"))
                .unwrap_or_default();
            format!("{what} {:>10.2} ms{cum}{peak}", m * 1e3)
        }
        (status, _) => format!("{what} {status}: {}", r.note),
    }
}

impl Job for ScaleJob<'_> {
    type Output = ();

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<()> {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}] {msg}")
                .expect("valid template"),
        );
        let mut progress = |p: Progress<'_>| match p {
            Progress::Warning(w) => say(&bar, &format!("warning: {w}")),
            Progress::Planned(n) => {
                bar.set_length(n as u64);
                if n == 0 {
                    say(
                        &bar,
                        "nothing left to measure (every planned measurement is already recorded)",
                    );
                }
            }
            Progress::Started(what) => bar.set_message(what.to_string()),
            Progress::Finished(rows) => {
                // one line per prefill; for generation, the first and the last row
                let shown: Vec<&ScalingRecord> = match rows {
                    [first, .., last] if first.kind == Kind::Generate => vec![first, last],
                    all => all.iter().collect(),
                };
                for r in shown {
                    say(&bar, &describe(r));
                }
                bar.inc(1);
            }
        };
        let meter = B::meter(&device);
        eprintln!("memory: {}", meter.describe());
        let ctx = Context {
            max_buffer: B::max_buffer(&device),
            ..self.ctx.clone()
        };
        if let Some(m) = ctx.max_buffer {
            eprintln!(
                "largest single buffer of the device: {} (measurements with a larger tensor are skipped)",
                fmt_bytes(m as f64)
            );
        }
        scaling::run_study::<B>(
            self.study,
            self.spec,
            &device,
            &ctx,
            meter.as_ref(),
            self.resume,
            &mut progress,
        )?;
        bar.finish_and_clear();
        Ok(())
    }
}

/// Prints a line above the progress bar, or to stderr when the bar is hidden (stderr not
/// a terminal: a hidden bar drops its println, and the lines must not be lost).
fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// The shipped scaling spec, built in: `scale` and `reproduce` work from any folder.
const SHIPPED_SPEC: &str = include_str!("../experiments/scaling.yaml");
const SHIPPED_SPEC_NAME: &str = "experiments/scaling.yaml (built in)";

/// The shipped reference checkpoint and its third-party outputs (see the fixture's
/// README), built in for `reproduce`; about 190 KB.
const FIXTURE: [(&str, &[u8]); 2] = [
    (
        "model.pth",
        include_bytes!("../tests/fixtures/reference-tiny/model.pth"),
    ),
    (
        "reference.safetensors",
        include_bytes!("../tests/fixtures/reference-tiny/reference.safetensors"),
    ),
];
const FIXTURE_NAME: &str = "tests/fixtures/reference-tiny";

/// The ablation smoke test of `reproduce` (two variants, a few MQAR steps), built in.
const ABLATION_SMOKE: &str = include_str!("../experiments/ablation-smoke.yaml");
const ABLATION_SMOKE_NAME: &str = "experiments/ablation-smoke.yaml (built in)";

/// Runs the built-in ablation smoke study into `out` and renders it; true when both runs
/// finished and the records and the learning-curve plot were written.
fn ablation_smoke(backend: BackendKind, out: &Path) -> Result<bool> {
    let spec =
        rwkv_lab_core::ablation::AblationSpec::parse(ABLATION_SMOKE, ABLATION_SMOKE_NAME, None)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outcome = crate::cmd_ablate::run_spec(&spec, out, None, false, backend, stop)?;
    render(out)?;
    let written = [
        "records.csv",
        "summary.md",
        "curves_mqar.png",
        "curves_mqar.svg",
    ]
    .iter()
    .all(|f| out.join(f).is_file());
    Ok(written && outcome.finished == outcome.runs && outcome.runs == 2)
}

/// The source tree this binary was built from: its git revision is the measuring code's.
pub(crate) fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a study; returns the output folder.
pub fn run_scale(args: &ScaleArgs) -> Result<PathBuf> {
    crate::backend::ensure_available(args.backend, args.dtype)?;
    let (mut spec, name) = match &args.config {
        Some(path) => (ScalingSpec::load(path)?, path.display().to_string()),
        None => (
            ScalingSpec::parse(SHIPPED_SPEC, SHIPPED_SPEC_NAME)?,
            SHIPPED_SPEC_NAME.to_string(),
        ),
    };
    if args.quick {
        spec = spec.quick(&name)?;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| scaling::default_out(args.backend.name(), args.quick));
    let budget = args
        .memory_budget
        .or(spec.memory_budget_bytes())
        .unwrap_or_else(default_memory_budget);
    // under `--matmul fast` on CUDA every product is TF32: recorded as the dtype. (In the
    // default f32 the transformer baseline's products are still Burn's, TF32 on sm80+, and
    // its rows record `tf32`: docs/design.md §18; compare the two models' speed on CUDA
    // with `--matmul fast`.)
    let fast_cuda = args.backend == crate::backend::BackendKind::Cuda
        && args.dtype == Dtype::F32
        && rwkv::matmul_precision() == rwkv::MatmulPrecision::Fast;
    let ctx = Context {
        backend: args.backend.name().into(),
        dtype: if fast_cuda { "tf32" } else { args.dtype.name() }.into(),
        git_rev: git_rev(repo_dir()),
        memory_budget: budget,
        max_buffer: None,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let study = StudyDir::for_writing(&out)?;
    eprintln!(
        "scaling study -> {} ({} on {}, budget {})",
        out.display(),
        ctx.dtype,
        ctx.backend,
        fmt_bytes(budget as f64)
    );
    dispatch(
        args.backend,
        args.dtype,
        ScaleJob {
            spec: &spec,
            ctx: &ctx,
            study: &study,
            resume: args.resume,
        },
    )?;
    render(&out)?;
    Ok(out)
}

/// Renders plots and summary.md from the records and prints what was written.
pub fn render(dir: &Path) -> Result<()> {
    let output = rwkv_report::render(dir)?;
    for w in &output.warnings {
        eprintln!("warning: {w}");
    }
    if !output.fits.is_empty() {
        println!("\nfitted log-log exponents (upper half of the T range):");
    }
    for f in &output.fits {
        println!("  {f}");
    }
    for c in &output.crossovers {
        println!("  vs {}: {}", c.label, c.describe());
    }
    println!("\nwritten from {} records:", output.n_records);
    for f in output.files() {
        println!("  {}", f.display());
    }
    Ok(())
}

/// The equivalence checks of `reproduce` in one precision: `verify --random` with the
/// command's defaults, and the shipped reference checkpoint against its reference outputs.
struct ReproduceChecks<'a> {
    checkpoint: &'a Checkpoint,
    reference: &'a Reference,
    options: VerifyOptions,
}

impl Job for ReproduceChecks<'_> {
    /// The random model's report, then the checkpoint's.
    type Output = [VerifyReport; 2];

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<[VerifyReport; 2]> {
        let model = RandomModel {
            vocab_size: cmd_verify::VOCAB,
            d_model: cmd_verify::D_MODEL,
            n_layers: cmd_verify::N_LAYERS,
            d_ffn: None,
            seed: 0,
        };
        let tokens = TokenChoice::Random {
            batch: cmd_verify::BATCH,
            time: cmd_verify::SEQ_LEN,
            seed: 0,
        };
        let random = verify_random::<B>(&device, &model, &tokens, &self.options)?;
        let inputs = Inputs::Reference(self.reference);
        let checkpoint = verify_checkpoint::<B>(&device, self.checkpoint, inputs, &self.options)?;
        Ok([random, checkpoint])
    }
}

/// Runs the equivalence checks of `reproduce` in f32 and f64 on `backend` with the fixture
/// in `fixture`; returns each check's label (the equivalent command) and report.
fn reproduce_checks(backend: BackendKind, fixture: &Path) -> Result<Vec<(String, VerifyReport)>> {
    let checkpoint = rwkv_checkpoint::load(fixture.join("model.pth"))?;
    let reference = rwkv_checkpoint::load_reference(fixture.join("reference.safetensors"))?;
    let mut out = Vec::new();
    for dtype in [Dtype::F32, Dtype::F64] {
        let options = VerifyOptions {
            memory_budget: default_memory_budget(),
            backend: backend.name().into(),
            ..VerifyOptions::default()
        };
        let checks = ReproduceChecks {
            checkpoint: &checkpoint,
            reference: &reference,
            options,
        };
        let [random, reference] = dispatch(backend, dtype, checks)?;
        let d = dtype.name();
        out.push((format!("verify --random --dtype {d}"), random));
        // labelled with the repository's paths: the same files, as a user would name them
        let label = format!(
            "verify --checkpoint {FIXTURE_NAME}/model.pth --reference {FIXTURE_NAME}/reference.safetensors --dtype {d}"
        );
        out.push((label, reference));
    }
    Ok(out)
}

/// `reproduce`: quick equivalence checks, then the quick scaling study.
pub fn run_reproduce(args: &ReproduceArgs) -> Result<bool> {
    crate::backend::ensure_available(args.backend, Dtype::F32)?;
    // a new folder per run: earlier runs, and anything else in OUT, stay as they are
    let run = StudyDir::fresh(&args.out, "run")?;
    // the built-in fixture, copied into the run folder: every check runs from any folder
    let fixture = run.file("reference-tiny");
    std::fs::create_dir(&fixture).map_err(|e| anyhow::anyhow!("{}: {e}", fixture.display()))?;
    for (name, bytes) in FIXTURE {
        let path = fixture.join(name);
        std::fs::write(&path, bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let mut ok = true;
    for (label, report) in reproduce_checks(args.backend, &fixture)? {
        println!("{} {label}", if report.pass { "PASS" } else { "FAIL" });
        ok &= report.pass;
    }
    let scale = ScaleArgs {
        config: args.config.clone(),
        out: Some(run.path().join("scaling-quick")),
        quick: true,
        resume: false,
        memory_budget: None,
        dtype: Dtype::F32,
        backend: args.backend,
    };
    let out = run_scale(&scale)?;
    println!("\nreport: {}", out.join("summary.md").display());
    let smoke = run.path().join("ablation-smoke");
    let smoke_ok = ablation_smoke(args.backend, &smoke)?;
    println!(
        "{} ablation smoke test (two variants, 12 steps of MQAR): {}",
        if smoke_ok { "PASS" } else { "FAIL" },
        smoke.join("summary.md").display()
    );
    Ok(ok && smoke_ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd_verify::VerifyArgs;

    #[test]
    fn ablation_smoke_trains_two_variants_and_writes_its_report() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("smoke");
        assert!(ablation_smoke(BackendKind::Ndarray, &out).unwrap());
        let rows: Vec<lab_records::AblationRow> =
            StudyDir::open(&out).unwrap().read_rows().unwrap();
        assert_eq!(rows.len(), 6);
    }

    #[test]
    fn shipped_spec_is_built_in_and_has_a_quick_profile() {
        let spec = ScalingSpec::parse(SHIPPED_SPEC, SHIPPED_SPEC_NAME).unwrap();
        assert!(spec.quick.is_some());
        assert!(FIXTURE.iter().all(|(_, bytes)| bytes.len() > 1000));
    }

    /// `reproduce`'s random check is `verify --random` with the command's defaults (its
    /// label says so), and its reference check runs on the built-in fixture.
    #[test]
    fn reproduce_checks_are_the_verify_defaults() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in FIXTURE {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let checks = reproduce_checks(BackendKind::Ndarray, dir.path()).unwrap();
        assert_eq!(checks.len(), 4);
        let default = cmd_verify::evaluate(VerifyArgs::default()).unwrap();
        let random = &checks[0].1;
        assert_eq!(checks[0].0, "verify --random --dtype f32");
        assert_eq!(
            serde_json::to_value(&random.model).unwrap(),
            serde_json::to_value(&default.model).unwrap()
        );
        assert_eq!(
            (random.batch, random.seq_len, random.chunk_len),
            (default.batch, default.seq_len, default.chunk_len)
        );
        assert!(checks.iter().all(|(_, r)| r.pass), "{checks:?}");
        assert!(checks[1].1.reference.is_some() && checks[3].1.dtype == "f64");
    }
}
