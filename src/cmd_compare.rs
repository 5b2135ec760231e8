//! `rwkv-lab compare-backends`: the same weights and tokens on several backends, timed and
//! compared side by side. The measuring is `rwkv_lab_core::compare`, the report
//! `rwkv_report::backends`; this file parses arguments, runs each backend and prints.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lab_records::provenance::{default_memory_budget, git_rev, machine_slug};
use lab_records::{BackendRow, Measured, Status, StudyDir};
use lab_util::fmt_bytes;
use rwkv_lab_core::compare::{self, BackendRun, CompareSpec, Outputs, Progress};
use rwkv_lab_core::estimate::DeviceLimits;

use crate::backend::{BackendKind, Dtype, Job, Metered, dispatch, ensure_available};
use crate::util::memory_budget;
use rwkv::MatmulPrecision;

/// One backend of the comparison: `BACKEND[:DTYPE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub kind: BackendKind,
    pub dtype: Dtype,
    /// `cuda:tf32`: the model's products in [`MatmulPrecision::Fast`] (TF32 tensor cores).
    pub matmul: MatmulPrecision,
}

impl Choice {
    /// The dtype as recorded: `tf32` for `cuda:tf32`.
    fn dtype_name(self) -> &'static str {
        match self.matmul {
            MatmulPrecision::Fast => "tf32",
            MatmulPrecision::F32 => self.dtype.name(),
        }
    }

    fn label(self) -> String {
        lab_records::backend_label(self.kind.name(), self.dtype_name())
    }
}

/// clap value parser of `BACKEND[:DTYPE]` (`ndarray`, `ndarray:f64`, `cuda`, `cuda:tf32`).
fn parse_choice(s: &str) -> Result<Choice, String> {
    let (name, dtype) = match s.trim().split_once(':') {
        Some((n, d)) => (n, Some(d)),
        None => (s.trim(), None),
    };
    let kind = BackendKind::from_str(name, true).map_err(|_| {
        format!(
            "`{name}` is not a backend (ndarray, flex, wgpu, cuda; with :f64 for ndarray in \
             float64, :tf32 for cuda's TF32 products)"
        )
    })?;
    let (dtype, matmul) = match dtype {
        None => (Dtype::F32, MatmulPrecision::F32),
        Some(d) if d.eq_ignore_ascii_case("tf32") => {
            if kind != BackendKind::Cuda {
                return Err(format!(
                    "`{name}:tf32`: only cuda has TF32 products (the others always compute in f32)"
                ));
            }
            (Dtype::F32, MatmulPrecision::Fast)
        }
        Some(d) => (
            Dtype::from_str(d, true)
                .map_err(|_| format!("`{d}` is not a dtype (f32, f64, tf32)"))?,
            MatmulPrecision::F32,
        ),
    };
    Ok(Choice {
        kind,
        dtype,
        matmul,
    })
}

#[derive(Debug, Args)]
#[command(after_help = "\
Runs the same model (seeded random weights, rounded to f32 so every backend computes the same \
function) on the same tokens on each backend, one after the other in this process, and writes a \
side-by-side report: prefill time per formulation and T, decode latency (RNN mode, logits on \
the host each token), speedups over the first backend (the reference), and the largest \
difference of each backend's outputs from the reference's (last-position logits of every \
prefill, the last decode step's logits). Put `ndarray:f64` first to measure every backend's \
error against float64.

Measurements beyond the spec's length limits, over the memory budget, or with a tensor larger \
than the device's largest single buffer (wgpu: the adapter's limit, 128 MiB on lavapipe) are \
recorded as skipped with the reason; one that fails or panics is recorded as an error and the \
run goes on. Rows are flushed to OUT/records.csv one at a time; summary.md and the plots are \
rendered at the end (`rwkv-lab report OUT` re-renders them). OUT must be new or empty (or a \
study folder without records); nothing is ever deleted.

Examples:
  rwkv-lab compare-backends --quick
  rwkv-lab compare-backends --backends ndarray:f64,ndarray --quick
  cargo run --release --features cuda,wgpu -- compare-backends --backends ndarray,cuda,wgpu
  rwkv-lab compare-backends --backends cuda,cuda:tf32    (CUDA's full-f32 vs TF32 products)
  rwkv-lab compare-backends --config my-backends.yaml --out reports/backends/h200")]
pub struct CompareArgs {
    /// Backends, comma-separated, the reference first: BACKEND[:DTYPE] (ndarray, ndarray:f64,
    /// flex, wgpu, cuda, cuda:tf32 = cuda with TF32 products) [default: ndarray, then every
    /// GPU backend compiled in].
    #[arg(long, value_delimiter = ',', value_parser = parse_choice)]
    pub backends: Vec<Choice>,
    /// The comparison spec (YAML); default: the shipped experiments/backends.yaml, built in.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Use the spec's `quick` overrides (a small model; a minute on a laptop).
    #[arg(long)]
    pub quick: bool,
    /// Output folder [default: reports/backends/<machine>-<UTC time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip measurements estimated above this (e.g. 8G); overrides the spec; default half of RAM.
    #[arg(long, value_parser = memory_budget)]
    pub memory_budget: Option<u64>,
}

/// The shipped spec, built in: the command works from any folder.
const SHIPPED_SPEC: &str = include_str!("../experiments/backends.yaml");
const SHIPPED_SPEC_NAME: &str = "experiments/backends.yaml (built in)";

/// The default backends: ndarray, then every GPU backend compiled in.
fn default_backends() -> Vec<Choice> {
    [BackendKind::Ndarray, BackendKind::Cuda, BackendKind::Wgpu]
        .into_iter()
        .filter(|&k| ensure_available(k, Dtype::F32).is_ok())
        .map(|kind| Choice {
            kind,
            dtype: Dtype::F32,
            matmul: MatmulPrecision::F32,
        })
        .collect()
}

struct CompareJob<'a> {
    spec: &'a CompareSpec,
    run: BackendRun,
    reference: Option<&'a Outputs>,
    bar: &'a ProgressBar,
    sink: &'a mut dyn FnMut(&BackendRow) -> Result<(), lab_records::RecordsError>,
}

/// What one backend's run returns: its outputs and a line on its device.
struct Done {
    outputs: Outputs,
    device: String,
}

impl Job for CompareJob<'_> {
    type Output = Done;

    fn run<B: Metered>(self, device: B::Device) -> Result<Done> {
        let max_buffer = B::max_buffer(&device);
        let run = BackendRun {
            limits: DeviceLimits {
                max_buffer,
                ..self.run.limits
            },
            ..self.run
        };
        let device_line = format!(
            "{}: {:?}, memory budget {}{}",
            run.label(),
            device,
            fmt_bytes(run.limits.memory_budget as f64),
            max_buffer
                .map(|m| format!(", largest single buffer {}", fmt_bytes(m as f64)))
                .unwrap_or_default()
        );
        say(self.bar, &device_line);
        let bar = self.bar;
        let mut progress = |p: Progress<'_>| match p {
            Progress::Started(what) => bar.set_message(what.to_string()),
            Progress::Finished(row) => {
                say(bar, &describe(row));
                bar.inc(1);
            }
        };
        let outputs = compare::run_backend::<B>(
            self.spec,
            &run,
            &device,
            self.reference,
            &mut progress,
            self.sink,
        )?;
        Ok(Done {
            outputs,
            device: device_line,
        })
    }
}

/// One line per row, as the run goes.
fn describe(r: &BackendRow) -> String {
    let what = match r.measured {
        Measured::Prefill => format!(
            "{:<12} prefill T={:<6} {:<11}",
            r.label(),
            r.seq_len,
            r.method
        ),
        Measured::Decode => format!("{:<12} decode  {:<19}", r.label(), r.method),
        Measured::Matmul => format!("{:<12} matmul  {:<19}", r.label(), r.method),
    };
    match (r.status, r.median_s) {
        (Status::Ok, Some(s)) => {
            let unit = if r.measured == Measured::Decode {
                "ms/token"
            } else {
                "ms"
            };
            let diff = r
                .max_abs_diff
                .map(|d| format!(", max |Δ| {d:.2e} vs {}", r.reference))
                .unwrap_or_default();
            format!("{what} {:>10.3} {unit}{diff}", s * 1e3)
        }
        (status, _) => format!("{what} {status}: {}", r.note),
    }
}

/// Prints a line above the progress bar, or to stderr when the bar is hidden.
fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

pub fn run(args: &CompareArgs) -> Result<()> {
    let backends = if args.backends.is_empty() {
        default_backends()
    } else {
        args.backends.clone()
    };
    for c in &backends {
        ensure_available(c.kind, c.dtype)?;
    }
    let labels: Vec<String> = backends.iter().map(|c| c.label()).collect();
    if let Some(d) = labels
        .iter()
        .enumerate()
        .find(|(i, l)| labels[..*i].contains(l))
    {
        bail!("--backends names {} twice", d.1);
    }
    let (mut spec, name) = match &args.config {
        Some(p) => (CompareSpec::load(p)?, p.display().to_string()),
        None => (
            CompareSpec::parse(SHIPPED_SPEC, SHIPPED_SPEC_NAME)?,
            SHIPPED_SPEC_NAME.to_string(),
        ),
    };
    if args.quick {
        spec = spec.quick(&name)?;
    }
    let budget = args
        .memory_budget
        .or(spec.memory_budget_bytes())
        .unwrap_or_else(default_memory_budget);
    let study = match &args.out {
        Some(out) => StudyDir::for_writing(out)?,
        None => StudyDir::fresh(
            std::path::Path::new("reports/backends"),
            &format!(
                "{}{}",
                machine_slug(),
                if args.quick { "-quick" } else { "" }
            ),
        )?,
    };
    let rev = git_rev(crate::cmd_scale::repo_dir());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let meta = compare::study_meta(&spec, &labels, &command, &rev);
    let mut run = compare::start(&study, meta)?;
    eprintln!(
        "comparing {} -> {} (reference {}, memory budget {})",
        labels.join(", "),
        study.path().display(),
        labels[0],
        fmt_bytes(budget as f64)
    );
    let total: usize = backends
        .iter()
        .map(|c| {
            let cpu = matches!(c.kind, BackendKind::Ndarray | BackendKind::Flex);
            spec.planned(cpu && c.dtype == Dtype::F32)
        })
        .sum();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}] {msg}")
            .expect("valid template"),
    );
    let mut reference: Option<Outputs> = None;
    let mut devices = Vec::new();
    let mut failed = Vec::new();
    for c in &backends {
        let cpu = matches!(c.kind, BackendKind::Ndarray | BackendKind::Flex);
        let job = CompareJob {
            spec: &spec,
            run: BackendRun {
                backend: c.kind.name().into(),
                dtype: c.dtype_name().into(),
                cpu,
                limits: DeviceLimits::budget(budget),
                reference: labels[0].clone(),
                git_rev: rev.clone(),
            },
            reference: reference.as_ref(),
            bar: &bar,
            sink: &mut |row| run.write(row),
        };
        rwkv::set_matmul_precision(c.matmul);
        let outcome = dispatch(c.kind, c.dtype, job);
        rwkv::set_matmul_precision(MatmulPrecision::F32);
        match outcome {
            Ok(done) => {
                devices.push(done.device);
                if reference.is_none() {
                    reference = Some(done.outputs);
                }
            }
            Err(e) => {
                say(&bar, &format!("{}: {e:#}", c.label()));
                devices.push(format!("{}: did not run ({e:#})", c.label()));
                failed.push(c.label());
                if reference.is_none() {
                    reference = Some(Outputs::default());
                }
            }
        }
    }
    bar.finish_and_clear();
    let mut meta = run.finish()?;
    meta.device = devices.join("; ");
    study.write_meta(&meta)?;
    crate::cmd_scale::render(study.path())?;
    if !failed.is_empty() {
        bail!(
            "backend(s) {} did not run (see above); the others' records and the report are in {}",
            failed.join(", "),
            study.path().display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_choices_parse() {
        assert_eq!(
            parse_choice("ndarray:f64"),
            Ok(Choice {
                kind: BackendKind::Ndarray,
                dtype: Dtype::F64,
                matmul: MatmulPrecision::F32,
            })
        );
        assert_eq!(parse_choice("cuda").unwrap().label(), "cuda");
        let fast = parse_choice("cuda:tf32").unwrap();
        assert_eq!(
            (fast.label(), fast.matmul),
            ("cuda:tf32".into(), MatmulPrecision::Fast)
        );
        assert!(parse_choice("wgpu:tf32").unwrap_err().contains("only cuda"));
        assert!(parse_choice("tpu").unwrap_err().contains("not a backend"));
        assert!(
            parse_choice("ndarray:f16")
                .unwrap_err()
                .contains("not a dtype")
        );
        let shipped = CompareSpec::parse(SHIPPED_SPEC, SHIPPED_SPEC_NAME).unwrap();
        shipped.quick(SHIPPED_SPEC_NAME).unwrap();
    }
}
