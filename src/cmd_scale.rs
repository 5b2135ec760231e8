//! `rwkv-lab scale`, `rwkv-lab report` and `rwkv-lab reproduce`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rwkv_lab_core::ScalingSpec;
use rwkv_lab_core::records::RecordWriter;
use rwkv_lab_core::scaling::{self, Context, Progress};
use rwkv_report::{Meta, Record};

use crate::backend::{BackendKind, Dtype, Job, dispatch};
use lab_util::fmt_bytes;

use crate::util::{git_rev, machine_line, machine_slug, parse_bytes, physical_memory, utc_now};

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
measured, and --resume continues it. When the run ends, plots and summary.md are rendered into \
OUT from the records (`rwkv-lab report OUT` re-renders them).

Examples:
  rwkv-lab scale --config experiments/scaling.yaml --quick
  rwkv-lab scale --config experiments/scaling.yaml --out reports/scaling/ndarray-mybox
  rwkv-lab scale --config experiments/scaling.yaml --resume")]
pub struct ScaleArgs {
    /// The study spec (YAML).
    #[arg(long, default_value = "experiments/scaling.yaml")]
    pub config: PathBuf,
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
    #[arg(long, value_parser = parse_bytes)]
    pub memory_budget: Option<u64>,
    /// Precision.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  rwkv-lab report reports/scaling/ndarray-amd-epyc-2c")]
pub struct ReportArgs {
    /// A study folder holding records.csv (and meta.json).
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Runs the quick equivalence check (verify --random in f32 and f64, and the shipped reference \
checkpoint against its third-party outputs) and the quick scaling study, then prints where the \
report is. Output: target/rwkv-lab/reproduce/ (replaced on each run).

Example:
  cargo run --release -- reproduce")]
pub struct ReproduceArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
    /// Output folder.
    #[arg(long, default_value = "target/rwkv-lab/reproduce")]
    pub out: PathBuf,
}

struct ScaleJob<'a> {
    spec: &'a ScalingSpec,
    ctx: &'a Context,
    out: &'a Path,
    resume: bool,
}

fn describe(r: &Record) -> String {
    let what = if r.kind == "prefill" {
        format!(
            "prefill  {:<11} {:<10} T={:<6}",
            r.model, r.variant, r.seq_len
        )
    } else {
        format!(
            "generate {:<11} {:<10} {} tokens",
            r.model, r.variant, r.position
        )
    };
    match (r.status.as_str(), r.median_s) {
        ("ok", Some(m)) => {
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
        let (mut writer, done) = RecordWriter::open(&self.out.join("records.csv"), self.resume)?;
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}] {msg}")
                .expect("valid template"),
        );
        let mut sink = |r: &Record| writer.write(r);
        let mut progress = |p: Progress<'_>| match p {
            Progress::Planned(n) => {
                bar.set_length(n as u64);
                if n == 0 {
                    bar.println(
                        "nothing left to measure (every planned measurement is already recorded)",
                    );
                }
            }
            Progress::Started(what) => bar.set_message(what.to_string()),
            Progress::Finished(rows) => {
                // one line per prefill; for generation, the first and the last row
                let shown: Vec<&Record> = match rows {
                    [first, .., last] if first.kind == "generate" => vec![first, last],
                    all => all.iter().collect(),
                };
                for r in shown {
                    // a hidden bar (stderr not a terminal) drops println; the lines must not be lost
                    if bar.is_hidden() {
                        eprintln!("{}", describe(r));
                    } else {
                        bar.println(describe(r));
                    }
                }
                bar.inc(1);
            }
        };
        let meter = B::meter(&device);
        eprintln!("memory: {}", meter.describe());
        scaling::run::<B>(
            self.spec,
            &device,
            self.ctx,
            meter.as_ref(),
            &done,
            &mut sink,
            &mut progress,
        )?;
        bar.finish_and_clear();
        Ok(())
    }
}

fn write_meta(out: &Path, meta: &Meta) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("meta.json");
    std::fs::write(&path, serde_json::to_string_pretty(meta)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs a study; returns the output folder.
pub fn run_scale(args: &ScaleArgs) -> Result<PathBuf> {
    crate::backend::ensure_available(args.backend, args.dtype)?;
    let mut spec = ScalingSpec::load(&args.config)?;
    if args.quick {
        spec = spec.quick();
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let q = if args.quick { "-quick" } else { "" };
        PathBuf::from(format!(
            "reports/scaling/{}-{}{q}",
            args.backend.name(),
            machine_slug()
        ))
    });
    let budget = args
        .memory_budget
        .or(spec.memory_budget_bytes())
        .unwrap_or_else(|| physical_memory().map(|m| m / 2).unwrap_or(8 << 30));
    let git = git_rev();
    let ctx = Context {
        backend: args.backend.name().into(),
        dtype: args.dtype.name().into(),
        git_rev: git.clone(),
        memory_budget: budget,
    };
    let mut meta = Meta {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        spec: serde_yaml::to_string(&spec)?,
        seed: spec.seed,
        backend: args.backend.name().into(),
        device: format!(
            "{} (memory budget {})",
            args.backend.name(),
            fmt_bytes(budget as f64)
        ),
        dtype: args.dtype.name().into(),
        git_rev: git,
        versions: vec![
            "burn 0.21.0".into(),
            format!("rwkv-lab {}", env!("CARGO_PKG_VERSION")),
        ],
        machine: machine_line(),
        started: utc_now(),
        finished: String::new(),
    };
    let previous = args
        .resume
        .then(|| std::fs::read_to_string(out.join("meta.json")).ok())
        .flatten();
    if let Some(old) = previous.and_then(|text| serde_json::from_str::<Meta>(&text).ok()) {
        meta.started = format!("{} (resumed {})", old.started, meta.started);
    }
    // records first: refuses to overwrite an earlier run before anything is written
    if out.join("records.csv").is_file() && !args.resume {
        bail!(
            "{} already exists; pass --resume to continue that run, or choose another --out",
            out.join("records.csv").display()
        );
    }
    write_meta(&out, &meta)?;
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
            out: &out,
            resume: args.resume,
        },
    )?;
    meta.finished = utc_now();
    write_meta(&out, &meta)?;
    render(&out)?;
    Ok(out)
}

/// Renders plots and summary.md from the records and prints what was written.
pub fn render(dir: &Path) -> Result<()> {
    let output = rwkv_report::render(dir)?;
    println!("\nfitted log-log exponents (upper half of the T range):");
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

/// `reproduce`: quick equivalence checks, then the quick scaling study.
pub fn run_reproduce(args: &ReproduceArgs) -> Result<bool> {
    use crate::cmd_verify::{self, VerifyArgs};
    use clap::Parser;
    let mut ok = true;
    let fixture = Path::new("tests/fixtures/reference-tiny");
    let mut checks: Vec<Vec<String>> = vec![
        vec!["verify", "--random", "--dtype", "f32"]
            .into_iter()
            .map(String::from)
            .collect(),
        vec!["verify", "--random", "--dtype", "f64"]
            .into_iter()
            .map(String::from)
            .collect(),
    ];
    if fixture.join("model.pth").is_file() {
        for dtype in ["f32", "f64"] {
            checks.push(vec![
                "verify".into(),
                "--checkpoint".into(),
                fixture.join("model.pth").display().to_string(),
                "--reference".into(),
                fixture.join("reference.safetensors").display().to_string(),
                "--dtype".into(),
                dtype.into(),
            ]);
        }
    }
    for check in checks {
        let mut argv = vec!["rwkv-lab".to_string()];
        argv.extend(check.iter().cloned());
        argv.extend([
            "--json".to_string(),
            "--backend".to_string(),
            args.backend.name().to_string(),
        ]);
        let cli = crate::Cli::try_parse_from(&argv)?;
        let crate::Command::Verify(v): crate::Command = cli.command else {
            unreachable!("verify arguments")
        };
        let v: VerifyArgs = v;
        let label = check.join(" ");
        let pass = cmd_verify::run_quiet(v)?;
        println!("{} {label}", if pass { "PASS" } else { "FAIL" });
        ok &= pass;
    }
    if args.out.exists() {
        std::fs::remove_dir_all(&args.out)
            .with_context(|| format!("clearing {}", args.out.display()))?;
    }
    let scale = ScaleArgs {
        config: PathBuf::from("experiments/scaling.yaml"),
        out: Some(args.out.join("scaling-quick")),
        quick: true,
        resume: false,
        memory_budget: None,
        dtype: Dtype::F32,
        backend: args.backend,
    };
    let out = run_scale(&scale)?;
    println!("\nreport: {}", out.join("summary.md").display());
    Ok(ok)
}
