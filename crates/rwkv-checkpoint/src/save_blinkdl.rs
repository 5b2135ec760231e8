//! Saving a model under BlinkDL key names in one safetensors file (`emb.weight`,
//! `blocks.N.att.time_mix_k` as `[1, 1, C]`, projections `[out, in]`, ...): the layout of
//! BlinkDL's `.pth` checkpoints in a container that needs no pickle reader. The file is
//! created with `create_new`: an existing file is never overwritten.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorData};
use rwkv::{Rwkv, Variant};

use crate::error::{CheckpointError, Result};

/// The layer-norm epsilon every RWKV-4 loader assumes for a BlinkDL file (the format has no
/// place to record another one).
pub const BLINKDL_LAYER_NORM_EPS: f64 = 1e-5;

/// Row-major little-endian bytes of `values` as f32 or f64.
fn le_bytes(values: &[f64], f64_out: bool) -> Vec<u8> {
    if f64_out {
        values.iter().flat_map(|x| x.to_le_bytes()).collect()
    } else {
        values
            .iter()
            .flat_map(|x| (*x as f32).to_le_bytes())
            .collect()
    }
}

/// Every parameter of `model` in the files' layout: `(BlinkDL key, dtype, shape, bytes)`.
/// Projections are transposed from Burn's `[d_in, d_out]` to the files' `[d_out, d_in]`;
/// token-shift mixes get BlinkDL's `[1, 1, C]`.
fn file_layout<B: Backend>(
    model: &Rwkv<B>,
) -> Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    let mut out = Vec::new();
    for (spec, data) in model.named_params() {
        let f64_out = data.dtype == DType::F64;
        let dtype = if f64_out {
            safetensors::Dtype::F64
        } else {
            safetensors::Dtype::F32
        };
        let (file_shape, values) = crate::layout::to_file(&spec, host(data));
        out.push((spec.key, dtype, file_shape, le_bytes(&values, f64_out)));
    }
    out
}

fn host(data: TensorData) -> Vec<f64> {
    data.convert::<f64>().into_vec::<f64>().unwrap_or_default()
}

/// Writes `path` (a new file) as safetensors with BlinkDL key names, in the model's
/// precision (f32 or f64); [`crate::load`] reads it back bit for bit.
///
/// # Errors
/// `path` exists (never overwritten); the model has a non-default architecture switch or a
/// layer-norm epsilon other than 1e-5, which a BlinkDL file cannot record (a loader would
/// build a different model); the write fails (the partial file is removed).
pub fn save_blinkdl_safetensors<B: Backend>(model: &Rwkv<B>, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let write_err = |reason: String| CheckpointError::Write {
        path: shown.clone(),
        reason,
    };
    let cfg = &model.config;
    if cfg.layer_norm_eps != BLINKDL_LAYER_NORM_EPS {
        return Err(write_err(format!(
            "the model has layer_norm_epsilon = {}, but a BlinkDL file cannot record it and loaders assume {BLINKDL_LAYER_NORM_EPS}; write a Hugging Face folder instead",
            cfg.layer_norm_eps
        )));
    }
    let plain = Variant {
        ln0: cfg.variant.ln0,
        embedding_init: cfg.variant.embedding_init,
        ..Variant::default()
    };
    if cfg.variant != plain {
        return Err(write_err(
            "the model has ablation switches (variant) that no checkpoint format records; only RWKV-4 as published can be saved".into(),
        ));
    }
    let entries = file_layout(model);
    let views = entries
        .iter()
        .map(|(k, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| write_err(format!("`{k}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| write_err(e.to_string()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                write_err("the file exists; refusing to overwrite it".into())
            } else {
                write_err(e.to_string())
            }
        })?;
    if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_all()) {
        drop(file);
        // the file is ours (create_new above) and incomplete: remove it
        let _ = std::fs::remove_file(path);
        return Err(write_err(e.to_string()));
    }
    Ok(())
}
