//! Loading a checkpoint: locate the file (and a `config.json`), detect its container,
//! read its tensors, rename their keys, infer the dimensions, check the key set, check
//! `config.json`, convert; each step in its own module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use rwkv::{Rwkv, RwkvConfig};

pub use crate::convert::HostTensor;
use crate::convert::{self, Source};
use crate::detect::{self, Container};
use crate::error::{CheckpointError, Result};
use crate::hf_config::HfConfig;
use crate::keys::Renamed;
use crate::{check, infer, read};

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

    /// The format of a file in `container` whose keys are (or are not) Hugging Face names.
    fn of(container: Container, hf: bool) -> Self {
        match (hf, container == Container::Safetensors) {
            (true, true) => Format::HfSafetensors,
            (true, false) => Format::HfPytorch,
            (false, true) => Format::BlinkDlSafetensors,
            (false, false) => Format::BlinkDlPth,
        }
    }
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
    /// Every tensor, under its BlinkDL key, in the file's layout (projections
    /// `[d_out, d_in]`), token-shift mixes as `[C]`.
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

/// Reads and validates a checkpoint.
///
/// `path` may be a BlinkDL `.pth`, a `.safetensors` file (BlinkDL or HF names), or a
/// Hugging Face model folder (`config.json` + `model.safetensors` or `pytorch_model.bin`).
/// A `config.json` next to a file is used as well.
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let (file, config_path) = locate(path.as_ref())?;
    let container = detect::detect(&file)?;
    let raw = read::read_tensors(&file, container)?;
    let hf_config = config_path.as_deref().map(HfConfig::read).transpose()?;
    let shown = file.display().to_string();
    let renamed = Renamed::new(&shown, raw)?;
    let mut config = infer::infer_config(&renamed)?;
    check::check_keys(&renamed, &config)?;
    if let (Some(cfg), Some(cpath)) = (&hf_config, &config_path) {
        config = cfg.apply(cpath, config)?;
    }
    let tensors = convert::to_host(&renamed, &config)?;
    Ok(Checkpoint {
        path: file,
        format: Format::of(container, renamed.hf),
        config,
        hf_config,
        tensors,
    })
}

/// The tensor file and the `config.json` to use: a folder must hold `config.json` and
/// `model.safetensors` (or `pytorch_model.bin`); a file may have a `config.json` beside it.
fn locate(path: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(CheckpointError::NotFound { path: shown });
    }
    if !path.is_dir() {
        let sibling = path
            .parent()
            .map(|p| p.join("config.json"))
            .filter(|p| p.is_file());
        return Ok((path.to_path_buf(), sibling));
    }
    let config = path.join("config.json");
    if !config.is_file() {
        return Err(CheckpointError::MissingFile {
            path: shown,
            what: "config.json".into(),
        });
    }
    let file = ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|name| path.join(name))
        .find(|f| f.exists())
        .ok_or_else(|| CheckpointError::MissingFile {
            path: shown,
            what: "model.safetensors".into(),
        })?;
    Ok((file, Some(config)))
}
