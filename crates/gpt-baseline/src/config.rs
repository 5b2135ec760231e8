//! Model configuration and its parameter-count formula.

use burn::config::Config;

use crate::error::TransformerError;

/// Configuration of the baseline GPT-style decoder.
///
/// `new` takes every field but `layer_norm_eps` (default 1e-5); [`TransformerConfig::gpt`]
/// fills in the usual `d_ff = 4 · d_model`.
#[derive(Config, Debug, PartialEq)]
pub struct TransformerConfig {
    /// Vocabulary size V (rows of the token embedding, outputs of the head).
    pub vocab_size: usize,
    /// Model width d (residual stream, embeddings, attention projections).
    pub d_model: usize,
    /// Number of decoder blocks L.
    pub n_layers: usize,
    /// Number of attention heads H; must divide `d_model` (head width `d_model / n_heads`).
    pub n_heads: usize,
    /// Hidden width F of the GELU MLP (GPT-2: 4 · d_model).
    pub d_ff: usize,
    /// Rows P of the learned positional embedding: the longest sequence (and the largest
    /// KV cache) the model accepts.
    pub max_positions: usize,
    /// LayerNorm epsilon (GPT-2 and RWKV-4: 1e-5).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl TransformerConfig {
    /// GPT-2 proportions: `d_ff = 4 · d_model`, LayerNorm epsilon 1e-5.
    pub fn gpt(
        vocab_size: usize,
        d_model: usize,
        n_layers: usize,
        n_heads: usize,
        max_positions: usize,
    ) -> Self {
        Self::new(
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            4 * d_model,
            max_positions,
        )
    }

    /// Head width `d_model / n_heads` (meaningful once [`validate`](Self::validate) passed).
    pub fn d_head(&self) -> usize {
        self.d_model.checked_div(self.n_heads).unwrap_or(0)
    }

    /// Checks every field; the error names the field.
    ///
    /// # Errors
    /// [`TransformerError::Config`] when a size is 0, `n_heads` does not divide `d_model`,
    /// or `layer_norm_eps` is not a positive finite number.
    pub fn validate(&self) -> crate::error::Result<()> {
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(TransformerError::Config {
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
        positive("n_heads", self.n_heads)?;
        positive("d_ff", self.d_ff)?;
        positive("max_positions", self.max_positions)?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(TransformerError::Config {
                field: "n_heads",
                reason: format!(
                    "must divide d_model = {} (got {} heads)",
                    self.d_model, self.n_heads
                ),
            });
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(TransformerError::Config {
                field: "layer_norm_eps",
                reason: format!("must be positive and finite, got {}", self.layer_norm_eps),
            });
        }
        Ok(())
    }

    /// Number of parameters of the model this config builds:
    ///
    /// `2·V·d + P·d + 2·d + L·(4·d² + 2·d·F + 9·d + F)`
    ///
    /// token embedding `V·d`, positional embedding `P·d`, final LayerNorm `2·d`, untied
    /// head `d·V` (no bias); per block two LayerNorms `4·d`, Q/K/V/O weights and biases
    /// `4·d² + 4·d`, MLP `d·F + F` (up) and `F·d + d` (down).
    pub fn num_params(&self) -> usize {
        let (v, d, l, f, p) = (
            self.vocab_size,
            self.d_model,
            self.n_layers,
            self.d_ff,
            self.max_positions,
        );
        2 * v * d + p * d + 2 * d + l * (4 * d * d + 2 * d * f + 9 * d + f)
    }
}
