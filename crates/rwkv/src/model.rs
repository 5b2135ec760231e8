//! The RWKV-4 modules. Parameter names mirror the BlinkDL checkpoint keys (`emb`,
//! `blocks.N.ln0/ln1/ln2`, `att.time_mix_k`, `att.time_decay`, `att.key`, `ffn.value`, …,
//! `ln_out`, `head`) so that loading is a short remap table.

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::config::{Activation, Bonus, Decay, EmbeddingInit, RwkvConfig, Variant};
use crate::error::{Result, RwkvError};
use crate::init::{rwkv4_time_decay, rwkv4_time_first, rwkv4_time_mix};
use crate::state::{LayerState, RwkvState};
use crate::wkv::{self, WkvBackend, WkvMode, WkvState};
use lab_util::SplitMix64;

/// Time mixing (paper eq. 11–16): token shift, R/K/V projections, WKV, gated output.
#[derive(Module, Debug)]
pub struct TimeMix<B: Backend> {
    /// Token-shift mix for the key input, `[C]` (checkpoint: `[1, 1, C]`).
    pub time_mix_k: Param<Tensor<B, 1>>,
    /// Token-shift mix for the value input, `[C]`.
    pub time_mix_v: Param<Tensor<B, 1>>,
    /// Token-shift mix for the receptance input, `[C]`.
    pub time_mix_r: Param<Tensor<B, 1>>,
    /// Raw decay, `[C]`; the operator uses `w = -exp(time_decay)`.
    pub time_decay: Param<Tensor<B, 1>>,
    /// Bonus `u` of the current token, `[C]` (log space, used as is).
    pub time_first: Param<Tensor<B, 1>>,
    /// `W_k`, C → C, no bias.
    pub key: Linear<B>,
    /// `W_v`, C → C.
    pub value: Linear<B>,
    /// `W_r`, C → C.
    pub receptance: Linear<B>,
    /// `W_o`, C → C.
    pub output: Linear<B>,
    /// Architecture switches.
    #[module(skip)]
    pub variant: Variant,
}

/// Channel mixing (paper eq. 17–19): token shift, squared-ReLU MLP, receptance gate.
#[derive(Module, Debug)]
pub struct ChannelMix<B: Backend> {
    /// Token-shift mix for the key input, `[C]`.
    pub time_mix_k: Param<Tensor<B, 1>>,
    /// Token-shift mix for the receptance input, `[C]`.
    pub time_mix_r: Param<Tensor<B, 1>>,
    /// `W_k'`, C → F.
    pub key: Linear<B>,
    /// `W_r'`, C → C.
    pub receptance: Linear<B>,
    /// `W_v'`, F → C.
    pub value: Linear<B>,
    /// Architecture switches.
    #[module(skip)]
    pub variant: Variant,
}

/// One residual block: `x += att(ln1(x)); x += ffn(ln2(x))`, with `ln0` first in block 0.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Extra LayerNorm after the embedding (block 0 only, when enabled).
    pub ln0: Option<LayerNorm<B>>,
    /// LayerNorm before time mixing.
    pub ln1: LayerNorm<B>,
    /// LayerNorm before channel mixing.
    pub ln2: LayerNorm<B>,
    /// Time mixing.
    pub att: TimeMix<B>,
    /// Channel mixing.
    pub ffn: ChannelMix<B>,
}

/// The RWKV-4 language model.
#[derive(Module, Debug)]
pub struct Rwkv<B: Backend> {
    /// Token embedding `[V, C]`.
    pub emb: Embedding<B>,
    /// The blocks.
    pub blocks: Vec<Block<B>>,
    /// Final LayerNorm.
    pub ln_out: LayerNorm<B>,
    /// Output projection C → V (untied from `emb`).
    pub head: Linear<B>,
    /// The configuration it was built from.
    #[module(skip)]
    pub config: RwkvConfig,
}

/// `σ(x) = 1 / (1 + e^{-x})` in the tensor's own precision.
///
/// Burn 0.21's `activation::sigmoid` casts its input to f32 (for half-precision stability)
/// even for f64 tensors, which alone put a float64 model 1.5e-7 away from a float64
/// reference. Here each side uses the form without cancellation, `1/(1+e^{-x})` for x ≥ 0 and
/// `e^x/(1+e^x)`, for x < 0, with its exponent clamped where that side is not selected
/// (so nothing overflows and no `0·∞` reaches the gradient; the clamps are inactive
/// wherever a side is used, so the derivative is exact, also at 0). Measured against the
/// f64 formula on [-10, 10]: 1.5e-7 relative error in f32 (Burn's: 5.2e-7).
pub fn sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let e_pos = x.clone().clamp_min(-1.0).neg().exp(); // e^{-x}, used for x >= 0
    // a true division: ndarray's f32 `recip` is an approximation (4.7e-5 relative error)
    let positive = e_pos.ones_like() / (e_pos + 1.0);
    let e_neg = x.clone().clamp_max(1.0).exp(); // e^{x}, used for x < 0
    let negative = e_neg.clone() / (e_neg + 1.0);
    positive.mask_where(x.lower_elem(0.0), negative)
}

/// Token shift: `[prev, z_0, …, z_{T-2}]` along time.
///
/// # Shapes
/// - `z`: `[B, T, C]`; `prev`: `[B, C]`; returns `[B, T, C]`
fn shift<B: Backend>(z: &Tensor<B, 3>, prev: Tensor<B, 2>) -> Tensor<B, 3> {
    let [batch, time, channels] = z.dims();
    let prev = prev.unsqueeze_dim::<3>(1);
    if time == 1 {
        prev
    } else {
        Tensor::cat(
            vec![prev, z.clone().slice([0..batch, 0..time - 1, 0..channels])],
            1,
        )
    }
}

/// Last time step, `[B, T, C]` → `[B, C]`.
fn last<B: Backend>(z: &Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, time, channels] = z.dims();
    z.clone()
        .slice([0..batch, time - 1..time, 0..channels])
        .reshape([batch, channels])
}

/// `z·μ + z'·(1-μ)`, or `z` when token shift is off.
fn mix<B: Backend>(
    on: bool,
    z: &Tensor<B, 3>,
    shifted: &Tensor<B, 3>,
    mu: &Param<Tensor<B, 1>>,
) -> Tensor<B, 3> {
    if !on {
        return z.clone();
    }
    let [channels] = mu.dims();
    let mu = mu.val().reshape([1, 1, channels]);
    z.clone() * mu.clone() + shifted.clone() * (mu.neg() + 1.0)
}

impl<B: WkvBackend> TimeMix<B> {
    /// # Shapes
    /// - `z`: `[B, T, C]` (the LN1 output); state `[B, C]` each; returns `[B, T, C]`
    pub fn forward(
        &self,
        z: Tensor<B, 3>,
        shift_state: Tensor<B, 2>,
        wkv_state: WkvState<B>,
        mode: WkvMode,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 2>, WkvState<B>)> {
        let [_, _, channels] = z.dims();
        let on = self.variant.token_shift;
        let shifted = shift(&z, shift_state);
        let k = self.key.forward(mix(on, &z, &shifted, &self.time_mix_k));
        let v = self.value.forward(mix(on, &z, &shifted, &self.time_mix_v));
        let w = match self.variant.decay {
            Decay::Learned => self.time_decay.val().exp().neg(),
            Decay::Fixed => self.time_decay.val().detach().exp().neg(),
            Decay::Off => Tensor::zeros([channels], lab_util::float_opts::<B>(&z.device())),
        };
        let u = match self.variant.bonus {
            Bonus::Learned => self.time_first.val(),
            Bonus::Off => Tensor::zeros([channels], lab_util::float_opts::<B>(&z.device())),
        };
        let (y, wkv_state) = wkv::wkv(mode, w, u, k, v, Some(wkv_state))?;
        let gated = if self.variant.receptance_gate {
            let r = self
                .receptance
                .forward(mix(on, &z, &shifted, &self.time_mix_r));
            sigmoid(r) * y
        } else {
            y
        };
        Ok((self.output.forward(gated), last(&z), wkv_state))
    }
}

impl<B: Backend> ChannelMix<B> {
    /// # Shapes
    /// - `z`: `[B, T, C]` (the LN2 output); `shift_state`: `[B, C]`; returns `[B, T, C]`
    pub fn forward(
        &self,
        z: Tensor<B, 3>,
        shift_state: Tensor<B, 2>,
    ) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let on = self.variant.token_shift;
        let shifted = shift(&z, shift_state);
        let k = self.key.forward(mix(on, &z, &shifted, &self.time_mix_k));
        let hidden = match self.variant.ffn_activation {
            Activation::SquaredRelu => relu(k).square(),
            Activation::Relu => relu(k),
            Activation::Gelu => gelu(k),
            Activation::Silu => k.clone() * sigmoid(k),
        };
        let kv = self.value.forward(hidden);
        let out = if self.variant.receptance_gate {
            sigmoid(
                self.receptance
                    .forward(mix(on, &z, &shifted, &self.time_mix_r)),
            ) * kv
        } else {
            kv
        };
        (out, last(&z))
    }
}

impl<B: WkvBackend> Block<B> {
    /// # Shapes
    /// - `x`: `[B, T, C]` (residual stream); returns `[B, T, C]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        state: LayerState<B>,
        mode: WkvMode,
    ) -> Result<(Tensor<B, 3>, LayerState<B>)> {
        let x = match &self.ln0 {
            Some(ln0) => ln0.forward(x),
            None => x,
        };
        let (att, att_shift, wkv) = self.att.forward(
            self.ln1.forward(x.clone()),
            state.att_shift,
            state.wkv,
            mode,
        )?;
        let x = x + att;
        let (ffn, ffn_shift) = self
            .ffn
            .forward(self.ln2.forward(x.clone()), state.ffn_shift);
        Ok((
            x + ffn,
            LayerState {
                att_shift,
                wkv,
                ffn_shift,
            },
        ))
    }
}

impl<B: WkvBackend> Rwkv<B> {
    /// GPT mode: the whole sequence at once, projections batched over time, the WKV
    /// operator in the chosen formulation, starting from `state` (or the empty state).
    ///
    /// # Shapes
    /// - `tokens`: `[B, T]`; returns logits `[B, T, V]` and the state after the last token
    ///
    /// # Errors
    /// `T = 0`, `B = 0`, ids outside `0..V`, a state of the wrong shape, chunk length 0.
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        state: Option<RwkvState<B>>,
        mode: WkvMode,
    ) -> Result<(Tensor<B, 3>, RwkvState<B>)> {
        let [batch, time] = tokens.dims();
        self.check_tokens(&tokens)?;
        if let WkvMode::Chunked { len: 0 } = mode {
            return Err(RwkvError::ZeroChunkLen);
        }
        let state = match state {
            Some(s) => {
                s.check(self.blocks.len(), batch, self.config.d_model)?;
                s
            }
            None => RwkvState::zeros(
                self.blocks.len(),
                batch,
                self.config.d_model,
                &tokens.device(),
            ),
        };
        let mut x = self.emb.forward(tokens);
        let mut layers = Vec::with_capacity(self.blocks.len());
        for (block, layer) in self.blocks.iter().zip(state.layers) {
            let (y, next) = block.forward(x, layer, mode)?;
            x = y;
            layers.push(next);
        }
        debug_assert_eq!(x.dims()[1], time);
        Ok((
            self.head.forward(self.ln_out.forward(x)),
            RwkvState { layers },
        ))
    }

    /// RNN mode: one token per batch row, advancing `state` in place.
    ///
    /// # Shapes
    /// - `tokens`: `[B]`; returns logits `[B, V]`
    ///
    /// # Errors
    /// As [`Rwkv::forward`]; on error `state` is left unchanged.
    pub fn step(
        &self,
        tokens: Tensor<B, 1, Int>,
        state: &mut RwkvState<B>,
    ) -> Result<Tensor<B, 2>> {
        let [batch] = tokens.dims();
        state.check(self.blocks.len(), batch, self.config.d_model)?;
        let (logits, next) = self.forward(
            tokens.unsqueeze_dim(1),
            Some(state.clone()),
            WkvMode::Recurrent,
        )?;
        *state = next;
        Ok(logits.reshape([batch, self.config.vocab_size]))
    }

    /// Checks `B, T ≥ 1` and `0 ≤ id < V` (one host read of the ids).
    fn check_tokens<const D: usize>(&self, tokens: &Tensor<B, D, Int>) -> Result<()> {
        let dims = tokens.dims();
        if dims[0] == 0 {
            return Err(RwkvError::EmptyBatch);
        }
        if dims.iter().product::<usize>() == 0 {
            return Err(RwkvError::EmptySequence);
        }
        let time = dims[1..].iter().product::<usize>().max(1);
        let ids: Vec<i64> = tokens
            .to_data()
            .convert::<i64>()
            .into_vec()
            .unwrap_or_default();
        let vocab_size = self.config.vocab_size;
        if let Some((i, &token)) = ids
            .iter()
            .enumerate()
            .find(|(_, t)| **t < 0 || **t as u64 >= vocab_size as u64)
        {
            return Err(RwkvError::TokenOutOfRange {
                token,
                batch: i / time,
                position: i % time,
                vocab_size,
            });
        }
        Ok(())
    }
}

impl<B: Backend> Rwkv<B> {
    /// Model width C.
    pub fn d_model(&self) -> usize {
        self.config.d_model
    }

    /// Number of parameters actually held (equals [`RwkvConfig::num_params`]).
    pub fn num_params(&self) -> usize {
        Module::num_params(self)
    }

    /// Every parameter under its BlinkDL checkpoint key (see [`ParamSource`]), as host data
    /// in the model's layout (`Linear` weights `[d_in, d_out]`, mixes `[C]`), in the order
    /// [`RwkvConfig::init_from`] requests them.
    pub fn named_params(&self) -> Vec<(String, ParamShape, TensorData)> {
        let (v, c, f) = (
            self.config.vocab_size,
            self.config.d_model,
            self.config.d_ffn,
        );
        let mut out = vec![(
            "emb.weight".to_string(),
            ParamShape::Embedding {
                vocab: v,
                d_model: c,
            },
            self.emb.weight.val().into_data(),
        )];
        let vec =
            |k: String, p: &Param<Tensor<B, 1>>| (k, ParamShape::Vector(c), p.val().into_data());
        let ln = |k: String, ln: &LayerNorm<B>| {
            let mut v = vec![vec(format!("{k}.weight"), &ln.gamma)];
            if let Some(b) = &ln.beta {
                v.push(vec(format!("{k}.bias"), b));
            }
            v
        };
        let lin = |k: String, d_in: usize, d_out: usize, l: &Linear<B>| {
            (
                k,
                ParamShape::Linear { d_in, d_out },
                l.weight.val().into_data(),
            )
        };
        for (l, b) in self.blocks.iter().enumerate() {
            let p = format!("blocks.{l}.");
            if let Some(ln0) = &b.ln0 {
                out.extend(ln(format!("{p}ln0"), ln0));
            }
            out.extend(ln(format!("{p}ln1"), &b.ln1));
            out.extend(ln(format!("{p}ln2"), &b.ln2));
            let a = &b.att;
            for (n, t) in [
                ("att.time_mix_k", &a.time_mix_k),
                ("att.time_mix_v", &a.time_mix_v),
                ("att.time_mix_r", &a.time_mix_r),
                ("att.time_decay", &a.time_decay),
                ("att.time_first", &a.time_first),
                ("ffn.time_mix_k", &b.ffn.time_mix_k),
                ("ffn.time_mix_r", &b.ffn.time_mix_r),
            ] {
                out.push(vec(format!("{p}{n}"), t));
            }
            for (n, m) in [
                ("key", &a.key),
                ("value", &a.value),
                ("receptance", &a.receptance),
                ("output", &a.output),
            ] {
                out.push(lin(format!("{p}att.{n}.weight"), c, c, m));
            }
            out.push(lin(format!("{p}ffn.key.weight"), c, f, &b.ffn.key));
            out.push(lin(
                format!("{p}ffn.receptance.weight"),
                c,
                c,
                &b.ffn.receptance,
            ));
            out.push(lin(format!("{p}ffn.value.weight"), f, c, &b.ffn.value));
        }
        out.extend(ln("ln_out".into(), &self.ln_out));
        out.push(lin("head.weight".into(), c, v, &self.head));
        out
    }

    /// The empty state for a batch of `batch` sequences.
    pub fn zero_state(&self, batch: usize, device: &B::Device) -> RwkvState<B> {
        RwkvState::zeros(self.blocks.len(), batch, self.config.d_model, device)
    }
}

// ---------------------------------------------------------------------------------------
// Construction

/// The shape of a parameter requested from a [`ParamSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamShape {
    /// A projection, values in Burn's layout `[d_in, d_out]` (checkpoints store `[d_out, d_in]`).
    Linear {
        /// Input width.
        d_in: usize,
        /// Output width.
        d_out: usize,
    },
    /// A per-channel vector (mixes, decays, bonuses, LayerNorm weight and bias).
    Vector(usize),
    /// The token embedding `[vocab, d_model]`.
    Embedding {
        /// Rows.
        vocab: usize,
        /// Columns.
        d_model: usize,
    },
}

impl ParamShape {
    /// Number of values.
    pub fn len(&self) -> usize {
        match *self {
            ParamShape::Linear { d_in, d_out } => d_in * d_out,
            ParamShape::Vector(n) => n,
            ParamShape::Embedding { vocab, d_model } => vocab * d_model,
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a model's parameter values come from: an initialisation scheme or a checkpoint.
///
/// Keys are the BlinkDL checkpoint names: `emb.weight`, `blocks.0.ln0.weight`,
/// `blocks.N.ln1.bias`, `blocks.N.att.time_mix_k`, `blocks.N.att.time_decay`,
/// `blocks.N.att.key.weight`, `blocks.N.ffn.value.weight`, `ln_out.weight`, `head.weight`.
/// Values are row-major in the Burn layout described by [`ParamShape`].
pub trait ParamSource {
    /// The values of one parameter.
    fn values(&mut self, key: &str, shape: ParamShape) -> Result<Vec<f64>>;
}

/// `blocks.N.rest` → `(Some(N), rest)`; anything else → `(None, key)`.
pub fn split_block_key(key: &str) -> (Option<usize>, &str) {
    if let Some(rest) = key.strip_prefix("blocks.")
        && let Some((n, rest)) = rest.split_once('.')
        && let Ok(n) = n.parse()
    {
        return (Some(n), rest);
    }
    (None, key)
}

fn tensor_of<B: Backend, const D: usize>(
    values: Vec<f64>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(
        TensorData::new(values, shape),
        lab_util::float_opts::<B>(device),
    )
}

/// RWKV-LM v4 initialisation (DESIGN.md §3).
struct Rwkv4Init<'a> {
    rng: SplitMix64,
    config: &'a RwkvConfig,
}

impl ParamSource for Rwkv4Init<'_> {
    fn values(&mut self, key: &str, shape: ParamShape) -> Result<Vec<f64>> {
        let (layer, name) = split_block_key(key);
        let (c, l) = (self.config.d_model, self.config.n_layers);
        let layer = layer.unwrap_or(0);
        Ok(match shape {
            ParamShape::Embedding { .. } => match self.config.variant.embedding_init {
                EmbeddingInit::SmallUniform { scale } => {
                    self.rng.fill(shape.len(), |r| r.range(-scale, scale))
                }
                EmbeddingInit::Normal { std } => self.rng.fill(shape.len(), |r| r.normal() * std),
            },
            ParamShape::Linear { d_in, d_out } => {
                // RWKV-LM zero-initialises these; the others get an orthogonal init scaled by
                // sqrt(d_out/d_in) when d_out > d_in. A Gaussian with the same per-entry scale
                // (gain / sqrt(max(d_in, d_out))) stands in for the orthogonal matrix.
                let zero = [
                    "att.key.weight",
                    "att.receptance.weight",
                    "att.output.weight",
                    "ffn.value.weight",
                    "ffn.receptance.weight",
                ];
                if zero.contains(&name) {
                    vec![0.0; d_in * d_out]
                } else {
                    let gain = if d_out > d_in {
                        (d_out as f64 / d_in as f64).sqrt()
                    } else {
                        1.0
                    };
                    let scale = if name == "head.weight" { 0.5 } else { 1.0 };
                    let std = gain * scale / (d_in.max(d_out) as f64).sqrt();
                    self.rng.fill(d_in * d_out, |r| r.normal() * std)
                }
            }
            ParamShape::Vector(n) => {
                let mixes = || rwkv4_time_mix(layer, l, c);
                match name {
                    "att.time_decay" => rwkv4_time_decay(layer, l, n),
                    "att.time_first" => rwkv4_time_first(n),
                    "att.time_mix_k" => mixes()[0].clone(),
                    "att.time_mix_v" => mixes()[1].clone(),
                    "att.time_mix_r" => mixes()[2].clone(),
                    "ffn.time_mix_k" => mixes()[3].clone(),
                    "ffn.time_mix_r" => mixes()[4].clone(),
                    other if other.ends_with(".weight") => vec![1.0; n], // LayerNorm scale
                    _ => vec![0.0; n],                                   // LayerNorm bias
                }
            }
        })
    }
}

/// Every parameter random and away from special values, so that equivalence tests
/// exercise every term (default init zeroes several matrices).
struct RandomizedInit {
    rng: SplitMix64,
}

impl ParamSource for RandomizedInit {
    fn values(&mut self, key: &str, shape: ParamShape) -> Result<Vec<f64>> {
        let (_, name) = split_block_key(key);
        let n = shape.len();
        Ok(match shape {
            ParamShape::Embedding { .. } => self.rng.fill(n, |r| r.normal()),
            ParamShape::Linear { d_in, .. } => {
                let a = (3.0 / d_in as f64).sqrt(); // unit variance of outputs for unit inputs
                self.rng.fill(n, |r| r.range(-a, a))
            }
            ParamShape::Vector(_) => {
                let (lo, hi) = match name {
                    "att.time_decay" => (-4.0, 2.0),
                    "att.time_first" => (-2.0, 2.0),
                    other if other.ends_with(".weight") => (0.5, 1.5), // LayerNorm scale
                    other if other.ends_with(".bias") => (-0.3, 0.3),
                    _ => (0.0, 1.0), // token-shift mixes
                };
                self.rng.fill(n, |r| r.range(lo, hi))
            }
        })
    }
}

impl RwkvConfig {
    /// Builds the model with the RWKV-LM v4 initialisation, seed 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Rwkv<B>> {
        self.init_with_seed(device, 0)
    }

    /// Builds the model with the RWKV-LM v4 initialisation; `seed` drives the random
    /// matrices and the embedding. The same seed gives the same values on every backend.
    pub fn init_with_seed<B: Backend>(&self, device: &B::Device, seed: u64) -> Result<Rwkv<B>> {
        self.init_from(
            device,
            &mut Rwkv4Init {
                rng: SplitMix64::new(seed),
                config: self,
            },
        )
    }

    /// Builds a model whose every parameter is random (for equivalence tests and
    /// `verify --random`): decays in [-4, 2], bonuses in [-2, 2], mixes in [0, 1],
    /// LayerNorm scales in [0.5, 1.5], unit-variance projections.
    pub fn init_randomized<B: Backend>(&self, device: &B::Device, seed: u64) -> Result<Rwkv<B>> {
        self.init_from(
            device,
            &mut RandomizedInit {
                rng: SplitMix64::new(seed),
            },
        )
    }

    /// Builds the model with every value taken from `src` (e.g. a checkpoint).
    ///
    /// # Errors
    /// An invalid config, an error of the source, or a source value count that does not
    /// fit the requested shape.
    pub fn init_from<B: Backend>(
        &self,
        device: &B::Device,
        src: &mut dyn ParamSource,
    ) -> Result<Rwkv<B>> {
        self.validate()?;
        let (v, c, f, eps) = (
            self.vocab_size,
            self.d_model,
            self.d_ffn,
            self.layer_norm_eps,
        );
        let mut get = |key: String, shape: ParamShape| -> Result<Vec<f64>> {
            let values = src.values(&key, shape)?;
            if values.len() != shape.len() {
                return Err(RwkvError::Source {
                    key,
                    reason: format!(
                        "{} values for {shape:?} ({} expected)",
                        values.len(),
                        shape.len()
                    ),
                });
            }
            Ok(values)
        };
        let emb = Embedding {
            weight: Param::from_tensor(tensor_of::<B, 2>(
                get(
                    "emb.weight".into(),
                    ParamShape::Embedding {
                        vocab: v,
                        d_model: c,
                    },
                )?,
                [v, c],
                device,
            )),
        };
        let mut vector = |key: String| -> Result<Param<Tensor<B, 1>>> {
            Ok(Param::from_tensor(tensor_of::<B, 1>(
                get(key, ParamShape::Vector(c))?,
                [c],
                device,
            )))
        };
        let mut blocks = Vec::with_capacity(self.n_layers);
        let mut lns = Vec::new();
        let mut vecs = Vec::new();
        for l in 0..self.n_layers {
            let p = format!("blocks.{l}.");
            let mut names: Vec<String> = Vec::new();
            if l == 0 && self.variant.ln0 {
                names.push(format!("{p}ln0"));
            }
            names.extend([format!("{p}ln1"), format!("{p}ln2")]);
            for n in names {
                lns.push((vector(format!("{n}.weight"))?, vector(format!("{n}.bias"))?));
            }
            for n in [
                "att.time_mix_k",
                "att.time_mix_v",
                "att.time_mix_r",
                "att.time_decay",
                "att.time_first",
                "ffn.time_mix_k",
                "ffn.time_mix_r",
            ] {
                vecs.push(vector(format!("{p}{n}"))?);
            }
        }
        let ln_out = (
            vector("ln_out.weight".into())?,
            vector("ln_out.bias".into())?,
        );
        let mut linear = |key: String, d_in: usize, d_out: usize| -> Result<Linear<B>> {
            let values = get(key, ParamShape::Linear { d_in, d_out })?;
            Ok(Linear {
                weight: Param::from_tensor(tensor_of::<B, 2>(values, [d_in, d_out], device)),
                bias: None,
            })
        };
        let mut lns = lns.into_iter();
        let mut vecs = vecs.into_iter();
        let mut next_ln =
            || layer_norm_from::<B>(c, eps, lns.next().expect("one LayerNorm per name"), device);
        for l in 0..self.n_layers {
            let p = format!("blocks.{l}.");
            let ln0 = (l == 0 && self.variant.ln0).then(&mut next_ln);
            let ln1 = next_ln();
            let ln2 = next_ln();
            let mut v = || vecs.next().expect("seven vectors per block");
            let (mk, mv, mr, td, tf, fk, fr) = (v(), v(), v(), v(), v(), v(), v());
            let att = TimeMix {
                time_mix_k: mk,
                time_mix_v: mv,
                time_mix_r: mr,
                time_decay: td,
                time_first: tf,
                key: linear(format!("{p}att.key.weight"), c, c)?,
                value: linear(format!("{p}att.value.weight"), c, c)?,
                receptance: linear(format!("{p}att.receptance.weight"), c, c)?,
                output: linear(format!("{p}att.output.weight"), c, c)?,
                variant: self.variant.clone(),
            };
            let ffn = ChannelMix {
                time_mix_k: fk,
                time_mix_r: fr,
                key: linear(format!("{p}ffn.key.weight"), c, f)?,
                receptance: linear(format!("{p}ffn.receptance.weight"), c, c)?,
                value: linear(format!("{p}ffn.value.weight"), f, c)?,
                variant: self.variant.clone(),
            };
            blocks.push(Block {
                ln0,
                ln1,
                ln2,
                att,
                ffn,
            });
        }
        let ln_out = layer_norm_from::<B>(c, eps, ln_out, device);
        let head = linear("head.weight".into(), c, v)?;
        Ok(Rwkv {
            emb,
            blocks,
            ln_out,
            head,
            config: self.clone(),
        })
    }
}

fn layer_norm_from<B: Backend>(
    c: usize,
    eps: f64,
    (gamma, beta): (Param<Tensor<B, 1>>, Param<Tensor<B, 1>>),
    device: &B::Device,
) -> LayerNorm<B> {
    let mut ln = LayerNormConfig::new(c).with_epsilon(eps).init::<B>(device);
    ln.gamma = gamma;
    ln.beta = Some(beta);
    ln
}
