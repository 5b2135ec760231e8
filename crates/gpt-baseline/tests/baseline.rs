//! Equivalence, cache, parameter-count and error tests of the baseline transformer, on
//! NdArray<f32> and NdArray<f64> (both in one process, which is what exposes Burn's
//! per-device-type default dtype: every tensor must be created in the backend's own type).
//!
//! Tolerances are relative to scale: `max_abs ≤ tol · max(1, max|reference|)`.
//! f64: 1e-10 between paths (measured ~1e-15), 1e-12 against the host reference.
//! f32: Explicit vs Fused 1e-5 (see `explicit_equals_fused_f32`), 1e-4 against the host.

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::tensor::{DType, Int, Tensor, TensorData, backend::Backend};
use gpt_baseline::{AttentionPath, KvCache, Transformer, TransformerConfig, TransformerError};
use lab_util::SplitMix64;

type F32 = NdArray<f32>;
type F64 = NdArray<f64>;

const PATHS: [AttentionPath; 2] = [AttentionPath::Explicit, AttentionPath::Fused];

/// V = 37, d = 16, L = 2, H = 4 (d_head 4), F = 40 (not 4d, so d_ff is exercised), P = 24.
fn small() -> TransformerConfig {
    TransformerConfig::new(37, 16, 2, 4, 40, 24)
}

fn random_tokens(seed: u64, batch: usize, time: usize, vocab: usize) -> Vec<i64> {
    let mut rng = SplitMix64::new(seed);
    (0..batch * time)
        .map(|_| rng.below(vocab as u64) as i64)
        .collect()
}

fn tokens2<B: Backend>(ids: &[i64], batch: usize, time: usize) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [batch, time]),
        &Default::default(),
    )
}

fn tokens1<B: Backend>(ids: &[i64]) -> Tensor<B, 1, Int> {
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [ids.len()]),
        &Default::default(),
    )
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

/// Asserts `max_abs ≤ tol · max(1, max|b|)` and returns `max_abs`.
fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let max_abs = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(1.0, f64::max);
    assert!(a.iter().all(|x| x.is_finite()), "{what}: non-finite values");
    assert!(
        max_abs <= tol * scale,
        "{what}: max_abs {max_abs:.3e} > {tol:.0e} · {scale:.3}"
    );
    eprintln!("{what}: max_abs {max_abs:.3e} (scale {scale:.3})");
    max_abs
}

/// Logits of positions `range` of a `[B, T, V]` tensor, as `[B, len, V]` host data.
fn positions(
    logits: &[f64],
    [batch, time, vocab]: [usize; 3],
    range: std::ops::Range<usize>,
) -> Vec<f64> {
    let mut out = Vec::new();
    for b in 0..batch {
        for t in range.clone() {
            let row = (b * time + t) * vocab;
            out.extend_from_slice(&logits[row..row + vocab]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// An independent f64 reference on the host: plain loops over the model's parameters.

struct HostLinear {
    w: Vec<f64>, // [d_in, d_out]
    b: Option<Vec<f64>>,
    d_out: usize,
}

impl HostLinear {
    fn of<B: Backend>(l: &burn::nn::Linear<B>) -> Self {
        let [_, d_out] = l.weight.dims();
        Self {
            w: host(l.weight.val()),
            b: l.bias.as_ref().map(|b| host(b.val())),
            d_out,
        }
    }

    fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut y = self.b.clone().unwrap_or_else(|| vec![0.0; self.d_out]);
        for (i, xi) in x.iter().enumerate() {
            for (o, yo) in y.iter_mut().enumerate() {
                *yo += xi * self.w[i * self.d_out + o];
            }
        }
        y
    }
}

struct HostLn(Vec<f64>, Vec<f64>, f64);

impl HostLn {
    fn of<B: Backend>(ln: &burn::nn::LayerNorm<B>, eps: f64) -> Self {
        Self(
            host(ln.gamma.val()),
            host(ln.beta.as_ref().unwrap().val()),
            eps,
        )
    }

    fn apply(&self, x: &[f64]) -> Vec<f64> {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let denom = (var + self.2).sqrt();
        x.iter()
            .enumerate()
            .map(|(i, v)| (v - mean) / denom * self.0[i] + self.1[i])
            .collect()
    }
}

/// erf by the series `2/√π · e^{-x²} · Σ 2ⁿ x^{2n+1} / (1·3·…·(2n+1))`, whose terms are
/// all positive (no cancellation), so it is accurate to a few ulps; |x| > 6 is ±1 in f64.
fn erf(x: f64) -> f64 {
    if x.abs() > 6.0 {
        return x.signum();
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= 2.0 * x * x / (2.0 * n + 1.0);
        sum += term;
    }
    2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp() * sum
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// Logits `[B, T, V]` of `model` for `ids`, computed in f64 with loops.
fn host_forward<B: Backend>(
    model: &Transformer<B>,
    ids: &[i64],
    batch: usize,
    time: usize,
) -> Vec<f64> {
    let c = &model.config;
    let (d, h, v) = (c.d_model, c.n_heads, c.vocab_size);
    let dh = d / h;
    let eps = c.layer_norm_eps;
    let wte = host(model.wte.weight.val());
    let wpe = host(model.wpe.val());
    let mut out = Vec::with_capacity(batch * time * v);
    for b in 0..batch {
        let mut x: Vec<Vec<f64>> = (0..time)
            .map(|t| {
                let id = ids[b * time + t] as usize;
                (0..d).map(|j| wte[id * d + j] + wpe[t * d + j]).collect()
            })
            .collect();
        for block in &model.blocks {
            let ln1 = HostLn::of(&block.ln1, eps);
            let (wq, wk, wv, wo) = (
                HostLinear::of(&block.attn.query),
                HostLinear::of(&block.attn.key),
                HostLinear::of(&block.attn.value),
                HostLinear::of(&block.attn.output),
            );
            let z: Vec<Vec<f64>> = x.iter().map(|xt| ln1.apply(xt)).collect();
            let q: Vec<Vec<f64>> = z.iter().map(|zt| wq.apply(zt)).collect();
            let k: Vec<Vec<f64>> = z.iter().map(|zt| wk.apply(zt)).collect();
            let vv: Vec<Vec<f64>> = z.iter().map(|zt| wv.apply(zt)).collect();
            for i in 0..time {
                let mut y = vec![0.0; d];
                for head in 0..h {
                    let r = head * dh..(head + 1) * dh;
                    let s: Vec<f64> = (0..=i)
                        .map(|j| {
                            r.clone().map(|e| q[i][e] * k[j][e]).sum::<f64>() / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|s| (s - m).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for (j, ej) in e.iter().enumerate() {
                        for c in r.clone() {
                            y[c] += ej / sum * vv[j][c];
                        }
                    }
                }
                let o = wo.apply(&y);
                x[i].iter_mut().zip(o).for_each(|(a, b)| *a += b);
            }
            let ln2 = HostLn::of(&block.ln2, eps);
            let (fc, proj) = (
                HostLinear::of(&block.mlp.fc),
                HostLinear::of(&block.mlp.proj),
            );
            for xt in x.iter_mut() {
                let hidden: Vec<f64> = fc.apply(&ln2.apply(xt)).into_iter().map(gelu).collect();
                xt.iter_mut()
                    .zip(proj.apply(&hidden))
                    .for_each(|(a, b)| *a += b);
            }
        }
        let ln_f = HostLn::of(&model.ln_f, eps);
        let head = HostLinear::of(&model.head);
        for xt in &x {
            out.extend(head.apply(&ln_f.apply(xt)));
        }
    }
    out
}

#[test]
fn host_erf_is_accurate() {
    // Reference values of erf (Abramowitz & Stegun table / mpmath).
    for (x, want) in [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (-3.0, -0.999_977_909_503_001_4),
    ] {
        assert!((erf(x) - want).abs() < 1e-15, "erf({x}) = {}", erf(x));
    }
}

// ---------------------------------------------------------------------------------------
// Correctness against the host reference; precision

#[test]
fn f64_model_matches_host_reference_and_is_f64() {
    let device = Default::default();
    // Touch the f32 backend first: with plain `Tensor::from_data(.., &device)` this would
    // make NdArray<f64> tensors f32 too (shared NdArrayDevice default dtype).
    let _ = small().init_with_seed::<F32>(&device, 1).unwrap();
    let model = small().init_randomized::<F64>(&device, 3).unwrap();
    assert_eq!(model.wte.weight.val().dtype(), DType::F64);
    assert_eq!(model.blocks[0].attn.query.weight.val().dtype(), DType::F64);
    let (batch, time) = (2, 9);
    let ids = random_tokens(4, batch, time, 37);
    let want = host_forward(&model, &ids, batch, time);
    for path in PATHS {
        let logits = model.forward(tokens2(&ids, batch, time), path).unwrap();
        assert_eq!(logits.dtype(), DType::F64);
        assert_eq!(logits.dims(), [batch, time, 37]);
        // 1e-12 is unreachable if any op (activation, softmax, attention) ran in f32.
        assert_close(
            &format!("f64 {path:?} vs host"),
            &host(logits),
            &want,
            1e-12,
        );
    }
}

#[test]
fn f32_model_matches_host_reference() {
    let device = Default::default();
    let _ = small().init_with_seed::<F64>(&device, 1).unwrap();
    let model = small().init_randomized::<F32>(&device, 3).unwrap();
    let (batch, time) = (2, 9);
    let ids = random_tokens(4, batch, time, 37);
    let want = host_forward(&model, &ids, batch, time);
    for path in PATHS {
        let logits = model.forward(tokens2(&ids, batch, time), path).unwrap();
        assert_eq!(logits.dtype(), DType::F32);
        assert_close(&format!("f32 {path:?} vs host"), &host(logits), &want, 1e-4);
    }
}

#[test]
fn explicit_equals_fused_f64() {
    let device = Default::default();
    for (seed, randomized) in [(0, true), (1, false)] {
        let model = if randomized {
            small().init_randomized::<F64>(&device, seed).unwrap()
        } else {
            small().init_with_seed::<F64>(&device, seed).unwrap()
        };
        let ids = random_tokens(seed + 10, 3, 24, 37); // T = max_positions
        let a = host(
            model
                .forward(tokens2(&ids, 3, 24), AttentionPath::Explicit)
                .unwrap(),
        );
        let b = host(
            model
                .forward(tokens2(&ids, 3, 24), AttentionPath::Fused)
                .unwrap(),
        );
        assert_close("f64 explicit vs fused", &a, &b, 1e-10);
    }
}

/// f32 tolerance 1e-5 (relative to max(1, max|logit|)): both paths compute the same
/// softmax(QKᵀ·scale)V in f32; on ndarray Burn's fused op is its fallback, the same
/// sequence of ops, so they agree to rounding (measured 0); fused kernels on other
/// backends (online softmax, other accumulation orders) differ by a few f32 ulps per
/// layer, ~1e-6 at this size. 1e-5 is ~100 ulps at logit scale 1: loose enough for that,
/// tight enough to catch a wrong mask or scale (errors of order 1e-1).
#[test]
fn explicit_equals_fused_f32() {
    let device = Default::default();
    let model = small().init_randomized::<F32>(&device, 5).unwrap();
    let ids = random_tokens(6, 3, 24, 37);
    let a = host(
        model
            .forward(tokens2(&ids, 3, 24), AttentionPath::Explicit)
            .unwrap(),
    );
    let b = host(
        model
            .forward(tokens2(&ids, 3, 24), AttentionPath::Fused)
            .unwrap(),
    );
    assert_close("f32 explicit vs fused", &a, &b, 1e-5);
}

// ---------------------------------------------------------------------------------------
// KV cache

#[test]
fn prefill_logits_equal_forward() {
    let device = Default::default();
    let model = small().init_randomized::<F64>(&device, 7).unwrap();
    let ids = random_tokens(8, 2, 11, 37);
    for path in PATHS {
        let whole = host(model.forward(tokens2(&ids, 2, 11), path).unwrap());
        let (logits, cache) = model.prefill(tokens2(&ids, 2, 11), path).unwrap();
        assert_close("prefill vs forward", &host(logits), &whole, 0.0);
        assert_eq!(
            (cache.len(), cache.position(), cache.batch_size()),
            (11, 11, 2)
        );
        assert_eq!(cache.layers().len(), 2);
        assert_eq!(cache.layers()[1].key.dims(), [2, 4, 11, 4]);
        assert_eq!(cache.layers()[1].value.dims(), [2, 4, 11, 4]);
    }
}

/// Prefill `prefix` tokens, then step through the rest; every step's logits must equal the
/// whole-sequence logits at that position.
fn check_steps<B: Backend>(
    model: &Transformer<B>,
    ids: &[i64],
    batch: usize,
    time: usize,
    prefix: usize,
    path: AttentionPath,
    tol: f64,
) {
    let shape = [batch, time, model.config.vocab_size];
    let whole = host(model.forward(tokens2(ids, batch, time), path).unwrap());
    let mut cache = if prefix == 0 {
        model.empty_cache(batch)
    } else {
        let pre: Vec<i64> = (0..batch)
            .flat_map(|b| ids[b * time..b * time + prefix].to_vec())
            .collect();
        let (logits, cache) = model.prefill(tokens2(&pre, batch, prefix), path).unwrap();
        assert_close(
            "prefill prefix",
            &host(logits),
            &positions(&whole, shape, 0..prefix),
            tol,
        );
        cache
    };
    for t in prefix..time {
        let col: Vec<i64> = (0..batch).map(|b| ids[b * time + t]).collect();
        let logits = model.step_with(tokens1(&col), &mut cache, path).unwrap();
        assert_eq!(logits.dims(), [batch, model.config.vocab_size]);
        assert_close(
            &format!("{path:?} prefix {prefix} step at {t}"),
            &host(logits),
            &positions(&whole, shape, t..t + 1),
            tol,
        );
        assert_eq!(cache.len(), t + 1);
    }
}

#[test]
fn prefill_then_step_equals_forward_f64() {
    let device = Default::default();
    let model = small().init_randomized::<F64>(&device, 9).unwrap();
    let (batch, time) = (3, 14);
    let ids = random_tokens(10, batch, time, 37);
    for path in PATHS {
        for prefix in [1, 5, time - 1] {
            check_steps(&model, &ids, batch, time, prefix, path, 1e-10);
        }
    }
}

#[test]
fn step_only_from_empty_cache_equals_forward() {
    let device = Default::default();
    let model = small().init_randomized::<F64>(&device, 11).unwrap();
    let ids = random_tokens(12, 2, 10, 37);
    for path in PATHS {
        check_steps(&model, &ids, 2, 10, 0, path, 1e-10);
    }
    // `step` (the default, fused path) from an empty cache.
    let whole = host(
        model
            .forward(tokens2(&ids, 2, 10), AttentionPath::Explicit)
            .unwrap(),
    );
    let mut cache: KvCache<F64> = model.empty_cache(2);
    assert!(cache.is_empty());
    for t in 0..10 {
        let logits = model
            .step(tokens1(&[ids[t], ids[10 + t]]), &mut cache)
            .unwrap();
        assert_close(
            "step",
            &host(logits),
            &positions(&whole, [2, 10, 37], t..t + 1),
            1e-10,
        );
    }
}

#[test]
fn prefill_then_step_equals_forward_f32() {
    let device = Default::default();
    let model = small().init_randomized::<F32>(&device, 13).unwrap();
    let ids = random_tokens(14, 2, 12, 37);
    for path in PATHS {
        check_steps(&model, &ids, 2, 12, 4, path, 1e-5);
    }
}

#[test]
fn extend_in_chunks_equals_forward() {
    // Several new tokens after a non-empty cache: the one case where the causal mask has an
    // offset (Fused gets an explicit boolean mask there).
    let device = Default::default();
    let model = small().init_randomized::<F64>(&device, 15).unwrap();
    let (batch, time) = (2, 16);
    let ids = random_tokens(16, batch, time, 37);
    let shape = [batch, time, 37];
    let slice = |r: std::ops::Range<usize>| -> Vec<i64> {
        (0..batch)
            .flat_map(|b| ids[b * time + r.start..b * time + r.end].to_vec())
            .collect()
    };
    for path in PATHS {
        let whole = host(model.forward(tokens2(&ids, batch, time), path).unwrap());
        let (_, mut cache) = model
            .prefill(tokens2(&slice(0..3), batch, 3), path)
            .unwrap();
        for r in [3..8, 8..9, 9..16] {
            let n = r.len();
            let logits = model
                .extend(tokens2(&slice(r.clone()), batch, n), &mut cache, path)
                .unwrap();
            assert_close(
                &format!("{path:?} extend {r:?}"),
                &host(logits),
                &positions(&whole, shape, r.clone()),
                1e-10,
            );
            assert_eq!(cache.len(), r.end);
        }
    }
}

#[test]
fn causality_later_tokens_do_not_change_earlier_logits() {
    let device = Default::default();
    let model = small().init_randomized::<F64>(&device, 17).unwrap();
    let (batch, time, cut) = (2, 12, 5);
    let ids = random_tokens(18, batch, time, 37);
    let mut changed = ids.clone();
    for b in 0..batch {
        for t in cut..time {
            changed[b * time + t] = (ids[b * time + t] + 1 + t as i64) % 37;
        }
    }
    let shape = [batch, time, 37];
    for path in PATHS {
        let a = host(model.forward(tokens2(&ids, batch, time), path).unwrap());
        let b = host(model.forward(tokens2(&changed, batch, time), path).unwrap());
        assert_close(
            "positions before the change",
            &positions(&a, shape, 0..cut),
            &positions(&b, shape, 0..cut),
            1e-13,
        );
        // ... and the change is visible from the cut on.
        let diff = positions(&a, shape, cut..cut + 1)
            .iter()
            .zip(positions(&b, shape, cut..cut + 1))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(
            diff > 1e-3,
            "{path:?}: changing token {cut} did not change its logits"
        );
    }
}

#[test]
fn batch_rows_are_independent() {
    let device = Default::default();
    let model = small().init_randomized::<F64>(&device, 19).unwrap();
    let ids = random_tokens(20, 3, 7, 37);
    let all = host(
        model
            .forward(tokens2(&ids, 3, 7), AttentionPath::Fused)
            .unwrap(),
    );
    let row1 = host(
        model
            .forward(tokens2(&ids[7..14], 1, 7), AttentionPath::Fused)
            .unwrap(),
    );
    assert_close(
        "row 1 alone vs in batch",
        &row1,
        &all[7 * 37..14 * 37],
        1e-12,
    );
}

#[test]
fn cache_bytes_grow_linearly() {
    fn check<B: Backend>(elem: usize) {
        let device = Default::default();
        let c = small(); // L = 2, d = 16
        let model = c.init_with_seed::<B>(&device, 0).unwrap();
        let batch = 3;
        let per_position = 2 * c.n_layers * batch * c.d_model * elem;
        let mut cache = model.empty_cache(batch);
        assert_eq!(cache.bytes(), 0);
        for t in 1..=c.max_positions {
            model.step(tokens1(&[1, 2, 3]), &mut cache).unwrap();
            assert_eq!(cache.bytes(), t * per_position, "after {t} tokens");
        }
        let (_, cache) = model
            .prefill(tokens2(&[0; 3 * 7], batch, 7), AttentionPath::Fused)
            .unwrap();
        assert_eq!(cache.bytes(), 7 * per_position);
    }
    check::<F32>(4);
    check::<F64>(8);
}

// ---------------------------------------------------------------------------------------
// Parameters and initialisation

#[test]
fn num_params_matches_module_and_formula() {
    let device = Default::default();
    for c in [
        small(),
        TransformerConfig::gpt(50, 8, 1, 1, 3),
        TransformerConfig::gpt(11, 12, 3, 3, 32),
    ] {
        let model = c.init_with_seed::<F32>(&device, 0).unwrap();
        let (v, d, l, f, p) = (c.vocab_size, c.d_model, c.n_layers, c.d_ff, c.max_positions);
        let by_hand = v * d // wte
            + p * d // wpe
            + l * (2 * 2 * d // ln1, ln2
                + 4 * (d * d + d) // q, k, v, o with bias
                + (d * f + f) + (f * d + d)) // fc, proj with bias
            + 2 * d // ln_f
            + d * v; // head, no bias
        assert_eq!(c.num_params(), by_hand);
        assert_eq!(model.num_params(), by_hand);
        assert_eq!(Module::num_params(&model), by_hand);
    }
    // d = 16, F = 40, V = 37, P = 24, L = 2: 2·37·16 + 24·16 + 32 + 2·(1024 + 1280 + 144 + 40)
    assert_eq!(small().num_params(), 1184 + 384 + 32 + 2 * 2488);
}

#[test]
fn init_is_deterministic_across_backends_and_gpt2_scaled() {
    let device = Default::default();
    let c = TransformerConfig::gpt(64, 64, 4, 4, 16);
    let a = c.init_with_seed::<F64>(&device, 42).unwrap();
    let b = c.init_with_seed::<F32>(&device, 42).unwrap();
    let other = c.init_with_seed::<F64>(&device, 43).unwrap();
    let wa = host(a.blocks[2].mlp.fc.weight.val());
    let wb = host(b.blocks[2].mlp.fc.weight.val());
    assert!(wa.iter().zip(&wb).all(|(x, y)| (*x as f32) as f64 == *y));
    assert_ne!(wa, host(other.blocks[2].mlp.fc.weight.val()));
    let std = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    // N(0, 0.02²), residual projections N(0, (0.02/√(2L))²) = 0.02/√8.
    assert!((std(&wa) / 0.02 - 1.0).abs() < 0.05, "fc std {}", std(&wa));
    let wo = host(a.blocks[1].attn.output.weight.val());
    let want = 0.02 / 8f64.sqrt();
    assert!(
        (std(&wo) / want - 1.0).abs() < 0.05,
        "output std {}",
        std(&wo)
    );
    let proj = host(a.blocks[3].mlp.proj.weight.val());
    assert!(
        (std(&proj) / want - 1.0).abs() < 0.05,
        "proj std {}",
        std(&proj)
    );
    assert!(
        host(a.blocks[0].attn.query.bias.as_ref().unwrap().val())
            .iter()
            .all(|x| *x == 0.0)
    );
    assert!(host(a.ln_f.gamma.val()).iter().all(|x| *x == 1.0));
    assert!(
        host(a.ln_f.beta.as_ref().unwrap().val())
            .iter()
            .all(|x| *x == 0.0)
    );
    assert!(a.head.bias.is_none());
}

/// A few random shapes (bounded, seeded): Explicit = Fused and prefill + steps = forward.
#[test]
fn random_shapes_agree_f64() {
    let device = Default::default();
    let mut rng = SplitMix64::new(2024);
    for case in 0..6 {
        let n_heads = 1 + rng.below(3) as usize;
        let d_model = n_heads * (1 + rng.below(4) as usize);
        let c = TransformerConfig::new(
            2 + rng.below(20) as usize,
            d_model,
            1 + rng.below(3) as usize,
            n_heads,
            1 + rng.below(24) as usize,
            1 + rng.below(12) as usize,
        );
        let model = c.init_randomized::<F64>(&device, case).unwrap();
        let batch = 1 + rng.below(3) as usize;
        let time = 1 + rng.below(c.max_positions as u64) as usize;
        let prefix = 1 + rng.below(time as u64) as usize;
        let ids = random_tokens(case, batch, time, c.vocab_size);
        let a = host(
            model
                .forward(tokens2(&ids, batch, time), AttentionPath::Explicit)
                .unwrap(),
        );
        let b = host(
            model
                .forward(tokens2(&ids, batch, time), AttentionPath::Fused)
                .unwrap(),
        );
        assert_close(&format!("case {case} {c:?}"), &a, &b, 1e-10);
        check_steps(
            &model,
            &ids,
            batch,
            time,
            prefix,
            AttentionPath::Fused,
            1e-10,
        );
    }
}

#[test]
fn gradients_of_both_paths_agree() {
    type AD = Autodiff<F64>;
    let device = Default::default();
    let model = small().init_randomized::<AD>(&device, 21).unwrap();
    let ids = random_tokens(22, 2, 8, 37);
    let grad_of = |path| {
        let logits = model.forward(tokens2(&ids, 2, 8), path).unwrap();
        let loss = (logits.clone() * logits).mean();
        let grads = loss.backward();
        let g = model.blocks[0].attn.query.weight.grad(&grads).unwrap();
        let gp = model.wpe.grad(&grads).unwrap();
        (host(g), host(gp))
    };
    let (ge, pe) = grad_of(AttentionPath::Explicit);
    let (gf, pf) = grad_of(AttentionPath::Fused);
    assert!(ge.iter().any(|x| x.abs() > 1e-6));
    assert_close("grad W_q", &ge, &gf, 1e-10);
    assert_close("grad wpe", &pe, &pf, 1e-10);
}

// ---------------------------------------------------------------------------------------
// Errors: typed, never a panic, the cache unchanged

#[test]
fn bad_inputs_give_typed_errors() {
    let device = Default::default();
    let model = small().init_with_seed::<F32>(&device, 0).unwrap();
    let f = AttentionPath::Fused;
    let empty_t: Tensor<F32, 2, Int> =
        Tensor::from_data(TensorData::new(Vec::<i64>::new(), [2, 0]), &device);
    assert_eq!(
        model.forward(empty_t.clone(), f).unwrap_err(),
        TransformerError::EmptySequence
    );
    assert_eq!(
        model.prefill(empty_t, f).unwrap_err(),
        TransformerError::EmptySequence
    );
    let empty_b: Tensor<F32, 2, Int> =
        Tensor::from_data(TensorData::new(Vec::<i64>::new(), [0, 3]), &device);
    assert_eq!(
        model.forward(empty_b, f).unwrap_err(),
        TransformerError::EmptyBatch
    );
    let mut cache = model.empty_cache(0);
    assert_eq!(
        model.step(tokens1(&[]), &mut cache).unwrap_err(),
        TransformerError::EmptyBatch
    );

    let mut ids = vec![1i64; 2 * 6];
    ids[6 + 4] = 37;
    assert_eq!(
        model.forward(tokens2(&ids, 2, 6), f).unwrap_err(),
        TransformerError::TokenOutOfRange {
            token: 37,
            batch: 1,
            position: 4,
            vocab_size: 37
        }
    );
    ids[6 + 4] = -1;
    assert_eq!(
        model.prefill(tokens2(&ids, 2, 6), f).unwrap_err(),
        TransformerError::TokenOutOfRange {
            token: -1,
            batch: 1,
            position: 4,
            vocab_size: 37
        }
    );
    assert_eq!(
        model.forward(tokens2(&[0; 25], 1, 25), f).unwrap_err(),
        TransformerError::SequenceTooLong {
            len: 25,
            max_positions: 24
        }
    );
    let msg = TransformerError::TokenOutOfRange {
        token: 37,
        batch: 1,
        position: 4,
        vocab_size: 37,
    }
    .to_string();
    assert!(msg.contains("37") && msg.contains("position 4"), "{msg}");
}

#[test]
fn cache_errors_leave_the_cache_unchanged() {
    let device = Default::default();
    let model = small().init_randomized::<F64>(&device, 23).unwrap();
    let (batch, time) = (2, 12);
    let ids = random_tokens(24, batch, time, 37);
    let whole = host(
        model
            .forward(tokens2(&ids, batch, time), AttentionPath::Fused)
            .unwrap(),
    );
    let prefix: Vec<i64> = [&ids[..10], &ids[12..22]].concat();
    let (_, mut cache) = model
        .prefill(tokens2(&prefix, batch, 10), AttentionPath::Fused)
        .unwrap();
    let before = (cache.len(), cache.bytes());

    // Wrong batch size.
    assert_eq!(
        model.step(tokens1(&[1, 2, 3]), &mut cache).unwrap_err(),
        TransformerError::CacheBatchMismatch {
            cache: 2,
            tokens: 3
        }
    );
    // Bad id: the position reported is the absolute one.
    assert_eq!(
        model.step(tokens1(&[1, 99]), &mut cache).unwrap_err(),
        TransformerError::TokenOutOfRange {
            token: 99,
            batch: 1,
            position: 10,
            vocab_size: 37
        }
    );
    // A chunk that runs past max_positions.
    assert_eq!(
        model
            .extend(
                tokens2(&[0; 2 * 15], 2, 15),
                &mut cache,
                AttentionPath::Explicit
            )
            .unwrap_err(),
        TransformerError::SequenceTooLong {
            len: 25,
            max_positions: 24
        }
    );
    // A cache from a model of another shape.
    let other = TransformerConfig::new(37, 16, 2, 2, 40, 24)
        .init_with_seed::<F64>(&device, 0)
        .unwrap();
    assert_eq!(
        other.step(tokens1(&[1, 2]), &mut cache).unwrap_err(),
        TransformerError::CacheMismatch {
            what: "number of heads",
            expected: 2,
            got: 4
        }
    );
    let deeper = TransformerConfig::new(37, 16, 3, 4, 40, 24)
        .init_with_seed::<F64>(&device, 0)
        .unwrap();
    assert_eq!(
        deeper.step(tokens1(&[1, 2]), &mut cache).unwrap_err(),
        TransformerError::CacheMismatch {
            what: "number of layers",
            expected: 3,
            got: 2
        }
    );
    assert_eq!((cache.len(), cache.bytes()), before);
    // ... and decoding continues correctly after the errors.
    for t in 10..12 {
        let logits = model
            .step(tokens1(&[ids[t], ids[12 + t]]), &mut cache)
            .unwrap();
        assert_close(
            "step after errors",
            &host(logits),
            &positions(&whole, [batch, time, 37], t..t + 1),
            1e-10,
        );
    }

    // Full cache.
    let mut cache = model.empty_cache(1);
    for _ in 0..24 {
        model.step(tokens1(&[5]), &mut cache).unwrap();
    }
    let full = cache.bytes();
    assert_eq!(
        model.step(tokens1(&[5]), &mut cache).unwrap_err(),
        TransformerError::CacheFull { max_positions: 24 }
    );
    assert_eq!((cache.len(), cache.bytes()), (24, full));
}

#[test]
fn bad_configs_name_the_field() {
    let device = Default::default();
    let field = |c: TransformerConfig| match c.init_with_seed::<F32>(&device, 0) {
        Err(TransformerError::Config { field, .. }) => {
            assert!(c.validate().is_err());
            field
        }
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    };
    let ok = small();
    assert!(ok.validate().is_ok());
    assert_eq!(
        field(TransformerConfig {
            vocab_size: 0,
            ..ok.clone()
        }),
        "vocab_size"
    );
    assert_eq!(
        field(TransformerConfig {
            d_model: 0,
            ..ok.clone()
        }),
        "d_model"
    );
    assert_eq!(
        field(TransformerConfig {
            n_layers: 0,
            ..ok.clone()
        }),
        "n_layers"
    );
    assert_eq!(
        field(TransformerConfig {
            n_heads: 0,
            ..ok.clone()
        }),
        "n_heads"
    );
    assert_eq!(
        field(TransformerConfig {
            n_heads: 3,
            ..ok.clone()
        }),
        "n_heads"
    ); // 16 % 3 != 0
    assert_eq!(
        field(TransformerConfig {
            d_ff: 0,
            ..ok.clone()
        }),
        "d_ff"
    );
    assert_eq!(
        field(TransformerConfig {
            max_positions: 0,
            ..ok.clone()
        }),
        "max_positions"
    );
    assert_eq!(field(ok.clone().with_layer_norm_eps(0.0)), "layer_norm_eps");
    assert_eq!(
        field(ok.clone().with_layer_norm_eps(f64::NAN)),
        "layer_norm_eps"
    );
    assert_eq!(field(ok.with_layer_norm_eps(-1e-5)), "layer_norm_eps");
}
