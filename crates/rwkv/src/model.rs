//! The RWKV-4 modules. Field names mirror the BlinkDL checkpoint keys (`emb`,
//! `blocks.N.ln0/ln1/ln2`, `att.time_mix_k`, `att.time_decay`, `att.key`, `ffn.value`, …,
//! `ln_out`, `head`); the keys themselves, shapes and construction order come from the
//! parameter table in [`crate::params`].

use std::collections::HashMap;

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::config::{Activation, Bonus, Decay, RwkvConfig, Variant};
use crate::error::{Result, RwkvError};
use crate::params::{BlockParam, ParamShape, ParamSource, ParamSpec, RwkvParam};
use crate::state::{LayerState, RwkvState};
use crate::wkv::{self, WkvBackend, WkvMode, WkvState};

/// Time mixing (paper eq. 11–13, 16, 17; docs/design.md §2): token shift, R/K/V projections, WKV, gated output.
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

/// Channel mixing (paper eq. 14, 15, 18; docs/design.md §2): token shift, squared-ReLU MLP, receptance gate.
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
    /// The LayerNorms' epsilon (`RwkvConfig::layer_norm_eps`; Burn keeps its own private).
    #[module(skip)]
    pub layer_norm_eps: f64,
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
///
/// Without autodiff (inference: prefill, RNN steps, `verify`) there is no gradient to
/// protect, and one side does: `1/(1+e^{-x})` for every x, 4 element-wise passes instead of
/// 14 (docs/design.md §15). For x < 0 its relative error is the same few ulp as the other
/// side's; `e^{-x}` overflows to +∞ only where σ(x) is below 1e-38 (f32) or 1e-308 (f64),
/// and gives 0 there.
///
/// A backend whose own sigmoid is this two-sided form in the tensor's dtype
/// ([`WkvBackend::native_sigmoid`]: flex) runs that instead, with or without autodiff: one
/// fused pass forward, and Burn's node `g·σ·(1−σ)` backward (the standard derivative;
/// where σ rounds to 1 its `1−σ` is 0, an absolute error below `ulp(1)·|g|` against the
/// true `e^{-x}σ²`).
pub fn sigmoid<B: WkvBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if B::native_sigmoid() {
        return burn::tensor::activation::sigmoid(x);
    }
    if !B::ad_enabled(&x.device()) {
        let e = x.neg().exp();
        return e.ones_like() / (e + 1.0);
    }
    let e_pos = x.clone().clamp_min(-1.0).neg().exp(); // e^{-x}, used for x >= 0
    // true divisions only, also in the gradient (see `lab_util::div`)
    let positive = e_pos.ones_like() / (e_pos + 1.0);
    let e_neg = x.clone().clamp_max(1.0).exp(); // e^{x}, used for x < 0
    let negative = lab_util::div(e_neg.clone(), e_neg + 1.0);
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

/// Token-shift mixing `z·μ + z'·(1−μ)`, written `z' + d·μ` with `d = z − z'` computed once
/// per block ([`Shifted`]): 2 element-wise passes per mix instead of 4, and as many fewer in
/// the backward. The two forms agree to f32 rounding (one rounding each side of the sum).
fn mix<B: Backend>(
    z: &Tensor<B, 3>,
    shifted: &Shifted<B>,
    mu: &Param<Tensor<B, 1>>,
) -> Tensor<B, 3> {
    match shifted {
        Shifted::On { prev, diff } => {
            let [channels] = mu.dims();
            prev.clone() + diff.clone() * mu.val().reshape([1, 1, channels])
        }
        Shifted::Off => z.clone(),
    }
}

/// The shifted sequence `z'` and the difference `z − z'`, shared by a block's mixes; `Off`
/// when token shift is off (nothing is computed).
enum Shifted<B: Backend> {
    On {
        prev: Tensor<B, 3>,
        diff: Tensor<B, 3>,
    },
    Off,
}

impl<B: Backend> Shifted<B> {
    fn new(on: bool, z: &Tensor<B, 3>, shift_state: Tensor<B, 2>) -> Self {
        if !on {
            return Shifted::Off;
        }
        let prev = shift(z, shift_state);
        let diff = z.clone() - prev.clone();
        Shifted::On { prev, diff }
    }
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
        let shifted = Shifted::new(self.variant.token_shift, &z, shift_state);
        let k = crate::matmul::linear(&self.key, mix(&z, &shifted, &self.time_mix_k));
        let v = crate::matmul::linear(&self.value, mix(&z, &shifted, &self.time_mix_v));
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
            let r = crate::matmul::linear(&self.receptance, mix(&z, &shifted, &self.time_mix_r));
            sigmoid(r) * y
        } else {
            y
        };
        Ok((
            crate::matmul::linear(&self.output, gated),
            last(&z),
            wkv_state,
        ))
    }
}

impl<B: WkvBackend> ChannelMix<B> {
    /// # Shapes
    /// - `z`: `[B, T, C]` (the LN2 output); `shift_state`: `[B, C]`; returns `[B, T, C]`
    pub fn forward(
        &self,
        z: Tensor<B, 3>,
        shift_state: Tensor<B, 2>,
    ) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let shifted = Shifted::new(self.variant.token_shift, &z, shift_state);
        let k = crate::matmul::linear(&self.key, mix(&z, &shifted, &self.time_mix_k));
        let hidden = match self.variant.ffn_activation {
            Activation::SquaredRelu => relu(k).square(),
            Activation::Relu => relu(k),
            Activation::Gelu => gelu(k),
            Activation::Silu => k.clone() * sigmoid(k),
        };
        let kv = crate::matmul::linear(&self.value, hidden);
        let out = if self.variant.receptance_gate {
            sigmoid(crate::matmul::linear(
                &self.receptance,
                mix(&z, &shifted, &self.time_mix_r),
            )) * kv
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
            Some(ln0) => crate::norm::layer_norm(ln0, x, self.layer_norm_eps),
            None => x,
        };
        let (att, att_shift, wkv) = self.att.forward(
            crate::norm::layer_norm(&self.ln1, x.clone(), self.layer_norm_eps),
            state.att_shift,
            state.wkv,
            mode,
        )?;
        let x = x + att;
        let (ffn, ffn_shift) = self.ffn.forward(
            crate::norm::layer_norm(&self.ln2, x.clone(), self.layer_norm_eps),
            state.ffn_shift,
        );
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
        mode.validate()?;
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
            crate::matmul::linear(
                &self.head,
                crate::norm::layer_norm(&self.ln_out, x, self.config.layer_norm_eps),
            ),
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
        self.step_with(tokens, state, WkvMode::Recurrent)
    }

    /// [`Rwkv::step`] with the WKV operator of the one token in formulation `mode` (the
    /// same values to f32 rounding): `WkvMode::Scan` runs it as one fused kernel (on the
    /// CubeCL backends one device launch instead of the recurrence's ~25 element-wise
    /// operations), which `compare-backends` measures as the `model-scan` decode engine.
    ///
    /// # Errors
    /// As [`Rwkv::step`].
    pub fn step_with(
        &self,
        tokens: Tensor<B, 1, Int>,
        state: &mut RwkvState<B>,
        mode: WkvMode,
    ) -> Result<Tensor<B, 2>> {
        let [batch] = tokens.dims();
        state.check(self.blocks.len(), batch, self.config.d_model)?;
        let (logits, next) = self.forward(tokens.unsqueeze_dim(1), Some(state.clone()), mode)?;
        *state = next;
        Ok(logits.reshape([batch, self.config.vocab_size]))
    }

    /// Checks the ids with [`RwkvConfig::check_tokens`] (one host read).
    fn check_tokens(&self, tokens: &Tensor<B, 2, Int>) -> Result<()> {
        let ids: Vec<i64> = tokens
            .to_data()
            .convert::<i64>()
            .into_vec()
            .unwrap_or_default();
        self.config.check_tokens(&ids, tokens.dims())
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

    /// Every parameter of the table ([`RwkvConfig::params`], same order) with its values as
    /// host data in the model's layout (`Linear` weights `[d_in, d_out]`, vectors `[C]`).
    pub fn named_params(&self) -> Vec<(ParamSpec, TensorData)> {
        self.config
            .params()
            .into_iter()
            .filter_map(|spec| {
                let data = self.param_data(spec.param)?;
                Some((spec, data))
            })
            .collect()
    }

    /// The values of one table entry (`None` for a parameter this model does not have).
    fn param_data(&self, param: RwkvParam) -> Option<TensorData> {
        use BlockParam as P;
        let vector = |p: &Param<Tensor<B, 1>>| p.val().into_data();
        let linear = |l: &Linear<B>| l.weight.val().into_data();
        let ln_bias = |ln: &LayerNorm<B>| ln.beta.as_ref().map(vector);
        Some(match param {
            RwkvParam::Embedding => self.emb.weight.val().into_data(),
            RwkvParam::LnOutWeight => vector(&self.ln_out.gamma),
            RwkvParam::LnOutBias => ln_bias(&self.ln_out)?,
            RwkvParam::Head => linear(&self.head),
            RwkvParam::Block { layer, param } => {
                let b = self.blocks.get(layer)?;
                let (att, ffn) = (&b.att, &b.ffn);
                match param {
                    P::Ln0Weight => vector(&b.ln0.as_ref()?.gamma),
                    P::Ln0Bias => ln_bias(b.ln0.as_ref()?)?,
                    P::Ln1Weight => vector(&b.ln1.gamma),
                    P::Ln1Bias => ln_bias(&b.ln1)?,
                    P::Ln2Weight => vector(&b.ln2.gamma),
                    P::Ln2Bias => ln_bias(&b.ln2)?,
                    P::AttMixK => vector(&att.time_mix_k),
                    P::AttMixV => vector(&att.time_mix_v),
                    P::AttMixR => vector(&att.time_mix_r),
                    P::AttDecay => vector(&att.time_decay),
                    P::AttFirst => vector(&att.time_first),
                    P::FfnMixK => vector(&ffn.time_mix_k),
                    P::FfnMixR => vector(&ffn.time_mix_r),
                    P::AttKey => linear(&att.key),
                    P::AttValue => linear(&att.value),
                    P::AttReceptance => linear(&att.receptance),
                    P::AttOutput => linear(&att.output),
                    P::FfnKey => linear(&ffn.key),
                    P::FfnReceptance => linear(&ffn.receptance),
                    P::FfnValue => linear(&ffn.value),
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------
// Construction from the parameter table

/// The values of every table entry, requested from a source in table order and then taken
/// by the module constructors (which build in module order, block by block).
struct Values<B: Backend> {
    vectors: HashMap<RwkvParam, Tensor<B, 1>>,
    matrices: HashMap<RwkvParam, Tensor<B, 2>>,
}

impl<B: Backend> Values<B> {
    /// Asks `src` for every entry of `config.params()` and checks each value count.
    fn request(config: &RwkvConfig, src: &mut dyn ParamSource, device: &B::Device) -> Result<Self> {
        let mut out = Self {
            vectors: HashMap::new(),
            matrices: HashMap::new(),
        };
        for spec in config.params() {
            let values = src.values(&spec)?;
            if values.len() != spec.shape.len() {
                return Err(RwkvError::Source {
                    reason: format!(
                        "{} values for {:?} ({} expected)",
                        values.len(),
                        spec.shape,
                        spec.shape.len()
                    ),
                    key: spec.key,
                });
            }
            let opts = || lab_util::float_opts::<B>(device);
            match spec.shape {
                ParamShape::Vector(n) => {
                    let data = TensorData::new(values, [n]);
                    out.vectors
                        .insert(spec.param, Tensor::from_data(data, opts()));
                }
                ParamShape::Linear { d_in: r, d_out: c }
                | ParamShape::Embedding {
                    vocab: r,
                    d_model: c,
                } => {
                    let data = TensorData::new(values, [r, c]);
                    out.matrices
                        .insert(spec.param, Tensor::from_data(data, opts()));
                }
            }
        }
        Ok(out)
    }

    fn missing(param: RwkvParam) -> RwkvError {
        RwkvError::Source {
            key: param.key(),
            reason: "not provided (not in the parameter table of this config)".into(),
        }
    }

    fn vector(&mut self, param: RwkvParam) -> Result<Param<Tensor<B, 1>>> {
        let t = self
            .vectors
            .remove(&param)
            .ok_or_else(|| Self::missing(param))?;
        Ok(Param::from_tensor(t))
    }

    fn linear(&mut self, param: RwkvParam) -> Result<Linear<B>> {
        let t = self
            .matrices
            .remove(&param)
            .ok_or_else(|| Self::missing(param))?;
        Ok(Linear {
            weight: Param::from_tensor(t),
            bias: None,
        })
    }

    fn layer_norm(
        &mut self,
        config: &RwkvConfig,
        weight: RwkvParam,
        bias: RwkvParam,
        device: &B::Device,
    ) -> Result<LayerNorm<B>> {
        let mut ln = LayerNormConfig::new(config.d_model)
            .with_epsilon(config.layer_norm_eps)
            .init::<B>(device);
        ln.gamma = self.vector(weight)?;
        ln.beta = Some(self.vector(bias)?);
        Ok(ln)
    }
}

impl<B: Backend> Block<B> {
    /// Block `layer`, its parameters taken from `values`.
    fn build(
        config: &RwkvConfig,
        layer: usize,
        values: &mut Values<B>,
        device: &B::Device,
    ) -> Result<Self> {
        use BlockParam as P;
        let p = |param| RwkvParam::Block { layer, param };
        let ln0 = if layer == 0 && config.variant.ln0 {
            Some(values.layer_norm(config, p(P::Ln0Weight), p(P::Ln0Bias), device)?)
        } else {
            None
        };
        Ok(Block {
            layer_norm_eps: config.layer_norm_eps,
            ln0,
            ln1: values.layer_norm(config, p(P::Ln1Weight), p(P::Ln1Bias), device)?,
            ln2: values.layer_norm(config, p(P::Ln2Weight), p(P::Ln2Bias), device)?,
            att: TimeMix {
                time_mix_k: values.vector(p(P::AttMixK))?,
                time_mix_v: values.vector(p(P::AttMixV))?,
                time_mix_r: values.vector(p(P::AttMixR))?,
                time_decay: values.vector(p(P::AttDecay))?,
                time_first: values.vector(p(P::AttFirst))?,
                key: values.linear(p(P::AttKey))?,
                value: values.linear(p(P::AttValue))?,
                receptance: values.linear(p(P::AttReceptance))?,
                output: values.linear(p(P::AttOutput))?,
                variant: config.variant.clone(),
            },
            ffn: ChannelMix {
                time_mix_k: values.vector(p(P::FfnMixK))?,
                time_mix_r: values.vector(p(P::FfnMixR))?,
                key: values.linear(p(P::FfnKey))?,
                receptance: values.linear(p(P::FfnReceptance))?,
                value: values.linear(p(P::FfnValue))?,
                variant: config.variant.clone(),
            },
        })
    }
}

impl RwkvConfig {
    /// Builds the model with every value taken from `src` (an init scheme or a checkpoint),
    /// which is asked for each entry of [`RwkvConfig::params`] once, in table order.
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
        let mut values = Values::request(self, src, device)?;
        let emb = Embedding {
            weight: values.linear(RwkvParam::Embedding)?.weight,
        };
        let blocks = (0..self.n_layers)
            .map(|layer| Block::build(self, layer, &mut values, device))
            .collect::<Result<Vec<_>>>()?;
        let ln_out =
            values.layer_norm(self, RwkvParam::LnOutWeight, RwkvParam::LnOutBias, device)?;
        let head = values.linear(RwkvParam::Head)?;
        Ok(Rwkv {
            emb,
            blocks,
            ln_out,
            head,
            config: self.clone(),
        })
    }
}
