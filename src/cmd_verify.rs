//! `rwkv-lab verify`: arguments, backend dispatch and printing. The verification itself
//! is `rwkv_lab_core::verify`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use rwkv::verify::{EPS_F32, EPS_F64, EPS_TF32, Status};
use rwkv_checkpoint::{load, load_reference};
use rwkv_lab_core::verify::{
    Inputs, RandomModel, TokenChoice, VerifyOptions, VerifyReport, show_bytes, verify_checkpoint,
    verify_random,
};

use crate::backend::{BackendKind, Dtype, Job, Metered, dispatch};
use crate::util::{memory_budget, parse_id, positive};
use lab_records::provenance::default_memory_budget;

/// Defaults of the random model and tokens (documented in `--help`; `reproduce` runs them).
pub(crate) const D_MODEL: usize = 64;
pub(crate) const N_LAYERS: usize = 2;
pub(crate) const VOCAB: usize = 256;
pub(crate) const SEQ_LEN: usize = 64;
pub(crate) const BATCH: usize = 2;
const CHECKPOINT_TOKENS: usize = 32;

#[derive(Debug, Clone, Args)]
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

Tolerances (default): derived for each comparison from the precision of both sides and the \
conditioning of the input: tol = (F_a·ε_a·g_a(T) + F_b·ε_b·g_b(T))·K, where ε is the unit roundoff \
(2^-24 float32, 2^-53 float64); g(T) = T^(3/4) for recurrent computations (recurrent, scan, RNN \
mode, Hugging Face, BlinkDL) and T^(1/4) for block forms (parallel, chunked, the exact float64 \
reference); K = Σ over layers of (6·√C + max|k| + max|u|), measured on the input; F calibrated \
per algorithm (logits: 0.11 block, 0.06 recurrent, 0.004 Hugging Face; state: 0.13). The arrays' \
precision: logits_exact_f64 float64; Hugging Face (logits_whole, logits_split, final_state_*) \
float32 state (even for a float64 model); BlinkDL float32. Criterion: rel_rms <= tol and \
max_abs <= tol·max(1, max|ref|). The table shows each bound's terms, --json gives them as fields.
--tol sets one fixed tolerance for the comparisons between runs (same criterion); --ref-tol one \
for the reference arrays (absolute on logits: max_abs <= tol).

Memory: every part is estimated before anything is allocated. A run over --memory-budget \
(default: half the RAM) is skipped and its comparisons are listed as `skipped` with the \
estimate (neither pass nor fail); a model (or recurrent run) over the budget is refused.

Exit status: 0 every comparison that ran passes, 1 some comparison fails, 2 bad usage or error.

Examples:
  rwkv-lab verify --random
  rwkv-lab verify --random --dtype f64 --d-model 128 --n-layers 4 --seq-len 256 --chunk-len 32
  rwkv-lab verify --checkpoint tests/fixtures/reference-tiny/model.pth \\
                  --reference tests/fixtures/reference-tiny/reference.safetensors
  rwkv-lab verify --checkpoint tests/fixtures/stress-k30 \\
                  --reference tests/fixtures/stress-k30/reference.safetensors
  rwkv-lab verify --checkpoint path/to/RWKV-4-Pile-169M.pth --random-tokens 256 --json
  rwkv-lab verify --checkpoint path/to/hf-model-folder --tokens 510,4107,4914")]
pub struct VerifyArgs {
    /// Verify a model whose every parameter is random (seeded).
    #[arg(long, conflicts_with = "checkpoint")]
    pub random: bool,
    /// Verify a checkpoint: a BlinkDL .pth, a .safetensors file, or a Hugging Face model folder.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Reference outputs to compare with (safetensors: tokens, logits_*, blinkdl_*,
    /// final_state_*); needs --checkpoint.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tokens", "random_tokens"])]
    pub reference: Option<PathBuf>,
    /// Token ids to run (one sequence), comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_id, allow_negative_numbers = true, conflicts_with = "random_tokens")]
    pub tokens: Option<Vec<i64>>,
    /// Run this many random token ids per sequence (default with a checkpoint: 32; with
    /// --random: --seq-len).
    #[arg(long, value_parser = positive)]
    pub random_tokens: Option<usize>,
    /// Model width C (random model) [default: 64].
    #[arg(long, value_parser = positive)]
    pub d_model: Option<usize>,
    /// Number of blocks L (random model) [default: 2].
    #[arg(long, value_parser = positive)]
    pub n_layers: Option<usize>,
    /// Vocabulary size V (random model) [default: 256].
    #[arg(long, value_parser = positive)]
    pub vocab: Option<usize>,
    /// Channel-mix width F (random model) [default: 4·C].
    #[arg(long, value_parser = positive)]
    pub d_ffn: Option<usize>,
    /// Sequence length T of the random tokens (random model) [default: 64].
    #[arg(long, value_parser = positive)]
    pub seq_len: Option<usize>,
    /// Batch size B of random tokens [default: 2].
    #[arg(long, value_parser = positive)]
    pub batch: Option<usize>,
    /// Seed of the random parameters and tokens [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Precision.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Block length of the chunked formulation.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub chunk_len: usize,
    /// One fixed tolerance for the comparisons between runs (default: derived, see below).
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64)]
    pub tol: Option<f64>,
    /// One fixed tolerance for every reference-array comparison (default: derived).
    #[arg(long, allow_hyphen_values = true, value_parser = positive_f64)]
    pub ref_tol: Option<f64>,
    /// Skip runs estimated above this much memory (e.g. 8G) [default: half the RAM].
    #[arg(long, value_parser = memory_budget)]
    pub memory_budget: Option<u64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

impl Default for VerifyArgs {
    /// `verify --random` with every default.
    fn default() -> Self {
        Self {
            random: true,
            checkpoint: None,
            reference: None,
            tokens: None,
            random_tokens: None,
            d_model: None,
            n_layers: None,
            vocab: None,
            d_ffn: None,
            seq_len: None,
            batch: None,
            seed: None,
            dtype: Dtype::F32,
            chunk_len: 16,
            tol: None,
            ref_tol: None,
            memory_budget: None,
            json: false,
            backend: BackendKind::Ndarray,
        }
    }
}

/// clap value parser for positive finite numbers (negative ones parse, then get the reason).
fn positive_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(format!("must be a positive number, got {v}"))
    }
}

impl VerifyArgs {
    /// Rejects options that do not apply to the chosen inputs (clap cannot express these).
    fn check_applicable(&self) -> Result<()> {
        if self.reference.is_some() && self.checkpoint.is_none() {
            bail!(
                "--reference needs --checkpoint: a reference file holds the outputs of one checkpoint"
            );
        }
        if self.ref_tol.is_some() && self.reference.is_none() {
            bail!("--ref-tol applies only with --reference");
        }
        if self.checkpoint.is_some() {
            for (given, flag) in [
                (self.d_model.is_some(), "--d-model"),
                (self.n_layers.is_some(), "--n-layers"),
                (self.vocab.is_some(), "--vocab"),
                (self.d_ffn.is_some(), "--d-ffn"),
                (self.seq_len.is_some(), "--seq-len"),
            ] {
                if given {
                    bail!(
                        "{flag} describes a random model; a checkpoint has its own dimensions \
                         (use --random-tokens N for the number of tokens)"
                    );
                }
            }
        }
        if self.seq_len.is_some() && self.random_tokens.is_some() {
            bail!("--seq-len and --random-tokens both set the number of random tokens: give one");
        }
        let fixed_tokens = if self.tokens.is_some() {
            Some("--tokens")
        } else if self.reference.is_some() {
            Some("--reference")
        } else {
            None
        };
        if let Some(by) = fixed_tokens {
            if self.batch.is_some() {
                bail!("--batch applies to random tokens; the tokens come from {by}");
            }
            if self.seq_len.is_some() {
                bail!("--seq-len applies to random tokens; the tokens come from {by}");
            }
            if self.seed.is_some() && self.checkpoint.is_some() {
                bail!("--seed draws random tokens; the tokens come from {by}");
            }
        }
        Ok(())
    }

    fn options(&self) -> VerifyOptions {
        VerifyOptions {
            chunk_len: self.chunk_len,
            tol: self.tol,
            ref_tol: self.ref_tol,
            memory_budget: self.memory_budget.unwrap_or_else(default_memory_budget),
            backend: self.backend.name().into(),
        }
    }

    fn token_choice(&self, default_time: usize) -> TokenChoice {
        match &self.tokens {
            Some(ids) => TokenChoice::Ids(ids.clone()),
            None => TokenChoice::Random {
                batch: self.batch.unwrap_or(BATCH),
                time: self.random_tokens.or(self.seq_len).unwrap_or(default_time),
                seed: self.seed.unwrap_or(0),
            },
        }
    }
}

/// What to verify, resolved before dispatch.
enum Subject {
    Random(RandomModel, TokenChoice),
    Checkpoint(rwkv_checkpoint::Checkpoint, Source),
}

enum Source {
    Tokens(TokenChoice),
    Reference(rwkv_checkpoint::Reference),
}

struct VerifyJob<'a> {
    subject: &'a Subject,
    options: VerifyOptions,
}

impl Job for VerifyJob<'_> {
    type Output = VerifyReport;

    fn run<B: Metered>(self, device: B::Device) -> Result<VerifyReport> {
        Ok(match self.subject {
            Subject::Random(model, tokens) => {
                verify_random::<B>(&device, model, tokens, &self.options)?
            }
            Subject::Checkpoint(c, Source::Tokens(t)) => {
                verify_checkpoint::<B>(&device, c, Inputs::Tokens(t), &self.options)?
            }
            Subject::Checkpoint(c, Source::Reference(r)) => {
                verify_checkpoint::<B>(&device, c, Inputs::Reference(r), &self.options)?
            }
        })
    }
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

/// Resolves the arguments, then runs the library's verification on the chosen backend.
pub fn evaluate(args: VerifyArgs) -> Result<VerifyReport> {
    args.check_applicable()?;
    let subject = match &args.checkpoint {
        Some(path) => {
            let checkpoint = load(path)?;
            let source = match &args.reference {
                Some(r) => Source::Reference(load_reference(r)?),
                None => Source::Tokens(args.token_choice(CHECKPOINT_TOKENS)),
            };
            Subject::Checkpoint(checkpoint, source)
        }
        None if args.random => Subject::Random(
            RandomModel {
                vocab_size: args.vocab.unwrap_or(VOCAB),
                d_model: args.d_model.unwrap_or(D_MODEL),
                n_layers: args.n_layers.unwrap_or(N_LAYERS),
                d_ffn: args.d_ffn,
                seed: args.seed.unwrap_or(0),
            },
            args.token_choice(SEQ_LEN),
        ),
        None => bail!(
            "nothing to verify: pass `--random` or `--checkpoint PATH` (see `rwkv-lab verify --help`)"
        ),
    };
    let job = VerifyJob {
        subject: &subject,
        options: args.options(),
    };
    dispatch(args.backend, args.dtype, job)
}

fn print_table(r: &VerifyReport) {
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
        "V={} C={} L={} F={} ({} parameters); tokens B={} T={}; {} on {} (matrix products in {}); chunk length {}",
        m.vocab_size,
        m.d_model,
        m.n_layers,
        m.d_ffn,
        m.params,
        r.batch,
        r.seq_len,
        r.dtype,
        r.backend,
        r.matmul,
        r.chunk_len
    );
    if let Some(f) = &r.reference {
        println!("reference {f}");
    }
    let c = &r.conditioning;
    let layers: Vec<String> = c
        .layers
        .iter()
        .map(|l| format!("{:.1} + {:.2}", l.max_k, l.max_u))
        .collect();
    println!(
        "conditioning: K = Σ_l (6·√C + max|k_l| + max|u_l|) = {:.1}   (6·√C = {:.1}; max|k_l| + max|u_l| per layer: {}; max|w|·(T-1) up to {:.3e})",
        c.kappa,
        c.dense,
        layers.join(", "),
        c.layers.iter().map(|l| l.max_w_t).fold(0.0, f64::max)
    );
    if r.tolerance_rule == "fixed" {
        println!(
            "tolerance between runs: fixed {:e} (rel_rms <= tol and max_abs <= tol·max(1, max|ref|))",
            r.tolerance
        );
    } else {
        println!(
            "tolerances: tol = (F_a·ε_a·g_a + F_b·ε_b·g_b)·K per comparison; ε = {EPS_F32:.2e} (f32), {EPS_F64:.2e} (f64), {EPS_TF32:.2e} (TF32 products, --matmul fast on CUDA); g = T^¾ = {:.1} (recurrent), T^¼ = {:.1} (block); rel_rms <= tol and max_abs <= tol·max(1, max|ref|)",
            (c.time as f64).powf(0.75),
            (c.time as f64).powf(0.25),
        );
    }
    let largest = r
        .memory
        .runs
        .iter()
        .filter(|e| e.fits)
        .max_by_key(|e| e.bytes.unwrap_or(0));
    println!(
        "memory: budget {}; model {}{}\n",
        lab_util::fmt_bytes(r.memory.budget as f64),
        show_bytes(r.memory.model),
        largest
            .map(|e| format!("; largest run {} {}", e.name, show_bytes(e.bytes)))
            .unwrap_or_default()
    );
    let width = |f: &dyn Fn(&rwkv::verify::Comparison) -> usize, min: usize| {
        r.comparisons.iter().map(f).max().unwrap_or(min).max(min)
    };
    let wa = width(&|c| c.a.len(), 1);
    let wb = width(&|c| c.b.len(), 9);
    let wq = width(&|c| c.quantity.chars().count(), 8);
    println!(
        "{:<wa$}  {:<wb$}  {:<wq$}  {:>10}  {:>10}  {:>9}  {:>8}  {:<6}  bound (F_a·ε_a·g_a + F_b·ε_b·g_b)·K",
        "a", "b", "quantity", "max_abs", "rel_rms", "max|ref|", "tol", "result"
    );
    for c in &r.comparisons {
        let result = match c.status {
            Status::Pass => "ok",
            Status::Fail => "FAIL",
            Status::Skipped => "skipped",
        };
        let q = format!("{:<wq$}", c.quantity);
        if c.status == Status::Skipped {
            println!(
                "{:<wa$}  {:<wb$}  {q}  {:>10}  {:>10}  {:>9}  {:>8}  {:<6}  {}",
                c.a,
                c.b,
                "-",
                "-",
                "-",
                "-",
                result,
                c.reason.as_deref().unwrap_or("")
            );
            continue;
        }
        let terms = match &c.bound {
            Some(b) => {
                let (ta, tb) = b.side_terms();
                format!("({ta:.1e} + {tb:.1e})·{:.0}", b.kappa)
            }
            None => format!("fixed ({})", c.criterion),
        };
        println!(
            "{:<wa$}  {:<wb$}  {q}  {:>10.3e}  {:>10.3e}  {:>9.3}  {:>8.1e}  {:<6}  {terms}",
            c.a, c.b, c.max_abs, c.rel_rms, c.max_ref, c.tol, result,
        );
    }
    println!();
    let ran = r.passed + r.failed;
    let skipped = if r.skipped > 0 {
        format!(
            "; {} skipped (over the memory budget; neither pass nor fail)",
            r.skipped
        )
    } else {
        String::new()
    };
    if r.failed > 0 {
        println!(
            "FAIL: {} of {ran} comparisons exceed the tolerance{skipped}",
            r.failed
        );
    } else if ran == 0 {
        println!("FAIL: no comparison could run{skipped}");
    } else {
        println!("PASS: {ran} comparisons within tolerance{skipped}");
    }
}
