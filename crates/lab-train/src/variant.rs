//! The ablation variants: names mapped to the switches of the one RWKV model
//! ([`rwkv::Variant`]), and the baseline transformer at matched non-embedding size.

use gpt_baseline::TransformerConfig;
use rwkv::{Activation, Bonus, Decay, EmbeddingInit, RwkvConfig};

use crate::error::{Result, TrainError};

/// What is trained: an RWKV model (any variant) or the baseline transformer.
#[derive(Clone, Debug, PartialEq)]
pub enum Arch {
    /// RWKV-4 with the switches of its config.
    Rwkv(RwkvConfig),
    /// The GPT-style baseline.
    Transformer(TransformerConfig),
}

impl Arch {
    /// Vocabulary size of the model.
    pub fn vocab_size(&self) -> usize {
        match self {
            Arch::Rwkv(c) => c.vocab_size,
            Arch::Transformer(c) => c.vocab_size,
        }
    }

    /// Parameters outside the token embedding, the output head and (transformer) the
    /// positional embedding: the size that [`variant_arch`] matches.
    pub fn non_embedding_params(&self) -> usize {
        match self {
            Arch::Rwkv(c) => c.num_params() - 2 * c.vocab_size * c.d_model,
            Arch::Transformer(c) => {
                c.num_params() - 2 * c.vocab_size * c.d_model - c.max_positions * c.d_model
            }
        }
    }

    /// Total parameters.
    pub fn num_params(&self) -> usize {
        match self {
            Arch::Rwkv(c) => c.num_params(),
            Arch::Transformer(c) => c.num_params(),
        }
    }
}

/// The variant names, in the order studies list them.
pub const VARIANT_NAMES: &[&str] = &[
    "full",
    "no_token_shift",
    "no_bonus",
    "no_decay",
    "fixed_decay",
    "no_receptance_gate",
    "relu_ffn",
    "gelu_ffn",
    "normal_embedding_init",
    "transformer",
];

/// The model of variant `name` built around `base` (whose own `variant` is the starting
/// point: `full` is `base` unchanged).
///
/// | name | change |
/// |---|---|
/// | `full` | none |
/// | `no_token_shift` | `token_shift = false` (x_k = x_v = x_r = z_t) |
/// | `no_bonus` | `bonus = Off` (u = 0) |
/// | `no_decay` | `decay = Off` (w = 0: a plain running average) |
/// | `fixed_decay` | `decay = Fixed` (w keeps its init, no gradient) |
/// | `no_receptance_gate` | `receptance_gate = false` (time-mix and channel-mix) |
/// | `relu_ffn`, `gelu_ffn` | channel-mix activation ReLU or GELU instead of squared ReLU |
/// | `normal_embedding_init` | embedding N(0, 0.02²) and no `ln0` |
/// | `transformer` | [`matched_transformer`] with `max_positions = seq_len` |
///
/// # Errors
/// [`TrainError::UnknownVariant`] listing the names.
pub fn variant_arch(name: &str, base: &RwkvConfig, seq_len: usize) -> Result<Arch> {
    let mut c = base.clone();
    let v = &mut c.variant;
    match name {
        "full" => {}
        "no_token_shift" => v.token_shift = false,
        "no_bonus" => v.bonus = Bonus::Off,
        "no_decay" => v.decay = Decay::Off,
        "fixed_decay" => v.decay = Decay::Fixed,
        "no_receptance_gate" => v.receptance_gate = false,
        "relu_ffn" => v.ffn_activation = Activation::Relu,
        "gelu_ffn" => v.ffn_activation = Activation::Gelu,
        "normal_embedding_init" => {
            v.embedding_init = EmbeddingInit::Normal { std: 0.02 };
            v.ln0 = false;
        }
        "transformer" => return Ok(Arch::Transformer(matched_transformer(base, seq_len))),
        other => {
            return Err(TrainError::UnknownVariant {
                name: other.to_string(),
            });
        }
    }
    Ok(Arch::Rwkv(c))
}

/// The baseline transformer matched to `base`: same vocabulary, width `d` = C and depth L;
/// heads of width 32 where C allows (the largest head count `h` dividing C with
/// `C/h ≥ 32`, at least 1); and the MLP width F chosen so that the non-embedding parameter
/// counts agree: with `N_rwkv` the RWKV count, the transformer has
/// `L·(4d² + 9d) + 2d + L·F·(2d + 1)` non-embedding parameters, so
/// `F = round((N_rwkv − L·(4d² + 9d) − 2d) / (L·(2d + 1)))` (at least 1). The remaining
/// difference is below `L·(2d + 1)/2` parameters, i.e. within 0.5% for C ≥ 32 (for
/// RWKV-4's F = 4C the transformer gets F ≈ 4.5·d, since attention has no channel-mix
/// receptance matrix).
pub fn matched_transformer(base: &RwkvConfig, max_positions: usize) -> TransformerConfig {
    let (d, l) = (base.d_model, base.n_layers);
    let n_heads = (1..=d)
        .rev()
        .find(|h| d % h == 0 && d / h >= 32)
        .unwrap_or(1);
    let target = Arch::Rwkv(base.clone()).non_embedding_params() as f64;
    let fixed = (l * (4 * d * d + 9 * d) + 2 * d) as f64;
    let per_f = (l * (2 * d + 1)) as f64;
    let d_ff = ((target - fixed) / per_f).round().max(1.0) as usize;
    TransformerConfig::new(base.vocab_size, d, l, n_heads, d_ff, max_positions.max(1))
}
