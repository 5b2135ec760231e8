//! The RWKV-4 modules. Parameter names mirror the BlinkDL checkpoint keys (`emb`,
//! `blocks.N.ln0/ln1/ln2`, `att.time_mix_k`, `att.time_decay`, `att.key`, `ffn.value`, …,
//! `ln_out`, `head`) so that loading is a short remap table.

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu, relu, sigmoid, silu};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::config::{Activation, Bonus, Decay, EmbeddingInit, RwkvConfig, Variant};
use crate::error::{Result, RwkvError, check_shape};
use crate::init::{SplitMix64, rwkv4_time_decay, rwkv4_time_first, rwkv4_time_mix};
use crate::state::{LayerState, RwkvState};
use crate::wkv::{self, WkvBackend, WkvMode, WkvState};

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
            Decay::Off => Tensor::zeros([channels], crate::float_opts::<B>(&z.device())),
        };
        let u = match self.variant.bonus {
            Bonus::Learned => self.time_first.val(),
            Bonus::Off => Tensor::zeros([channels], crate::float_opts::<B>(&z.device())),
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
            Activation::Silu => silu(k),
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

    /// The empty state for a batch of `batch` sequences.
    pub fn zero_state(&self, batch: usize, device: &B::Device) -> RwkvState<B> {
        RwkvState::zeros(self.blocks.len(), batch, self.config.d_model, device)
    }
}

// ---------------------------------------------------------------------------------------
// Construction

fn vector<B: Backend>(values: Vec<f64>, device: &B::Device) -> Param<Tensor<B, 1>> {
    let n = values.len();
    Param::from_tensor(Tensor::from_data(
        TensorData::new(values, [n]),
        crate::float_opts::<B>(device),
    ))
}

/// A bias-free linear layer `d_in → d_out` with the given weights (stored `[d_in, d_out]`,
/// Burn's layout; checkpoints store `[d_out, d_in]`).
fn linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    values: Vec<f64>,
    device: &B::Device,
) -> Linear<B> {
    let weight = Tensor::from_data(
        TensorData::new(values, [d_in, d_out]),
        crate::float_opts::<B>(device),
    );
    Linear {
        weight: Param::from_tensor(weight),
        bias: None,
    }
}

fn layer_norm<B: Backend>(
    c: usize,
    eps: f64,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    device: &B::Device,
) -> LayerNorm<B> {
    let mut ln = LayerNormConfig::new(c).with_epsilon(eps).init::<B>(device);
    ln.gamma = vector(gamma, device);
    ln.beta = Some(vector(beta, device));
    ln
}

/// Where each parameter's values come from; the module structure is built once, in
/// [`RwkvConfig::build`].
trait Source {
    fn matrix(&mut self, name: &str, d_in: usize, d_out: usize) -> Vec<f64>;
    fn vector(&mut self, name: &str, layer: usize, n: usize) -> Vec<f64>;
    fn embedding(&mut self, n: usize) -> Vec<f64>;
}

/// RWKV-LM v4 initialisation (DESIGN.md §3).
struct Rwkv4Init<'a> {
    rng: SplitMix64,
    config: &'a RwkvConfig,
}

impl Source for Rwkv4Init<'_> {
    fn matrix(&mut self, name: &str, d_in: usize, d_out: usize) -> Vec<f64> {
        // RWKV-LM zero-initialises these; the others get an orthogonal init scaled by
        // sqrt(d_out/d_in) when d_out > d_in. A Gaussian with the same per-entry scale
        // (gain / sqrt(max(d_in, d_out))) stands in for the orthogonal matrix.
        let zero = [
            "att.key",
            "att.receptance",
            "att.output",
            "ffn.value",
            "ffn.receptance",
        ];
        if zero.contains(&name) {
            return vec![0.0; d_in * d_out];
        }
        let gain = if d_out > d_in {
            (d_out as f64 / d_in as f64).sqrt()
        } else {
            1.0
        };
        let scale = if name == "head" { 0.5 } else { 1.0 };
        let std = gain * scale / (d_in.max(d_out) as f64).sqrt();
        self.rng.fill(d_in * d_out, |r| r.normal() * std)
    }

    fn vector(&mut self, name: &str, layer: usize, n: usize) -> Vec<f64> {
        let l = self.config.n_layers;
        let mixes = || rwkv4_time_mix(layer, l, n);
        match name {
            "att.time_decay" => rwkv4_time_decay(layer, l, n),
            "att.time_first" => rwkv4_time_first(n),
            "att.time_mix_k" => mixes()[0].clone(),
            "att.time_mix_v" => mixes()[1].clone(),
            "att.time_mix_r" => mixes()[2].clone(),
            "ffn.time_mix_k" => mixes()[3].clone(),
            "ffn.time_mix_r" => mixes()[4].clone(),
            n_ if n_.ends_with(".gamma") => vec![1.0; n],
            _ => vec![0.0; n], // LayerNorm beta
        }
    }

    fn embedding(&mut self, n: usize) -> Vec<f64> {
        match self.config.variant.embedding_init {
            EmbeddingInit::SmallUniform { scale } => self.rng.fill(n, |r| r.range(-scale, scale)),
            EmbeddingInit::Normal { std } => self.rng.fill(n, |r| r.normal() * std),
        }
    }
}

/// Every parameter random and away from special values, so that equivalence tests
/// exercise every term (default init zeroes several matrices).
struct RandomizedInit {
    rng: SplitMix64,
}

impl Source for RandomizedInit {
    fn matrix(&mut self, _: &str, d_in: usize, d_out: usize) -> Vec<f64> {
        let a = (3.0 / d_in as f64).sqrt(); // unit variance of outputs for unit inputs
        self.rng.fill(d_in * d_out, |r| r.range(-a, a))
    }

    fn vector(&mut self, name: &str, _: usize, n: usize) -> Vec<f64> {
        let (lo, hi) = match name {
            "att.time_decay" => (-4.0, 2.0),
            "att.time_first" => (-2.0, 2.0),
            n_ if n_.ends_with(".gamma") => (0.5, 1.5),
            n_ if n_.ends_with(".beta") => (-0.3, 0.3),
            _ => (0.0, 1.0), // token-shift mixes
        };
        self.rng.fill(n, |r| r.range(lo, hi))
    }

    fn embedding(&mut self, n: usize) -> Vec<f64> {
        self.rng.fill(n, |r| r.normal())
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
        self.validate()?;
        let mut src = Rwkv4Init {
            rng: SplitMix64::new(seed),
            config: self,
        };
        Ok(self.build(device, &mut src))
    }

    /// Builds a model whose every parameter is random (for equivalence tests and
    /// `verify --random`): decays in [-4, 2], bonuses in [-2, 2], mixes in [0, 1],
    /// LayerNorm scales in [0.5, 1.5], unit-variance projections.
    pub fn init_randomized<B: Backend>(&self, device: &B::Device, seed: u64) -> Result<Rwkv<B>> {
        self.validate()?;
        let mut src = RandomizedInit {
            rng: SplitMix64::new(seed),
        };
        Ok(self.build(device, &mut src))
    }

    fn build<B: Backend>(&self, device: &B::Device, src: &mut dyn Source) -> Rwkv<B> {
        let (v, c, f, eps) = (
            self.vocab_size,
            self.d_model,
            self.d_ffn,
            self.layer_norm_eps,
        );
        let emb = Embedding {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(src.embedding(v * c), [v, c]),
                crate::float_opts::<B>(device),
            )),
        };
        let ln = |src: &mut dyn Source, layer: usize| {
            let g = src.vector("ln.gamma", layer, c);
            let b = src.vector("ln.beta", layer, c);
            layer_norm::<B>(c, eps, g, b, device)
        };
        let blocks = (0..self.n_layers)
            .map(|l| {
                let ln0 = (l == 0 && self.variant.ln0).then(|| ln(src, l));
                let ln1 = ln(src, l);
                let ln2 = ln(src, l);
                let att = TimeMix {
                    time_mix_k: vector(src.vector("att.time_mix_k", l, c), device),
                    time_mix_v: vector(src.vector("att.time_mix_v", l, c), device),
                    time_mix_r: vector(src.vector("att.time_mix_r", l, c), device),
                    time_decay: vector(src.vector("att.time_decay", l, c), device),
                    time_first: vector(src.vector("att.time_first", l, c), device),
                    key: linear(c, c, src.matrix("att.key", c, c), device),
                    value: linear(c, c, src.matrix("att.value", c, c), device),
                    receptance: linear(c, c, src.matrix("att.receptance", c, c), device),
                    output: linear(c, c, src.matrix("att.output", c, c), device),
                    variant: self.variant.clone(),
                };
                let ffn = ChannelMix {
                    time_mix_k: vector(src.vector("ffn.time_mix_k", l, c), device),
                    time_mix_r: vector(src.vector("ffn.time_mix_r", l, c), device),
                    key: linear(c, f, src.matrix("ffn.key", c, f), device),
                    receptance: linear(c, c, src.matrix("ffn.receptance", c, c), device),
                    value: linear(f, c, src.matrix("ffn.value", f, c), device),
                    variant: self.variant.clone(),
                };
                Block {
                    ln0,
                    ln1,
                    ln2,
                    att,
                    ffn,
                }
            })
            .collect();
        let ln_out = ln(src, self.n_layers);
        let head = linear(c, v, src.matrix("head", c, v), device);
        Rwkv {
            emb,
            blocks,
            ln_out,
            head,
            config: self.clone(),
        }
    }
}

/// Checks a token tensor's shape against an expected `[B, T]` (used by callers that build
/// tokens from user input).
pub fn check_tokens_shape(expected: [usize; 2], got: [usize; 2]) -> Result<()> {
    check_shape("tokens", &expected, &got)
}
