//! Hugging Face `config.json`: reading it, and its agreement with the dimensions the
//! tensors imply (the "config.json agreement" step of loading).

use std::path::Path;

use rwkv::RwkvConfig;
use serde::Deserialize;

use crate::error::{CheckpointError, Result};

/// The subset of a Hugging Face `config.json` that matters for RWKV-4.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// `model_type`, "rwkv" for RWKV-4.
    pub model_type: Option<String>,
    /// V.
    pub vocab_size: Option<usize>,
    /// C.
    pub hidden_size: Option<usize>,
    /// L.
    pub num_hidden_layers: Option<usize>,
    /// F (null means 4C).
    pub intermediate_size: Option<usize>,
    /// Width of the attention projections (RWKV-4: C).
    pub attention_hidden_size: Option<usize>,
    /// LayerNorm epsilon.
    pub layer_norm_epsilon: Option<f64>,
    /// HF halves hidden states every this many layers in fp16 inference (0: never).
    pub rescale_every: Option<usize>,
}

impl HfConfig {
    /// Reads and parses `path`.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let error = |reason: String| CheckpointError::Read {
            path: shown.clone(),
            format: "config.json",
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| error(e.to_string()))
    }

    /// Checks every field it has against `config` (inferred from the tensors) and returns
    /// `config` with its LayerNorm epsilon. `path` is the config file, for messages.
    pub(crate) fn apply(&self, path: &Path, config: RwkvConfig) -> Result<RwkvConfig> {
        let shown = path.display().to_string();
        let mismatch = |field: &'static str, config: String, inferred: String| {
            CheckpointError::ConfigMismatch {
                path: shown.clone(),
                field,
                config,
                inferred,
            }
        };
        if let Some(t) = &self.model_type
            && t != "rwkv"
        {
            let version = match t.as_str() {
                "rwkv5" => "5",
                "rwkv6" => "6",
                "rwkv7" => "7",
                _ => return Err(mismatch("model_type", t.clone(), "rwkv (RWKV-4)".into())),
            };
            return Err(CheckpointError::OtherVersion {
                path: shown,
                version,
                key: format!("model_type = {t}"),
            });
        }
        let checks = [
            ("vocab_size", self.vocab_size, config.vocab_size),
            ("hidden_size", self.hidden_size, config.d_model),
            ("num_hidden_layers", self.num_hidden_layers, config.n_layers),
            (
                "intermediate_size",
                self.intermediate_size.or(self.hidden_size.map(|h| 4 * h)),
                config.d_ffn,
            ),
            (
                "attention_hidden_size",
                self.attention_hidden_size,
                config.d_model,
            ),
        ];
        for (field, value, inferred) in checks {
            if let Some(v) = value
                && v != inferred
            {
                return Err(mismatch(field, v.to_string(), inferred.to_string()));
            }
        }
        match self.layer_norm_epsilon {
            Some(e) if !(e > 0.0 && e.is_finite()) => Err(mismatch(
                "layer_norm_epsilon",
                e.to_string(),
                "a positive number".into(),
            )),
            Some(e) => Ok(config.with_layer_norm_eps(e)),
            None => Ok(config),
        }
    }
}
