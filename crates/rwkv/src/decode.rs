//! A dedicated CPU engine for RNN-mode decoding: one sequence, one token per step, f32.
//!
//! Decoding one token is a chain of matrix–vector products: every weight of the model is
//! read once per token (≈ 520 MB at the 169M shape), so the step is bound by memory
//! bandwidth, not by arithmetic. A general-purpose tensor backend is slow at this: Burn's
//! `ndarray` backend multiplies `[1, C] × [C, D]` through a GEMM that packs (copies) the
//! weight for every call, so each token reads every weight twice and writes it once (and
//! re-faults the pages it packs into); docs/design.md §15 has the profile.
//!
//! [`CpuDecoder`] lays every projection out once, at construction, in the layout the
//! product needs (`[d_out, d_in]`, each output a dot product over one contiguous row) and
//! then streams each weight exactly once per token, on rayon's pool (the one Burn's CPU
//! backends use), with AVX2/FMA dot products where the CPU has them (detected at run time;
//! a portable 8-lane loop otherwise). The arithmetic is the model's, operation by operation
//! in the same order where it matters: the same LayerNorm, token shift `z·μ + z'·(1−μ)`,
//! max-tracking WKV recurrence (`wkv::recurrent::step`), sigmoid and activations; only the
//! summation order inside each dot product differs, so it agrees with [`Rwkv::step`] to f32
//! rounding (tested in `tests/all/decode.rs`; `rwkv-lab verify` compares it too).
//!
//! It is built from any [`Rwkv`] (any backend: the values are read to the host once) and
//! takes the state a GPT-mode prompt forward returned ([`DecoderState::from_state`]), so a
//! prompt runs in the model's whole-sequence formulations and the continuation here.

use burn::tensor::{Tensor, backend::Backend};
use rayon::prelude::*;

use crate::config::{Activation, Bonus, Decay, Variant};
use crate::error::{Result, RwkvError};
use crate::model::Rwkv;
use crate::state::{LayerState, RwkvState};
use crate::wkv::{PP_EMPTY, WkvState};

/// A projection laid out for matrix–vector products: `rows = d_out` rows of `cols = d_in`.
#[derive(Debug, Clone)]
struct Dense {
    rows: usize,
    cols: usize,
    /// Row-major `[d_out, d_in]`.
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
}

/// LayerNorm scale and shift.
#[derive(Debug, Clone)]
struct Norm {
    gamma: Vec<f32>,
    beta: Option<Vec<f32>>,
}

#[derive(Debug, Clone)]
struct BlockWeights {
    ln1: Norm,
    ln2: Norm,
    att_mix: [Vec<f32>; 3],
    /// `w = −exp(time_decay)` (0 for `Decay::Off`), as the model computes it.
    decay: Vec<f32>,
    /// `u` (0 for `Bonus::Off`).
    bonus: Vec<f32>,
    att_key: Dense,
    att_value: Dense,
    att_receptance: Dense,
    att_output: Dense,
    ffn_mix: [Vec<f32>; 2],
    ffn_key: Dense,
    ffn_receptance: Dense,
    ffn_value: Dense,
}

/// The recurrent state of [`CpuDecoder`]: per block, the two token-shift vectors and the
/// WKV triple `(aa, bb, pp)` of [`WkvState`], each `C` values (one sequence).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderState {
    layers: Vec<[Vec<f32>; 5]>,
}

/// Index of each vector in a layer of [`DecoderState`].
const ATT_SHIFT: usize = 0;
const AA: usize = 1;
const BB: usize = 2;
const PP: usize = 3;
const FFN_SHIFT: usize = 4;

/// Dot product of two equally long slices.
type DotFn = fn(&[f32], &[f32]) -> f32;

/// RNN-mode decoding of one sequence on the CPU, with weights laid out for the step.
#[derive(Debug, Clone)]
pub struct CpuDecoder {
    vocab: usize,
    d_model: usize,
    eps: f32,
    variant: Variant,
    emb: Vec<f32>,
    ln0: Option<Norm>,
    blocks: Vec<BlockWeights>,
    ln_out: Norm,
    head: Dense,
    dot: DotFn,
    simd: &'static str,
}

fn host<B: Backend, const D: usize>(what: &str, t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| RwkvError::Source {
            key: what.to_string(),
            reason: format!("reading the values to the host: {e:?}"),
        })
}

fn norm<B: Backend>(what: &str, ln: &burn::nn::LayerNorm<B>) -> Result<Norm> {
    Ok(Norm {
        gamma: host(what, ln.gamma.val())?,
        beta: match &ln.beta {
            Some(b) => Some(host(what, b.val())?),
            None => None,
        },
    })
}

/// Burn's `Linear` holds `[d_in, d_out]`; the step wants `[d_out, d_in]`.
fn dense<B: Backend>(what: &str, l: &burn::nn::Linear<B>) -> Result<Dense> {
    let [d_in, d_out] = l.weight.dims();
    let src = host(what, l.weight.val())?;
    let mut w = vec![0.0f32; d_in * d_out];
    // blocked transpose: both sides stay in cache
    const TILE: usize = 64;
    for i0 in (0..d_in).step_by(TILE) {
        for j0 in (0..d_out).step_by(TILE) {
            for i in i0..(i0 + TILE).min(d_in) {
                for j in j0..(j0 + TILE).min(d_out) {
                    w[j * d_in + i] = src[i * d_out + j];
                }
            }
        }
    }
    Ok(Dense {
        rows: d_out,
        cols: d_in,
        w,
        bias: match &l.bias {
            Some(b) => Some(host(what, b.val())?),
            None => None,
        },
    })
}

impl CpuDecoder {
    /// Copies `model`'s weights to the host in the step's layout (about 4 bytes per
    /// parameter, on top of the model).
    ///
    /// # Errors
    /// A value that cannot be read as f32.
    pub fn from_model<B: Backend>(model: &Rwkv<B>) -> Result<Self> {
        let config = &model.config;
        let variant = config.variant.clone();
        let mut blocks = Vec::with_capacity(model.blocks.len());
        let mut ln0 = None;
        for (i, b) in model.blocks.iter().enumerate() {
            let key = |name: &str| format!("blocks.{i}.{name}");
            if let Some(l) = &b.ln0 {
                ln0 = Some(norm(&key("ln0"), l)?);
            }
            let (att, ffn) = (&b.att, &b.ffn);
            let c = config.d_model;
            let decay = match variant.decay {
                Decay::Learned | Decay::Fixed => {
                    host(&key("att.time_decay"), att.time_decay.val().exp().neg())?
                }
                Decay::Off => vec![0.0; c],
            };
            let bonus = match variant.bonus {
                Bonus::Learned => host(&key("att.time_first"), att.time_first.val())?,
                Bonus::Off => vec![0.0; c],
            };
            blocks.push(BlockWeights {
                ln1: norm(&key("ln1"), &b.ln1)?,
                ln2: norm(&key("ln2"), &b.ln2)?,
                att_mix: [
                    host(&key("att.time_mix_k"), att.time_mix_k.val())?,
                    host(&key("att.time_mix_v"), att.time_mix_v.val())?,
                    host(&key("att.time_mix_r"), att.time_mix_r.val())?,
                ],
                decay,
                bonus,
                att_key: dense(&key("att.key"), &att.key)?,
                att_value: dense(&key("att.value"), &att.value)?,
                att_receptance: dense(&key("att.receptance"), &att.receptance)?,
                att_output: dense(&key("att.output"), &att.output)?,
                ffn_mix: [
                    host(&key("ffn.time_mix_k"), ffn.time_mix_k.val())?,
                    host(&key("ffn.time_mix_r"), ffn.time_mix_r.val())?,
                ],
                ffn_key: dense(&key("ffn.key"), &ffn.key)?,
                ffn_receptance: dense(&key("ffn.receptance"), &ffn.receptance)?,
                ffn_value: dense(&key("ffn.value"), &ffn.value)?,
            });
        }
        let (dot, simd) = pick_dot();
        Ok(Self {
            vocab: config.vocab_size,
            d_model: config.d_model,
            eps: config.layer_norm_eps as f32,
            variant,
            emb: host("emb.weight", model.emb.weight.val())?,
            ln0,
            blocks,
            ln_out: norm("ln_out", &model.ln_out)?,
            head: dense("head", &model.head)?,
            dot,
            simd,
        })
    }

    /// Vocabulary size V (length of a row of logits).
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// The dot-product kernel in use: `"avx2+fma"` or `"portable"`.
    pub fn kernel(&self) -> &'static str {
        self.simd
    }

    /// The state before the first token (zero shifts, empty WKV state).
    pub fn zero_state(&self) -> DecoderState {
        let c = self.d_model;
        DecoderState {
            layers: (0..self.blocks.len())
                .map(|_| {
                    [
                        vec![0.0; c],
                        vec![0.0; c],
                        vec![0.0; c],
                        vec![PP_EMPTY as f32; c],
                        vec![0.0; c],
                    ]
                })
                .collect(),
        }
    }

    /// One token: advances `state` and writes the `V` logits into `logits`.
    ///
    /// # Errors
    /// A token outside `0..V`, a state of another model, `logits` not of length `V`. On
    /// error `state` is unchanged.
    pub fn step(&self, token: i64, state: &mut DecoderState, logits: &mut [f32]) -> Result<()> {
        let c = self.d_model;
        if token < 0 || token as u64 >= self.vocab as u64 {
            return Err(RwkvError::TokenOutOfRange {
                token,
                batch: 0,
                position: 0,
                vocab_size: self.vocab,
            });
        }
        if state.layers.len() != self.blocks.len() {
            return Err(RwkvError::StateLayers {
                expected: self.blocks.len(),
                got: state.layers.len(),
            });
        }
        if let Some(bad) = state.layers.iter().flatten().find(|v| v.len() != c) {
            return Err(RwkvError::Shape {
                what: "decoder state".into(),
                expected: vec![c],
                got: vec![bad.len()],
            });
        }
        if logits.len() != self.vocab {
            return Err(RwkvError::Shape {
                what: "logits".into(),
                expected: vec![self.vocab],
                got: vec![logits.len()],
            });
        }
        let t = token as usize;
        let mut x = self.emb[t * c..(t + 1) * c].to_vec();
        if let Some(ln0) = &self.ln0 {
            let mut y = vec![0.0; c];
            layer_norm(&x, ln0, self.eps, &mut y);
            x = y;
        }
        let v = &self.variant;
        let f = self.blocks.first().map_or(0, |b| b.ffn_key.rows);
        let mut z = vec![0.0f32; c];
        let mut xk = vec![0.0f32; c];
        let mut xv = vec![0.0f32; c];
        let mut xr = vec![0.0f32; c];
        let mut k = vec![0.0f32; c];
        let mut val = vec![0.0f32; c];
        let mut r = vec![0.0f32; c];
        let mut y = vec![0.0f32; c];
        let mut out = vec![0.0f32; c];
        let mut hidden = vec![0.0f32; f];
        for (b, s) in self.blocks.iter().zip(state.layers.iter_mut()) {
            // time mixing
            layer_norm(&x, &b.ln1, self.eps, &mut z);
            mix(v.token_shift, &z, &s[ATT_SHIFT], &b.att_mix[0], &mut xk);
            mix(v.token_shift, &z, &s[ATT_SHIFT], &b.att_mix[1], &mut xv);
            self.gemv(&b.att_key, &xk, &mut k);
            self.gemv(&b.att_value, &xv, &mut val);
            {
                let [_, aa, bb, pp, _] = s;
                wkv_step(&b.decay, &b.bonus, &k, &val, aa, bb, pp, &mut y);
            }
            if v.receptance_gate {
                mix(v.token_shift, &z, &s[ATT_SHIFT], &b.att_mix[2], &mut xr);
                self.gemv(&b.att_receptance, &xr, &mut r);
                for (yi, ri) in y.iter_mut().zip(&r) {
                    *yi *= sigmoid(*ri);
                }
            }
            self.gemv(&b.att_output, &y, &mut out);
            s[ATT_SHIFT].copy_from_slice(&z);
            for (xi, oi) in x.iter_mut().zip(&out) {
                *xi += *oi;
            }
            // channel mixing
            layer_norm(&x, &b.ln2, self.eps, &mut z);
            mix(v.token_shift, &z, &s[FFN_SHIFT], &b.ffn_mix[0], &mut xk);
            self.gemv(&b.ffn_key, &xk, &mut hidden);
            for h in hidden.iter_mut() {
                *h = activation(v.ffn_activation, *h);
            }
            self.gemv(&b.ffn_value, &hidden, &mut out);
            if v.receptance_gate {
                mix(v.token_shift, &z, &s[FFN_SHIFT], &b.ffn_mix[1], &mut xr);
                self.gemv(&b.ffn_receptance, &xr, &mut r);
                for (oi, ri) in out.iter_mut().zip(&r) {
                    *oi *= sigmoid(*ri);
                }
            }
            s[FFN_SHIFT].copy_from_slice(&z);
            for (xi, oi) in x.iter_mut().zip(&out) {
                *xi += *oi;
            }
        }
        layer_norm(&x, &self.ln_out, self.eps, &mut z);
        self.gemv(&self.head, &z, logits);
        Ok(())
    }

    /// `out = W·x (+ bias)`, rows split over rayon's pool when the matrix is large.
    fn gemv(&self, d: &Dense, x: &[f32], out: &mut [f32]) {
        debug_assert_eq!(x.len(), d.cols);
        debug_assert_eq!(out.len(), d.rows);
        let dot = self.dot;
        let cols = d.cols;
        let row = |i: usize, o: &mut f32| {
            let mut s = dot(&d.w[i * cols..(i + 1) * cols], x);
            if let Some(b) = &d.bias {
                s += b[i];
            }
            *o = s;
        };
        let threads = rayon::current_num_threads();
        // below ~256 KiB of weights the pool's hand-off costs more than it saves
        if threads <= 1 || d.rows * cols < 64 * 1024 {
            for (i, o) in out.iter_mut().enumerate() {
                row(i, o);
            }
            return;
        }
        // a few tasks per thread, so that a late thread does not hold up the step
        let chunk = d.rows.div_ceil(threads * 4).max(16);
        out.par_chunks_mut(chunk).enumerate().for_each(|(ci, o)| {
            for (j, oj) in o.iter_mut().enumerate() {
                row(ci * chunk + j, oj);
            }
        });
    }
}

impl DecoderState {
    /// The decoder's state from the model's (batch 1), e.g. after a GPT-mode prompt forward.
    ///
    /// # Errors
    /// A batch other than 1, or values that cannot be read as f32.
    pub fn from_state<B: Backend>(state: &RwkvState<B>) -> Result<Self> {
        let mut layers = Vec::with_capacity(state.layers.len());
        for (i, l) in state.layers.iter().enumerate() {
            let [batch, c] = l.dims();
            if batch != 1 {
                return Err(RwkvError::Config {
                    field: "batch",
                    reason: format!("the CPU decoder runs one sequence; the state has {batch}"),
                });
            }
            let read = |name: &str, t: &Tensor<B, 2>| -> Result<Vec<f32>> {
                let v = host(&format!("state.layers[{i}].{name}"), t.clone())?;
                debug_assert_eq!(v.len(), c);
                Ok(v)
            };
            layers.push([
                read("att_shift", &l.att_shift)?,
                read("wkv.aa", &l.wkv.aa)?,
                read("wkv.bb", &l.wkv.bb)?,
                read("wkv.pp", &l.wkv.pp)?,
                read("ffn_shift", &l.ffn_shift)?,
            ]);
        }
        Ok(Self { layers })
    }

    /// The same state as the model's `RwkvState` (batch 1) on `device`.
    pub fn to_state<B: Backend>(&self, device: &B::Device) -> RwkvState<B> {
        // in the backend's own float type (see `lab_util::float_opts`)
        let t = |v: &Vec<f32>| {
            Tensor::<B, 2>::from_data(
                burn::tensor::TensorData::new(v.clone(), [1, v.len()]),
                lab_util::float_opts::<B>(device),
            )
        };
        RwkvState {
            layers: self
                .layers
                .iter()
                .map(|l| LayerState {
                    att_shift: t(&l[ATT_SHIFT]),
                    wkv: WkvState {
                        aa: t(&l[AA]),
                        bb: t(&l[BB]),
                        pp: t(&l[PP]),
                    },
                    ffn_shift: t(&l[FFN_SHIFT]),
                })
                .collect(),
        }
    }
}

/// [`crate::verify::run_rnn`] through a [`CpuDecoder`] built from `model`: `tokens` `[B, T]`,
/// each batch row decoded on its own from its row of `state` (or the empty state); logits
/// `[B, T, V]` flattened and the final state in [`crate::verify::canonical_state`] form.
///
/// # Errors
/// As [`CpuDecoder::step`]; a state of another batch size or model.
pub fn run_decoder<B: Backend>(
    model: &Rwkv<B>,
    tokens: Tensor<B, 2, burn::tensor::Int>,
    state: Option<RwkvState<B>>,
) -> Result<crate::verify::RunOutput> {
    let [batch, time] = tokens.dims();
    let device = tokens.device();
    let ids: Vec<i64> = tokens
        .into_data()
        .convert::<i64>()
        .into_vec()
        .map_err(|e| RwkvError::Source {
            key: "tokens".into(),
            reason: format!("reading the ids to the host: {e:?}"),
        })?;
    if let Some(s) = &state {
        s.check(model.blocks.len(), batch, model.config.d_model)?;
    }
    let decoder = CpuDecoder::from_model(model)?;
    let mut row = vec![0.0f32; decoder.vocab_size()];
    let mut logits = Vec::with_capacity(batch * time * row.len());
    let mut finals = Vec::with_capacity(batch);
    for b in 0..batch {
        let mut s = match &state {
            Some(s) => DecoderState::from_state(&batch_row(s, b))?,
            None => decoder.zero_state(),
        };
        for &t in &ids[b * time..(b + 1) * time] {
            decoder.step(t, &mut s, &mut row)?;
            logits.extend(row.iter().map(|&x| x as f64));
        }
        finals.push(s.to_state::<B>(&device));
    }
    Ok(crate::verify::RunOutput {
        logits,
        state: crate::verify::canonical_state(&cat_rows(finals)),
    })
}

/// Row `b` of every tensor of `s` (a batch of one).
fn batch_row<B: Backend>(s: &RwkvState<B>, b: usize) -> RwkvState<B> {
    let row = |t: &Tensor<B, 2>| {
        let [_, c] = t.dims();
        t.clone().slice([b..b + 1, 0..c])
    };
    RwkvState {
        layers: s
            .layers
            .iter()
            .map(|l| LayerState {
                att_shift: row(&l.att_shift),
                wkv: WkvState {
                    aa: row(&l.wkv.aa),
                    bb: row(&l.wkv.bb),
                    pp: row(&l.wkv.pp),
                },
                ffn_shift: row(&l.ffn_shift),
            })
            .collect(),
    }
}

/// The states of single rows, stacked into one batch in order.
fn cat_rows<B: Backend>(rows: Vec<RwkvState<B>>) -> RwkvState<B> {
    let n_layers = rows.first().map_or(0, |r| r.layers.len());
    let cat = |f: &dyn Fn(&LayerState<B>) -> Tensor<B, 2>, l: usize| {
        Tensor::cat(rows.iter().map(|r| f(&r.layers[l])).collect(), 0)
    };
    RwkvState {
        layers: (0..n_layers)
            .map(|l| LayerState {
                att_shift: cat(&|x| x.att_shift.clone(), l),
                wkv: WkvState {
                    aa: cat(&|x| x.wkv.aa.clone(), l),
                    bb: cat(&|x| x.wkv.bb.clone(), l),
                    pp: cat(&|x| x.wkv.pp.clone(), l),
                },
                ffn_shift: cat(&|x| x.ffn_shift.clone(), l),
            })
            .collect(),
    }
}

/// `lab_util::layer_norm` on one row: `(x − mean)/sqrt(var + eps)·γ + β`, the mean and
/// variance accumulated in f64.
fn layer_norm(x: &[f32], n: &Norm, eps: f32, out: &mut [f32]) {
    let len = x.len() as f64;
    let mean = (x.iter().map(|&v| v as f64).sum::<f64>() / len) as f32;
    let var = x
        .iter()
        .map(|&v| {
            let d = (v - mean) as f64;
            d * d
        })
        .sum::<f64>()
        / len;
    let denom = ((var as f32) + eps).sqrt();
    for (i, o) in out.iter_mut().enumerate() {
        let s = (x[i] - mean) / denom * n.gamma[i];
        *o = match &n.beta {
            Some(b) => s + b[i],
            None => s,
        };
    }
}

/// Token shift: `z·μ + z'·(1 − μ)`, or `z` when token shift is off (as `model::mix`).
fn mix(on: bool, z: &[f32], prev: &[f32], mu: &[f32], out: &mut [f32]) {
    if !on {
        out.copy_from_slice(z);
        return;
    }
    for i in 0..z.len() {
        out[i] = z[i] * mu[i] + prev[i] * (-mu[i] + 1.0);
    }
}

/// `wkv::recurrent::step` on one row (paper eq. 16 with a running maximum).
#[allow(clippy::too_many_arguments)]
fn wkv_step(
    w: &[f32],
    u: &[f32],
    k: &[f32],
    v: &[f32],
    aa: &mut [f32],
    bb: &mut [f32],
    pp: &mut [f32],
    y: &mut [f32],
) {
    for i in 0..k.len() {
        let uk = u[i] + k[i];
        let q = pp[i].max(uk);
        let e1 = (pp[i] - q).exp();
        let e2 = (uk - q).exp();
        y[i] = (e1 * aa[i] + e2 * v[i]) / (e1 * bb[i] + e2);
        let pw = pp[i] + w[i];
        let q = pw.max(k[i]);
        let e1 = (pw - q).exp();
        let e2 = (k[i] - q).exp();
        aa[i] = e1 * aa[i] + e2 * v[i];
        bb[i] = e1 * bb[i] + e2;
        pp[i] = q;
    }
}

/// `model::sigmoid`: `1/(1+e^{−x})` for x ≥ 0, `e^x/(1+e^x)` below.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / ((-x).exp() + 1.0)
    } else {
        let e = x.exp();
        e / (e + 1.0)
    }
}

fn activation(a: Activation, x: f32) -> f32 {
    match a {
        Activation::SquaredRelu => {
            let r = x.max(0.0);
            r * r
        }
        Activation::Relu => x.max(0.0),
        // Burn's gelu: x/2·(1 + erf(x/√2))
        Activation::Gelu => x * 0.5 * (1.0 + libm::erff(x / std::f32::consts::SQRT_2)),
        Activation::Silu => x * sigmoid(x),
    }
}

fn pick_dot() -> (DotFn, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return (dot_avx2, "avx2+fma");
        }
    }
    (dot_portable, "portable")
}

/// Eight independent partial sums (the compiler vectorises the inner loop).
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only selected by `pick_dot` after detecting AVX2 and FMA on this CPU.
    unsafe { dot_avx2_impl(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: every load reads 8 floats at offset i with i + 8 ≤ n ≤ both lengths.
    unsafe {
        let mut s0 = _mm256_setzero_ps();
        let mut s1 = _mm256_setzero_ps();
        let mut s2 = _mm256_setzero_ps();
        let mut s3 = _mm256_setzero_ps();
        while i + 32 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                s1,
            );
            s2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                s2,
            );
            s3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                s3,
            );
            i += 32;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), s);
        let mut total: f32 = lanes.iter().sum();
        while i < n {
            total += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_kernels_agree_with_the_sum() {
        for n in [0usize, 1, 7, 8, 9, 31, 32, 33, 100, 768] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25)
                .collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.5).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            // every product and partial sum is exact in f32 for these small multiples of 1/8
            assert_eq!(dot_portable(&a, &b) as f64, exact, "portable, n = {n}");
            let (dot, _) = pick_dot();
            assert_eq!(dot(&a, &b) as f64, exact, "picked kernel, n = {n}");
        }
    }

    #[test]
    fn sigmoid_and_activations_match_their_definitions() {
        for x in [-30.0f32, -2.5, -1e-3, 0.0, 1e-3, 2.5, 30.0] {
            let exact = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - exact).abs() <= 1e-7 * exact.max(1e-30) + 1e-12);
        }
        assert_eq!(activation(Activation::SquaredRelu, -2.0), 0.0);
        assert_eq!(activation(Activation::SquaredRelu, 3.0), 9.0);
        assert_eq!(activation(Activation::Relu, 3.0), 3.0);
        assert!((activation(Activation::Gelu, 1.0) - 0.841_344_7).abs() < 1e-6);
    }
}
