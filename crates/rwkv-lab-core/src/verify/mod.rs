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

mod plan;

pub use plan::{Dims, MemoryPlan, RunEstimate, checked_params, plan};

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

/// The result of a verification (the `--json` output of `rwkv-lab verify`).
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Every comparison that ran passed, and at least one ran (skipped ones do not count).
    pub pass: bool,
    /// Backend name.
    pub backend: String,
    /// `f32` or `f64`.
    pub dtype: &'static str,
    /// What the model's matrix products computed in: `f32` (or `f64` in an f64 run), or
    /// `tf32` (CUDA under `--matmul fast`; the run's ε is then TF32's, 2⁻¹¹).
    pub matmul: &'static str,
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
    /// RNN mode through `rwkv::decode::CpuDecoder` (f32 runs only), one row at a time.
    Decoder,
    Split(usize, WkvMode),
}

impl Run {
    fn name(self) -> String {
        match self {
            Run::Gpt(m) => m.to_string(),
            Run::Rnn => "rnn".into(),
            Run::Decoder => "cpu-decoder".into(),
            Run::Split(s, m) => format!("split@{s}({m})"),
        }
    }

    /// The plan entry whose estimate covers it.
    fn plan_name(self) -> String {
        match self {
            Run::Gpt(m) | Run::Split(_, m) => m.to_string(),
            Run::Rnn | Run::Decoder => "rnn".into(),
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Run::Gpt(m) | Run::Split(_, m) => Algorithm::of(m),
            Run::Rnn | Run::Decoder => Algorithm::Recurrent,
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
            Run::Decoder => rwkv::decode::run_decoder(model, tokens, None),
            Run::Split(s, m) => run_split(model, tokens, s, m),
        }
    }
}

/// What every run is compared with, and the comparisons so far, grouped so that the report
/// lists them in a stable order: runs against the recurrence, against the oracle, against
/// the reference arrays, against `logits_split`.
struct Comparer<'a> {
    opts: &'a VerifyOptions,
    cond: &'a Conditioning,
    /// Element type of the run: `f32` or `f64`.
    eps_run: f64,
    /// The recurrent run on the same backend.
    base: &'a RunOutput,
    /// The float64 oracle's output, or why it was skipped (None: the run is the oracle).
    oracle: Option<&'a Result<RunOutput, String>>,
    reference: Option<&'a Reference>,
    /// The reference's final state in canonical order, when it has one.
    reference_state: Option<Vec<f64>>,
    n_layers: usize,
    internal: Vec<Comparison>,
    vs_oracle: Vec<Comparison>,
    vs_reference: Vec<Comparison>,
    vs_split: Vec<Comparison>,
}

impl Comparer<'_> {
    fn precision(&self, alg: Algorithm) -> Precision {
        Precision {
            eps: self.eps_run,
            algorithm: alg,
        }
    }

    /// A fixed `--tol`, or the bound between this run and `other`.
    fn between(&self, kind: QuantityKind, alg: Algorithm, other: Precision) -> Tolerance {
        match self.opts.tol {
            Some(t) => Tolerance::Scaled(t),
            None => Tolerance::Derived(Bound::new(kind, self.precision(alg), other, self.cond)),
        }
    }

    fn ref_tol(&self) -> RefTolerances {
        match self.opts.ref_tol {
            Some(t) => RefTolerances::Uniform(t),
            None => RefTolerances::Derived,
        }
    }

    /// Logits and state of `out` against `theirs`, or two skipped rows.
    fn pair(
        &self,
        name: &str,
        b: &str,
        alg: Algorithm,
        other: Precision,
        out: Result<&RunOutput, &str>,
        theirs: &RunOutput,
    ) -> [Comparison; 2] {
        match out {
            Ok(out) => [
                Comparison::new(
                    name,
                    b,
                    "logits",
                    &out.logits,
                    &theirs.logits,
                    self.between(QuantityKind::Logits, alg, other),
                ),
                Comparison::new(
                    name,
                    b,
                    "state",
                    &out.state,
                    &theirs.state,
                    self.between(QuantityKind::State, alg, other),
                ),
            ],
            Err(reason) => ["logits", "state"].map(|q| Comparison::skipped(name, b, q, reason)),
        }
    }

    /// Every comparison of one whole-sequence run (`out` is the reason when it was skipped).
    fn whole(&mut self, run: Run, out: Result<&RunOutput, &str>) {
        let (name, alg) = (run.name(), run.algorithm());
        let rec = WkvMode::Recurrent.to_string();
        if !matches!(run, Run::Gpt(WkvMode::Recurrent)) {
            let rows = self.pair(
                &name,
                &rec,
                alg,
                self.precision(Algorithm::Recurrent),
                out,
                self.base,
            );
            self.internal.extend(rows);
        }
        match self.oracle {
            None => {}
            Some(Err(reason)) => self
                .vs_oracle
                .extend(["logits", "state"].map(|q| Comparison::skipped(&name, ORACLE, q, reason))),
            Some(Ok(o)) => {
                let out = out.map_err(|_| "its run was skipped");
                let rows = self.pair(
                    &name,
                    ORACLE,
                    alg,
                    Precision::f64(Algorithm::Recurrent),
                    out,
                    o,
                );
                self.vs_oracle.extend(rows);
            }
        }
        let Some(r) = self.reference else { return };
        if matches!(run, Run::Split(..)) {
            return; // split at T/2, not where the reference split
        }
        match out {
            Ok(out) => self.vs_reference.extend(compare_whole(
                RunView {
                    name: &name,
                    output: out,
                    precision: self.precision(alg),
                },
                r,
                self.reference_state.as_deref(),
                self.n_layers,
                self.cond,
                self.ref_tol(),
            )),
            Err(reason) => {
                for (key, quantity) in reference_keys(r, self.reference_state.is_some()) {
                    self.vs_reference
                        .push(Comparison::skipped(&name, key, quantity, reason));
                }
            }
        }
    }

    /// A run split where the reference split, against `logits_split`.
    fn split(&mut self, run: Run, out: Result<&RunOutput, &str>) {
        let Some(r) = self.reference else { return };
        let name = run.name();
        match out {
            Ok(out) => self.vs_split.extend(compare_split(
                RunView {
                    name: &name,
                    output: out,
                    precision: self.precision(run.algorithm()),
                },
                r,
                self.cond,
                self.ref_tol(),
            )),
            Err(reason) => {
                self.vs_split
                    .push(Comparison::skipped(&name, "logits_split", "logits", reason))
            }
        }
    }

    fn into_rows(self) -> Vec<Comparison> {
        self.internal
            .into_iter()
            .chain(self.vs_oracle)
            .chain(self.vs_reference)
            .chain(self.vs_split)
            .collect()
    }
}

/// The arrays a whole run is compared with (for skipped rows), with their quantity.
fn reference_keys(r: &Reference, with_state: bool) -> Vec<(&'static str, &'static str)> {
    let mut keys: Vec<_> = [
        ("logits_exact_f64", "logits"),
        ("logits_whole", "logits"),
        ("blinkdl_seq_logits0", "logits[0]"),
        ("blinkdl_rnn_logits0", "logits[0]"),
    ]
    .into_iter()
    .filter(|(k, _)| r.get(k).is_some())
    .collect();
    if with_state {
        keys.extend([
            ("final_state_0", "ffn shift"),
            ("final_state_1", "att shift"),
            ("final_state_2/final_state_3", "aa/bb"),
            ("final_state_4+ln(final_state_3)", "pp+ln bb"),
        ]);
    }
    keys
}

/// Checks the options before anything else.
fn check_options(opts: &VerifyOptions) -> Result<(), VerifyError> {
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
    Ok(())
}

/// Refuses when the model or the recurrent run (which everything is compared with) does not
/// fit the budget.
fn check_essentials(
    memory: &MemoryPlan,
    config: &RwkvConfig,
    batch: usize,
    time: usize,
) -> Result<(), VerifyError> {
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
                budget: memory.budget,
            });
        }
    }
    Ok(())
}

fn verify_subject<B: WkvBackend>(
    device: &B::Device,
    subject: &Subject<'_>,
    inputs: Inputs<'_>,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    check_options(opts)?;
    let config = subject.config().clone();
    let (reference, batch, time) = match inputs {
        Inputs::Reference(r) => {
            r.check(&config)?;
            (Some(r), r.batch, r.time)
        }
        Inputs::Tokens(t) => (None, t.dims().0, t.dims().1),
    };
    if batch == 0 || time == 0 {
        return Err(VerifyError::Invalid {
            field: "tokens",
            reason: format!(
                "need at least one token in at least one sequence (B = {batch}, T = {time})"
            ),
        });
    }
    let is_oracle = TypeId::of::<B>() == TypeId::of::<Oracle>();
    let dims = Dims {
        vocab: config.vocab_size,
        d_model: config.d_model,
        n_layers: config.n_layers,
        d_ffn: config.d_ffn,
        batch,
        time,
        chunk_len: opts.chunk_len,
    };
    let element_bytes = core::mem::size_of::<B::FloatElem>() as u64;
    let memory = plan(dims, element_bytes, !is_oracle, opts.memory_budget);
    check_essentials(&memory, &config, batch, time)?;
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
        let ids64 =
            Tensor::<Oracle, 2, Int>::from_data(TensorData::new(ids.clone(), [batch, time]), &dev);
        Some(Ok(run_gpt(&model, ids64, None, WkvMode::Recurrent)?))
    };

    // 2. the run's model, its recurrence, and the conditioning the tolerances come from
    let model = subject.build::<B>(device)?;
    let base = run_gpt(&model, tokens(device), None, WkvMode::Recurrent)?;
    let chunked = WkvMode::Chunked {
        len: opts.chunk_len,
    };
    let cond_mode = match memory.skip_reason("conditioning") {
        None => chunked,
        Some(_) => WkvMode::Recurrent,
    };
    let cond = conditioning(&model, tokens(device), cond_mode)?;

    // 3. every other run, compared as soon as it is done, then dropped
    let mut cmp = Comparer {
        opts,
        cond: &cond,
        eps_run: Precision::of_backend::<B>(device, Algorithm::Recurrent).eps,
        base: &base,
        oracle: oracle.as_ref(),
        reference,
        reference_state: reference.and_then(|r| reference_canonical_state(r, config.n_layers)),
        n_layers: config.n_layers,
        internal: vec![],
        vs_oracle: vec![],
        vs_reference: vec![],
        vs_split: vec![],
    };
    cmp.whole(Run::Gpt(WkvMode::Recurrent), Ok(&base));
    let mut runs = vec![
        Run::Gpt(WkvMode::Parallel),
        Run::Gpt(chunked),
        Run::Gpt(WkvMode::Scan),
        Run::Rnn,
    ];
    // the CPU decoder computes in f32: compared in f32 runs, with the f32 bounds
    if dtype_name::<B>() == "f32" {
        runs.push(Run::Decoder);
    }
    if time > 1 {
        runs.push(Run::Split(time / 2, chunked));
    }
    let mut rnn_logits = None;
    for run in runs {
        let skip = memory.skip_reason(&run.plan_name());
        let out = match &skip {
            Some(_) => None,
            None => Some(run.execute(&model, tokens(device))?),
        };
        cmp.whole(run, out.as_ref().ok_or(skip.as_deref().unwrap_or("")));
        if matches!(run, Run::Rnn) {
            rnn_logits = out.map(|o| o.logits);
        }
    }

    // 4. runs split where the reference split its second call
    if let Some(r) = reference
        && let Some(split) = r.split
        && r.get("logits_split").is_some()
    {
        for mode in WkvMode::all(opts.chunk_len) {
            let run = Run::Split(split, mode);
            match memory.skip_reason(&run.plan_name()) {
                Some(reason) => cmp.split(run, Err(&reason)),
                None => cmp.split(run, Ok(&run.execute(&model, tokens(device))?)),
            }
        }
        // RNN mode carries its state token by token: its whole run is also a split one
        match rnn_logits.take() {
            Some(logits) => {
                let out = RunOutput {
                    logits,
                    state: vec![],
                };
                cmp.split(Run::Rnn, Ok(&out));
            }
            None => cmp.split(Run::Rnn, Err("its run was skipped")),
        }
    }

    let comparisons = cmp.into_rows();
    let count = |s: Status| comparisons.iter().filter(|c| c.status == s).count();
    let (passed, failed, skipped) = (
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skipped),
    );
    let tolerance = opts.tol.unwrap_or_else(|| {
        comparisons
            .iter()
            .filter(|c| c.b == "recurrent" && c.quantity == "logits")
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
        matmul: match rwkv::matmul::effective_matmul::<B>(device) {
            "tf32" => "tf32",
            _ => dtype_name::<B>(),
        },
        tolerance,
        tolerance_rule: if opts.tol.is_some() {
            "fixed"
        } else {
            "derived"
        },
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
