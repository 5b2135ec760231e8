//! `rwkv-lab verify`: every WKV formulation and RNN mode against the recurrence.

use anyhow::{Result, bail};
use burn::tensor::{Int, Tensor, TensorData};
use clap::Args;
use rwkv::init::SplitMix64;
use rwkv::verify::{Comparison, ExtraReference, RunOutput, run_gpt, verify_model};
use rwkv::{RwkvConfig, WkvBackend, WkvMode};
use serde::Serialize;

use crate::backend::{BackendKind, Dtype, Job, dispatch};
use crate::util::positive;

/// Default tolerance in f32 (see `--help`).
pub const TOL_F32: f64 = 1e-4;
/// Default tolerance in f64.
pub const TOL_F64: f64 = 1e-9;

#[derive(Debug, Args)]
#[command(after_help = "\
Each formulation (parallel, chunked, scan), RNN mode (one `step` per token) and a split run \
(first half, then the rest from the carried state) is compared with the recurrent formulation, \
on the logits and on the final state in canonical form (aa/bb, pp + ln bb, and both token \
shifts). Unless the run itself is float64 on ndarray, every run is also compared with the \
float64 recurrence on the CPU (recurrent@ndarray-f64): the same parameters, generated on the \
host from the seed. A comparison passes when rel_rms <= TOL and max_abs <= TOL * max(1, max|reference|).

Default TOL: 1e-4 in f32, 1e-9 in f64.
Exit status: 0 all comparisons pass, 1 some comparison fails, 2 bad usage or error.

Examples:
  rwkv-lab verify --random
  rwkv-lab verify --random --dtype f64 --d-model 128 --n-layers 4 --seq-len 256 --chunk-len 32
  rwkv-lab verify --random --json | jq .pass")]
pub struct VerifyArgs {
    /// Verify a model whose every parameter is random (seeded).
    #[arg(long)]
    pub random: bool,
    /// Model width C.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub d_model: usize,
    /// Number of blocks L.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub n_layers: usize,
    /// Vocabulary size V.
    #[arg(long, default_value_t = 256, value_parser = positive)]
    pub vocab: usize,
    /// Channel-mix width F (default 4·C).
    #[arg(long, value_parser = positive)]
    pub d_ffn: Option<usize>,
    /// Sequence length T of the random tokens.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub seq_len: usize,
    /// Batch size B.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub batch: usize,
    /// Seed of the parameters and tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Precision.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Block length of the chunked formulation.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub chunk_len: usize,
    /// Tolerance (default 1e-4 for f32, 1e-9 for f64).
    #[arg(long)]
    pub tol: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

#[derive(Debug, Serialize)]
struct ModelInfo {
    vocab_size: usize,
    d_model: usize,
    n_layers: usize,
    d_ffn: usize,
    params: usize,
    init: &'static str,
    seed: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    pass: bool,
    backend: &'static str,
    dtype: &'static str,
    tolerance: f64,
    batch: usize,
    seq_len: usize,
    chunk_len: usize,
    model: ModelInfo,
    comparisons: Vec<Comparison>,
}

struct RandomVerify<'a> {
    args: &'a VerifyArgs,
    tol: f64,
    /// The float64 CPU recurrence of the same model, when verifying anything else.
    oracle64: Option<RunOutput>,
}

/// The model and tokens of `verify --random`, built on any backend (same values everywhere:
/// parameters and ids come from a host-side seeded generator).
fn random_setup<B: WkvBackend>(
    a: &VerifyArgs,
    device: &B::Device,
) -> Result<(rwkv::Rwkv<B>, Tensor<B, 2, Int>, RwkvConfig)> {
    let d_ffn = a.d_ffn.unwrap_or(4 * a.d_model);
    let cfg = RwkvConfig::new(a.vocab, a.d_model, a.n_layers, d_ffn);
    let model = cfg.init_randomized::<B>(device, a.seed)?;
    let mut rng = SplitMix64::new(a.seed ^ 0x70CE);
    let ids: Vec<i64> = (0..a.batch * a.seq_len)
        .map(|_| rng.below(a.vocab as u64) as i64)
        .collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [a.batch, a.seq_len]), device);
    Ok((model, tokens, cfg))
}

/// The float64 recurrence on ndarray.
struct Oracle64<'a>(&'a VerifyArgs);

impl Job for Oracle64<'_> {
    type Output = RunOutput;

    fn run<B: WkvBackend>(self, device: B::Device) -> Result<RunOutput> {
        let (model, tokens, _) = random_setup::<B>(self.0, &device)?;
        Ok(run_gpt(&model, tokens, None, WkvMode::Recurrent)?)
    }
}

impl Job for RandomVerify<'_> {
    type Output = Report;

    fn run<B: WkvBackend>(self, device: B::Device) -> Result<Report> {
        let a = self.args;
        let (model, tokens, cfg) = random_setup::<B>(a, &device)?;
        let d_ffn = cfg.d_ffn;
        let extra = self.oracle64.as_ref().map(|output| ExtraReference {
            name: "recurrent@ndarray-f64",
            output,
            tol: self.tol,
        });
        let comparisons = verify_model(&model, tokens, a.chunk_len, self.tol, extra)?;
        Ok(Report {
            pass: comparisons.iter().all(|c| c.pass),
            backend: a.backend.name(),
            dtype: a.dtype.name(),
            tolerance: self.tol,
            batch: a.batch,
            seq_len: a.seq_len,
            chunk_len: a.chunk_len,
            model: ModelInfo {
                vocab_size: a.vocab,
                d_model: a.d_model,
                n_layers: a.n_layers,
                d_ffn,
                params: cfg.num_params(),
                init: "randomized",
                seed: a.seed,
            },
            comparisons,
        })
    }
}

/// Runs the command; returns whether every comparison passed.
pub fn run(args: VerifyArgs) -> Result<bool> {
    if !args.random {
        bail!(
            "nothing to verify: pass `--random` to verify a model with random parameters (see `rwkv-lab verify --help`)"
        );
    }
    let tol = args.tol.unwrap_or(match args.dtype {
        Dtype::F32 => TOL_F32,
        Dtype::F64 => TOL_F64,
    });
    if !(tol > 0.0 && tol.is_finite()) {
        bail!("--tol must be a positive number, got {tol}");
    }
    let oracle64 = if (args.backend, args.dtype) == (BackendKind::Ndarray, Dtype::F64) {
        None
    } else {
        Some(dispatch(BackendKind::Ndarray, Dtype::F64, Oracle64(&args))?)
    };
    let report = dispatch(
        args.backend,
        args.dtype,
        RandomVerify {
            args: &args,
            tol,
            oracle64,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(report.pass)
}

fn print_table(r: &Report) {
    let m = &r.model;
    println!(
        "random model V={} C={} L={} F={} ({} parameters, seed {}), tokens B={} T={}, {} on {}, chunk length {}",
        m.vocab_size,
        m.d_model,
        m.n_layers,
        m.d_ffn,
        m.params,
        m.seed,
        r.batch,
        r.seq_len,
        r.dtype,
        r.backend,
        r.chunk_len
    );
    println!(
        "tolerance {:e}: pass when rel_rms <= tol and max_abs <= tol * max(1, max|ref|)\n",
        r.tolerance
    );
    let wa = r
        .comparisons
        .iter()
        .map(|c| c.a.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let wb = r
        .comparisons
        .iter()
        .map(|c| c.b.len())
        .max()
        .unwrap_or(1)
        .max(9);
    println!(
        "{:<wa$}  {:<wb$}  {:<8}  {:>10}  {:>10}  {:>9}  result",
        "a", "b", "quantity", "max_abs", "rel_rms", "max|ref|"
    );
    for c in &r.comparisons {
        println!(
            "{:<wa$}  {:<wb$}  {:<8}  {:>10.3e}  {:>10.3e}  {:>9.3}  {}",
            c.a,
            c.b,
            c.quantity,
            c.max_abs,
            c.rel_rms,
            c.max_ref,
            if c.pass { "ok" } else { "FAIL" }
        );
    }
    let failed = r.comparisons.iter().filter(|c| !c.pass).count();
    println!();
    if failed == 0 {
        println!("PASS: {} comparisons within tolerance", r.comparisons.len());
    } else {
        println!(
            "FAIL: {failed} of {} comparisons exceed the tolerance",
            r.comparisons.len()
        );
    }
}
