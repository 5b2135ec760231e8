//! Saving a model as a Hugging Face `RwkvForCausalLM` folder (`model.safetensors` with
//! `rwkv.` names, `[out, in]` projections and `[1, 1, C]` mixes, plus `config.json`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorData};
use rwkv::Rwkv;

use crate::error::{CheckpointError, Result};
use crate::{keys, layout};

/// A tensor ready for the safetensors writer.
struct Entry {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &Entry {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Row-major little-endian bytes of `values` as f32 or f64.
fn bytes(values: &[f64], f64_out: bool) -> Vec<u8> {
    if f64_out {
        values.iter().flat_map(|x| x.to_le_bytes()).collect()
    } else {
        values
            .iter()
            .flat_map(|x| (*x as f32).to_le_bytes())
            .collect()
    }
}

fn host(data: TensorData) -> Vec<f64> {
    data.convert::<f64>().into_vec::<f64>().unwrap_or_default()
}

/// Writes `dir/model.safetensors` and `dir/config.json` (creating `dir`). Values keep the
/// model's precision (f32 or f64); [`crate::load`] reads the folder back bit for bit.
pub fn save_hf<B: Backend>(model: &Rwkv<B>, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    let shown = dir.display().to_string();
    let write_err = |reason: String| CheckpointError::Write {
        path: shown.clone(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| write_err(e.to_string()))?;
    let cfg = &model.config;
    let mut entries: Vec<(String, Entry)> = Vec::new();
    for (spec, data) in model.named_params() {
        let f64_out = data.dtype == DType::F64;
        let dtype = if f64_out {
            safetensors::Dtype::F64
        } else {
            safetensors::Dtype::F32
        };
        let (shape, values) = layout::to_file(&spec, host(data));
        entries.push((
            keys::blinkdl_to_hf(&spec.key),
            Entry {
                dtype,
                shape,
                bytes: bytes(&values, f64_out),
            },
        ));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let file = dir.join("model.safetensors");
    safetensors::serialize_to_file(
        entries.iter().map(|(k, e)| (k.clone(), e)),
        Some(meta),
        &file,
    )
    .map_err(|e| CheckpointError::Write {
        path: file.display().to_string(),
        reason: e.to_string(),
    })?;
    let config = serde_json::json!({
        "architectures": ["RwkvForCausalLM"],
        "model_type": "rwkv",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "attention_hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ffn,
        "num_hidden_layers": cfg.n_layers,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "rescale_every": 0,
        "tie_word_embeddings": false,
        "context_length": 4096,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "use_cache": true,
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| write_err(e.to_string()))?;
    let cfile = dir.join("config.json");
    std::fs::write(&cfile, text + "\n").map_err(|e| CheckpointError::Write {
        path: cfile.display().to_string(),
        reason: e.to_string(),
    })
}
