//! Shared helpers: backends, random WKV cases, comparisons.

#![allow(dead_code)]

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use lab_util::SplitMix64;
use proptest::test_runner::Config as ProptestConfig;
use rwkv::verify::to_f64;
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
