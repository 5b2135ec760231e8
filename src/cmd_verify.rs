//! `rwkv-lab verify`: every WKV formulation and RNN mode against the recurrence, on a
//! random model or a checkpoint, and against a reference file's arrays.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::{Int, Tensor, TensorData};
use clap::Args;
use lab_util::SplitMix64;
use rwkv::verify::{Comparison, ExtraReference, RunOutput, run_gpt, verify_model};
use rwkv::{Rwkv, RwkvConfig, WkvBackend, WkvMode};
use rwkv_checkpoint::{
    Checkpoint, RefTolerances, Reference, load, load_reference, verify_reference,
};
use serde::Serialize;

use crate::backend::{BackendKind, Dtype, Job, dispatch};
use crate::util::{parse_id, positive};

/// Default tolerance in f32 (see `--help`).
pub const TOL_F32: f64 = 1e-4;
/// Default tolerance in f64.
pub const TOL_F64: f64 = 1e-9;

#[derive(Debug, Args)]
#[command(after_help = "\
What is compared:
  * each formulation (parallel, chunked, scan), RNN mode (one `step` per token) and a split run \
(first half, then the rest from the carried state) against the recurrent formulation, on the \
logits and on the final state in canonical form (aa/bb, pp + ln bb, both token shifts);
  * unless the run itself is float64 on ndarray, every run against the float64 recurrence on \
the CPU (recurrent@ndarray-f64), same parameters;
  * with --reference, every run against each array of the file: logits_exact_f64, logits_whole, \
logits_split (runs split at the file's `split`), blinkdl_seq_logits0 and blinkdl_rnn_logits0 \
(sequence 0), and final_state_0..4 (canonical form).

Tolerances: formulation vs recurrence (scaled: rel_rms <= TOL and max_abs <= TOL*max(1, max|ref|)): \
--tol, default 1e-4 in f32, 1e-9 in f64. Reference arrays (absolute: max_abs <= tol): in f32 1e-5 \
for every logits array; in f64 1e-9 for logits_exact_f64 and 1e-7 for logits_whole/logits_split \
(HF keeps its WKV state in f32); 1e-5 for the BlinkDL arrays (an f32 runtime) and the final states \
(HF's f32 buffers, scaled). --ref-tol sets one tolerance for all of them.

Exit status: 0 all comparisons pass, 1 some comparison fails, 2 bad usage or error.

Examples:
  rwkv-lab verify --random
  rwkv-lab verify --random --dtype f64 --d-model 128 --n-layers 4 --seq-len 256 --chunk-len 32
  rwkv-lab verify --checkpoint tests/fixtures/reference-tiny/model.pth \\
                  --reference tests/fixtures/reference-tiny/reference.safetensors
  rwkv-lab verify --checkpoint path/to/RWKV-4-Pile-169M.pth --random-tokens 256 --json
  rwkv-lab verify --checkpoint path/to/hf-model-folder --tokens 510,4107,4914")]
pub struct VerifyArgs {
    /// Verify a model whose every parameter is random (seeded).
    #[arg(long, conflicts_with = "checkpoint")]
    pub random: bool,
    /// Verify a checkpoint: a BlinkDL .pth, a .safetensors file, or a Hugging Face model folder.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Reference outputs to compare with (safetensors: tokens, logits_*, blinkdl_*, final_state_*).
    #[arg(long, value_name = "FILE", requires = "checkpoint", conflicts_with_all = ["tokens", "random_tokens"])]
    pub reference: Option<PathBuf>,
    /// Token ids to run (one sequence), comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_id, conflicts_with = "random_tokens")]
    pub tokens: Option<Vec<i64>>,
    /// Run this many random token ids (one sequence per --batch); default with a checkpoint: 32.
    #[arg(long, value_parser = positive)]
    pub random_tokens: Option<usize>,
    /// Model width C (random model).
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub d_model: usize,
    /// Number of blocks L (random model).
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub n_layers: usize,
    /// Vocabulary size V (random model).
    #[arg(long, default_value_t = 256, value_parser = positive)]
    pub vocab: usize,
    /// Channel-mix width F (random model; default 4·C).
    #[arg(long, value_parser = positive)]
    pub d_ffn: Option<usize>,
    /// Sequence length T of the random tokens (random model).
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub seq_len: usize,
    /// Batch size B of random tokens.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub batch: usize,
    /// Seed of the random parameters and tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Precision.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Block length of the chunked formulation.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub chunk_len: usize,
    /// Tolerance of formulation-vs-recurrence comparisons (default 1e-4 for f32, 1e-9 for f64).
    #[arg(long)]
    pub tol: Option<f64>,
    /// One tolerance for every reference-array comparison (defaults: see below).
    #[arg(long)]
    pub ref_tol: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

#[derive(Debug, Serialize)]
struct ModelInfo {
    source: String,
    format: String,
    file_dtypes: Vec<String>,
    vocab_size: usize,
    d_model: usize,
    n_layers: usize,
    d_ffn: usize,
    params: usize,
    seed: Option<u64>,
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
    reference: Option<String>,
    model: ModelInfo,
    comparisons: Vec<Comparison>,
}

/// What the model is built from.
enum ModelSource<'a> {
    Random(&'a VerifyArgs),
    Checkpoint(&'a Checkpoint),
}

impl ModelSource<'_> {
    fn config(&self) -> RwkvConfig {
        match self {
            ModelSource::Random(a) => RwkvConfig::new(
                a.vocab,
                a.d_model,
                a.n_layers,
                a.d_ffn.unwrap_or(4 * a.d_model),
            ),
            ModelSource::Checkpoint(c) => c.config.clone(),
        }
    }

    fn build<B: WkvBackend>(&self, device: &B::Device) -> Result<Rwkv<B>> {
        Ok(match self {
            ModelSource::Random(a) => self.config().init_randomized::<B>(device, a.seed)?,
            ModelSource::Checkpoint(c) => c.to_model::<B>(device)?,
        })
    }
}

/// The tokens to run, `[B, T]` row-major.
struct Tokens {
    batch: usize,
    time: usize,
    ids: Vec<i64>,
}

impl Tokens {
    fn tensor<B: WkvBackend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        Tensor::from_data(
            TensorData::new(self.ids.clone(), [self.batch, self.time]),
            device,
        )
    }
}

/// The float64 recurrence on ndarray, the cross-backend oracle.
struct Oracle64<'a> {
    source: &'a ModelSource<'a>,
    tokens: &'a Tokens,
}

impl Job for Oracle64<'_> {
    type Output = RunOutput;

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<RunOutput> {
        let model = self.source.build::<B>(&device)?;
        Ok(run_gpt(
            &model,
            self.tokens.tensor::<B>(&device),
            None,
            WkvMode::Recurrent,
        )?)
    }
}

struct Verify<'a> {
    args: &'a VerifyArgs,
    source: &'a ModelSource<'a>,
    tokens: &'a Tokens,
    reference: Option<&'a Reference>,
    tol: f64,
    ref_tol: RefTolerances,
    oracle64: Option<RunOutput>,
}

impl Job for Verify<'_> {
    type Output = Vec<Comparison>;

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<Vec<Comparison>> {
        let model = self.source.build::<B>(&device)?;
        let extra = self.oracle64.as_ref().map(|output| ExtraReference {
            name: "recurrent@ndarray-f64",
            output,
            tol: self.tol,
        });
        let mut comparisons = verify_model(
            &model,
            self.tokens.tensor::<B>(&device),
            self.args.chunk_len,
            self.tol,
            extra,
        )?;
        if let Some(r) = self.reference {
            comparisons.extend(verify_reference(
                &model,
                r,
                self.args.chunk_len,
                self.ref_tol,
            )?);
        }
        Ok(comparisons)
    }
}

fn random_ids(seed: u64, n: usize, vocab: usize) -> Vec<i64> {
    let mut rng = SplitMix64::new(seed ^ 0x70CE);
    (0..n).map(|_| rng.below(vocab as u64) as i64).collect()
}

/// Runs the command and prints the table or JSON; returns whether every comparison passed.
pub fn run(args: VerifyArgs) -> Result<bool> {
    let json = args.json;
    let report = evaluate(args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(report.pass)
}

/// Runs the comparisons without printing; returns whether every one passed.
pub fn run_quiet(args: VerifyArgs) -> Result<bool> {
    Ok(evaluate(args)?.pass)
}

fn evaluate(args: VerifyArgs) -> Result<Report> {
    let tol = args.tol.unwrap_or(match args.dtype {
        Dtype::F32 => TOL_F32,
        Dtype::F64 => TOL_F64,
    });
    if !(tol > 0.0 && tol.is_finite()) {
        bail!("--tol must be a positive number, got {tol}");
    }
    let ref_tol = match args.ref_tol {
        Some(t) if t > 0.0 && t.is_finite() => RefTolerances::uniform(t),
        Some(t) => bail!("--ref-tol must be a positive number, got {t}"),
        None => RefTolerances::for_precision(args.dtype == Dtype::F64),
    };
    let checkpoint = match &args.checkpoint {
        Some(path) => Some(load(path)?),
        None if args.random => None,
        None => bail!(
            "nothing to verify: pass `--random` or `--checkpoint PATH` (see `rwkv-lab verify --help`)"
        ),
    };
    let source = match &checkpoint {
        Some(c) => ModelSource::Checkpoint(c),
        None => ModelSource::Random(&args),
    };
    let config = source.config();
    let reference = match &args.reference {
        Some(path) => {
            let r = load_reference(path)?;
            r.check(&config)?;
            Some(r)
        }
        None => None,
    };
    let tokens = if let Some(r) = &reference {
        Tokens {
            batch: r.batch,
            time: r.time,
            ids: r.tokens.clone(),
        }
    } else if let Some(ids) = &args.tokens {
        Tokens {
            batch: 1,
            time: ids.len(),
            ids: ids.clone(),
        }
    } else {
        let time = args.random_tokens.unwrap_or(if checkpoint.is_some() {
            32
        } else {
            args.seq_len
        });
        Tokens {
            batch: args.batch,
            time,
            ids: random_ids(args.seed, args.batch * time, config.vocab_size),
        }
    };
    if let Some((i, id)) = tokens
        .ids
        .iter()
        .enumerate()
        .find(|(_, id)| **id < 0 || **id as u64 >= config.vocab_size as u64)
    {
        bail!(
            "token id {id} (position {}) is outside the model's vocabulary of {}",
            i % tokens.time,
            config.vocab_size
        );
    }
    let oracle64 = if (args.backend, args.dtype) == (BackendKind::Ndarray, Dtype::F64) {
        None
    } else {
        Some(
            dispatch(
                BackendKind::Ndarray,
                Dtype::F64,
                Oracle64 {
                    source: &source,
                    tokens: &tokens,
                },
            )
            .context("float64 CPU oracle")?,
        )
    };
    let job = Verify {
        args: &args,
        source: &source,
        tokens: &tokens,
        reference: reference.as_ref(),
        tol,
        ref_tol,
        oracle64,
    };
    let comparisons = dispatch(args.backend, args.dtype, job)?;
    let (source_name, format, file_dtypes, seed) = match &checkpoint {
        Some(c) => (
            c.path.display().to_string(),
            c.format.describe().to_string(),
            c.dtypes().into_iter().collect(),
            None,
        ),
        None => (
            "random".to_string(),
            "randomized parameters".to_string(),
            vec![],
            Some(args.seed),
        ),
    };
    let model = ModelInfo {
        source: source_name,
        format,
        file_dtypes,
        vocab_size: config.vocab_size,
        d_model: config.d_model,
        n_layers: config.n_layers,
        d_ffn: config.d_ffn,
        params: config.num_params(),
        seed,
    };
    let report = Report {
        pass: comparisons.iter().all(|c| c.pass),
        backend: args.backend.name(),
        dtype: args.dtype.name(),
        tolerance: tol,
        batch: tokens.batch,
        seq_len: tokens.time,
        chunk_len: args.chunk_len,
        reference: args.reference.as_ref().map(|p| p.display().to_string()),
        model,
        comparisons,
    };
    Ok(report)
}

fn print_table(r: &Report) {
    let m = &r.model;
    match m.seed {
        Some(seed) => println!("random model (seed {seed})"),
        None => println!(
            "checkpoint {} ({}, stored as {})",
            m.source,
            m.format,
            m.file_dtypes.join(", ")
        ),
    }
    println!(
        "V={} C={} L={} F={} ({} parameters); tokens B={} T={}; {} on {}; chunk length {}",
        m.vocab_size,
        m.d_model,
        m.n_layers,
        m.d_ffn,
        m.params,
        r.batch,
        r.seq_len,
        r.dtype,
        r.backend,
        r.chunk_len
    );
    if let Some(f) = &r.reference {
        println!("reference {f}");
    }
    println!(
        "formulations vs recurrence: tolerance {:e} (scaled: rel_rms <= tol and max_abs <= tol * max(1, max|ref|)); reference arrays: tol column (absolute on logits)\n",
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
    let wq = r
        .comparisons
        .iter()
        .map(|c| c.quantity.len())
        .max()
        .unwrap_or(1)
        .max(8);
    println!(
        "{:<wa$}  {:<wb$}  {:<wq$}  {:>10}  {:>10}  {:>9}  {:>7}  result",
        "a", "b", "quantity", "max_abs", "rel_rms", "max|ref|", "tol"
    );
    for c in &r.comparisons {
        println!(
            "{:<wa$}  {:<wb$}  {:<wq$}  {:>10.3e}  {:>10.3e}  {:>9.3}  {:>7.0e}  {}",
            c.a,
            c.b,
            c.quantity,
            c.max_abs,
            c.rel_rms,
            c.max_ref,
            c.tol,
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
