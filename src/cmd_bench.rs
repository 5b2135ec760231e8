//! `rwkv-lab bench-wkv`: time of each WKV formulation versus sequence length. The
//! measuring is `rwkv_lab_core::bench` (the scaling study's timing loop and estimate);
//! this file parses arguments and prints.

use std::num::NonZeroUsize;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lab_records::provenance::{cores, default_memory_budget};
use lab_util::fmt_bytes;
use rwkv::WkvMode;
use rwkv_lab_core::bench::{self, BenchRow, WkvBench};
use rwkv_lab_core::meter::NoMeter;

use crate::backend::{BackendKind, Dtype, Job, dispatch};
use crate::util::{memory_budget, positive};

#[derive(Debug, Args)]
#[command(after_help = "\
Times the WKV operator alone (random k, v, decays and bonuses) in each formulation: \
recurrent (the oracle), parallel, chunked (one entry per --chunk-lens value) and scan. \
Each time is the median of --repeats runs after --warmup runs, with a device sync before \
the clock stops; speedups are ratios to the recurrent formulation measured in the same run. \
A formulation whose estimated working memory exceeds --memory-budget, or whose largest \
tensor exceeds the device's largest single buffer (GPU backends; 128 MiB on lavapipe), is \
skipped with the reason printed.

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
    /// Formulations to time (recurrent, parallel, chunked, chunked:LEN, scan, all),
    /// comma-separated; `chunked` expands to one entry per --chunk-lens value.
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
    #[arg(long, value_parser = memory_budget)]
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

struct BenchWkv<'a> {
    bench: &'a WkvBench,
}

impl Job for BenchWkv<'_> {
    type Output = Vec<BenchRow>;

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<Vec<BenchRow>> {
        let b = self.bench;
        let bar = ProgressBar::new((b.modes.len() * b.seq_lens.len()) as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
                .expect("valid template"),
        );
        let mut started = false;
        let b = &WkvBench {
            max_buffer: B::max_buffer(&device),
            ..b.clone()
        };
        let rows = bench::run_wkv::<B>(b, &device, &NoMeter, &mut |label| {
            if std::mem::replace(&mut started, true) {
                bar.inc(1);
            }
            bar.set_message(label.to_string());
        })?;
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
    let budget = args.memory_budget.unwrap_or_else(default_memory_budget);
    let bench = WkvBench {
        batch: args.batch,
        channels: args.channels,
        seq_lens: args.seq_lens.clone(),
        modes: bench::select_modes(&args.modes, &args.chunk_lens)?,
        repeats: NonZeroUsize::new(args.repeats).context("--repeats must be at least 1")?,
        warmup: args.warmup,
        memory_budget: budget,
        max_buffer: None,
        seed: args.seed,
    };
    if bench.seq_lens.is_empty() {
        bail!("--seq-lens is empty");
    }
    let rows = dispatch(args.backend, args.dtype, BenchWkv { bench: &bench })?;
    println!(
        "WKV operator, B={} C={}, {} on {} ({} CPU threads available), median of {} runs after {} warm-up [min, max]",
        args.batch,
        args.channels,
        args.dtype.name(),
        args.backend.name(),
        cores(),
        args.repeats,
        args.warmup
    );
    println!(
        "memory budget {} (formulations estimated above it, or with a tensor larger than the device's largest buffer, are skipped)\n",
        fmt_bytes(budget as f64)
    );
    println!(
        "{:>6}  {:<12} {:>10}  {:>21}  {:>12}  {:>11}",
        "T", "formulation", "median", "[min, max]", "tokens/s", "vs recurrent"
    );
    for &t in &args.seq_lens {
        let of_t: Vec<&BenchRow> = rows.iter().filter(|r| r.seq_len == t).collect();
        let base = of_t
            .iter()
            .find(|r| r.mode == WkvMode::Recurrent)
            .and_then(|r| r.stats.as_ref().ok())
            .map(|s| s.median);
        for r in of_t {
            match &r.stats {
                Ok(s) => {
                    let speed = base
                        .map(|b| format!("{:.2}x", b / s.median))
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:>6}  {:<12} {:>10}  {:>21}  {:>12.0}  {:>11}",
                        t,
                        r.mode.to_string(),
                        fmt_time(s.median),
                        format!("[{}, {}]", fmt_time(s.min), fmt_time(s.max)),
                        (args.batch * t) as f64 / s.median,
                        speed
                    );
                }
                Err(why) => println!("{:>6}  {:<12} skipped: {why}", t, r.mode.to_string()),
            }
        }
        println!();
    }
    let last = *args.seq_lens.iter().max().expect("non-empty");
    let med = |mode: WkvMode| {
        rows.iter()
            .find(|r| r.seq_len == last && r.mode == mode)
            .and_then(|r| r.stats.as_ref().ok())
            .map(|s| s.median)
    };
    if let (Some(rec), Some(scan)) = (med(WkvMode::Recurrent), med(WkvMode::Scan)) {
        println!(
            "scan vs recurrent at T={last}: {:.1}x faster (target >= 10x)",
            rec / scan
        );
    }
    Ok(())
}
