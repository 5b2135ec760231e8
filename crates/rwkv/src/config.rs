//! Model configuration, including the ablation switches of the paper's design choices.
//!
//! The default [`Variant`] is RWKV-4 exactly as in the paper and the reference code; every
//! ablation is a plain option here, never a fork of the model code.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::RwkvError;

/// How the channel-mix hidden activation is computed (paper eq. 18 uses squared ReLU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0)²`, RWKV-4.
    #[default]
    SquaredRelu,
    /// `max(x, 0)`.
    Relu,
    /// GELU (tanh-free, erf form).
    Gelu,
    /// `x · σ(x)`.
    Silu,
}

/// How the per-channel decay `w = -exp(time_decay)` is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// `time_decay` is a trained parameter (RWKV-4).
    #[default]
    Learned,
    /// `time_decay` keeps its initial value (no gradient flows into it).
    Fixed,
    /// No decay at all: `w = 0` (every past token keeps full weight).
    Off,
}

/// How the current-token bonus `u = time_first` is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bonus {
    /// `u` is a trained parameter (RWKV-4).
    #[default]
    Learned,
    /// `u = 0`: the current token is weighted `e^{k_t}`, with no separate bonus.
    Off,
}

/// Initial distribution of the token embedding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingInit {
    /// `U(-scale, scale)`; RWKV-4 uses 1e-4 ("small init embedding"; docs/design.md §8).
    SmallUniform {
        /// Half-width of the uniform distribution.
        scale: f64,
    },
    /// `N(0, std²)`.
    Normal {
        /// Standard deviation.
        std: f64,
    },
}

impl Default for EmbeddingInit {
    fn default() -> Self {
        EmbeddingInit::SmallUniform { scale: 1e-4 }
    }
}

/// The architecture switches that ablations flip. `Variant::default()` is RWKV-4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Variant {
    /// Token shift (paper eq. 11–15): mix each input with the previous token's.
    /// When off, `x_k = x_v = x_r = z_t`.
    pub token_shift: bool,
    /// Treatment of the bonus `u` given to the current token.
    pub bonus: Bonus,
    /// Treatment of the decay `w`.
    pub decay: Decay,
    /// Receptance gate `σ(r)` on time-mix and channel-mix outputs. When off, the gate is 1.
    pub receptance_gate: bool,
    /// Channel-mix activation.
    pub ffn_activation: Activation,
    /// Embedding initialisation.
    pub embedding_init: EmbeddingInit,
    /// Extra LayerNorm `ln0` right after the embedding (block 0 only; docs/design.md §8).
    pub ln0: bool,
}

impl Default for Variant {
    fn default() -> Self {
        Self {
            token_shift: true,
            bonus: Bonus::Learned,
            decay: Decay::Learned,
            receptance_gate: true,
            ffn_activation: Activation::SquaredRelu,
            embedding_init: EmbeddingInit::default(),
            ln0: true,
        }
    }
}

/// Configuration of an RWKV-4 language model.
#[derive(Config, Debug, PartialEq)]
pub struct RwkvConfig {
    /// Vocabulary size V (rows of `emb`, outputs of `head`).
    pub vocab_size: usize,
    /// Model width C (`d_model`).
    pub d_model: usize,
    /// Number of blocks L.
    pub n_layers: usize,
    /// Channel-mix hidden width F (RWKV-4: 4C).
    pub d_ffn: usize,
    /// LayerNorm epsilon (RWKV-4: 1e-5).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// Architecture switches (default: RWKV-4 as published).
    #[config(default = "Variant::default()")]
    pub variant: Variant,
}

impl RwkvConfig {
    /// RWKV-4 with `d_ffn = 4 · d_model`.
    pub fn rwkv4(vocab_size: usize, d_model: usize, n_layers: usize) -> Self {
        Self::new(vocab_size, d_model, n_layers, 4 * d_model)
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> crate::error::Result<()> {
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(RwkvError::Config {
                    field,
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("vocab_size", self.vocab_size)?;
        positive("d_model", self.d_model)?;
        positive("n_layers", self.n_layers)?;
        positive("d_ffn", self.d_ffn)?;
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(RwkvError::Config {
                field: "layer_norm_eps",
                reason: format!("must be positive and finite, got {}", self.layer_norm_eps),
            });
        }
        match self.variant.embedding_init {
            EmbeddingInit::SmallUniform { scale: s } | EmbeddingInit::Normal { std: s }
                if !(s >= 0.0 && s.is_finite()) =>
            {
                Err(RwkvError::Config {
                    field: "variant.embedding_init",
                    reason: format!("scale must be non-negative and finite, got {s}"),
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks a batch of token ids, row-major `[batch, time]`: `B ≥ 1`, `T ≥ 1`, `B·T` ids,
    /// each in `0..V`. This is the one token check of the crate: [`crate::Rwkv::forward`]
    /// and [`crate::Rwkv::step`] call it; a caller holding ids on the host (a prompt, a
    /// reference file, CLI input) can call it before building tensors (for one sequence,
    /// `[1, ids.len()]`).
    ///
    /// # Errors
    /// [`RwkvError::EmptyBatch`], [`RwkvError::EmptySequence`], [`RwkvError::Shape`] when
    /// the count is not `B·T`, or [`RwkvError::TokenOutOfRange`] naming the first bad id.
    pub fn check_tokens(&self, ids: &[i64], [batch, time]: [usize; 2]) -> crate::error::Result<()> {
        crate::error::check_batch_time(batch, time)?;
        if Some(ids.len()) != batch.checked_mul(time) {
            return Err(RwkvError::Shape {
                what: "tokens".into(),
                expected: vec![batch, time],
                got: vec![ids.len()],
            });
        }
        let vocab_size = self.vocab_size;
        match ids
            .iter()
            .position(|&t| t < 0 || t as u64 >= vocab_size as u64)
        {
            Some(i) => Err(RwkvError::TokenOutOfRange {
                token: ids[i],
                batch: i / time,
                position: i % time,
                vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// Number of trainable parameters: `2VC + 13C²L + C(11L + 4)` for RWKV-4 with F = 4C
    /// (in general `2VC + L(4C² + 2CF + C²) + C(11L + 4)`, with `ln0` counted as 2C).
    pub fn num_params(&self) -> usize {
        let (v, c, l, f) = (self.vocab_size, self.d_model, self.n_layers, self.d_ffn);
        let ln0 = if self.variant.ln0 { 2 * c } else { 0 };
        // per layer: att 4 C² + 5C (3 mixes, decay, first); ffn 2CF + C² + 2C; 2 LayerNorms 4C
        2 * v * c + l * (4 * c * c + 2 * c * f + c * c) + l * (5 * c + 2 * c + 4 * c) + 2 * c + ln0
    }
}
