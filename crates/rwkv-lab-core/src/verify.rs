//! The equivalence verifier behind `rwkv-lab verify`, callable from Rust.
//!
//! [`verify_random`] and [`verify_checkpoint`] run a model in every WKV formulation
//! (parallel, chunked, scan), in RNN mode (one `step` per token) and split in two halves
//! carrying the state, and compare each run with
//! 1. the recurrent formulation on the same backend (logits and final state);
//! 2. the float64 recurrence on the CPU (`NdArray<f64>`), unless the run itself is that;
//! 3. with a reference file, each of its arrays (exact float64, Hugging Face, BlinkDL).
//!
//! Tolerances are condition-aware by default ([`rwkv::verify::Bound`]): from the precision
//! of both sides and the conditioning of the input (max |k|, |u|, depth, T), each printed
//! with its terms; fixed tolerances can be asked for instead.
//!
//! Before anything is allocated, the memory of every part is estimated with checked
//! arithmetic ([`plan`]): a model that does not fit the budget is refused with the
//! estimate; a formulation that does not fit is skipped, and its comparisons are reported
//! as `skipped` with the reason (neither pass nor fail).
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use rwkv_lab_core::verify::{RandomModel, TokenChoice, VerifyOptions, verify_random};
//!
//! let model = RandomModel { vocab_size: 256, d_model: 64, n_layers: 2, d_ffn: None, seed: 0 };
//! let tokens = TokenChoice::Random { batch: 2, time: 64, seed: 0 };
//! let report = verify_random::<NdArray<f32>>(&Default::default(), &model, &tokens,
//!     &VerifyOptions::default()).unwrap();
//! assert!(report.pass);
//! ```

use std::any::TypeId;

use burn::backend::NdArray;
use burn::tensor::{Element, Int, Tensor, TensorData};
use lab_util::SplitMix64;
use rwkv::verify::{
    Algorithm, Bound, Comparison, Conditioning, Precision, QuantityKind, RunOutput, Status,
    Tolerance, conditioning, run_gpt, run_rnn, run_split,
};
use rwkv::{Rwkv, RwkvConfig, RwkvError, WkvBackend, WkvMode};
use rwkv_checkpoint::verify::{RunView, compare_split, compare_whole, reference_canonical_state};
use rwkv_checkpoint::{Checkpoint, CheckpointError, RefTolerances, Reference};
use serde::Serialize;

/// The float64 CPU oracle every other run is compared with.
type Oracle = NdArray<f64>;

/// Name of the oracle's run in reports.
pub const ORACLE: &str = "recurrent@ndarray-f64";

/// Errors of the verifier (bad options, sizes, and the model's or checkpoint's errors).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// An option out of its domain; names the option.
    #[error("{field}: {reason}")]
    Invalid {
        /// The option (library field name, e.g. `d_model`).
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// Not even the model (or the recurrent reference run) fits the memory budget.
    #[error(
        "{what} needs {}, more than the memory budget of {}; nothing was allocated \
         (raise --memory-budget, or choose a smaller model or fewer tokens)",
        needs(*.needed),
        lab_util::fmt_bytes(*.budget as f64)
    )]
    TooLarge {
        /// What does not fit.
        what: String,
        /// Estimated bytes (None: beyond 64-bit arithmetic).
        needed: Option<u64>,
        /// The budget.
        budget: u64,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] RwkvError),
    /// The checkpoint or reference failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

fn needs(b: Option<u64>) -> String {
    match b {
        Some(b) => format!("about {} (estimated)", lab_util::fmt_bytes(b as f64)),
        None => "more than 16 EiB (its size overflows 64-bit arithmetic)".into(),
    }
}

/// Bytes for messages; None is "more than 16 EiB" (overflows 64-bit size arithmetic).
pub fn show_bytes(b: Option<u64>) -> String {
    match b {
        Some(b) => lab_util::fmt_bytes(b as f64),
        None => "more than 16 EiB (beyond 64-bit size arithmetic)".into(),
    }
}

/// Options of a verification.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOptions {
    /// Block length of the chunked formulation (≥ 1).
    pub chunk_len: usize,
    /// A fixed tolerance for the comparisons between runs (scaled criterion) instead of the
    /// condition-aware ones.
    pub tol: Option<f64>,
    /// A fixed tolerance for every reference-array comparison (absolute on logits, scaled on
    /// the state) instead of the condition-aware ones.
    pub ref_tol: Option<f64>,
    /// Bytes the verification may use; over-budget runs are skipped.
    pub memory_budget: u64,
    /// Backend name shown in the report (empty: Burn's name of the backend).
    pub backend: String,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            chunk_len: 16,
            tol: None,
            ref_tol: None,
            memory_budget: 8 << 30,
            backend: String::new(),
        }
    }
}

/// A model whose every parameter is random (seeded), see [`RwkvConfig::init_randomized`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomModel {
    /// V.
    pub vocab_size: usize,
    /// C.
    pub d_model: usize,
    /// L.
    pub n_layers: usize,
    /// F; default 4·C.
    pub d_ffn: Option<usize>,
    /// Seed of the parameters.
    pub seed: u64,
}

impl RandomModel {
    /// The configuration, with checked arithmetic for the default F = 4·C.
    pub fn config(&self) -> Result<RwkvConfig, VerifyError> {
        let d_ffn = match self.d_ffn {
            Some(f) => f,
            None => self
                .d_model
                .checked_mul(4)
                .ok_or_else(|| VerifyError::Invalid {
                    field: "d_model",
                    reason: format!(
                        "{} is too large: the model's sizes overflow 64-bit arithmetic",
                        self.d_model
                    ),
                })?,
        };
        let config = RwkvConfig::new(self.vocab_size, self.d_model, self.n_layers, d_ffn);
        config.validate()?;
        Ok(config)
    }
}

/// Which tokens to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChoice {
    /// These ids, one sequence.
    Ids(Vec<i64>),
    /// `batch` sequences of `time` random ids below V, seeded.
    Random {
        /// B.
        batch: usize,
        /// T.
        time: usize,
        /// Seed of the ids.
        seed: u64,
    },
}

impl TokenChoice {
    /// `(B, T)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            TokenChoice::Ids(ids) => (1, ids.len()),
            TokenChoice::Random { batch, time, .. } => (*batch, *time),
        }
    }
}

/// What a checkpoint is run on.
#[derive(Debug, Clone, Copy)]
pub enum Inputs<'a> {
    /// Chosen tokens.
    Tokens(&'a TokenChoice),
    /// A reference file's tokens, compared with its arrays too.
    Reference(&'a Reference),
}

/// The model of a report.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// `random` or the checkpoint's path.
    pub source: String,
    /// `randomized parameters` or the checkpoint's format.
    pub format: String,
    /// Element types in the file.
    pub file_dtypes: Vec<String>,
    /// V.
    pub vocab_size: usize,
    /// C.
    pub d_model: usize,
    /// L.
    pub n_layers: usize,
    /// F.
    pub d_ffn: usize,
    /// Parameter count.
    pub params: usize,
    /// Seed of a random model.
    pub seed: Option<u64>,
}

/// Estimated memory of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunEstimate {
    /// Run name (as in the comparisons' `a`), or `model`, `oracle`.
    pub name: String,
    /// Peak bytes while it runs, everything resident included (None: overflows).
    pub bytes: Option<u64>,
    /// Whether it fits the budget.
    pub fits: bool,
}

/// The memory estimate of a verification, made before anything is allocated.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryPlan {
    /// The budget.
    pub budget: u64,
    /// Bytes per element of the run's float type.
    pub element_bytes: u64,
    /// The model's parameters.
    pub model: Option<u64>,
    /// Every run, in order (the float64 oracle first when there is one).
    pub runs: Vec<RunEstimate>,
}

impl MemoryPlan {
    /// The estimate of a run by name.
    pub fn get(&self, name: &str) -> Option<&RunEstimate> {
        self.runs.iter().find(|r| r.name == name)
    }

    fn skip_reason(&self, name: &str) -> Option<String> {
        let r = self.get(name)?;
        (!r.fits).then(|| {
            format!(
                "estimated {} > memory budget {}",
                show_bytes(r.bytes),
                lab_util::fmt_bytes(self.budget as f64)
            )
        })
    }
}

/// The result of a verification (the `--json` output of `rwkv-lab verify`).
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Every comparison that ran passed, and at least one ran (skipped ones do not count).
    pub pass: bool,
    /// Backend name.
    pub backend: String,
    /// `f32` or `f64`.
    pub dtype: &'static str,
    /// The fixed `tol` if one was given; otherwise the largest condition-aware tolerance
    /// of the comparisons between runs.
    pub tolerance: f64,
    /// `fixed` or `derived`.
    pub tolerance_rule: &'static str,
    /// B.
    pub batch: usize,
    /// T.
    pub seq_len: usize,
    /// Chunk length of the chunked formulation.
    pub chunk_len: usize,
    /// The reference file, if any.
    pub reference: Option<String>,
    /// The model.
    pub model: ModelInfo,
    /// The conditioning of the input the tolerances were derived from.
    pub conditioning: Conditioning,
    /// Memory estimates.
    pub memory: MemoryPlan,
    /// Comparisons that ran and passed, failed, or were skipped.
    pub passed: usize,
    /// Failed comparisons.
    pub failed: usize,
    /// Skipped comparisons.
    pub skipped: usize,
    /// Every comparison.
    pub comparisons: Vec<Comparison>,
}

// ---------------------------------------------------------------------------------------
// Memory estimate (checked arithmetic; None means "beyond u64")

fn mul(xs: &[u64]) -> Option<u64> {
    xs.iter().try_fold(1u64, |a, &x| a.checked_mul(x))
}

fn add(xs: &[Option<u64>]) -> Option<u64> {
    xs.iter().try_fold(0u64, |a, x| a.checked_add((*x)?))
}

/// Parameter count `2VC + L(5C² + 2CF) + 11LC + 4C` with checked arithmetic (RWKV-4 with
/// `ln0`; see [`RwkvConfig::num_params`]).
pub fn checked_params(vocab: usize, c: usize, layers: usize, ffn: usize) -> Option<u64> {
    let (v, c, l, f) = (vocab as u64, c as u64, layers as u64, ffn as u64);
    let per_layer = add(&[mul(&[5, c, c]), mul(&[2, c, f]), mul(&[11, c])]);
    add(&[mul(&[2, v, c]), per_layer.and_then(|p| p.checked_mul(l)), mul(&[4, c])])
}

/// Dimensions the estimate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// V.
    pub vocab: usize,
    /// C.
    pub d_model: usize,
    /// L.
    pub n_layers: usize,
    /// F.
    pub d_ffn: usize,
    /// B.
    pub batch: usize,
    /// T.
    pub time: usize,
    /// Chunk length.
    pub chunk_len: usize,
}

/// Working memory of one whole-sequence pass in `mode` (bytes, element size `e`): the
/// activations of a block (about 16 `[B, T, C]` and 3 `[B, T, F]` tensors live at once),
/// the logits and their host copy, and what the WKV formulation adds: `[B, C, T, T]` logits
/// (parallel, about 4 live), `[B, C, T, L]` (chunked), `[B, T, C]` (recurrent, scan).
fn pass_bytes(d: Dims, mode: Option<WkvMode>, e: u64) -> Option<u64> {
    let (b, t, c, f, v) = (
        d.batch as u64,
        d.time as u64,
        d.d_model as u64,
        d.d_ffn as u64,
        d.vocab as u64,
    );
    let act = mul(&[b, t, add(&[mul(&[16, c]), mul(&[3, f]), mul(&[2, v])])?, e]);
    let host = mul(&[b, t, v, e + 8]); // into_data copy, then f64 conversion
    let wkv = match mode {
        Some(WkvMode::Parallel) => mul(&[4, b, c, t, t, e]),
        Some(WkvMode::Chunked { len }) => mul(&[4, b, c, t, (len as u64).min(t), e]),
        Some(WkvMode::Recurrent) => mul(&[8, b, t, c, e]),
        Some(WkvMode::Scan) => mul(&[6, b, t, c, e]),
        // RNN mode: one token per step, the T logits [B, V] stacked at the end
        None => mul(&[2, b, t, v, e]),
    };
    add(&[act, host, wkv])
}

/// The memory plan of a verification: model, the float64 oracle (when `oracle`), and
/// every run by name, each with everything resident at that time (the model, the host
/// copies of the recurrent run's and the oracle's outputs).
pub fn plan(d: Dims, element_bytes: u64, oracle: bool, budget: u64) -> MemoryPlan {
    let e = element_bytes;
    let params = checked_params(d.vocab, d.d_model, d.n_layers, d.d_ffn);
    // building a model holds the largest parameter as f64 on the host, twice, while converting
    let largest = mul(&[
        (d.vocab.max(d.d_ffn) as u64),
        d.d_model as u64,
        16 + element_bytes,
    ]);
    let model = params.and_then(|p| p.checked_mul(e));
    let logits_host = mul(&[d.batch as u64, d.time as u64, d.vocab as u64, 8]);
    let state_host = mul(&[4, d.batch as u64, d.d_model as u64, d.n_layers as u64, 8]);
    let output = add(&[logits_host, state_host]);
    let fits = |b: Option<u64>| b.is_some_and(|b| b <= budget);
    let mut runs = Vec::new();
    let mut resident = vec![];
    if oracle {
        let model64 = params.and_then(|p| p.checked_mul(8));
        let bytes = add(&[
            model64,
            mul(&[(d.vocab.max(d.d_ffn) as u64), d.d_model as u64, 24]),
            pass_bytes(d, Some(WkvMode::Recurrent), 8),
        ]);
        runs.push(RunEstimate {
            name: ORACLE.into(),
            bytes,
            fits: fits(bytes),
        });
        if fits(bytes) {
            resident.push(output);
        }
    }
    resident.push(model);
    runs.push(RunEstimate {
        name: "model".into(),
        bytes: add(&[add(&resident), largest]),
        fits: fits(add(&[add(&resident), largest])),
    });
    // the recurrent run's output stays for the comparisons
    let base = add(&[add(&resident), pass_bytes(d, Some(WkvMode::Recurrent), e)]);
    runs.push(RunEstimate {
        name: WkvMode::Recurrent.to_string(),
        bytes: base,
        fits: fits(base),
    });
    resident.push(output);
    let chunked = WkvMode::Chunked { len: d.chunk_len };
    let mut named: Vec<(String, Option<WkvMode>)> = [WkvMode::Parallel, chunked, WkvMode::Scan]
        .iter()
        .map(|m| (m.to_string(), Some(*m)))
        .collect();
    named.push(("rnn".into(), None));
    // the conditioning pass: the chunked form plus one layer's keys
    named.push(("conditioning".into(), Some(chunked)));
    for (name, mode) in named {
        let bytes = add(&[add(&resident), pass_bytes(d, mode, e), output]);
        runs.push(RunEstimate {
            name,
            bytes,
            fits: fits(bytes),
        });
    }
    MemoryPlan {
        budget,
        element_bytes,
        model,
        runs,
    }
}

// ---------------------------------------------------------------------------------------
// The verification

/// What the model is built from.
enum Subject<'a> {
    Random(&'a RandomModel, RwkvConfig),
    Checkpoint(&'a Checkpoint),
}

impl Subject<'_> {
    fn config(&self) -> &RwkvConfig {
        match self {
            Subject::Random(_, c) => c,
            Subject::Checkpoint(c) => &c.config,
        }
    }

    fn build<B: WkvBackend>(&self, device: &B::Device) -> Result<Rwkv<B>, VerifyError> {
        Ok(match self {
            Subject::Random(m, c) => c.init_randomized::<B>(device, m.seed)?,
            Subject::Checkpoint(c) => c.to_model::<B>(device)?,
        })
    }

    fn info(&self) -> ModelInfo {
        let c = self.config();
        let (source, format, file_dtypes, seed) = match self {
            Subject::Random(m, _) => (
                "random".to_string(),
                "randomized parameters".to_string(),
                vec![],
                Some(m.seed),
            ),
            Subject::Checkpoint(k) => (
                k.path.display().to_string(),
                k.format.describe().to_string(),
                k.dtypes().into_iter().collect(),
                None,
            ),
        };
        ModelInfo {
            source,
            format,
            file_dtypes,
            vocab_size: c.vocab_size,
            d_model: c.d_model,
            n_layers: c.n_layers,
            d_ffn: c.d_ffn,
            params: c.num_params(),
            seed,
        }
    }
}

/// Verifies a random model (see the module docs).
///
/// # Errors
/// Invalid options or sizes, a model over the memory budget, a model error.
pub fn verify_random<B: WkvBackend>(
    device: &B::Device,
    model: &RandomModel,
    tokens: &TokenChoice,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let config = model.config()?;
    verify_subject::<B>(
        device,
        &Subject::Random(model, config),
        Inputs::Tokens(tokens),
        opts,
    )
}

/// Verifies a loaded checkpoint on chosen tokens or on a reference file's tokens and
/// arrays (see the module docs).
///
/// # Errors
/// Invalid options or sizes, a reference that does not fit the model, a model over the
/// memory budget, a model error.
pub fn verify_checkpoint<B: WkvBackend>(
    device: &B::Device,
    checkpoint: &Checkpoint,
    inputs: Inputs<'_>,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    verify_subject::<B>(device, &Subject::Checkpoint(checkpoint), inputs, opts)
}

fn positive(field: &'static str, v: f64) -> Result<(), VerifyError> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(VerifyError::Invalid {
            field,
            reason: format!("must be a positive number, got {v}"),
        })
    }
}

/// Token ids `[B, T]` row-major: checked sizes, then drawn (random) or taken.
fn token_ids(choice: &TokenChoice, vocab: usize) -> Result<Vec<i64>, VerifyError> {
    match choice {
        TokenChoice::Ids(ids) => Ok(ids.clone()),
        TokenChoice::Random { batch, time, seed } => {
            let n = batch.checked_mul(*time).ok_or(VerifyError::Invalid {
                field: "tokens",
                reason: format!("{batch} × {time} tokens overflow 64-bit arithmetic"),
            })?;
            let v = vocab as u64;
            let mut rng = SplitMix64::new(seed ^ 0x70CE);
            (0..n)
                .map(|_| {
                    i64::try_from(rng.below(v)).map_err(|_| VerifyError::Invalid {
                        field: "vocab_size",
                        reason: format!("{vocab} exceeds the largest token id (2^63 - 1)"),
                    })
                })
                .collect()
        }
    }
}

fn dtype_name<B: WkvBackend>() -> &'static str {
    if <B::FloatElem as Element>::dtype() == burn::tensor::DType::F64 {
        "f64"
    } else {
        "f32"
    }
}

/// A run to do: its name, how to do it, and its precision.
#[derive(Debug, Clone, Copy)]
enum Run {
    Gpt(WkvMode),
    Rnn,
    Split(usize, WkvMode),
}

impl Run {
    fn name(self) -> String {
        match self {
            Run::Gpt(m) => m.to_string(),
            Run::Rnn => "rnn".into(),
            Run::Split(s, m) => format!("split@{s}({m})"),
        }
    }

    /// The plan entry whose estimate covers it.
    fn plan_name(self) -> String {
        match self {
            Run::Gpt(m) | Run::Split(_, m) => m.to_string(),
            Run::Rnn => "rnn".into(),
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Run::Gpt(m) | Run::Split(_, m) => Algorithm::of(m),
            Run::Rnn => Algorithm::Recurrent,
        }
    }

    fn execute<B: WkvBackend>(
        self,
        model: &Rwkv<B>,
        tokens: Tensor<B, 2, Int>,
    ) -> Result<RunOutput, RwkvError> {
        match self {
            Run::Gpt(m) => run_gpt(model, tokens, None, m),
            Run::Rnn => run_rnn(model, tokens, None),
            Run::Split(s, m) => run_split(model, tokens, s, m),
        }
    }
}

/// The comparisons of a verification, grouped so that the report lists them in a stable
/// order: runs against the recurrence, against the oracle, against the reference arrays,
/// against `logits_split`.
#[derive(Default)]
struct Rows {
    internal: Vec<Comparison>,
    oracle: Vec<Comparison>,
    reference: Vec<Comparison>,
    split: Vec<Comparison>,
}

fn verify_subject<B: WkvBackend>(
    device: &B::Device,
    subject: &Subject<'_>,
    inputs: Inputs<'_>,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    if opts.chunk_len == 0 {
        return Err(VerifyError::Invalid {
            field: "chunk_len",
            reason: "must be at least 1".into(),
        });
    }
    if let Some(t) = opts.tol {
        positive("tol", t)?;
    }
    if let Some(t) = opts.ref_tol {
        positive("ref_tol", t)?;
    }
    if opts.memory_budget == 0 {
        return Err(VerifyError::Invalid {
            field: "memory_budget",
            reason: "must be more than 0 bytes".into(),
        });
    }
    let config = subject.config().clone();
    let reference = match inputs {
        Inputs::Reference(r) => {
            r.check(&config)?;
            Some(r)
        }
        Inputs::Tokens(_) => None,
    };
    let (batch, time) = match inputs {
        Inputs::Reference(r) => (r.batch, r.time),
        Inputs::Tokens(t) => t.dims(),
    };
    if batch == 0 || time == 0 {
        return Err(VerifyError::Invalid {
            field: "tokens",
            reason: format!("need at least one token in at least one sequence (B = {batch}, T = {time})"),
        });
    }
    let is_oracle = TypeId::of::<B>() == TypeId::of::<Oracle>();
    let element_bytes = core::mem::size_of::<B::FloatElem>() as u64;
    let dims = Dims {
        vocab: config.vocab_size,
        d_model: config.d_model,
        n_layers: config.n_layers,
        d_ffn: config.d_ffn,
        batch,
        time,
        chunk_len: opts.chunk_len,
    };
    let memory = plan(dims, element_bytes, !is_oracle, opts.memory_budget);
    for essential in ["model", "recurrent"] {
        let r = memory.get(essential).expect("planned");
        if !r.fits {
            let what = match essential {
                "model" => format!(
                    "the model (V={}, C={}, L={}, F={})",
                    config.vocab_size, config.d_model, config.n_layers, config.d_ffn
                ),
                _ => format!(
                    "the recurrent reference run (B={batch}, T={time}, V={})",
                    config.vocab_size
                ),
            };
            return Err(VerifyError::TooLarge {
                what,
                needed: r.bytes,
                budget: opts.memory_budget,
            });
        }
    }
    let ids = match inputs {
        Inputs::Reference(r) => r.tokens.clone(),
        Inputs::Tokens(t) => token_ids(t, config.vocab_size)?,
    };
    let tokens = |device: &B::Device| -> Tensor<B, 2, Int> {
        Tensor::from_data(TensorData::new(ids.clone(), [batch, time]), device)
    };

    // 1. the float64 oracle on the CPU (its model is dropped before the run's is built)
    let oracle = if is_oracle {
        None
    } else if let Some(reason) = memory.skip_reason(ORACLE) {
        Some(Err(reason))
    } else {
        let dev = Default::default();
        let model = subject.build::<Oracle>(&dev)?;
        let ids64 = Tensor::<Oracle, 2, Int>::from_data(
            TensorData::new(ids.clone(), [batch, time]),
            &dev,
        );
        Some(Ok(run_gpt(&model, ids64, None, WkvMode::Recurrent)?))
    };

    // 2. the run's model, its recurrence, the conditioning
    let model = subject.build::<B>(device)?;
    let base = run_gpt(&model, tokens(device), None, WkvMode::Recurrent)?;
    let chunked = WkvMode::Chunked {
        len: opts.chunk_len,
    };
    let cond_mode = if memory.get("conditioning").is_some_and(|r| r.fits) {
        chunked
    } else {
        WkvMode::Recurrent
    };
    let cond = conditioning(&model, tokens(device), cond_mode)?;
    let run_precision = |alg| Precision::of_run::<B::FloatElem>(alg);
    let between = |kind: QuantityKind, alg: Algorithm, other: Precision| match opts.tol {
        Some(t) => Tolerance::Scaled(t),
        None => Tolerance::Derived(Bound::new(kind, run_precision(alg), other, &cond)),
    };
    let ref_tol = match opts.ref_tol {
        Some(t) => RefTolerances::Uniform(t),
        None => RefTolerances::Derived,
    };
    let reference_state = reference.and_then(|r| reference_canonical_state(r, config.n_layers));
    let reference_keys: Vec<(&str, &str)> = reference
        .map(|r| {
            let mut keys = vec![];
            for (k, q) in [
                ("logits_exact_f64", "logits"),
                ("logits_whole", "logits"),
                ("blinkdl_seq_logits0", "logits[0]"),
                ("blinkdl_rnn_logits0", "logits[0]"),
            ] {
                if r.get(k).is_some() {
                    keys.push((k, q));
                }
            }
            if reference_state.is_some() {
                keys.extend([
                    ("final_state_0", "ffn shift"),
                    ("final_state_1", "att shift"),
                    ("final_state_2/final_state_3", "aa/bb"),
                    ("final_state_4+ln(final_state_3)", "pp+ln bb"),
                ]);
            }
            keys
        })
        .unwrap_or_default();

    let mut rows = Rows::default();
    let recurrent = Run::Gpt(WkvMode::Recurrent);
    let recurrent_name = recurrent.name();
    let compare_oracle = |rows: &mut Rows, name: &str, alg: Algorithm, out: Option<&RunOutput>| {
        match (&oracle, out) {
            (None, _) => {}
            (Some(Err(reason)), _) => {
                for q in ["logits", "state"] {
                    rows.oracle.push(Comparison::skipped(name, ORACLE, q, reason));
                }
            }
            (Some(Ok(_)), None) => {
                for q in ["logits", "state"] {
                    rows.oracle
                        .push(Comparison::skipped(name, ORACLE, q, "its run was skipped"));
                }
            }
            (Some(Ok(o)), Some(out)) => {
                let f64_rec = Precision::f64(Algorithm::Recurrent);
                rows.oracle.push(Comparison::new(
                    name,
                    ORACLE,
                    "logits",
                    &out.logits,
                    &o.logits,
                    between(QuantityKind::Logits, alg, f64_rec),
                ));
                rows.oracle.push(Comparison::new(
                    name,
                    ORACLE,
                    "state",
                    &out.state,
                    &o.state,
                    between(QuantityKind::State, alg, f64_rec),
                ));
            }
        }
    };
    let compare_reference = |rows: &mut Rows, name: &str, alg: Algorithm, out: Option<&RunOutput>, reason: &str| {
        let Some(r) = reference else { return };
        match out {
            Some(out) => rows.reference.extend(compare_whole(
                RunView {
                    name,
                    output: out,
                    precision: run_precision(alg),
                },
                r,
                reference_state.as_deref(),
                config.n_layers,
                &cond,
                ref_tol,
            )),
            None => {
                for (k, q) in &reference_keys {
                    rows.reference.push(Comparison::skipped(name, k, q, reason));
                }
            }
        }
    };

    compare_oracle(&mut rows, &recurrent_name, Algorithm::Recurrent, Some(&base));
    compare_reference(&mut rows, &recurrent_name, Algorithm::Recurrent, Some(&base), "");

    let mut runs = vec![
        Run::Gpt(WkvMode::Parallel),
        Run::Gpt(chunked),
        Run::Gpt(WkvMode::Scan),
        Run::Rnn,
    ];
    if time > 1 {
        runs.push(Run::Split(time / 2, chunked));
    }
    let rec_precision = run_precision(Algorithm::Recurrent);
    let mut rnn_logits: Option<Vec<f64>> = None;
    for run in runs {
        let name = run.name();
        let alg = run.algorithm();
        let skip = memory.skip_reason(&run.plan_name());
        let out = match &skip {
            Some(_) => None,
            None => Some(run.execute(&model, tokens(device))?),
        };
        match &out {
            Some(out) => {
                rows.internal.push(Comparison::new(
                    &name,
                    &recurrent_name,
                    "logits",
                    &out.logits,
                    &base.logits,
                    between(QuantityKind::Logits, alg, rec_precision),
                ));
                rows.internal.push(Comparison::new(
                    &name,
                    &recurrent_name,
                    "state",
                    &out.state,
                    &base.state,
                    between(QuantityKind::State, alg, rec_precision),
                ));
            }
            None => {
                let reason = skip.clone().unwrap_or_default();
                for q in ["logits", "state"] {
                    rows.internal
                        .push(Comparison::skipped(&name, &recurrent_name, q, &reason));
                }
            }
        }
        compare_oracle(&mut rows, &name, alg, out.as_ref());
        if !matches!(run, Run::Split(..)) {
            compare_reference(&mut rows, &name, alg, out.as_ref(), skip.as_deref().unwrap_or(""));
        }
        if matches!(run, Run::Rnn) {
            rnn_logits = out.map(|o| o.logits);
        }
    }

    // runs split where the reference split its second call
    if let (Some(r), Some(split)) = (reference, reference.and_then(|r| r.split)) {
        if r.get("logits_split").is_some() {
            let mut split_runs: Vec<Run> = WkvMode::all(opts.chunk_len)
                .into_iter()
                .map(|m| Run::Split(split, m))
                .collect();
            split_runs.push(Run::Rnn);
            for run in split_runs {
                let name = run.name();
                let alg = run.algorithm();
                let output = match run {
                    // RNN mode carries its state token by token: its whole run is also split
                    Run::Rnn => rnn_logits.take().map(|logits| RunOutput {
                        logits,
                        state: vec![],
                    }),
                    _ => match memory.skip_reason(&run.plan_name()) {
                        Some(_) => None,
                        None => Some(run.execute(&model, tokens(device))?),
                    },
                };
                match output {
                    Some(out) => rows.split.extend(compare_split(
                        RunView {
                            name: &name,
                            output: &out,
                            precision: run_precision(alg),
                        },
                        r,
                        &cond,
                        ref_tol,
                    )),
                    None => rows.split.push(Comparison::skipped(
                        &name,
                        "logits_split",
                        "logits",
                        &memory
                            .skip_reason(&run.plan_name())
                            .unwrap_or_else(|| "its run was skipped".into()),
                    )),
                }
            }
        }
    }

    let comparisons: Vec<Comparison> = rows
        .internal
        .into_iter()
        .chain(rows.oracle)
        .chain(rows.reference)
        .chain(rows.split)
        .collect();
    let count = |s: Status| comparisons.iter().filter(|c| c.status == s).count();
    let (passed, failed, skipped) = (count(Status::Pass), count(Status::Fail), count(Status::Skipped));
    let tolerance = opts.tol.unwrap_or_else(|| {
        comparisons
            .iter()
            .filter(|c| c.b == recurrent_name && c.quantity == "logits")
            .filter_map(|c| c.bound.as_ref().map(|b| b.tol))
            .fold(0.0, f64::max)
    });
    Ok(VerifyReport {
        pass: failed == 0 && passed > 0,
        backend: if opts.backend.is_empty() {
            B::name(device)
        } else {
            opts.backend.clone()
        },
        dtype: dtype_name::<B>(),
        tolerance,
        tolerance_rule: if opts.tol.is_some() { "fixed" } else { "derived" },
        batch,
        seq_len: time,
        chunk_len: opts.chunk_len,
        reference: reference.map(|r| r.path.display().to_string()),
        model: subject.info(),
        conditioning: cond,
        memory,
        passed,
        failed,
        skipped,
        comparisons,
    })
}
