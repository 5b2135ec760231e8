//! Conversion between the two layouts (BlinkDL names ↔ Hugging Face folder), behind
//! `rwkv-lab convert`: where the files go (decided and checked before anything is
//! written; nothing is ever overwritten), how much memory it takes (estimated before the
//! model is built), and the round trip that proves the written checkpoint right: read back
//! as any user would read it, every parameter and the logits of one forward over seeded
//! random tokens must be bit-identical to the input's.
//!
//! ```no_run
//! use std::path::Path;
//! use rwkv_checkpoint::conversion::{ConversionError, Target, convert};
//!
//! /// `model.pth` to a new Hugging Face folder, in the float type of `B`.
//! fn to_hf<B: rwkv::WkvBackend>(device: &B::Device) -> Result<bool, ConversionError> {
//!     let input = Path::new("model.pth");
//!     let ckpt = rwkv_checkpoint::load(input)?;
//!     let target = Target::plan(input, ckpt.format, Path::new("model-hf"), None)?;
//!     Ok(convert::<B>(device, &ckpt, &target, 16)?.identical())
//! }
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use lab_util::{SplitMix64, fmt_bytes};
use rwkv::generate::{forward_bytes, model_bytes, param_count};
use rwkv::verify::to_f64;
use rwkv::{RwkvConfig, RwkvError, WkvBackend, WkvMode};

use crate::error::CheckpointError;
use crate::load::{Checkpoint, Format, load};
use crate::save::save_hf;
use crate::save_blinkdl::save_blinkdl_safetensors;

/// Seed of the random tokens of the logits check.
pub const CHECK_SEED: u64 = 0xC0_4E_27;

/// Errors of a conversion; each message is one line naming the file or the option.
#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    /// A memory budget of 0 bytes (it would refuse everything, which is never what was meant).
    #[error("--memory-budget: must be more than 0 bytes")]
    ZeroBudget,
    /// Reading the input would not fit the memory budget (checked before reading it).
    #[error(
        "reading {} needs about {} (values held as float64), over the memory budget of {}; raise --memory-budget",
        .path.display(), fmt_bytes(*.needed as f64), fmt_bytes(*.budget as f64)
    )]
    ReadTooLarge {
        /// The input.
        path: PathBuf,
        /// Estimated bytes.
        needed: u64,
        /// The budget.
        budget: u64,
    },
    /// The conversion (two host copies, three models' worth of bytes, two forwards) would
    /// not fit the memory budget (checked before the model is built).
    #[error(
        "converting {} needs about {}, over the memory budget of {}; raise --memory-budget",
        .path.display(),
        .needed.map_or("more than 2^64 bytes".into(), |n| fmt_bytes(n as f64)),
        fmt_bytes(*.budget as f64)
    )]
    TooLarge {
        /// The input.
        path: PathBuf,
        /// Estimated bytes (None: beyond 64-bit arithmetic).
        needed: Option<u64>,
        /// The budget.
        budget: u64,
    },
    /// `--out` cannot take the layout asked for.
    #[error("--out {}: {reason}", .out.display())]
    Destination {
        /// The destination as given.
        out: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A file the conversion would write exists.
    #[error("{}: exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    /// Copying the tokenizer failed (`what`: "cannot read", "cannot create", "cannot write").
    #[error("{}: {what}: {error}", .path.display())]
    Copy {
        /// The file that could not be read, created or written.
        path: PathBuf,
        /// Which of the three.
        what: &'static str,
        /// The system's reason.
        error: std::io::Error,
    },
    /// A step failed after some files were written; they are left for the user (named,
    /// never deleted).
    #[error("after writing {}", .files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))]
    AfterWriting {
        /// The files that exist.
        files: Vec<PathBuf>,
        /// What failed.
        #[source]
        source: Box<ConversionError>,
    },
    /// Reading or writing a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] RwkvError),
}

/// Shorthand.
pub type Result<T> = core::result::Result<T, ConversionError>;

/// The layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A Hugging Face `RwkvForCausalLM` folder: config.json + model.safetensors (`rwkv.` names).
    Hf,
    /// One safetensors file with BlinkDL names (`emb.weight`, `blocks.N.att.*`), as in `.pth` files.
    Blinkdl,
}

impl Layout {
    /// The other layout than the one `format` is in.
    pub fn other_than(format: Format) -> Self {
        match format {
            Format::BlinkDlPth | Format::BlinkDlSafetensors => Layout::Hf,
            Format::HfSafetensors | Format::HfPytorch => Layout::Blinkdl,
        }
    }

    /// A few words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Hf => "Hugging Face folder",
            Layout::Blinkdl => "BlinkDL names, safetensors",
        }
    }
}

/// `tokenizer.json` in the folder of `path` (or in `path`, a folder), if there is one.
pub fn tokenizer_next_to(path: &Path) -> Option<PathBuf> {
    let folder = if path.is_dir() {
        path.to_path_buf()
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    Some(folder.join("tokenizer.json")).filter(|p| p.is_file())
}

/// Whether anything (a file, a folder, a dangling link) is at `p`.
fn exists(p: &Path) -> bool {
    p.exists() || p.symlink_metadata().is_ok()
}

/// What a conversion writes, decided (and checked) before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The layout.
    pub layout: Layout,
    /// Where: a folder ([`Layout::Hf`]) or a `.safetensors` file ([`Layout::Blinkdl`]).
    pub out: PathBuf,
    /// Files to create, in order; none of them exists.
    pub files: Vec<PathBuf>,
    /// A tokenizer.json to copy next to a Hugging Face folder's model: (from, to).
    pub tokenizer: Option<(PathBuf, PathBuf)>,
}

impl Target {
    /// Where converting `input` (a checkpoint in `format`) to `out` writes, in `layout`
    /// (default: the other one). A Hugging Face folder gets the tokenizer.json found next
    /// to the input, if any.
    ///
    /// # Errors
    /// `out` does not suit the layout (a file for a folder, a folder or another extension
    /// for a BlinkDL file), or a file to write exists.
    pub fn plan(input: &Path, format: Format, out: &Path, layout: Option<Layout>) -> Result<Self> {
        let layout = layout.unwrap_or(Layout::other_than(format));
        let refuse = |reason: String| ConversionError::Destination {
            out: out.to_path_buf(),
            reason,
        };
        match layout {
            Layout::Hf => {
                if exists(out) && !out.is_dir() {
                    return Err(refuse(
                        "exists and is not a folder; --to hf writes a folder (config.json, model.safetensors)".into(),
                    ));
                }
                let tokenizer = tokenizer_next_to(input);
                let mut files = vec![out.join("model.safetensors"), out.join("config.json")];
                if tokenizer.is_some() {
                    files.push(out.join("tokenizer.json"));
                }
                if let Some(f) = files.iter().find(|f| exists(f)) {
                    return Err(ConversionError::Exists(f.clone()));
                }
                Ok(Self {
                    layout,
                    out: out.to_path_buf(),
                    tokenizer: tokenizer.map(|t| (t, out.join("tokenizer.json"))),
                    files,
                })
            }
            Layout::Blinkdl => {
                if out.is_dir() {
                    return Err(refuse(format!(
                        "is a folder; --to blinkdl writes one file, e.g. {}",
                        out.join("model.safetensors").display()
                    )));
                }
                if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
                    return Err(refuse(
                        "the file name must end in .safetensors (the layout is BlinkDL's, the container safetensors)".into(),
                    ));
                }
                if exists(out) {
                    return Err(ConversionError::Exists(out.to_path_buf()));
                }
                Ok(Self {
                    layout,
                    out: out.to_path_buf(),
                    files: vec![out.to_path_buf()],
                    tokenizer: None,
                })
            }
        }
    }

    /// The files of [`Target::files`] that exist now (after a failure: the user's).
    pub fn written(&self) -> Vec<PathBuf> {
        self.files.iter().filter(|f| f.exists()).cloned().collect()
    }

    /// The names of the files written, in order.
    pub fn file_names(&self) -> Vec<String> {
        self.files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }
}

/// Refuses a budget of 0, and an input whose reading (every value held as f64, see
/// [`crate::read_bytes_estimate`]) would not fit `budget`; checked before reading it.
pub fn check_read_budget(input: &Path, budget: u64) -> Result<()> {
    if budget == 0 {
        return Err(ConversionError::ZeroBudget);
    }
    let needed = crate::read_bytes_estimate(input)?;
    if needed > budget {
        return Err(ConversionError::ReadTooLarge {
            path: input.to_path_buf(),
            needed,
            budget,
        });
    }
    Ok(())
}

/// Estimated bytes of a conversion at `element_bytes` per value: two host copies (the
/// input and the file read back, f64), two models and the serialised bytes, and one scan
/// forward over `check_tokens` tokens for each model. `None`: beyond 64-bit arithmetic.
pub fn conversion_bytes(
    config: &RwkvConfig,
    check_tokens: usize,
    element_bytes: usize,
) -> Option<u64> {
    let hosts = param_count(config)?.checked_mul(16)?;
    let models = model_bytes(config, element_bytes)?.checked_mul(3)?;
    let forwards =
        forward_bytes(config, 1, check_tokens, WkvMode::Scan, element_bytes)?.checked_mul(2)?;
    models.checked_add(hosts)?.checked_add(forwards)
}

/// Refuses a conversion of `input` (a model of `config`) whose [`conversion_bytes`]
/// exceed `budget`.
pub fn check_budget(
    input: &Path,
    config: &RwkvConfig,
    check_tokens: usize,
    element_bytes: usize,
    budget: u64,
) -> Result<()> {
    match conversion_bytes(config, check_tokens, element_bytes) {
        Some(n) if n <= budget => Ok(()),
        needed => Err(ConversionError::TooLarge {
            path: input.to_path_buf(),
            needed,
            budget,
        }),
    }
}

/// The comparison of the written checkpoint, read back, with the input.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundTrip {
    /// Parameters compared.
    pub tensors: usize,
    /// Values compared.
    pub values: usize,
    /// Keys whose bytes, dtype or name differ (and a count line if the numbers differ).
    pub differing_tensors: Vec<String>,
    /// Tokens of the logits check.
    pub tokens: usize,
    /// Largest |difference| of the logits.
    pub max_logit_diff: f64,
    /// Whether every logit is bit-identical.
    pub logits_identical: bool,
}

impl RoundTrip {
    /// Every parameter and every logit bit-identical.
    pub fn identical(&self) -> bool {
        self.differing_tensors.is_empty() && self.logits_identical
    }
}

/// Builds the model of `ckpt` on `B` (its float type is the precision written), writes it
/// as `target` says (and copies the tokenizer), reads the written checkpoint back and
/// compares every parameter and the logits of one scan forward over `check_tokens` seeded
/// random tokens ([`CHECK_SEED`]).
///
/// # Errors
/// Building, writing or reading back failed; once a file is written, the error is
/// [`ConversionError::AfterWriting`], naming the files left (never deleted).
pub fn convert<B: WkvBackend>(
    device: &B::Device,
    ckpt: &Checkpoint,
    target: &Target,
    check_tokens: usize,
) -> Result<RoundTrip> {
    round_trip::<B>(device, ckpt, target, check_tokens).map_err(|e| {
        let files = target.written();
        if files.is_empty() {
            e
        } else {
            ConversionError::AfterWriting {
                files,
                source: Box::new(e),
            }
        }
    })
}

fn round_trip<B: WkvBackend>(
    device: &B::Device,
    ckpt: &Checkpoint,
    target: &Target,
    check_tokens: usize,
) -> Result<RoundTrip> {
    let model = ckpt.to_model::<B>(device)?;
    match target.layout {
        Layout::Hf => save_hf(&model, &target.out)?,
        Layout::Blinkdl => save_blinkdl_safetensors(&model, &target.out)?,
    }
    if let Some((from, to)) = &target.tokenizer {
        copy_new(from, to)?;
    }
    // the written checkpoint, read back as any user would read it
    let back = load(&target.out)?.to_model::<B>(device)?;
    let (a, b) = (model.named_params(), back.named_params());
    let mut differing = Vec::new();
    let mut values = 0;
    for ((ka, da), (kb, db)) in a.iter().zip(&b) {
        values += da.num_elements();
        if ka != kb || da.as_bytes() != db.as_bytes() || da.dtype != db.dtype {
            differing.push(ka.key.clone());
        }
    }
    if a.len() != b.len() {
        differing.push(format!("{} tensors vs {}", a.len(), b.len()));
    }
    let v = ckpt.config.vocab_size as u64;
    let mut rng = SplitMix64::new(CHECK_SEED);
    let tokens: Vec<i64> = (0..check_tokens).map(|_| rng.below(v) as i64).collect();
    let ids = || {
        Tensor::<B, 2, Int>::from_data(TensorData::new(tokens.clone(), [1, tokens.len()]), device)
    };
    let (la, _) = model.forward(ids(), None, WkvMode::Scan)?;
    let (lb, _) = back.forward(ids(), None, WkvMode::Scan)?;
    let (la, lb) = (to_f64(la), to_f64(lb));
    let logits_identical = la.iter().zip(&lb).all(|(x, y)| x.to_bits() == y.to_bits());
    let max_logit_diff = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    Ok(RoundTrip {
        tensors: a.len(),
        values,
        differing_tensors: differing,
        tokens: tokens.len(),
        max_logit_diff,
        logits_identical,
    })
}

/// Copies `from` to `to`, which must not exist (create_new: never overwrites).
fn copy_new(from: &Path, to: &Path) -> Result<()> {
    let io = |path: &Path, what, error| ConversionError::Copy {
        path: path.to_path_buf(),
        what,
        error,
    };
    let mut src = std::fs::File::open(from).map_err(|e| io(from, "cannot read", e))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| io(to, "cannot create", e))?;
    std::io::copy(&mut src, &mut dst).map_err(|e| io(to, "cannot write", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rwkv-conversion-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn targets_are_checked_before_writing() {
        let dir = tmp("targets");
        let input = dir.join("m.pth");
        // BlinkDL → a new HF folder; no tokenizer next to the input
        let t = Target::plan(&input, Format::BlinkDlPth, &dir.join("hf"), None).unwrap();
        assert_eq!(t.layout, Layout::Hf);
        assert_eq!(t.file_names(), ["model.safetensors", "config.json"]);
        assert!(t.tokenizer.is_none() && t.written().is_empty());
        // with a tokenizer next to the input, it travels
        std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
        let t = Target::plan(&input, Format::BlinkDlPth, &dir.join("hf"), None).unwrap();
        assert_eq!(t.files.len(), 3);
        assert_eq!(t.tokenizer.as_ref().unwrap().0, dir.join("tokenizer.json"));
        // HF → BlinkDL: one .safetensors file, never a folder or another extension
        let e = Target::plan(&input, Format::HfSafetensors, &dir, None).unwrap_err();
        assert!(e.to_string().contains("is a folder; --to blinkdl"), "{e}");
        let e = Target::plan(&input, Format::HfSafetensors, &dir.join("m.bin"), None).unwrap_err();
        assert!(e.to_string().contains("must end in .safetensors"), "{e}");
        let file = dir.join("x.safetensors");
        std::fs::write(&file, "x").unwrap();
        let e = Target::plan(&input, Format::HfSafetensors, &file, None).unwrap_err();
        assert!(
            matches!(e, ConversionError::Exists(ref p) if p == &file),
            "{e}"
        );
        assert_eq!(t.written(), Vec::<PathBuf>::new());
        let e = Target::plan(&input, Format::BlinkDlPth, &file, Some(Layout::Hf)).unwrap_err();
        assert!(e.to_string().contains("exists and is not a folder"), "{e}");
        // an explicit layout wins over the default
        let t = Target::plan(
            &input,
            Format::BlinkDlPth,
            &dir.join("y.safetensors"),
            Some(Layout::Blinkdl),
        )
        .unwrap();
        assert_eq!(t.layout, Layout::Blinkdl);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn budgets_are_checked_in_checked_arithmetic() {
        let e = check_read_budget(Path::new("/nonexistent"), 0).unwrap_err();
        assert_eq!(e.to_string(), "--memory-budget: must be more than 0 bytes");
        // a path that does not resolve reads nothing: `load` reports it
        check_read_budget(Path::new("/nonexistent"), 1).unwrap();
        let small = RwkvConfig::rwkv4(50, 8, 2);
        let n = conversion_bytes(&small, 4, 4).unwrap();
        assert!(n > param_count(&small).unwrap() * 16, "{n}");
        assert!(conversion_bytes(&small, 4, 8).unwrap() > n);
        let huge = RwkvConfig::rwkv4(usize::MAX / 2, 1 << 20, 2);
        assert_eq!(conversion_bytes(&huge, 4, 4), None);
        let e = ConversionError::TooLarge {
            path: "m.pth".into(),
            needed: None,
            budget: 1024,
        };
        assert!(e.to_string().contains("more than 2^64 bytes"), "{e}");
    }
}
