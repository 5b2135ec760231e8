//! `rwkv-lab bench-wkv`: time of each WKV formulation versus sequence length.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Element, Tensor, TensorData};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lab_util::SplitMix64;
use lab_util::float_opts;
use rwkv::wkv::{WkvMode, wkv};

use crate::backend::{BackendKind, Dtype, Job, dispatch};
use lab_util::fmt_bytes;

use crate::util::{parse_bytes, physical_memory, positive};

#[derive(Debug, Args)]
#[command(after_help = "\
Times the WKV operator alone (random k, v, decays and bonuses) in each formulation: \
recurrent (the oracle), parallel, chunked (one entry per --chunk-lens value) and scan. \
Each time is the median of --repeats runs after --warmup runs, with a device sync before \
the clock stops; speedups are ratios to the recurrent formulation measured in the same run. \
A formulation whose estimated working memory exceeds --memory-budget is skipped and the \
estimate printed.

Examples:
  rwkv-lab bench-wkv
  rwkv-lab bench-wkv --seq-lens 128,512 --channels 256 --repeats 9
  cargo run --release --features cuda -- bench-wkv --backend cuda")]
pub struct BenchArgs {
    /// Batch size B.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub batch: usize,
    /// Channels C.
    #[arg(long, default_value_t = 512, value_parser = positive)]
    pub channels: usize,
    /// Sequence lengths T, comma-separated.
    #[arg(long, default_value = "256,1024,4096", value_delimiter = ',', value_parser = positive)]
    pub seq_lens: Vec<usize>,
    /// Block lengths of the chunked formulation, comma-separated.
    #[arg(long, default_value = "16,64", value_delimiter = ',', value_parser = positive)]
    pub chunk_lens: Vec<usize>,
    /// Formulations to time (recurrent, parallel, chunked, scan), comma-separated;
    /// `chunked` expands to one entry per --chunk-lens value.
    #[arg(
        long,
        default_value = "recurrent,parallel,chunked,scan",
        value_delimiter = ','
    )]
    pub modes: Vec<String>,
    /// Timed runs per measurement (median reported).
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub repeats: usize,
    /// Untimed warm-up runs per measurement.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Skip formulations estimated to need more working memory than this (e.g. 8G);
    /// default: half of physical memory.
    #[arg(long, value_parser = parse_bytes)]
    pub memory_budget: Option<u64>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Precision.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

/// One measurement (or a skipped one).
#[derive(Debug, Clone)]
struct Row {
    time: usize,
    mode: WkvMode,
    /// Sorted run times in seconds; empty when skipped.
    runs: Vec<f64>,
    estimate: u64,
}

impl Row {
    fn median(&self) -> Option<f64> {
        (!self.runs.is_empty()).then(|| self.runs[self.runs.len() / 2])
    }
}

/// Rough working-memory estimate in bytes (the largest live intermediates).
fn estimate(mode: WkvMode, b: usize, t: usize, c: usize, elem: usize) -> u64 {
    let (b, t, c, e) = (b as u64, t as u64, c as u64, elem as u64);
    match mode {
        WkvMode::Recurrent => 8 * b * t * c * e,
        WkvMode::Scan => 6 * b * t * c * e,
        WkvMode::Parallel => 4 * b * c * t * t * e + 6 * b * t * c * e,
        WkvMode::Chunked { len } => {
            let l = (len as u64).min(t);
            4 * b * c * t * l * e + 8 * b * t * c * e
        }
    }
}

/// The formulations `--modes` asks for, in a fixed order.
fn selected_modes(a: &BenchArgs) -> Result<Vec<WkvMode>> {
    let mut out = Vec::new();
    for name in &a.modes {
        match name.trim().to_ascii_lowercase().as_str() {
            "recurrent" => out.push(WkvMode::Recurrent),
            "parallel" => out.push(WkvMode::Parallel),
            "chunked" => out.extend(a.chunk_lens.iter().map(|&len| WkvMode::Chunked { len })),
            "scan" => out.push(WkvMode::Scan),
            other => bail!(
                "unknown formulation `{other}` in --modes (expected recurrent, parallel, chunked, scan)"
            ),
        }
    }
    if out.is_empty() {
        bail!("--modes selects no formulation");
    }
    Ok(out)
}

struct BenchWkv<'a> {
    args: &'a BenchArgs,
    budget: u64,
}

impl Job for BenchWkv<'_> {
    type Output = Vec<Row>;

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<Vec<Row>> {
        let a = self.args;
        let (bsz, c) = (a.batch, a.channels);
        let elem = <B::FloatElem as Element>::dtype().size();
        let modes = selected_modes(a)?;
        let bar = ProgressBar::new((modes.len() * a.seq_lens.len()) as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
                .expect("valid template"),
        );
        let mut rows = Vec::new();
        for &t in &a.seq_lens {
            let mut rng = SplitMix64::new(a.seed ^ t as u64);
            let f =
                |rng: &mut SplitMix64, n: usize, lo: f64, hi: f64| rng.fill(n, |r| r.range(lo, hi));
            let w = Tensor::<B, 1>::from_data(
                TensorData::new(f(&mut rng, c, -4.0, 2.0), [c]),
                float_opts::<B>(&device),
            )
            .exp()
            .neg();
            let u = Tensor::<B, 1>::from_data(
                TensorData::new(f(&mut rng, c, -2.0, 2.0), [c]),
                float_opts::<B>(&device),
            );
            let k = Tensor::<B, 3>::from_data(
                TensorData::new(f(&mut rng, bsz * t * c, -3.0, 3.0), [bsz, t, c]),
                float_opts::<B>(&device),
            );
            let v = Tensor::<B, 3>::from_data(
                TensorData::new(f(&mut rng, bsz * t * c, -3.0, 3.0), [bsz, t, c]),
                float_opts::<B>(&device),
            );
            for &mode in &modes {
                bar.set_message(format!("T={t} {mode}"));
                let est = estimate(mode, bsz, t, c, elem);
                let mut row = Row {
                    time: t,
                    mode,
                    runs: Vec::new(),
                    estimate: est,
                };
                if est <= self.budget {
                    let call = || {
                        wkv(mode, w.clone(), u.clone(), k.clone(), v.clone(), None).map(|(y, _)| y)
                    };
                    for _ in 0..a.warmup {
                        drop(call()?);
                        B::sync(&device)
                            .map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
                    }
                    for _ in 0..a.repeats {
                        let start = Instant::now();
                        let y = call()?;
                        B::sync(&device)
                            .map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
                        row.runs.push(start.elapsed().as_secs_f64());
                        drop(y);
                    }
                    row.runs.sort_by(f64::total_cmp);
                }
                rows.push(row);
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        Ok(rows)
    }
}

fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let budget = match args.memory_budget {
        Some(b) => b,
        None => physical_memory().map(|m| m / 2).unwrap_or(8 << 30),
    };
    if args.seq_lens.is_empty() {
        bail!("--seq-lens is empty");
    }
    let rows = dispatch(
        args.backend,
        args.dtype,
        BenchWkv {
            args: &args,
            budget,
        },
    )?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "WKV operator, B={} C={}, {} on {} ({} CPU threads available), median of {} runs after {} warm-up [min, max]",
        args.batch,
        args.channels,
        args.dtype.name(),
        args.backend.name(),
        cores,
        args.repeats,
        args.warmup
    );
    println!(
        "memory budget {} (formulations estimated above it are skipped)\n",
        fmt_bytes(budget as f64)
    );
    println!(
        "{:>6}  {:<12} {:>10}  {:>21}  {:>12}  {:>11}",
        "T", "formulation", "median", "[min, max]", "tokens/s", "vs recurrent"
    );
    for &t in &args.seq_lens {
        let of_t: Vec<&Row> = rows.iter().filter(|r| r.time == t).collect();
        let base = of_t
            .iter()
            .find(|r| r.mode == WkvMode::Recurrent)
            .and_then(|r| r.median());
        for r in of_t {
            match r.median() {
                Some(m) => {
                    let speed = base
                        .map(|b| format!("{:.2}x", b / m))
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:>6}  {:<12} {:>10}  {:>21}  {:>12.0}  {:>11}",
                        t,
                        r.mode.to_string(),
                        fmt_time(m),
                        format!(
                            "[{}, {}]",
                            fmt_time(r.runs[0]),
                            fmt_time(*r.runs.last().expect("non-empty"))
                        ),
                        (args.batch * t) as f64 / m,
                        speed
                    );
                }
                None => println!(
                    "{:>6}  {:<12} skipped: needs about {} (budget {})",
                    t,
                    r.mode.to_string(),
                    fmt_bytes(r.estimate as f64),
                    fmt_bytes(budget as f64)
                ),
            }
        }
        println!();
    }
    let last = *args.seq_lens.iter().max().expect("non-empty");
    let med = |mode: WkvMode| {
        rows.iter()
            .find(|r| r.time == last && r.mode == mode)
            .and_then(Row::median)
    };
    if let (Some(rec), Some(scan)) = (med(WkvMode::Recurrent), med(WkvMode::Scan)) {
        println!(
            "scan vs recurrent at T={last}: {:.1}x faster (target >= 10x)",
            rec / scan
        );
    }
    Ok(())
}
