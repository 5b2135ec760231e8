//! The decoder: embeddings, pre-LayerNorm blocks of causal self-attention and a GELU MLP,
//! final LayerNorm and an untied head. Parameter names follow GPT-2 (`wte`, `wpe`,
//! `blocks.N.ln1`, `attn`, `ln2`, `mlp.fc`, `mlp.proj`, `ln_f`) so that loading a
//! checkpoint would be a short remap table.

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use crate::cache::{KvCache, LayerKv};
use crate::config::TransformerConfig;
use crate::error::{Result, TransformerError};
use lab_util::SplitMix64;

/// How attention weights are computed; both give the same numbers (tests check it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionPath {
    /// Materialise the scores `[B, H, T_q, T_k]`, fill masked (future) positions with −∞,
    /// softmax over keys (max-shifted, a true division), multiply by V. Memory O(T²) per
    /// head: the textbook baseline whose cost the scaling experiments measure.
    Explicit,
    /// Burn's `burn::tensor::module::attention`: the backend's fused kernel where it has one
    /// (flash attention on the CubeCL backends when autotune picks it; flex's own kernel),
    /// otherwise Burn's `attention_fallback`, which is the same sequence of ops as
    /// [`Explicit`](Self::Explicit) (ndarray and autodiff use the fallback, so there the two
    /// paths agree exactly).
    #[default]
    Fused,
}

/// Causal multi-head self-attention. Q, K, V and O projections carry a bias (GPT-2 and
/// GPT-NeoX/Pythia do, and those are the transformers the RWKV paper compares against).
#[derive(Module, Debug)]
pub struct CausalSelfAttention<B: Backend> {
    /// `W_q`, d → d, with bias.
    pub query: Linear<B>,
    /// `W_k`, d → d, with bias.
    pub key: Linear<B>,
    /// `W_v`, d → d, with bias.
    pub value: Linear<B>,
    /// `W_o`, d → d, with bias (a residual projection: smaller init).
    pub output: Linear<B>,
    /// Number of heads H.
    #[module(skip)]
    pub n_heads: usize,
}

/// The position-wise MLP `proj(gelu(fc(x)))`, GELU in its exact erf form (GPT-2's code
/// uses the tanh approximation, within 1e-3 of it; the erf form is Burn's `gelu`).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Up projection d → F, with bias.
    pub fc: Linear<B>,
    /// Down projection F → d, with bias (a residual projection: smaller init).
    pub proj: Linear<B>,
}

/// One pre-LayerNorm block: `x += attn(ln1(x)); x += mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// LayerNorm before attention.
    pub ln1: LayerNorm<B>,
    /// Causal self-attention.
    pub attn: CausalSelfAttention<B>,
    /// LayerNorm before the MLP.
    pub ln2: LayerNorm<B>,
    /// The MLP.
    pub mlp: Mlp<B>,
    /// The LayerNorms' epsilon (`TransformerConfig::layer_norm_eps`; Burn keeps its own
    /// private).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

/// The baseline GPT-style decoder.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Token embedding `[V, d]`.
    pub wte: Embedding<B>,
    /// Learned positional embedding `[max_positions, d]`; row p is added at position p.
    pub wpe: Param<Tensor<B, 2>>,
    /// The blocks.
    pub blocks: Vec<Block<B>>,
    /// Final LayerNorm.
    pub ln_f: LayerNorm<B>,
    /// Output projection d → V, no bias, untied from `wte` (as RWKV-4's head).
    pub head: Linear<B>,
    /// The configuration it was built from.
    #[module(skip)]
    pub config: TransformerConfig,
}

/// `[B, T, H·d_head]` → `[B, H, T, d_head]`.
fn split_heads<B: Backend>(x: Tensor<B, 3>, n_heads: usize) -> Tensor<B, 4> {
    let [batch, time, d_model] = x.dims();
    x.reshape([batch, time, n_heads, d_model / n_heads])
        .swap_dims(1, 2)
}

/// `[B, H, T, d_head]` → `[B, T, H·d_head]`.
fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, n_heads, time, d_head] = x.dims();
    x.swap_dims(1, 2).reshape([batch, time, n_heads * d_head])
}

/// Mask of the future, `true` where key position `j` lies after query position `past + i`.
///
/// # Shapes
/// - returns `[B, H, T_q, past + T_q]`
fn future_mask<B: Backend>(
    [batch, n_heads, t_q]: [usize; 3],
    past: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    // `tril_mask(shape, offset)` is true strictly above the diagonal shifted by `offset`:
    // exactly the keys j > i + past.
    Tensor::<B, 2, Bool>::tril_mask([t_q, past + t_q], past as i64, device)
        .reshape([1, 1, t_q, past + t_q])
        .expand([batch, n_heads, t_q, past + t_q])
}

/// `softmax(q kᵀ / √d_head + mask) v` with the scores materialised.
///
/// # Shapes
/// - `q`: `[B, H, T_q, d_head]`; `k`, `v`: `[B, H, past + T_q, d_head]`;
///   returns `[B, H, T_q, d_head]`
fn explicit_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    past: usize,
) -> Tensor<B, 4> {
    let [batch, n_heads, t_q, d_head] = q.dims();
    // The scale as Burn's fused op computes it (an f64 scalar cast to the element type),
    // multiplied rather than divided so both paths round alike.
    let scale = 1.0 / (d_head as f64).sqrt();
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    // A single query at the end of the cache may see every key: no mask needed.
    let scores = if t_q > 1 {
        let mask = future_mask::<B>([batch, n_heads, t_q], past, &scores.device());
        scores.mask_fill(mask, f64::NEG_INFINITY)
    } else {
        scores
    };
    // Every row keeps its diagonal, so the max is finite and the sum ≥ 1: no NaN.
    // True divisions only, also in the gradient (see `lab_util::div`).
    let max = scores.clone().max_dim(3).detach();
    let e = (scores - max).exp();
    let weights = lab_util::div(e.clone(), e.sum_dim(3));
    weights.matmul(v)
}

/// Burn's fused attention. Its `is_causal` aligns the diagonal at the bottom-right corner
/// (key j is hidden from query i when `j > i + T_k − T_q`, see burn-backend's
/// `attention_fallback`), but that convention is only relied on where it cannot differ
/// from top-left alignment (`T_q = T_k`): a single query after a cache needs no mask, and
/// several queries after a cache get an explicit boolean mask.
///
/// # Shapes
/// As [`explicit_attention`].
fn fused_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    past: usize,
) -> Tensor<B, 4> {
    let [batch, n_heads, t_q, _] = q.dims();
    let options = AttentionModuleOptions::default(); // scale 1/√d_head, no softcap
    if past == 0 {
        let causal = AttentionModuleOptions {
            is_causal: true,
            ..options
        };
        attention(q, k, v, None, None, causal)
    } else if t_q == 1 {
        attention(q, k, v, None, None, options)
    } else {
        let mask = future_mask::<B>([batch, n_heads, t_q], past, &q.device());
        attention(q, k, v, Some(mask), None, options)
    }
}

impl<B: Backend> CausalSelfAttention<B> {
    /// Attends from the new positions to the cached ones and themselves.
    ///
    /// # Shapes
    /// - `x`: `[B, T, d]` (the LN1 output of positions `past..past + T`)
    /// - `past`: keys and values `[B, H, past, d_head]` of earlier positions, or `None`
    /// - returns `[B, T, d]` and the keys and values `[B, H, past + T, d_head]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        past: Option<LayerKv<B>>,
        path: AttentionPath,
    ) -> (Tensor<B, 3>, LayerKv<B>) {
        let q = split_heads(lab_util::linear(&self.query, x.clone()), self.n_heads);
        let k = split_heads(lab_util::linear(&self.key, x.clone()), self.n_heads);
        let v = split_heads(lab_util::linear(&self.value, x), self.n_heads);
        let (k, v, past_len) = match past {
            Some(p) => {
                let past_len = p.key.dims()[2];
                (
                    Tensor::cat(vec![p.key, k], 2),
                    Tensor::cat(vec![p.value, v], 2),
                    past_len,
                )
            }
            None => (k, v, 0),
        };
        let y = match path {
            AttentionPath::Explicit => explicit_attention(q, k.clone(), v.clone(), past_len),
            AttentionPath::Fused => fused_attention(q, k.clone(), v.clone(), past_len),
        };
        (
            lab_util::linear(&self.output, merge_heads(y)),
            LayerKv { key: k, value: v },
        )
    }
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - `x`: `[B, T, d]`; returns `[B, T, d]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // Burn's GELU is x·(1 + erf(x/√2))/2 with f64 constants; ndarray evaluates erf in
        // f64 (libm), so it stays exact in f64 (unlike `activation::sigmoid`, which casts).
        lab_util::linear(&self.proj, gelu(lab_util::linear(&self.fc, x)))
    }
}

impl<B: Backend> Block<B> {
    /// # Shapes
    /// - `x`: `[B, T, d]` (residual stream at positions `past..past + T`);
    ///   `past`: `[B, H, past, d_head]` each, or `None`
    /// - returns `[B, T, d]` and this layer's keys and values `[B, H, past + T, d_head]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        past: Option<LayerKv<B>>,
        path: AttentionPath,
    ) -> (Tensor<B, 3>, LayerKv<B>) {
        let eps = self.layer_norm_eps;
        let (att, kv) =
            self.attn
                .forward(lab_util::layer_norm(&self.ln1, x.clone(), eps), past, path);
        let x = x + att;
        let x = x.clone() + self.mlp.forward(lab_util::layer_norm(&self.ln2, x, eps));
        (x, kv)
    }
}

impl<B: Backend> Transformer<B> {
    /// Logits of every position of whole sequences (training and evaluation).
    ///
    /// # Shapes
    /// - `tokens`: `[B, T]` with `1 ≤ T ≤ max_positions`; returns logits `[B, T, V]`
    ///
    /// # Errors
    /// `T = 0`, `B = 0`, `T > max_positions`, an id outside `0..V`.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, path: AttentionPath) -> Result<Tensor<B, 3>> {
        Ok(self.run(tokens, None, path)?.0)
    }

    /// As [`forward`](Self::forward), and also returns the KV cache of all T positions,
    /// ready for [`step`](Self::step).
    ///
    /// # Shapes
    /// - `tokens`: `[B, T]`; returns logits `[B, T, V]` and a cache of length T
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn prefill(
        &self,
        tokens: Tensor<B, 2, Int>,
        path: AttentionPath,
    ) -> Result<(Tensor<B, 3>, KvCache<B>)> {
        let [batch, time] = tokens.dims();
        let (logits, layers) = self.run(tokens, None, path)?;
        Ok((
            logits,
            KvCache {
                layers,
                batch,
                len: time,
            },
        ))
    }

    /// Runs T new tokens per batch row at positions `cache.len()..cache.len() + T`,
    /// attending to the cache, and appends them to it (chunked prefill; [`step`](Self::step)
    /// is the case T = 1).
    ///
    /// # Shapes
    /// - `tokens`: `[B, T]`; `cache`: batch B, length t; returns logits `[B, T, V]`,
    ///   the cache then has length t + T
    ///
    /// # Errors
    /// As [`forward`](Self::forward), with `t + T > max_positions` reported as
    /// [`TransformerError::CacheFull`] when t = max_positions and
    /// [`TransformerError::SequenceTooLong`] otherwise; a cache of another batch size or
    /// model shape. On error `cache` is unchanged.
    pub fn extend(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
        path: AttentionPath,
    ) -> Result<Tensor<B, 3>> {
        let [_, time] = tokens.dims();
        let (logits, layers) = self.run(tokens, Some(cache), path)?;
        cache.layers = layers;
        cache.len += time;
        Ok(logits)
    }

    /// Token-by-token decoding: one new token per batch row at position `cache.len()`,
    /// appended to `cache`; uses [`AttentionPath::Fused`].
    ///
    /// # Shapes
    /// - `tokens`: `[B]`; returns logits `[B, V]`
    ///
    /// # Errors
    /// `B = 0`, an id outside `0..V`, a full cache (`cache.len() = max_positions`), a cache
    /// of another batch size or model shape. On error `cache` is unchanged.
    pub fn step(&self, tokens: Tensor<B, 1, Int>, cache: &mut KvCache<B>) -> Result<Tensor<B, 2>> {
        self.step_with(tokens, cache, AttentionPath::Fused)
    }

    /// [`step`](Self::step) with a chosen attention path.
    ///
    /// # Shapes
    /// - `tokens`: `[B]`; returns logits `[B, V]`
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn step_with(
        &self,
        tokens: Tensor<B, 1, Int>,
        cache: &mut KvCache<B>,
        path: AttentionPath,
    ) -> Result<Tensor<B, 2>> {
        let [batch] = tokens.dims();
        let logits = self.extend(tokens.unsqueeze_dim(1), cache, path)?;
        Ok(logits.reshape([batch, self.config.vocab_size]))
    }

    /// An empty cache for `batch` sequences (decoding can start with [`step`](Self::step)).
    pub fn empty_cache(&self, batch: usize) -> KvCache<B> {
        KvCache::empty(batch)
    }

    /// Number of parameters actually held (equals [`TransformerConfig::num_params`]).
    pub fn num_params(&self) -> usize {
        Module::num_params(self)
    }

    /// Shared body of every entry point: validates, then runs the new tokens after the
    /// cached positions, returning the logits and each layer's full keys and values.
    ///
    /// # Shapes
    /// - `tokens`: `[B, T]`; returns `[B, T, V]` and per layer `[B, H, past + T, d_head]`
    fn run(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: Option<&KvCache<B>>,
        path: AttentionPath,
    ) -> Result<(Tensor<B, 3>, Vec<LayerKv<B>>)> {
        let [batch, time] = tokens.dims();
        let d_model = self.config.d_model;
        if batch == 0 {
            return Err(TransformerError::EmptyBatch);
        }
        if time == 0 {
            return Err(TransformerError::EmptySequence);
        }
        let past = match cache {
            Some(c) => {
                self.check_cache(c, batch)?;
                c.len
            }
            None => 0,
        };
        let max_positions = self.config.max_positions;
        if past >= max_positions {
            return Err(TransformerError::CacheFull { max_positions });
        }
        if past + time > max_positions {
            return Err(TransformerError::SequenceTooLong {
                len: past + time,
                max_positions,
            });
        }
        self.check_ids(&tokens, past)?;

        let pos = self
            .wpe
            .val()
            .slice([past..past + time, 0..d_model])
            .reshape([1, time, d_model]);
        let mut x = self.wte.forward(tokens) + pos;
        let mut past_layers = cache
            .map(|c| c.layers.clone())
            .unwrap_or_default()
            .into_iter();
        let mut layers = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (y, kv) = block.forward(x, past_layers.next(), path);
            x = y;
            layers.push(kv);
        }
        let x = lab_util::layer_norm(&self.ln_f, x, self.config.layer_norm_eps);
        Ok((lab_util::linear(&self.head, x), layers))
    }

    /// A non-empty cache must come from a model of this shape and match the batch.
    fn check_cache(&self, cache: &KvCache<B>, batch: usize) -> Result<()> {
        if cache.batch != batch {
            return Err(TransformerError::CacheBatchMismatch {
                cache: cache.batch,
                tokens: batch,
            });
        }
        if cache.len == 0 {
            return Ok(());
        }
        let c = &self.config;
        let mismatch = |what, expected, got| {
            if expected == got {
                Ok(())
            } else {
                Err(TransformerError::CacheMismatch {
                    what,
                    expected,
                    got,
                })
            }
        };
        mismatch("number of layers", c.n_layers, cache.layers.len())?;
        for kv in &cache.layers {
            for t in [&kv.key, &kv.value] {
                let [b, h, len, d_head] = t.dims();
                mismatch("batch size", batch, b)?;
                mismatch("number of heads", c.n_heads, h)?;
                mismatch("length", cache.len, len)?;
                mismatch("head width", c.d_head(), d_head)?;
            }
        }
        Ok(())
    }

    /// Checks `0 ≤ id < V` with one host read of the ids; `past` offsets the reported
    /// position.
    fn check_ids(&self, tokens: &Tensor<B, 2, Int>, past: usize) -> Result<()> {
        let [_, time] = tokens.dims();
        let vocab_size = self.config.vocab_size;
        let ids: Vec<i64> = tokens
            .to_data()
            .convert::<i64>()
            .into_vec()
            .unwrap_or_default();
        if let Some((i, &token)) = ids
            .iter()
            .enumerate()
            .find(|(_, t)| **t < 0 || **t as u64 >= vocab_size as u64)
        {
            return Err(TransformerError::TokenOutOfRange {
                token,
                batch: i / time,
                position: past + i % time,
                vocab_size,
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Construction

/// What a parameter is, for an initialisation scheme.
#[derive(Debug, Clone, Copy)]
enum ParamKind {
    /// Token embedding rows.
    TokenEmbedding,
    /// Positional embedding rows.
    PositionEmbedding,
    /// A projection weight with `d_in` inputs; `residual` for those writing into the
    /// residual stream (attention output, MLP down projection).
    Weight { d_in: usize, residual: bool },
    /// A projection bias.
    Bias,
    /// LayerNorm scale (gamma).
    LnScale,
    /// LayerNorm shift (beta).
    LnShift,
}

/// Values of `n` parameters of a kind, drawn in a fixed order.
trait InitScheme {
    fn values(&mut self, kind: ParamKind, n: usize) -> Vec<f64>;
}

/// GPT-2 initialisation (Radford et al. 2019; nanoGPT): every weight and embedding
/// N(0, 0.02²), residual projections N(0, (0.02/√(2L))²), biases 0, LayerNorm 1 and 0.
struct Gpt2Init {
    rng: SplitMix64,
    n_layers: usize,
}

impl InitScheme for Gpt2Init {
    fn values(&mut self, kind: ParamKind, n: usize) -> Vec<f64> {
        const STD: f64 = 0.02;
        let std = match kind {
            ParamKind::Bias | ParamKind::LnShift => return vec![0.0; n],
            ParamKind::LnScale => return vec![1.0; n],
            // Each block adds two residual branches: scaling keeps the stream's variance
            // independent of depth at init.
            ParamKind::Weight { residual: true, .. } => STD / (2.0 * self.n_layers as f64).sqrt(),
            _ => STD,
        };
        self.rng.fill(n, |r| r.normal() * std)
    }
}

/// Every parameter random and away from special values (no zero biases, no unit
/// LayerNorm scales), so that equivalence tests exercise every term.
struct RandomizedInit {
    rng: SplitMix64,
}

impl InitScheme for RandomizedInit {
    fn values(&mut self, kind: ParamKind, n: usize) -> Vec<f64> {
        match kind {
            ParamKind::TokenEmbedding => self.rng.fill(n, |r| r.normal()),
            ParamKind::PositionEmbedding => self.rng.fill(n, |r| 0.5 * r.normal()),
            ParamKind::Weight { d_in, .. } => {
                let a = (3.0 / d_in as f64).sqrt(); // unit-variance outputs for unit inputs
                self.rng.fill(n, |r| r.range(-a, a))
            }
            ParamKind::Bias | ParamKind::LnShift => self.rng.fill(n, |r| r.range(-0.3, 0.3)),
            ParamKind::LnScale => self.rng.fill(n, |r| r.range(0.5, 1.5)),
        }
    }
}

/// A tensor in the backend's own float type (see [`lab_util::float_opts`]).
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

impl TransformerConfig {
    /// Builds the model with the GPT-2 initialisation, seed 0.
    ///
    /// # Errors
    /// An invalid config (see [`TransformerConfig::validate`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Transformer<B>> {
        self.init_with_seed(device, 0)
    }

    /// Builds the model with the GPT-2 initialisation: weights and embeddings N(0, 0.02²),
    /// residual projections (attention output, MLP down) N(0, (0.02/√(2L))²), biases 0,
    /// LayerNorm scale 1 and shift 0. Values are generated on the host (SplitMix64), so a
    /// seed gives bit-identical parameters on every backend.
    ///
    /// # Errors
    /// An invalid config.
    pub fn init_with_seed<B: Backend>(
        &self,
        device: &B::Device,
        seed: u64,
    ) -> Result<Transformer<B>> {
        self.build(
            device,
            &mut Gpt2Init {
                rng: SplitMix64::new(seed),
                n_layers: self.n_layers,
            },
        )
    }

    /// Builds a model whose every parameter is random (for equivalence tests): embeddings
    /// N(0, 1) (positions N(0, 0.25)), unit-variance projections, biases and LayerNorm
    /// shifts in [-0.3, 0.3], LayerNorm scales in [0.5, 1.5].
    ///
    /// # Errors
    /// An invalid config.
    pub fn init_randomized<B: Backend>(
        &self,
        device: &B::Device,
        seed: u64,
    ) -> Result<Transformer<B>> {
        self.build(
            device,
            &mut RandomizedInit {
                rng: SplitMix64::new(seed),
            },
        )
    }

    /// Draws every parameter from `init` in a fixed order (wte, wpe, each block's ln1, q,
    /// k, v, o, ln2, fc, proj with weight before bias, ln_f, head), then assembles the
    /// modules with the tensors created in the backend's own float type: burn-nn's
    /// `Config::init` would create them in the device's default dtype, which NdArray<f32>
    /// and NdArray<f64> share.
    fn build<B: Backend>(
        &self,
        device: &B::Device,
        init: &mut dyn InitScheme,
    ) -> Result<Transformer<B>> {
        self.validate()?;
        let (v, d, f, p) = (self.vocab_size, self.d_model, self.d_ff, self.max_positions);
        let eps = self.layer_norm_eps;

        let wte = Embedding {
            weight: Param::from_tensor(tensor_of(
                init.values(ParamKind::TokenEmbedding, v * d),
                [v, d],
                device,
            )),
        };
        let wpe = Param::from_tensor(tensor_of(
            init.values(ParamKind::PositionEmbedding, p * d),
            [p, d],
            device,
        ));
        let layer_norm = |init: &mut dyn InitScheme| {
            let mut ln = LayerNormConfig::new(d).with_epsilon(eps).init::<B>(device);
            ln.gamma =
                Param::from_tensor(tensor_of(init.values(ParamKind::LnScale, d), [d], device));
            ln.beta = Some(Param::from_tensor(tensor_of(
                init.values(ParamKind::LnShift, d),
                [d],
                device,
            )));
            ln
        };
        let linear =
            |init: &mut dyn InitScheme, d_in: usize, d_out: usize, residual: bool, bias: bool| {
                let weight = init.values(ParamKind::Weight { d_in, residual }, d_in * d_out);
                Linear {
                    weight: Param::from_tensor(tensor_of(weight, [d_in, d_out], device)),
                    bias: bias.then(|| {
                        Param::from_tensor(tensor_of(
                            init.values(ParamKind::Bias, d_out),
                            [d_out],
                            device,
                        ))
                    }),
                }
            };
        let mut blocks = Vec::with_capacity(self.n_layers);
        for _ in 0..self.n_layers {
            let ln1 = layer_norm(init);
            let attn = CausalSelfAttention {
                query: linear(init, d, d, false, true),
                key: linear(init, d, d, false, true),
                value: linear(init, d, d, false, true),
                output: linear(init, d, d, true, true),
                n_heads: self.n_heads,
            };
            let ln2 = layer_norm(init);
            let mlp = Mlp {
                fc: linear(init, d, f, false, true),
                proj: linear(init, f, d, true, true),
            };
            blocks.push(Block {
                layer_norm_eps: eps,
                ln1,
                attn,
                ln2,
                mlp,
            });
        }
        let ln_f = layer_norm(init);
        let head = linear(init, d, v, false, false);
        Ok(Transformer {
            wte,
            wpe,
            blocks,
            ln_f,
            head,
            config: self.clone(),
        })
    }
}
