//! Reference files (`reference.safetensors`): tokens and the outputs third-party
//! implementations computed for them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::DType;
use burn_store::{ModuleStore, SafetensorsStore};
use rwkv::RwkvConfig;

use crate::error::{CheckpointError, Result};
use crate::load::HostTensor;

/// A reference file: `tokens` `[B, T]` (int), float arrays keyed by name, and the
/// `split` position of `logits_split` from the file's metadata.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The file.
    pub path: PathBuf,
    /// B.
    pub batch: usize,
    /// T.
    pub time: usize,
    /// Token ids, `[B, T]` row-major.
    pub tokens: Vec<i64>,
    /// Where `logits_split` splits the sequence.
    pub split: Option<usize>,
    /// Every float array.
    pub arrays: BTreeMap<String, HostTensor>,
}

/// Reads a reference file through burn-store (arrays) and the safetensors crate (metadata).
pub fn load_reference(path: impl AsRef<Path>) -> Result<Reference> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(CheckpointError::NotFound { path: shown });
    }
    let read_err = |reason: String| CheckpointError::Read {
        path: shown.clone(),
        format: "a safetensors reference file",
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| read_err(e.to_string()))?;
    let split = match meta.metadata().as_ref().and_then(|m| m.get("split")) {
        None => None,
        Some(s) => Some(
            s.trim()
                .parse::<usize>()
                .map_err(|_| CheckpointError::Reference {
                    path: shown.clone(),
                    key: "split".into(),
                    reason: format!("metadata value `{s}` is not a position"),
                })?,
        ),
    };
    let snapshots = {
        let mut store = SafetensorsStore::from_file(path);
        store
            .get_all_snapshots()
            .map_err(|e| read_err(e.to_string()))?
            .clone()
    };
    let mut tokens = None;
    let mut arrays = BTreeMap::new();
    for (key, snap) in &snapshots {
        let data = snap
            .to_data()
            .map_err(|e| read_err(format!("`{key}`: {e:?}")))?;
        if key == "tokens" {
            if !matches!(
                data.dtype,
                DType::I64
                    | DType::I32
                    | DType::I16
                    | DType::I8
                    | DType::U8
                    | DType::U16
                    | DType::U32
                    | DType::U64
            ) {
                return Err(CheckpointError::Reference {
                    path: shown,
                    key: key.clone(),
                    reason: format!("element type {:?}, expected integers", data.dtype),
                });
            }
            let shape = data.shape.to_vec();
            let ids = data
                .convert::<i64>()
                .into_vec::<i64>()
                .map_err(|e| read_err(format!("`tokens`: {e:?}")))?;
            tokens = Some((shape, ids));
        } else {
            arrays.insert(key.clone(), HostTensor::from_data(&shown, key, data)?);
        }
    }
    let (shape, tokens) = tokens.ok_or_else(|| CheckpointError::Reference {
        path: shown.clone(),
        key: "tokens".into(),
        reason: "missing: a reference file needs the tokens its outputs were computed for".into(),
    })?;
    let [batch, time] = match shape.as_slice() {
        &[b, t] if b > 0 && t > 0 => [b, t],
        other => {
            return Err(CheckpointError::Reference {
                path: shown,
                key: "tokens".into(),
                reason: format!("shape {other:?}, expected [B, T] with B, T >= 1"),
            });
        }
    };
    Ok(Reference {
        path: path.to_path_buf(),
        batch,
        time,
        tokens,
        split,
        arrays,
    })
}

impl Reference {
    /// Checks every array against a model's dimensions: `logits_*` `[B, T, V]`,
    /// `blinkdl_*` `[T, V]`, `final_state_k` `[B, C, L]`, token ids below V, and
    /// `0 < split < T`.
    pub fn check(&self, config: &RwkvConfig) -> Result<()> {
        let shown = self.path.display().to_string();
        let err = |key: &str, reason: String| CheckpointError::Reference {
            path: shown.clone(),
            key: key.into(),
            reason,
        };
        let (b, t, v, c, l) = (
            self.batch,
            self.time,
            config.vocab_size,
            config.d_model,
            config.n_layers,
        );
        if let Some((i, id)) = self
            .tokens
            .iter()
            .enumerate()
            .find(|(_, id)| **id < 0 || **id as u64 >= v as u64)
        {
            return Err(err(
                "tokens",
                format!(
                    "id {id} at [{}, {}] is outside the model's vocabulary of {v}",
                    i / t,
                    i % t
                ),
            ));
        }
        if let Some(s) = self.split
            && (s == 0 || s >= t)
        {
            return Err(err(
                "split",
                format!("{s} is not inside the sequence (T = {t})"),
            ));
        }
        for (key, a) in &self.arrays {
            let expected: Option<Vec<usize>> = if key.starts_with("logits_") {
                Some(vec![b, t, v])
            } else if key.starts_with("blinkdl_") {
                Some(vec![t, v])
            } else if key.starts_with("final_state_") {
                Some(vec![b, c, l])
            } else {
                None
            };
            if let Some(e) = expected
                && a.shape != e
            {
                return Err(err(
                    key,
                    format!(
                        "shape {:?} does not match the model and tokens: expected {e:?}",
                        a.shape
                    ),
                ));
            }
        }
        if self.arrays.contains_key("logits_split") && self.split.is_none() {
            return Err(err(
                "logits_split",
                "present, but the file's metadata has no `split`".into(),
            ));
        }
        Ok(())
    }

    /// An array by name.
    pub fn get(&self, key: &str) -> Option<&HostTensor> {
        self.arrays.get(key)
    }
}
