//! `rwkv-lab bench`: decode, prefill and dense-product speed on each compiled CPU backend,
//! printed as markdown tables with ratios within the one run. The measuring is
//! `rwkv_lab_core::cpu_bench`; this file parses arguments and prints.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use lab_records::provenance::{cores, default_memory_budget, git_rev, machine_line, utc_now};
use lab_util::fmt_bytes;
use rwkv::WkvMode;
use rwkv::generate::{StepEngine, forward_bytes, model_bytes};
use rwkv_lab_core::cpu_bench::{self, DecodeRow, GemmShape, ModelShape};
use rwkv_lab_core::timing::Stats;

use crate::backend::{BackendKind, Dtype, Job, Metered, dispatch, ensure_available};
use crate::util::{memory_budget, positive};

/// What `rwkv-lab bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// RNN-mode decoding: ms per token, per backend and step engine.
    Decode,
    /// GPT-mode prefill: tokens/s per sequence length, backend and formulation.
    Prefill,
    /// The model's dense products: GFLOP/s per backend.
    Gemm,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Measures, on each compiled CPU backend (ndarray and flex in the default build), in f32:
  decode   ms per new token in RNN mode (one sequence), through the model's own step and through \
the CPU decoder (`generate --step-engine`), at the 169M shape by default (random weights, or \
--checkpoint); also the weight bytes each step reads per second
  prefill  tokens/s of one whole-sequence forward (logits at every position) per T, at \
d_model 512, 6 layers, vocabulary 256 by default
  gemm     GFLOP/s of the dense products of those shapes: m = 1 (one decode token) and m = \
the largest --seq-lens value (prefill)
Times are medians after warm-up runs; ratios compare rows of the same run. PyTorch peers for \
the same figures: scripts/bench_cpu_compare.sh runs them side by side and writes \
reports/bench/<machine>/cpu.md.

Examples:
  rwkv-lab bench
  rwkv-lab bench --only decode --checkpoint RWKV-4-Pile-169M.pth --steps 32
  rwkv-lab bench --only prefill --seq-lens 512,1024,4096 --modes scan,chunked:64
  cargo run --release -- bench --backends ndarray,flex")]
pub struct CpuBenchArgs {
    /// Parts to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "decode,prefill,gemm"
    )]
    pub only: Vec<Part>,
    /// CPU backends, comma-separated [default: every CPU backend compiled in].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub backends: Vec<BackendKind>,
    /// Decode a checkpoint's model instead of random weights of --vocab/--d-model/--layers.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Decode shape: vocabulary.
    #[arg(long, default_value_t = 50_277, value_parser = positive)]
    pub vocab: usize,
    /// Decode shape: width.
    #[arg(long, default_value_t = 768, value_parser = positive)]
    pub d_model: usize,
    /// Decode shape: blocks.
    #[arg(long, default_value_t = 12, value_parser = positive)]
    pub layers: usize,
    /// Timed decode steps per engine (median reported).
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub steps: usize,
    /// Prefill shape: vocabulary.
    #[arg(long, default_value_t = 256, value_parser = positive)]
    pub prefill_vocab: usize,
    /// Prefill shape: width.
    #[arg(long, default_value_t = 512, value_parser = positive)]
    pub prefill_d_model: usize,
    /// Prefill shape: blocks.
    #[arg(long, default_value_t = 6, value_parser = positive)]
    pub prefill_layers: usize,
    /// Prefill sequence lengths, comma-separated.
    #[arg(long, default_value = "1024,4096", value_delimiter = ',', value_parser = positive)]
    pub seq_lens: Vec<usize>,
    /// Prefill formulations, comma-separated (parallel, scan, chunked:LEN, recurrent).
    #[arg(long, default_value = "scan", value_delimiter = ',')]
    pub modes: Vec<WkvMode>,
    /// Timed runs per prefill and product measurement (median reported).
    #[arg(long, default_value_t = 3, value_parser = positive)]
    pub repeats: usize,
    /// Untimed warm-up runs (decode: warm-up steps).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Skip prefills whose forward is estimated above this much memory, and refuse models
    /// and products that do not fit [default: half the RAM].
    #[arg(long, value_name = "SIZE", value_parser = memory_budget)]
    pub memory_budget: Option<u64>,
    /// Seed of the random weights and tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl CpuBenchArgs {
    /// The decode model's shape (`--vocab`, `--d-model`, `--layers`).
    fn decode_shape(&self) -> ModelShape {
        ModelShape {
            vocab: self.vocab,
            d_model: self.d_model,
            layers: self.layers,
        }
    }

    /// The prefill model's shape (`--prefill-*`).
    fn prefill_shape(&self) -> ModelShape {
        ModelShape {
            vocab: self.prefill_vocab,
            d_model: self.prefill_d_model,
            layers: self.prefill_layers,
        }
    }
}

/// What one backend measured.
#[derive(Debug, Default)]
struct Measured {
    decode: Vec<DecodeRow>,
    /// (T, mode, stats or the estimate that skipped it)
    prefill: Vec<(usize, WkvMode, Result<Stats, u64>)>,
    gemm: Vec<(GemmShape, Stats)>,
    decode_params: usize,
}

struct Measure<'a> {
    args: &'a CpuBenchArgs,
    budget: u64,
    /// The decode model's checkpoint, read once for every backend.
    checkpoint: Option<&'a rwkv_checkpoint::Checkpoint>,
}

impl Job for Measure<'_> {
    type Output = Measured;

    fn run<B: Metered>(self, device: B::Device) -> Result<Measured> {
        let a = self.args;
        let repeats = NonZeroUsize::new(a.repeats).context("--repeats must be at least 1")?;
        let mut out = Measured::default();
        let (decode_shape, prefill_shape) = (a.decode_shape(), a.prefill_shape());
        if a.only.contains(&Part::Decode) {
            let model = match self.checkpoint {
                Some(c) => c.to_model::<B>(&device)?,
                None => decode_shape.random_model::<B>(&device, a.seed)?,
            };
            out.decode_params = model.num_params();
            let steps = NonZeroUsize::new(a.steps).context("--steps must be at least 1")?;
            for engine in [StepEngine::Model, StepEngine::CpuDecoder] {
                eprintln!("  decode: {} ...", engine.name());
                out.decode.push(cpu_bench::run_decode(
                    &model, engine, a.warmup, steps, a.seed,
                )?);
            }
        }
        if a.only.contains(&Part::Prefill) {
            let model = prefill_shape.random_model::<B>(&device, a.seed)?;
            let config = prefill_shape.config();
            for &t in &a.seq_lens {
                for &mode in &a.modes {
                    mode.validate()?;
                    let est = forward_bytes(&config, 1, t, mode, 4).unwrap_or(u64::MAX);
                    if est > self.budget {
                        out.prefill.push((t, mode, Err(est)));
                        continue;
                    }
                    eprintln!("  prefill: T={t} {mode} ...");
                    let s = cpu_bench::run_prefill(&model, t, mode, 1, repeats, a.seed)?;
                    out.prefill.push((t, mode, Ok(s)));
                }
            }
        }
        if a.only.contains(&Part::Gemm) {
            for g in gemm_shapes(a) {
                eprintln!("  gemm: {}x{}x{} ...", g.m, g.k, g.n);
                let s = cpu_bench::run_gemm::<B>(g, &device, 1, repeats, a.seed)?;
                out.gemm.push((g, s));
            }
        }
        Ok(out)
    }
}

/// The products `gemm` measures: the decode shape's at m = 1, the prefill shape's at the
/// largest T.
fn gemm_shapes(a: &CpuBenchArgs) -> Vec<GemmShape> {
    let m = a.seq_lens.iter().copied().max().unwrap_or(1024);
    let mut shapes = cpu_bench::model_gemms(a.decode_shape(), 1);
    shapes.extend(cpu_bench::model_gemms(a.prefill_shape(), m));
    shapes
}

/// Bytes of the operands and the result of `g` in f32 (None: beyond 64 bits).
fn gemm_bytes(g: GemmShape) -> Option<u64> {
    let (m, k, n) = (g.m as u64, g.k as u64, g.n as u64);
    m.checked_mul(k)?
        .checked_add(k.checked_mul(n)?)?
        .checked_add(m.checked_mul(n)?)?
        .checked_mul(4)
}

/// Fails, naming `what`, when `need` (None: beyond 64 bits) exceeds `budget`.
fn check_fits(what: &str, need: Option<u64>, budget: u64) -> Result<()> {
    match need {
        Some(n) if n <= budget => Ok(()),
        Some(n) => bail!(
            "{what} needs about {} (estimated), more than the memory budget of {}; nothing was allocated (--memory-budget to change it)",
            fmt_bytes(n as f64),
            fmt_bytes(budget as f64)
        ),
        None => bail!("{what} needs more than 16 EiB (the size overflows); nothing was allocated"),
    }
}

/// Every CPU backend this binary can run in f32.
fn compiled_cpu_backends() -> Vec<BackendKind> {
    [BackendKind::Ndarray, BackendKind::Flex]
        .into_iter()
        .filter(|&k| ensure_available(k, Dtype::F32).is_ok())
        .collect()
}

fn ms(s: f64) -> String {
    format!("{:.2}", s * 1e3)
}

pub fn run(args: CpuBenchArgs) -> Result<()> {
    let backends = if args.backends.is_empty() {
        compiled_cpu_backends()
    } else {
        args.backends.clone()
    };
    for &k in &backends {
        if matches!(k, BackendKind::Wgpu | BackendKind::Cuda) {
            bail!(
                "`bench` measures CPU backends (ndarray, flex); for a GPU use `bench-wkv --backend {}` or `scale`",
                k.name()
            );
        }
        ensure_available(k, Dtype::F32)?;
    }
    if args.only.is_empty() {
        bail!("--only selects nothing");
    }
    let budget = args.memory_budget.unwrap_or_else(default_memory_budget);
    // sizes first: nothing large is allocated before it is known to fit
    let checkpoint = match (&args.checkpoint, args.only.contains(&Part::Decode)) {
        (Some(p), true) => {
            let reading = rwkv_checkpoint::read_bytes_estimate(p)?;
            check_fits(&format!("reading {}", p.display()), Some(reading), budget)?;
            Some(rwkv_checkpoint::load(p)?)
        }
        _ => None,
    };
    if args.only.contains(&Part::Decode) {
        let config = match &checkpoint {
            Some(c) => c.config.clone(),
            None => args.decode_shape().config(),
        };
        // the model and the decoder's own f32 copy of its weights
        let need = model_bytes(&config, 4).and_then(|m| m.checked_mul(2));
        check_fits("the decode model and its CPU-decoder copy", need, budget)?;
    }
    if args.only.contains(&Part::Prefill) {
        let config = args.prefill_shape().config();
        check_fits("the prefill model", model_bytes(&config, 4), budget)?;
    }
    if args.only.contains(&Part::Gemm) {
        for g in gemm_shapes(&args) {
            let what = format!("the {}x{}x{} product", g.m, g.k, g.n);
            check_fits(&what, gemm_bytes(g), budget)?;
        }
    }
    let mut results = Vec::new();
    for &k in &backends {
        eprintln!("measuring on {} ...", k.name());
        let m = dispatch(
            k,
            Dtype::F32,
            Measure {
                args: &args,
                budget,
                checkpoint: checkpoint.as_ref(),
            },
        )?;
        results.push((k, m));
    }
    println!("# rwkv-lab bench\n");
    println!(
        "{}; git {}; {}; f32; rayon threads {}\n",
        machine_line(),
        git_rev(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))),
        utc_now(),
        rayon_threads()
    );
    if args.only.contains(&Part::Decode) {
        let params = results.first().map_or(0, |r| r.1.decode_params);
        let what = match &args.checkpoint {
            Some(p) => format!("checkpoint {}", p.display()),
            None => format!(
                "random weights, V={} C={} L={}",
                args.vocab, args.d_model, args.layers
            ),
        };
        println!(
            "## Decode (RNN mode, one sequence): {what}, {:.1}M parameters; median of {} steps after {}\n",
            params as f64 / 1e6,
            args.steps,
            args.warmup
        );
        println!(
            "| backend | step engine | ms/token | [min, max] | tokens/s | weights read/s | vs fastest |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|");
        let best = results
            .iter()
            .flat_map(|r| r.1.decode.iter().map(|d| d.stats.median))
            .fold(f64::INFINITY, f64::min);
        for (k, m) in &results {
            for d in &m.decode {
                let s = d.stats;
                println!(
                    "| {} | {} | {} | [{}, {}] | {:.1} | {}/s | {:.2}x |",
                    k.name(),
                    d.engine.name(),
                    ms(s.median),
                    ms(s.min),
                    ms(s.max),
                    1.0 / s.median,
                    fmt_bytes(d.bytes_per_step as f64 / s.median),
                    s.median / best
                );
            }
        }
        println!();
    }
    if args.only.contains(&Part::Prefill) {
        println!(
            "## Prefill (GPT mode, one sequence, logits at every position): random weights, V={} C={} L={}; median of {} after 1 warm-up\n",
            args.prefill_vocab, args.prefill_d_model, args.prefill_layers, args.repeats
        );
        println!(
            "| T | backend | formulation | seconds | [min, max] | tokens/s | vs fastest at T |"
        );
        println!("|---:|---|---|---:|---:|---:|---:|");
        for &t in &args.seq_lens {
            let best = results
                .iter()
                .flat_map(|r| r.1.prefill.iter())
                .filter(|p| p.0 == t)
                .filter_map(|p| p.2.as_ref().ok().map(|s| s.median))
                .fold(f64::INFINITY, f64::min);
            for (k, m) in &results {
                for (_, mode, r) in m.prefill.iter().filter(|p| p.0 == t) {
                    match r {
                        Ok(s) => println!(
                            "| {t} | {} | {mode} | {:.3} | [{:.3}, {:.3}] | {:.0} | {:.2}x |",
                            k.name(),
                            s.median,
                            s.min,
                            s.max,
                            t as f64 / s.median,
                            s.median / best
                        ),
                        Err(est) => println!(
                            "| {t} | {} | {mode} | skipped: needs about {} (budget {}) | | | |",
                            k.name(),
                            fmt_bytes(*est as f64),
                            fmt_bytes(budget as f64)
                        ),
                    }
                }
            }
        }
        println!();
    }
    if args.only.contains(&Part::Gemm) {
        println!(
            "## Dense products [m, k] x [k, n] (random f32 operands); median of {} after 1 warm-up\n",
            args.repeats
        );
        let names: Vec<&str> = results.iter().map(|r| r.0.name()).collect();
        println!(
            "| product | m x k x n | {} |",
            names
                .iter()
                .map(|n| format!("{n} ms | {n} GFLOP/s"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        println!("|---|---|{}", "---:|---:|".repeat(names.len()));
        let n = results.first().map_or(0, |r| r.1.gemm.len());
        for i in 0..n {
            let g = results[0].1.gemm[i].0;
            let cells: Vec<String> = results
                .iter()
                .map(|r| {
                    let s = r.1.gemm[i].1;
                    format!("{} | {:.1}", ms(s.median), g.flops() / s.median / 1e9)
                })
                .collect();
            println!(
                "| {} | {}x{}x{} | {} |",
                g.name,
                g.m,
                g.k,
                g.n,
                cells.join(" | ")
            );
        }
        println!();
    }
    Ok(())
}

/// The size of rayon's pool (Burn's CPU backends and the CPU decoder share it).
fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS")
        .unwrap_or_else(|_| format!("{} (one per logical core)", cores()))
}
