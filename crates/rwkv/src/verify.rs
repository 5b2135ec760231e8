//! Equivalence checking: run a model in every formulation and compare against the
//! recurrence. Shared by the `verify` command and the test suite.

use burn::tensor::{Int, Tensor, backend::Backend};
use serde::Serialize;

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

/// One comparison of two arrays of the same length.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// What was tested (a formulation or mode).
    pub a: String,
    /// What it was tested against (the oracle or a reference array).
    pub b: String,
    /// Which quantity: `logits` or `state` (canonical form).
    pub quantity: String,
    /// `max |a - b|`.
    pub max_abs: f64,
    /// `‖a - b‖₂ / ‖b‖₂` (or `‖a - b‖₂` when `b` is all zeros).
    pub rel_rms: f64,
    /// `max |b|`, the scale `max_abs` is judged against.
    pub max_ref: f64,
    /// The tolerance applied.
    pub tol: f64,
    /// `scaled` (see [`Comparison::within`]) or `absolute` (`max_abs ≤ tol`).
    pub criterion: &'static str,
    /// Whether the criterion holds.
    pub pass: bool,
}

impl Comparison {
    /// Compares `x` (the candidate) with `y` (the reference): passes when
    /// `max_abs ≤ tol` (absolute criterion).
    pub fn absolute(a: &str, b: &str, quantity: &str, x: &[f64], y: &[f64], tol: f64) -> Self {
        let mut c = Self::new(a, b, quantity, x, y, tol);
        c.criterion = "absolute";
        c.pass = c.max_abs <= tol; // NaN fails
        c
    }

    /// Compares `x` (the candidate) with `y` (the reference) under tolerance `tol`, scaled
    /// criterion (see [`Comparison::within`]).
    pub fn new(a: &str, b: &str, quantity: &str, x: &[f64], y: &[f64], tol: f64) -> Self {
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
        let mut c = Self {
            a: a.into(),
            b: b.into(),
            quantity: quantity.into(),
            max_abs,
            rel_rms,
            max_ref,
            tol,
            criterion: "scaled",
            pass: false,
        };
        c.pass = c.within(tol);
        c
    }

    /// Passes when `rel_rms ≤ tol` and `max_abs ≤ tol · max(1, max |b|)`; NaN never passes.
    pub fn within(&self, tol: f64) -> bool {
        self.rel_rms <= tol && self.max_abs <= tol * self.max_ref.max(1.0)
    }
}

/// The state of a model flattened in a representation-free order: per layer the att
/// shift, `aa/bb`, `pp + ln bb`, and the ffn shift.
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

/// A second reference every run is also compared with (e.g. the float64 recurrence on the
/// CPU when verifying float32 or a GPU backend), with its own tolerance.
#[derive(Debug, Clone)]
pub struct ExtraReference<'a> {
    /// Name shown as `b`.
    pub name: &'a str,
    /// Its logits and canonical final state.
    pub output: &'a RunOutput,
    /// Tolerance for comparisons against it.
    pub tol: f64,
}

/// Every formulation, RNN mode, and a split run against the recurrence: logits and
/// final state. `split` is at T/2 (skipped when T = 1). With `extra`, every run including
/// the recurrence is also compared with that reference.
pub fn verify_model<B: WkvBackend>(
    model: &Rwkv<B>,
    tokens: Tensor<B, 2, Int>,
    chunk_len: usize,
    tol: f64,
    extra: Option<ExtraReference<'_>>,
) -> Result<Vec<Comparison>> {
    let [_, time] = tokens.dims();
    let oracle = run_gpt(model, tokens.clone(), None, WkvMode::Recurrent)?;
    let reference = WkvMode::Recurrent.to_string();
    let mut runs = vec![(reference.clone(), oracle.clone())];
    for mode in [
        WkvMode::Parallel,
        WkvMode::Chunked { len: chunk_len },
        WkvMode::Scan,
    ] {
        runs.push((
            mode.to_string(),
            run_gpt(model, tokens.clone(), None, mode)?,
        ));
    }
    runs.push(("rnn".into(), run_rnn(model, tokens.clone(), None)?));
    if time > 1 {
        let split = time / 2;
        let mode = WkvMode::Chunked { len: chunk_len };
        runs.push((
            format!("split@{split}({mode})"),
            run_split(model, tokens, split, mode)?,
        ));
    }
    let mut out = Vec::new();
    for (name, run) in &runs[1..] {
        out.push(Comparison::new(
            name,
            &reference,
            "logits",
            &run.logits,
            &oracle.logits,
            tol,
        ));
        out.push(Comparison::new(
            name,
            &reference,
            "state",
            &run.state,
            &oracle.state,
            tol,
        ));
    }
    if let Some(x) = extra {
        for (name, run) in &runs {
            out.push(Comparison::new(
                name,
                x.name,
                "logits",
                &run.logits,
                &x.output.logits,
                x.tol,
            ));
            out.push(Comparison::new(
                name,
                x.name,
                "state",
                &run.state,
                &x.output.state,
                x.tol,
            ));
        }
    }
    Ok(out)
}
