//! Shared helpers: backends, random WKV cases, comparisons, and the checks and tolerances
//! that the CPU suites and the wgpu suite share.
//!
//! Also compiled into the wgpu suite (`crates/rwkv-gpu-tests/tests/wgpu_suite.rs`, through
//! `#[path]`), so this file holds helpers only: no tests, and no `crate::` paths.

#![allow(dead_code)]

use burn::backend::NdArray;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use lab_util::SplitMix64;
use proptest::prelude::{TestCaseError, prop_assert};
use proptest::test_runner::Config as ProptestConfig;
use rwkv::verify::{run_gpt, run_rnn, to_f64};
use rwkv::wkv::{self, WkvBackend, WkvMode, WkvState};

pub type F32 = NdArray<f32>;
pub type F64 = NdArray<f64>;

/// Bounded proptest config: 64 cases unless `PROPTEST_CASES` says otherwise.
pub fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Inputs of one WKV call, on the host, in f64.
#[derive(Debug, Clone)]
pub struct WkvCase {
    pub batch: usize,
    pub time: usize,
    pub channels: usize,
    /// `time_decay` (the operator gets `w = -exp(time_decay)`).
    pub time_decay: Vec<f64>,
    pub u: Vec<f64>,
    pub k: Vec<f64>,
    pub v: Vec<f64>,
    /// `(aa, bb, pp)`, each `[B, C]`.
    pub state: Option<[Vec<f64>; 3]>,
}

/// Random case. `extreme`: k ∈ [-100, 100], time_decay ∈ [-8, 8], u ∈ [-10, 10];
/// otherwise moderate ranges. `with_state`: a random valid initial state (bb > 0).
pub fn random_case(
    seed: u64,
    batch: usize,
    time: usize,
    channels: usize,
    extreme: bool,
    with_state: bool,
) -> WkvCase {
    let mut r = SplitMix64::new(seed);
    let (kr, dr, ur) = if extreme {
        (100.0, 8.0, 10.0)
    } else {
        (3.0, 3.0, 2.0)
    };
    let n = batch * time * channels;
    let time_decay = r.fill(channels, |r| r.range(-dr, dr));
    let u = r.fill(channels, |r| r.range(-ur, ur));
    let k = r.fill(n, |r| r.range(-kr, kr));
    let v = r.fill(n, |r| r.range(-5.0, 5.0));
    let state = with_state.then(|| {
        let m = batch * channels;
        [
            r.fill(m, |r| r.range(-5.0, 5.0)),
            r.fill(m, |r| r.range(0.05, 10.0)),
            r.fill(m, |r| r.range(-kr, kr)),
        ]
    });
    WkvCase {
        batch,
        time,
        channels,
        time_decay,
        u,
        k,
        v,
        state,
    }
}

pub fn t1<B: Backend>(x: &[f64], dev: &B::Device) -> Tensor<B, 1> {
    Tensor::from_data(
        TensorData::new(x.to_vec(), [x.len()]),
        lab_util::float_opts::<B>(dev),
    )
}
pub fn t2<B: Backend>(x: &[f64], shape: [usize; 2], dev: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(x.to_vec(), shape),
        lab_util::float_opts::<B>(dev),
    )
}
pub fn t3<B: Backend>(x: &[f64], shape: [usize; 3], dev: &B::Device) -> Tensor<B, 3> {
    Tensor::from_data(
        TensorData::new(x.to_vec(), shape),
        lab_util::float_opts::<B>(dev),
    )
}

/// Host result of one WKV call: y `[B, T, C]` and the raw final state.
#[derive(Debug, Clone)]
pub struct WkvOut {
    pub y: Vec<f64>,
    pub aa: Vec<f64>,
    pub bb: Vec<f64>,
    pub pp: Vec<f64>,
}

impl WkvOut {
    /// `(aa/bb, pp + ln bb)` flattened.
    pub fn canonical(&self) -> (Vec<f64>, Vec<f64>) {
        let mean = self.aa.iter().zip(&self.bb).map(|(a, b)| a / b).collect();
        let logden = self
            .pp
            .iter()
            .zip(&self.bb)
            .map(|(p, b)| p + b.ln())
            .collect();
        (mean, logden)
    }
}

pub fn state_tensors<B: Backend>(
    s: &[Vec<f64>; 3],
    batch: usize,
    channels: usize,
    dev: &B::Device,
) -> WkvState<B> {
    WkvState {
        aa: t2(&s[0], [batch, channels], dev),
        bb: t2(&s[1], [batch, channels], dev),
        pp: t2(&s[2], [batch, channels], dev),
    }
}

/// Runs the case's time steps `range` in the given formulation, starting from `state`
/// (host `(aa, bb, pp)`), or the case's own initial state when `state` is None.
pub fn run_range<B: WkvBackend>(
    case: &WkvCase,
    mode: WkvMode,
    range: core::ops::Range<usize>,
    state: Option<[Vec<f64>; 3]>,
) -> WkvOut {
    let dev = Default::default();
    let (b, c) = (case.batch, case.channels);
    let k = t3::<B>(&case.k, [b, case.time, c], &dev).slice([0..b, range.clone(), 0..c]);
    let v = t3::<B>(&case.v, [b, case.time, c], &dev).slice([0..b, range, 0..c]);
    let w = t1::<B>(&case.time_decay, &dev).exp().neg();
    let u = t1::<B>(&case.u, &dev);
    let state = state
        .or_else(|| case.state.clone())
        .map(|s| state_tensors::<B>(&s, b, c, &dev));
    let (y, s) = wkv::wkv(mode, w, u, k, v, state).expect("valid inputs");
    assert_float_dtype::<B>(y.dtype());
    assert_float_dtype::<B>(s.pp.dtype());
    WkvOut {
        y: to_f64(y),
        aa: to_f64(s.aa),
        bb: to_f64(s.bb),
        pp: to_f64(s.pp),
    }
}

pub fn run<B: WkvBackend>(case: &WkvCase, mode: WkvMode) -> WkvOut {
    run_range::<B>(case, mode, 0..case.time, None)
}

/// Fails unless `dtype` is the backend's own float type (see `lab_util::float_opts`).
pub fn assert_float_dtype<B: Backend>(dtype: burn::tensor::DType) {
    use burn::tensor::Element;
    assert_eq!(
        dtype,
        <B::FloatElem as Element>::dtype(),
        "computation ran in the wrong float type"
    );
}

/// `max |a - b| / max(1, max |b|)`; infinite when lengths differ or anything is not finite.
pub fn scaled_err(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.iter().chain(b).any(|x| !x.is_finite()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(1f64, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

pub fn all_finite(xs: &[f64]) -> bool {
    xs.iter().all(|x| x.is_finite())
}

/// Asserts `scaled_err(a, b) ≤ tol`, with context.
pub fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    let e = scaled_err(a, b);
    assert!(e <= tol, "{what}: scaled error {e:e} > {tol:e}");
}

// ---------------------------------------------------------------------------------------
// Whole-model helpers

use burn::tensor::Int;
use rwkv::{Activation, Bonus, Decay, LayerState, Rwkv, RwkvConfig, RwkvState, Variant};

/// Random token ids `[B, T]` in `0..vocab`.
pub fn random_tokens(seed: u64, batch: usize, time: usize, vocab: usize) -> Vec<i64> {
    let mut r = SplitMix64::new(seed ^ 0x7070);
    (0..batch * time)
        .map(|_| r.below(vocab as u64) as i64)
        .collect()
}

pub fn tokens<B: Backend>(ids: &[i64], batch: usize, time: usize) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [batch, time]),
        &Default::default(),
    )
}

/// A random valid model state (not reachable from the empty state in general).
pub fn random_state<B: Backend>(
    seed: u64,
    n_layers: usize,
    batch: usize,
    c: usize,
) -> RwkvState<B> {
    let dev = Default::default();
    let mut r = SplitMix64::new(seed ^ 0x5151);
    let n = batch * c;
    let layers = (0..n_layers)
        .map(|_| LayerState {
            att_shift: t2(&r.fill(n, |r| r.normal()), [batch, c], &dev),
            wkv: state_tensors::<B>(
                &[
                    r.fill(n, |r| r.range(-3.0, 3.0)),
                    r.fill(n, |r| r.range(0.1, 5.0)),
                    r.fill(n, |r| r.range(-5.0, 5.0)),
                ],
                batch,
                c,
                &dev,
            ),
            ffn_shift: t2(&r.fill(n, |r| r.normal()), [batch, c], &dev),
        })
        .collect();
    RwkvState { layers }
}

/// A variant with every switch drawn from `bits`.
pub fn variant_from_bits(bits: u32) -> Variant {
    Variant {
        token_shift: bits & 1 == 0,
        bonus: if bits & 2 == 0 {
            Bonus::Learned
        } else {
            Bonus::Off
        },
        decay: [Decay::Learned, Decay::Fixed, Decay::Off][(bits >> 2) as usize % 3],
        receptance_gate: bits & 16 == 0,
        ffn_activation: [
            Activation::SquaredRelu,
            Activation::Relu,
            Activation::Gelu,
            Activation::Silu,
        ][(bits >> 5) as usize % 4],
        ln0: bits & 128 == 0,
        ..Variant::default()
    }
}

/// A small model with randomised parameters.
pub fn random_model<B: Backend>(
    seed: u64,
    vocab: usize,
    c: usize,
    layers: usize,
    ffn: usize,
    variant: Variant,
) -> Rwkv<B> {
    let cfg = RwkvConfig::new(vocab, c, layers, ffn).with_variant(variant);
    cfg.init_randomized::<B>(&Default::default(), seed)
        .expect("valid config")
}

// ---------------------------------------------------------------------------------------
// WKV operator: formulations, comparison, f32 tolerance (wkv_props, and the wgpu suite)

/// The f32 tolerance of the WKV operator for one case: `32 · ε₃₂ · (1 + max|k| + max|u| +
/// max|pp₀|)` of the scale (justified in `tests/all/wkv_props.rs`).
pub fn tol32(case: &WkvCase) -> f64 {
    let m = |x: &[f64]| x.iter().fold(0f64, |a, b| a.max(b.abs()));
    let pp = case.state.as_ref().map(|s| m(&s[2])).unwrap_or(0.0);
    32.0 * f32::EPSILON as f64 * (1.0 + m(&case.k) + m(&case.u) + pp)
}

/// Every formulation but the recurrence, with chunk lengths 1, 2, 3, 7, T and T + 5.
pub fn formulations(time: usize) -> Vec<WkvMode> {
    let mut m = vec![WkvMode::Parallel, WkvMode::Scan];
    for len in [1, 2, 3, 7, time, time + 5] {
        m.push(WkvMode::Chunked { len });
    }
    m
}

/// Outputs, canonical state and raw `pp` of `got` against `want`.
pub fn compare(what: &str, got: &WkvOut, want: &WkvOut, tol: f64) -> Result<(), TestCaseError> {
    let finite =
        all_finite(&got.y) && all_finite(&got.aa) && all_finite(&got.bb) && all_finite(&got.pp);
    prop_assert!(finite, "{what}: non-finite output or state");
    let (gm, gl) = got.canonical();
    let (wm, wl) = want.canonical();
    for (name, a, b) in [
        ("y", &got.y, &want.y),
        ("aa/bb", &gm, &wm),
        ("pp+ln bb", &gl, &wl),
        ("pp", &got.pp, &want.pp),
    ] {
        let e = scaled_err(a, b);
        prop_assert!(e <= tol, "{what}: {name} scaled error {e:e} > {tol:e}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// WKV gradients (gradients, and the wgpu suite)

/// Seeded weights in [-1, 1] of the given shape: the random projections the gradient
/// tests' losses read their outputs through.
pub fn weights<B: Backend, const D: usize>(seed: u64, shape: [usize; D]) -> Tensor<B, D> {
    let n = shape.iter().product();
    let mut r = SplitMix64::new(seed);
    Tensor::from_data(
        TensorData::new(r.fill(n, |r| r.range(-1.0, 1.0)), shape),
        lab_util::float_opts::<B>(&Default::default()),
    )
}

/// Gradients of `Σ y·R₁ + Σ (aa/bb)·R₂ + Σ (pp + ln bb)·R₃` w.r.t.
/// `[time_decay, u, k, v, aa₀, bb₀, pp₀]` (the last three only with an initial state).
pub fn wkv_grads<B: AutodiffBackend + WkvBackend>(case: &WkvCase, mode: WkvMode) -> Vec<Vec<f64>> {
    let dev = Default::default();
    let (b, t, c) = (case.batch, case.time, case.channels);
    let td = t1::<B>(&case.time_decay, &dev).require_grad();
    let u = t1::<B>(&case.u, &dev).require_grad();
    let k = t3::<B>(&case.k, [b, t, c], &dev).require_grad();
    let v = t3::<B>(&case.v, [b, t, c], &dev).require_grad();
    let state = case.state.as_ref().map(|s| {
        let s = state_tensors::<B>(s, b, c, &dev);
        wkv::WkvState {
            aa: s.aa.require_grad(),
            bb: s.bb.require_grad(),
            pp: s.pp.require_grad(),
        }
    });
    let (y, end) = wkv::wkv(
        mode,
        td.clone().exp().neg(),
        u.clone(),
        k.clone(),
        v.clone(),
        state.clone(),
    )
    .unwrap();
    let (mean, logden) = end.canonical();
    let loss = (y * weights::<B, 3>(1, [b, t, c])).sum()
        + (mean * weights::<B, 2>(2, [b, c])).sum()
        + (logden * weights::<B, 2>(3, [b, c])).sum();
    let grads = loss.backward();
    let mut out = vec![
        to_f64(td.grad(&grads).unwrap()),
        to_f64(u.grad(&grads).unwrap()),
        to_f64(k.grad(&grads).unwrap()),
        to_f64(v.grad(&grads).unwrap()),
    ];
    if let Some(s) = state {
        for x in [s.aa, s.bb, s.pp] {
            out.push(to_f64(x.grad(&grads).unwrap()));
        }
    }
    out
}

/// The names of [`wkv_grads`]'s gradients, in order.
pub const NAMES: [&str; 7] = ["time_decay", "u", "k", "v", "aa0", "bb0", "pp0"];

/// float32 gradients of every formulation agree to a few ulp of the largest gradient (the
/// measured worst is 6.8e-7 for the WKV inputs). Before `lab_util::div`, Burn's division
/// backward went through ndarray's approximate `recip`, and `parallel`/`chunked` lay up to
/// 1.2e-3 from exact float64 on an AVX2 CPU (about 1e-4 with AVX-512, where the old
/// tolerance of 1e-4 happened to hold); this bound catches either.
pub const F32_GRAD_TOL: f64 = 1e-5;

// ---------------------------------------------------------------------------------------
// Whole-model equivalence (model_equiv, and the wgpu suite)

/// A random whole-model case: a small model with randomised parameters and the ablation
/// switches of `bits`, `batch` rows of `time` random tokens, optionally a random state.
#[derive(Debug, Clone)]
pub struct Case {
    pub seed: u64,
    pub batch: usize,
    pub time: usize,
    pub vocab: usize,
    pub c: usize,
    pub layers: usize,
    pub ffn: usize,
    pub bits: u32,
    pub with_state: bool,
}

/// The case's model, token ids and initial state on backend `B`.
pub fn setup<B: WkvBackend>(case: &Case) -> (Rwkv<B>, Vec<i64>, Option<RwkvState<B>>) {
    let model = random_model::<B>(
        case.seed,
        case.vocab,
        case.c,
        case.layers,
        case.ffn,
        variant_from_bits(case.bits),
    );
    let ids = random_tokens(case.seed, case.batch, case.time, case.vocab);
    let state = case
        .with_state
        .then(|| random_state::<B>(case.seed, case.layers, case.batch, case.c));
    (model, ids, state)
}

/// GPT-mode forward in each of `modes` equals repeated RNN-mode steps on backend `B`,
/// within `tol` of the logits and the state; `tol` is `(logits, state)`.
pub fn gpt_equals_rnn_in<B: WkvBackend>(
    case: &Case,
    tol: (f64, f64),
    modes: &[WkvMode],
) -> Result<(), TestCaseError> {
    let (model, ids, state) = setup::<B>(case);
    let toks = || tokens::<B>(&ids, case.batch, case.time);
    let rnn = run_rnn(&model, toks(), state.clone()).unwrap();
    prop_assert!(all_finite(&rnn.logits) && all_finite(&rnn.state));
    for &mode in modes {
        let gpt = run_gpt(&model, toks(), state.clone(), mode).unwrap();
        let (e, tol_l) = (scaled_err(&gpt.logits, &rnn.logits), tol.0);
        prop_assert!(e <= tol_l, "{mode}: logits scaled error {e:e} > {tol_l:e}");
        let (e, tol_s) = (scaled_err(&gpt.state, &rnn.state), tol.1);
        prop_assert!(e <= tol_s, "{mode}: state scaled error {e:e} > {tol_s:e}");
    }
    Ok(())
}

/// The f32 tolerance of [`gpt_equals_rnn_in`] for one case: 2e-5, or more when the input is
/// ill-conditioned. A random tiny model can be: a LayerNorm over C = 2 channels whose two
/// inputs nearly coincide turns a rounding of their difference into an O(1) change, and a
/// random state with a small `bb` divides by it. The f32 recurrence's own distance from
/// the exact float64 run measures that conditioning on the very input (`E`, separately for
/// logits and state); every formulation must then land within `2e-5 + 8·E` of it, a bound
/// a wrong formulation (errors O(1)) cannot meet. Found by proptest (a committed regression
/// case: C = 2, a random state, parallel 3.5e-5 from the recurrence, which itself lies
/// 2.1e-5 from exact; float64 agrees to 3e-15).
pub fn f32_tolerance(case: &Case) -> (f64, f64) {
    let (m32, ids, s32) = setup::<F32>(case);
    let (m64, _, s64) = setup::<F64>(case);
    let rnn32 = run_rnn(&m32, tokens::<F32>(&ids, case.batch, case.time), s32).unwrap();
    let exact = run_rnn(&m64, tokens::<F64>(&ids, case.batch, case.time), s64).unwrap();
    let tol = |e: f64| 2e-5 + 8.0 * e;
    (
        tol(scaled_err(&rnn32.logits, &exact.logits)),
        tol(scaled_err(&rnn32.state, &exact.state)),
    )
}
