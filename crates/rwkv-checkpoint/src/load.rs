//! Reading checkpoints through burn-store, validating them, and building the model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, TensorData};
use burn_store::pytorch::PytorchReader;
use burn_store::{ModuleStore, SafetensorsStore, TensorSnapshot};
use rwkv::{ParamShape, ParamSource, Rwkv, RwkvConfig, RwkvError, Variant};
use serde::Deserialize;

use crate::error::{CheckpointError, Result, and_more};
use crate::keys::{self, Dims, Role};

/// Where a checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A `torch.save`d BlinkDL state dict (`.pth`).
    BlinkDlPth,
    /// BlinkDL key names in a safetensors file.
    BlinkDlSafetensors,
    /// Hugging Face `RwkvForCausalLM` (`rwkv.` keys), from safetensors.
    HfSafetensors,
    /// Hugging Face `RwkvForCausalLM` from `pytorch_model.bin`.
    HfPytorch,
}

impl Format {
    /// Short description.
    pub fn describe(self) -> &'static str {
        match self {
            Format::BlinkDlPth => "BlinkDL .pth",
            Format::BlinkDlSafetensors => "BlinkDL safetensors",
            Format::HfSafetensors => "Hugging Face safetensors",
            Format::HfPytorch => "Hugging Face pytorch_model.bin",
        }
    }
}

/// One tensor read into host memory, as f64, with the dtype it had in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape in the file.
    pub shape: Vec<usize>,
    /// Element type in the file.
    pub dtype: DType,
    /// Values, row-major, converted to f64 (exact for f16, bf16 and f32).
    pub data: Vec<f64>,
}

impl HostTensor {
    pub(crate) fn from_snapshot(path: &str, key: &str, s: &TensorSnapshot) -> Result<Self> {
        let data = s.to_data().map_err(|e| CheckpointError::Read {
            path: path.into(),
            format: "a tensor",
            reason: format!("`{key}`: {e:?}"),
        })?;
        Self::from_data(path, key, data)
    }

    pub(crate) fn from_data(path: &str, key: &str, data: TensorData) -> Result<Self> {
        let dtype = data.dtype;
        let shape = data.shape.to_vec();
        if !matches!(dtype, DType::F64 | DType::F32 | DType::F16 | DType::BF16) {
            return Err(CheckpointError::Invalid {
                path: path.into(),
                reason: format!(
                    "`{key}` has element type {dtype:?}; expected a float tensor (f16, bf16, f32 or f64)"
                ),
            });
        }
        let values =
            data.convert::<f64>()
                .into_vec::<f64>()
                .map_err(|e| CheckpointError::Read {
                    path: path.into(),
                    format: "a tensor",
                    reason: format!("`{key}`: {e:?}"),
                })?;
        Ok(Self {
            shape,
            dtype,
            data: values,
        })
    }
}

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

/// A validated RWKV-4 checkpoint in host memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The file the tensors came from.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// The model configuration implied by the tensors (and checked against `config.json`).
    pub config: RwkvConfig,
    /// The `config.json` used, if any.
    pub hf_config: Option<HfConfig>,
    /// Every tensor, under its BlinkDL key.
    pub tensors: BTreeMap<String, HostTensor>,
}

impl Checkpoint {
    /// The element types found in the file.
    pub fn dtypes(&self) -> BTreeSet<String> {
        self.tensors
            .values()
            .map(|t| format!("{:?}", t.dtype).to_lowercase())
            .collect()
    }

    /// Builds the model on any backend; values are converted to the backend's float type.
    pub fn to_model<B: Backend>(&self, device: &B::Device) -> Result<Rwkv<B>> {
        let path = self.path.display().to_string();
        self.config
            .init_from::<B>(
                device,
                &mut Source {
                    tensors: &self.tensors,
                },
            )
            .map_err(|source| CheckpointError::Model { path, source })
    }
}

/// Serves validated tensors in the model's layout.
struct Source<'a> {
    tensors: &'a BTreeMap<String, HostTensor>,
}

impl ParamSource for Source<'_> {
    fn values(
        &mut self,
        key: &str,
        shape: ParamShape,
    ) -> core::result::Result<Vec<f64>, RwkvError> {
        let t = self.tensors.get(key).ok_or_else(|| RwkvError::Source {
            key: key.into(),
            reason: "not in the checkpoint".into(),
        })?;
        Ok(match shape {
            // files store [d_out, d_in]; Burn's Linear stores [d_in, d_out]
            ParamShape::Linear { d_in, d_out } => {
                let mut out = vec![0.0; d_in * d_out];
                for o in 0..d_out {
                    for i in 0..d_in {
                        out[i * d_out + o] = t.data[o * d_in + i];
                    }
                }
                out
            }
            _ => t.data.clone(),
        })
    }
}

/// Reads and validates a checkpoint.
///
/// `path` may be a BlinkDL `.pth`, a `.safetensors` file (BlinkDL or HF names), or a
/// Hugging Face model folder (`config.json` + `model.safetensors` or `pytorch_model.bin`).
/// A `config.json` next to a file is used as well.
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(CheckpointError::NotFound { path: shown });
    }
    let (file, config_path) = if path.is_dir() {
        let config = path.join("config.json");
        if !config.is_file() {
            return Err(CheckpointError::MissingFile {
                path: shown,
                what: "config.json".into(),
            });
        }
        let st = path.join("model.safetensors");
        let bin = path.join("pytorch_model.bin");
        let file = if st.is_file() {
            st
        } else if bin.is_file() {
            bin
        } else {
            return Err(CheckpointError::MissingFile {
                path: shown,
                what: "model.safetensors".into(),
            });
        };
        (file, Some(config))
    } else {
        let sibling = path
            .parent()
            .map(|p| p.join("config.json"))
            .filter(|p| p.is_file());
        (path.to_path_buf(), sibling)
    };
    let raw = read_tensors(&file)?;
    let hf_config = config_path.as_deref().map(read_hf_config).transpose()?;
    let file_shown = file.display().to_string();
    validate(&file, &file_shown, raw, hf_config, config_path.as_deref())
}

/// Reads every tensor of a file through burn-store (a panic inside a reader is reported
/// as a read error, never propagated).
fn read_tensors(file: &Path) -> Result<(bool, BTreeMap<String, TensorSnapshot>)> {
    let shown = file.display().to_string();
    let is_safetensors = looks_like_safetensors(file);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if is_safetensors {
            let mut store = SafetensorsStore::from_file(file);
            store
                .get_all_snapshots()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<BTreeMap<_, _>>()
                })
                .map_err(|e| e.to_string())
        } else {
            PytorchReader::new(file)
                .map(|r| r.into_tensors().into_iter().collect::<BTreeMap<_, _>>())
                .map_err(|e| e.to_string())
        }
    }));
    let format = if is_safetensors {
        "safetensors"
    } else {
        "a PyTorch checkpoint"
    };
    match result {
        Ok(Ok(map)) => Ok((is_safetensors, map)),
        Ok(Err(reason)) => Err(CheckpointError::Read {
            path: shown,
            format,
            reason,
        }),
        Err(_) => Err(CheckpointError::Read {
            path: shown,
            format,
            reason: "the reader failed on malformed data".into(),
        }),
    }
}

/// By extension, else by content (PyTorch files are zip archives or pickles).
fn looks_like_safetensors(file: &Path) -> bool {
    match file.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => true,
        Some("pth" | "pt" | "bin" | "ckpt") => false,
        _ => {
            let mut head = [0u8; 4];
            let is_zip = std::fs::File::open(file)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .map(|()| head == *b"PK\x03\x04" || head[0] == 0x80)
                .unwrap_or(false);
            !is_zip
        }
    }
}

fn read_hf_config(path: &Path) -> Result<HfConfig> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CheckpointError::Read {
        path: shown.clone(),
        format: "config.json",
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::Read {
        path: shown,
        format: "config.json",
        reason: e.to_string(),
    })
}

fn validate(
    file: &Path,
    shown: &str,
    (is_safetensors, raw): (bool, BTreeMap<String, TensorSnapshot>),
    hf_config: Option<HfConfig>,
    config_path: Option<&Path>,
) -> Result<Checkpoint> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: shown.into(),
        reason,
    };
    if let Some((version, key)) = keys::other_generation(raw.keys()) {
        return Err(CheckpointError::OtherVersion {
            path: shown.into(),
            version,
            key,
        });
    }
    // normalise names: HF → BlinkDL (keeping the file's name for messages)
    let hf = raw.keys().any(|k| k.starts_with("rwkv."));
    let format = match (hf, is_safetensors) {
        (true, true) => Format::HfSafetensors,
        (true, false) => Format::HfPytorch,
        (false, true) => Format::BlinkDlSafetensors,
        (false, false) => Format::BlinkDlPth,
    };
    let mut by_name: BTreeMap<String, (String, TensorSnapshot)> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (k, s) in raw {
        let name = if hf {
            keys::hf_to_blinkdl(&k)
        } else {
            Some(k.clone())
        };
        match name {
            Some(n) => {
                by_name.insert(n, (k, s));
            }
            None => unknown.push(k),
        }
    }
    let file_key = |name: &str| -> String {
        if hf {
            keys::blinkdl_to_hf(name)
        } else {
            name.to_string()
        }
    };

    // dimensions from the embedding and block 0
    let emb = by_name
        .get("emb.weight")
        .ok_or_else(|| CheckpointError::MissingKey {
            path: shown.into(),
            key: file_key("emb.weight"),
            more: String::new(),
        })?;
    let [vocab, d_model] = match emb.1.shape.as_slice() {
        &[v, c] => [v, c],
        other => {
            return Err(CheckpointError::Shape {
                path: shown.into(),
                key: emb.0.clone(),
                expected: vec![0, 0],
                got: other.to_vec(),
            });
        }
    };
    let blocks: BTreeSet<usize> = by_name
        .keys()
        .filter_map(|k| rwkv::split_block_key(k).0)
        .collect();
    let n_layers = blocks.len();
    if n_layers == 0 {
        return Err(invalid("no `blocks.N.` tensors: not an RWKV model".into()));
    }
    if let Some(missing) = (0..n_layers).find(|l| !blocks.contains(l)) {
        let last = blocks.iter().next_back().copied().unwrap_or(0);
        return Err(CheckpointError::MissingKey {
            path: shown.into(),
            key: file_key(&format!("blocks.{missing}.att.key.weight")),
            more: format!(" (block {missing} is absent while block {last} exists)"),
        });
    }
    let d_ffn = match by_name
        .get("blocks.0.ffn.key.weight")
        .map(|(_, s)| s.shape.to_vec())
    {
        Some(dims) if dims.len() == 2 => dims[0],
        Some(dims) => {
            return Err(CheckpointError::Shape {
                path: shown.into(),
                key: file_key("blocks.0.ffn.key.weight"),
                expected: vec![4 * d_model, d_model],
                got: dims,
            });
        }
        None => {
            return Err(CheckpointError::MissingKey {
                path: shown.into(),
                key: file_key("blocks.0.ffn.key.weight"),
                more: String::new(),
            });
        }
    };
    let ln0 =
        by_name.contains_key("blocks.0.ln0.weight") || by_name.contains_key("blocks.0.ln0.bias");
    let dims = Dims {
        vocab,
        d_model,
        n_layers,
        d_ffn,
        ln0,
    };

    // every expected key present with the right shape; nothing else
    let expected = keys::expected(dims);
    let missing: Vec<&String> = expected
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !by_name.contains_key(*k))
        .collect();
    if let Some(first) = missing.first() {
        return Err(CheckpointError::MissingKey {
            path: shown.into(),
            key: file_key(first),
            more: and_more(missing.len() - 1),
        });
    }
    let known: BTreeSet<&String> = expected.iter().map(|(k, _)| k).collect();
    unknown.extend(
        by_name
            .iter()
            .filter(|(n, _)| !known.contains(n))
            .map(|(_, (k, _))| k.clone()),
    );
    if let Some(first) = unknown.first() {
        return Err(CheckpointError::UnexpectedKey {
            path: shown.into(),
            key: first.clone(),
            more: and_more(unknown.len() - 1),
        });
    }
    for (name, role) in &expected {
        let (key, snap) = &by_name[name];
        check_shape(shown, key, name, *role, snap.shape.as_slice(), dims)?;
    }

    // config.json, when present, must agree
    let mut eps = 1e-5;
    if let (Some(cfg), Some(cpath)) = (&hf_config, config_path) {
        let cshown = cpath.display().to_string();
        let mismatch = |field: &'static str, config: String, inferred: String| {
            CheckpointError::ConfigMismatch {
                path: cshown.clone(),
                field,
                config,
                inferred,
            }
        };
        if let Some(t) = &cfg.model_type
            && t != "rwkv"
        {
            let version = match t.as_str() {
                "rwkv5" => "5",
                "rwkv6" => "6",
                "rwkv7" => "7",
                _ => "?",
            };
            if version != "?" {
                return Err(CheckpointError::OtherVersion {
                    path: cshown,
                    version,
                    key: format!("model_type = {t}"),
                });
            }
            return Err(mismatch("model_type", t.clone(), "rwkv (RWKV-4)".into()));
        }
        let checks = [
            ("vocab_size", cfg.vocab_size, vocab),
            ("hidden_size", cfg.hidden_size, d_model),
            ("num_hidden_layers", cfg.num_hidden_layers, n_layers),
            (
                "intermediate_size",
                cfg.intermediate_size.or(cfg.hidden_size.map(|h| 4 * h)),
                d_ffn,
            ),
            ("attention_hidden_size", cfg.attention_hidden_size, d_model),
        ];
        for (field, config, inferred) in checks {
            if let Some(c) = config
                && c != inferred
            {
                return Err(mismatch(field, c.to_string(), inferred.to_string()));
            }
        }
        if let Some(e) = cfg.layer_norm_epsilon {
            if !(e > 0.0 && e.is_finite()) {
                return Err(mismatch(
                    "layer_norm_epsilon",
                    e.to_string(),
                    "a positive number".into(),
                ));
            }
            eps = e;
        }
    }

    let mut tensors = BTreeMap::new();
    for (name, (key, snap)) in &by_name {
        let mut t = HostTensor::from_snapshot(shown, key, snap)?;
        if t.data.iter().any(|x| !x.is_finite()) {
            return Err(invalid(format!("`{key}` contains NaN or infinite values")));
        }
        if matches!(keys_role(&expected, name), Some(Role::Mix)) {
            t.shape = vec![d_model];
        }
        tensors.insert(name.clone(), t);
    }
    let config = RwkvConfig::new(vocab, d_model, n_layers, d_ffn)
        .with_layer_norm_eps(eps)
        .with_variant(Variant {
            ln0,
            ..Variant::default()
        });
    Ok(Checkpoint {
        path: file.to_path_buf(),
        format,
        config,
        hf_config,
        tensors,
    })
}

fn keys_role(expected: &[(String, Role)], name: &str) -> Option<Role> {
    expected.iter().find(|(k, _)| k == name).map(|(_, r)| *r)
}

/// The shape a role must have, and a clear error when it does not: an "inconsistent
/// layers" error when a later block disagrees with block 0 on C or F, a shape error else.
fn check_shape(
    path: &str,
    key: &str,
    name: &str,
    role: Role,
    got: &[usize],
    d: Dims,
) -> Result<()> {
    let c = d.d_model;
    let expected = match role {
        Role::Embedding => vec![d.vocab, c],
        Role::Linear { d_out, d_in } => vec![d_out, d_in],
        Role::Vector => vec![c],
        Role::Mix => vec![1, 1, c],
    };
    let ok = match role {
        Role::Mix => got == [c] || got == [1, c] || got == [1, 1, c],
        _ => got == expected.as_slice(),
    };
    if ok {
        return Ok(());
    }
    let later_block = rwkv::split_block_key(name).0.is_some_and(|l| l > 0);
    let same_rank = got.len() == expected.len() || (role == Role::Mix && !got.is_empty());
    if later_block && same_rank {
        let inconsistent =
            |dim: &'static str, got: usize, expected: usize| CheckpointError::Inconsistent {
                path: path.into(),
                key: key.into(),
                dim,
                got,
                expected,
            };
        let f = d.d_ffn;
        if name.ends_with("ffn.key.weight") && got[0] != f {
            return Err(inconsistent("d_ffn", got[0], f));
        }
        if name.ends_with("ffn.value.weight") && got[1] != f {
            return Err(inconsistent("d_ffn", got[1], f));
        }
        if let Some(&other) = got.iter().find(|&&x| x != c && x != 1 && x != f) {
            return Err(inconsistent("d_model", other, c));
        }
    }
    Err(CheckpointError::Shape {
        path: path.into(),
        key: key.into(),
        expected,
        got: got.to_vec(),
    })
}
