//! Equivalence checking, the building blocks: runs of a model in any formulation, the
//! comparison of two runs, and the condition-aware tolerance of a comparison.
//!
//! # The tolerance model
//!
//! Two correct implementations of the same model differ by rounding. How much depends on
//! the precision each side computes in, on how it computes, and on how ill-conditioned the
//! input is:
//!
//! - **Magnitude of the WKV log-weights.** Every formulation evaluates softmax weights
//!   `e^{ℓ - m}` over logits `ℓ_{t,i} = k_i + (t-1-i)·w` and `ℓ_{t,t} = u + k_t` (paper
//!   eq. 16; `docs/design.md` §4–§7). A logit of magnitude `|ℓ|` is known only to about
//!   `ε·|ℓ|` in a precision with unit roundoff `ε`, and the logits that carry weight lie
//!   within a few units of the largest one, which is bounded by `max|k| + max|u|`: a term
//!   whose distance part `(t-1-i)·|w|` is large has a negligible weight, so `|w|·T` does not
//!   enter beyond this bound (it is reported, not used). Layer `l` contributes
//!   `κ_l = c₀ + max|k_l| + max|u_l|`, where `c₀ = 6·√C` stands for the rounding of the
//!   dense parts (projections, LayerNorm, the head: dot products of length C round like
//!   `√C·ε`), which does not grow with `|k|`.
//! - **Depth.** Errors made in each layer reach the logits through the residual stream:
//!   `K = Σ_l κ_l`.
//! - **Sequence length and algorithm.** The recurrent computations (the recurrence, the
//!   fused scan, RNN mode, BlinkDL's runtime, Hugging Face's float32 state) round the
//!   running maximum `pp` and the state `(aa, bb)` at every step and carry the error on:
//!   `g(T) = T^{3/4}` (between a random walk, `√T`, and systematic drift, `T`). The block
//!   forms (parallel, chunked, the exact reference) compute every weight from `k` directly
//!   and grow only weakly: `g(T) = T^{1/4}`.
//! - **Output scale.** Errors are judged relative to `max(1, max|reference|)` (the
//!   `scaled` criterion: `rel_rms ≤ tol` and `max_abs ≤ tol·max(1, max|ref|)`).
//!
//! A side's error is `F·ε·g(T)·K`, `F` a calibrated factor of its class and of the
//! quantity (logits or state); a comparison's tolerance is the sum over both sides
//! ([`Bound`]). The exponents and factors come from a survey of 30 random models
//! (`scripts/tolerance_survey.py --grid calibrate`: key scales 1–60, T 32–400, L 1–6, C 32
//! and 64, decays in [-4, 2] and [-8, 6], f32 and f64 runs against an exact float64 forward,
//! Hugging Face and BlinkDL; results in `scripts/survey/`): each `F` is at least twice the
//! largest ratio `err / (ε·g(T)·K)` seen for its class. On that survey and on a second one
//! of 30 longer, deeper and wider models (`--grid wide`: T up to 600, L up to 8, C up to 96)
//! every comparison stays below 0.47 of its tolerance.
//! A real defect moves the logits far more than this bound unless the defect is itself
//! of the size of rounding; `tests/fixtures/stress-k30/README.md` lists the margins
//! measured on an ill-conditioned case.

use burn::tensor::{Int, Tensor, backend::Backend};
use serde::Serialize;

use crate::config::{Bonus, Decay};
use crate::error::Result;
use crate::model::Rwkv;
use crate::state::RwkvState;
use crate::wkv::{WkvBackend, WkvMode};

/// Host copy of any float tensor, as f64.
pub fn to_f64<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Precision and algorithm class of one side of a comparison

/// How a side computes, which sets how its rounding grows (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Parallel or chunked softmax form (also the exact float64 NumPy reference): every
    /// weight is computed from `k` directly.
    Block,
    /// Token-by-token recurrence in one precision: recurrent, scan, RNN mode, BlinkDL.
    Recurrent,
    /// A float64 model whose WKV state and keys are rounded to float32 at every step
    /// (Hugging Face `transformers` on the CPU).
    F32State,
}

impl Algorithm {
    /// The algorithm class of a formulation.
    pub fn of(mode: WkvMode) -> Self {
        match mode {
            WkvMode::Parallel | WkvMode::Chunked { .. } => Algorithm::Block,
            WkvMode::Recurrent | WkvMode::Scan => Algorithm::Recurrent,
        }
    }

    /// Exponent p of the growth with the sequence length, `g(T) = T^p`.
    pub fn length_exponent(self) -> f64 {
        match self {
            Algorithm::Block => 0.25,
            Algorithm::Recurrent | Algorithm::F32State => 0.75,
        }
    }

    /// `g(T) = T^p`.
    pub fn length_factor(self, time: usize) -> f64 {
        (time.max(1) as f64).powf(self.length_exponent())
    }

    /// The calibrated factor F of this class for a quantity: at least twice the largest error
    /// ratio `err / (ε·g(T)·K)` of either survey (module docs). The state's parts (above all
    /// `aa/bb`, the decay-weighted mean of v, which no later layer averages) need the same,
    /// larger factor in every class.
    pub fn factor(self, kind: QuantityKind) -> f64 {
        match (kind, self) {
            (QuantityKind::Logits, Algorithm::Block) => 0.11,
            (QuantityKind::Logits, Algorithm::Recurrent) => 0.06,
            (QuantityKind::Logits, Algorithm::F32State) => 0.004,
            (QuantityKind::State, _) => 0.13,
        }
    }
}

/// One side of a comparison as the tolerance sees it: the unit roundoff of the precision
/// its rounding happens in, and its algorithm class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Precision {
    /// Unit roundoff ε (2⁻²⁴ for float32, 2⁻⁵³ for float64).
    pub eps: f64,
    /// Algorithm class.
    pub algorithm: Algorithm,
}

/// Unit roundoff of float32.
pub const EPS_F32: f64 = 5.960_464_477_539_063e-8; // 2^-24
/// Unit roundoff of float64.
pub const EPS_F64: f64 = 1.110_223_024_625_156_5e-16; // 2^-53
/// Unit roundoff of TF32 (10 stored mantissa bits), what CUDA's tensor cores round f32
/// operands of a product to under [`crate::MatmulPrecision::Fast`].
pub const EPS_TF32: f64 = 4.882_812_5e-4; // 2^-11

impl Precision {
    /// A run of this crate with float element `E` (f32 or f64) in the given class.
    pub fn of_run<E: burn::tensor::Element>(algorithm: Algorithm) -> Self {
        let eps = if E::dtype() == burn::tensor::DType::F64 {
            EPS_F64
        } else {
            EPS_F32
        };
        Self { eps, algorithm }
    }

    /// A run of this crate on backend `B` and `device`: [`Precision::of_run`], except that
    /// where the model's products round their operands to TF32 (CUDA under
    /// [`crate::MatmulPrecision::Fast`], [`crate::matmul::effective_matmul`]) ε is TF32's:
    /// those roundings dominate every other of the run.
    pub fn of_backend<B: crate::WkvBackend>(device: &B::Device, algorithm: Algorithm) -> Self {
        if crate::matmul::effective_matmul::<B>(device) == "tf32" {
            Self {
                eps: EPS_TF32,
                algorithm,
            }
        } else {
            Self::of_run::<B::FloatElem>(algorithm)
        }
    }

    /// float32 in the given class.
    pub fn f32(algorithm: Algorithm) -> Self {
        Self {
            eps: EPS_F32,
            algorithm,
        }
    }

    /// float64 in the given class.
    pub fn f64(algorithm: Algorithm) -> Self {
        Self {
            eps: EPS_F64,
            algorithm,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Conditioning of one input

/// What the rounding of one layer grows with, measured on the input at hand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerConditioning {
    /// `max |k|` over batch, time and channels (the WKV keys, after the projection).
    pub max_k: f64,
    /// `max |u|` (the bonus `time_first`; 0 when the bonus is off).
    pub max_u: f64,
    /// `max |w|·(T-1)`, the largest decay exponent over the sequence (shown for reference;
    /// it does not enter the bound, see the module docs).
    pub max_w_t: f64,
    /// `κ_l = c₀ + max|k| + max|u|`.
    pub kappa: f64,
}

/// Conditioning of a model on one token sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conditioning {
    /// Sequence length T.
    pub time: usize,
    /// `c₀ = 6·√C`, the dense part of each κ_l.
    pub dense: f64,
    /// One entry per block.
    pub layers: Vec<LayerConditioning>,
    /// `K = Σ_l κ_l`.
    pub kappa: f64,
}

/// The part of κ_l that does not grow with |k|: the rounding of the dense parts
/// (projections, LayerNorm, the head), whose dot products of length C round like `√C·ε`.
pub fn kappa_dense(d_model: usize) -> f64 {
    6.0 * (d_model as f64).sqrt()
}

impl Conditioning {
    /// From the sequence length, the width C and per-layer `(max|k|, max|u|, max|w|)`.
    pub fn from_layers(
        time: usize,
        d_model: usize,
        layers: impl IntoIterator<Item = (f64, f64, f64)>,
    ) -> Self {
        let dense = kappa_dense(d_model);
        let layers: Vec<LayerConditioning> = layers
            .into_iter()
            .map(|(max_k, max_u, max_w)| LayerConditioning {
                max_k,
                max_u,
                max_w_t: max_w * time.saturating_sub(1) as f64,
                kappa: dense + max_k + max_u,
            })
            .collect();
        let kappa = layers.iter().map(|l| l.kappa).sum();
        Self {
            time,
            dense,
            layers,
            kappa,
        }
    }
}

fn max_abs<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    to_f64(t.abs().max()).first().copied().unwrap_or(0.0)
}

/// Measures the conditioning of `model` on `tokens`: one pass in formulation `mode` that
/// also computes each layer's keys `k = W_k·(z⊙μ_k + z'⊙(1-μ_k))` (paper eq. 12).
///
/// # Errors
/// As [`Rwkv::forward`].
pub fn conditioning<B: WkvBackend>(
    model: &Rwkv<B>,
    tokens: Tensor<B, 2, Int>,
    mode: WkvMode,
) -> Result<Conditioning> {
    let [batch, time] = tokens.dims();
    // the model validates the tokens (and the mode) once, up front
    model.forward(tokens.clone().slice([0..batch, 0..1]), None, mode)?;
    let device = tokens.device();
    let mut x = model.emb.forward(tokens);
    let state = model.zero_state(batch, &device);
    let mut layers = Vec::with_capacity(model.blocks.len());
    for (block, layer) in model.blocks.iter().zip(state.layers) {
        let input = match &block.ln0 {
            Some(ln0) => ln0.forward(x.clone()),
            None => x.clone(),
        };
        let z = block.ln1.forward(input);
        let att = &block.att;
        let xk = if att.variant.token_shift {
            let [b, t, c] = z.dims();
            let prev = if t == 1 {
                Tensor::zeros([b, 1, c], lab_util::float_opts::<B>(&device))
            } else {
                Tensor::cat(
                    vec![
                        Tensor::zeros([b, 1, c], lab_util::float_opts::<B>(&device)),
                        z.clone().slice([0..b, 0..t - 1, 0..c]),
                    ],
                    1,
                )
            };
            let mu = att.time_mix_k.val().reshape([1, 1, c]);
            z.clone() * mu.clone() + prev * (mu.neg() + 1.0)
        } else {
            z
        };
        let max_k = max_abs(lab_util::linear(&att.key, xk));
        let max_u = match att.variant.bonus {
            Bonus::Learned => max_abs(att.time_first.val()),
            Bonus::Off => 0.0,
        };
        let max_w = match att.variant.decay {
            Decay::Learned | Decay::Fixed => max_abs(att.time_decay.val().exp()),
            Decay::Off => 0.0,
        };
        layers.push((max_k, max_u, max_w));
        let (y, _) = block.forward(x, layer, mode)?;
        x = y;
    }
    Ok(Conditioning::from_layers(
        time,
        model.config.d_model,
        layers,
    ))
}

// ---------------------------------------------------------------------------------------
// Bounds

/// What is compared; each kind has its own calibrated factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantityKind {
    /// Logits `[B, T, V]`.
    Logits,
    /// The final state (canonical form, or one of its parts).
    State,
}

/// A condition-aware tolerance with its terms:
/// `tol = (F_a·ε_a·g_a(T) + F_b·ε_b·g_b(T))·K`, applied with the scaled criterion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bound {
    /// Calibrated factor of the candidate side's class.
    pub factor_a: f64,
    /// ε of the candidate side.
    pub eps_a: f64,
    /// Its length factor g_a(T) = T^p.
    pub growth_a: f64,
    /// Calibrated factor of the reference side's class.
    pub factor_b: f64,
    /// ε of the reference side.
    pub eps_b: f64,
    /// Its length factor g_b(T).
    pub growth_b: f64,
    /// K = Σ_l (c₀ + max|k_l| + max|u_l|).
    pub kappa: f64,
    /// The resulting tolerance.
    pub tol: f64,
}

impl Bound {
    /// The bound of comparing `a` with `b` on an input of the given conditioning.
    pub fn new(kind: QuantityKind, a: Precision, b: Precision, cond: &Conditioning) -> Self {
        let (factor_a, factor_b) = (a.algorithm.factor(kind), b.algorithm.factor(kind));
        let growth_a = a.algorithm.length_factor(cond.time);
        let growth_b = b.algorithm.length_factor(cond.time);
        let tol = (factor_a * a.eps * growth_a + factor_b * b.eps * growth_b) * cond.kappa;
        Self {
            factor_a,
            eps_a: a.eps,
            growth_a,
            factor_b,
            eps_b: b.eps,
            growth_b,
            kappa: cond.kappa,
            tol,
        }
    }

    /// The side terms `F·ε·g` of `a` and `b`.
    pub fn side_terms(&self) -> (f64, f64) {
        (
            self.factor_a * self.eps_a * self.growth_a,
            self.factor_b * self.eps_b * self.growth_b,
        )
    }
}

// ---------------------------------------------------------------------------------------
// Comparisons

/// Outcome of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within tolerance.
    Pass,
    /// Outside tolerance (or not finite).
    Fail,
    /// Not run (e.g. over the memory budget); counts neither as pass nor as fail.
    Skipped,
}

/// One comparison of two arrays of the same length.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// What was tested (a formulation or mode).
    pub a: String,
    /// What it was tested against (the oracle or a reference array).
    pub b: String,
    /// Which quantity: `logits` or `state` (canonical form), or a part of the state.
    pub quantity: String,
    /// `max |a - b|` (NaN when skipped or not finite).
    pub max_abs: f64,
    /// `‖a - b‖₂ / ‖b‖₂` (or `‖a - b‖₂` when `b` is all zeros).
    pub rel_rms: f64,
    /// `max |b|`, the scale `max_abs` is judged against.
    pub max_ref: f64,
    /// The tolerance applied.
    pub tol: f64,
    /// `scaled` (see [`Comparison::within`]) or `absolute` (`max_abs ≤ tol`).
    pub criterion: &'static str,
    /// Whether the criterion holds (false when skipped).
    pub pass: bool,
    /// `pass`, `fail` or `skipped`.
    pub status: Status,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The terms of a condition-aware tolerance (absent for a fixed tolerance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<Bound>,
}

/// The tolerance of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Tolerance {
    /// Fixed, scaled criterion.
    Scaled(f64),
    /// Fixed, absolute criterion (`max_abs ≤ tol`).
    Absolute(f64),
    /// Condition-aware, scaled criterion.
    Derived(Bound),
}

impl Comparison {
    /// Compares `x` (the candidate) with `y` (the reference).
    pub fn new(a: &str, b: &str, quantity: &str, x: &[f64], y: &[f64], tol: Tolerance) -> Self {
        let (mut max_abs, mut se, mut sr, mut max_ref) = (0f64, 0f64, 0f64, 0f64);
        let mut nan = x.len() != y.len();
        for (p, q) in x.iter().zip(y) {
            let d = (p - q).abs();
            if !d.is_finite() {
                nan = true;
            }
            max_abs = max_abs.max(d);
            se += d * d;
            sr += q * q;
            max_ref = max_ref.max(q.abs());
        }
        let rel_rms = if sr > 0.0 {
            (se / sr).sqrt()
        } else {
            se.sqrt()
        };
        let (max_abs, rel_rms) = if nan {
            (f64::NAN, f64::NAN)
        } else {
            (max_abs, rel_rms)
        };
        let (t, criterion, bound) = match tol {
            Tolerance::Scaled(t) => (t, "scaled", None),
            Tolerance::Absolute(t) => (t, "absolute", None),
            Tolerance::Derived(b) => (b.tol, "scaled", Some(b)),
        };
        let mut c = Self {
            a: a.into(),
            b: b.into(),
            quantity: quantity.into(),
            max_abs,
            rel_rms,
            max_ref,
            tol: t,
            criterion,
            pass: false,
            status: Status::Fail,
            reason: None,
            bound,
        };
        c.pass = if criterion == "absolute" {
            c.max_abs <= t // NaN fails
        } else {
            c.within(t)
        };
        if c.pass {
            c.status = Status::Pass;
        }
        c
    }

    /// A comparison that was not run, with the reason.
    pub fn skipped(a: &str, b: &str, quantity: &str, reason: &str) -> Self {
        Self {
            a: a.into(),
            b: b.into(),
            quantity: quantity.into(),
            max_abs: f64::NAN,
            rel_rms: f64::NAN,
            max_ref: f64::NAN,
            tol: f64::NAN,
            criterion: "skipped",
            pass: false,
            status: Status::Skipped,
            reason: Some(reason.into()),
            bound: None,
        }
    }

    /// Passes when `rel_rms ≤ tol` and `max_abs ≤ tol · max(1, max |b|)`; NaN never passes.
    pub fn within(&self, tol: f64) -> bool {
        self.rel_rms <= tol && self.max_abs <= tol * self.max_ref.max(1.0)
    }
}

// ---------------------------------------------------------------------------------------
// Runs

/// The state of a model flattened in a representation-free order: per layer the att
/// shift, `aa/bb`, `pp + ln bb`, and the ffn shift (each `[B, C]`).
pub fn canonical_state<B: Backend>(state: &RwkvState<B>) -> Vec<f64> {
    let mut out = Vec::new();
    for l in &state.layers {
        let (mean, logden) = l.wkv.canonical();
        out.extend(to_f64(l.att_shift.clone()));
        out.extend(to_f64(mean));
        out.extend(to_f64(logden));
        out.extend(to_f64(l.ffn_shift.clone()));
    }
    out
}

/// Names of the four parts of each layer in [`canonical_state`], in order.
pub const CANONICAL_PARTS: [&str; 4] = ["att shift", "aa/bb", "pp+ln bb", "ffn shift"];

/// Logits and final state of one run, on the host.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// `[B, T, V]` flattened.
    pub logits: Vec<f64>,
    /// [`canonical_state`] of the final state.
    pub state: Vec<f64>,
}

/// Whole sequence in GPT mode.
pub fn run_gpt<B: WkvBackend>(
    model: &Rwkv<B>,
    tokens: Tensor<B, 2, Int>,
    state: Option<RwkvState<B>>,
    mode: WkvMode,
) -> Result<RunOutput> {
    let (logits, state) = model.forward(tokens, state, mode)?;
    Ok(RunOutput {
        logits: to_f64(logits),
        state: canonical_state(&state),
    })
}

/// Token by token in RNN mode: logits `[B, T, V]` and the final state itself (for callers
/// that need it in another layout than [`canonical_state`]).
pub fn rnn_forward<B: WkvBackend>(
    model: &Rwkv<B>,
    tokens: Tensor<B, 2, Int>,
    state: Option<RwkvState<B>>,
) -> Result<(Tensor<B, 3>, RwkvState<B>)> {
    let [batch, time] = tokens.dims();
    let mut state = state.unwrap_or_else(|| model.zero_state(batch, &tokens.device()));
    let mut steps = Vec::with_capacity(time);
    for t in 0..time {
        let tok = tokens.clone().slice([0..batch, t..t + 1]).reshape([batch]);
        steps.push(model.step(tok, &mut state)?);
    }
    Ok((Tensor::stack::<3>(steps, 1), state))
}

/// Token by token in RNN mode; logits re-assembled in `[B, T, V]` order.
pub fn run_rnn<B: WkvBackend>(
    model: &Rwkv<B>,
    tokens: Tensor<B, 2, Int>,
    state: Option<RwkvState<B>>,
) -> Result<RunOutput> {
    let (logits, state) = rnn_forward(model, tokens, state)?;
    Ok(RunOutput {
        logits: to_f64(logits),
        state: canonical_state(&state),
    })
}

/// Runs `forward` on `tokens[.., ..split]`, then on the rest from the returned state.
pub fn run_split<B: WkvBackend>(
    model: &Rwkv<B>,
    tokens: Tensor<B, 2, Int>,
    split: usize,
    mode: WkvMode,
) -> Result<RunOutput> {
    let [batch, time] = tokens.dims();
    let (a, s) = model.forward(tokens.clone().slice([0..batch, 0..split]), None, mode)?;
    let (b, s) = model.forward(tokens.slice([0..batch, split..time]), Some(s), mode)?;
    Ok(RunOutput {
        logits: to_f64(Tensor::cat(vec![a, b], 1)),
        state: canonical_state(&s),
    })
}
