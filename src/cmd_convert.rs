//! `rwkv-lab convert`: write a checkpoint in the other layout (BlinkDL ↔ Hugging Face),
//! never over an existing file, and check that the written checkpoint gives the same
//! parameters and bit-identical logits as the one it came from.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use lab_util::{SplitMix64, fmt_bytes, fmt_count};
use rwkv::WkvMode;
use rwkv::generate::{forward_bytes, model_bytes, param_count};
use rwkv::verify::to_f64;
use rwkv_checkpoint::{Checkpoint, Format, load, save_blinkdl_safetensors, save_hf};

use crate::backend::{BackendKind, Dtype, Job, dispatch};
use crate::util::{memory_budget, positive};
use lab_records::provenance::default_memory_budget;

/// Target layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// A Hugging Face `RwkvForCausalLM` folder: config.json + model.safetensors (`rwkv.` names).
    Hf,
    /// One safetensors file with BlinkDL names (`emb.weight`, `blocks.N.att.*`), as in `.pth` files.
    Blinkdl,
}

#[derive(Debug, Args)]
#[command(after_help = "\
BlinkDL checkpoints (.pth, or safetensors with BlinkDL names) become a Hugging Face folder \
(config.json, model.safetensors, and the tokenizer.json found next to the input, if any); \
Hugging Face folders become one safetensors file with BlinkDL names. --to picks the layout \
explicitly (e.g. --to blinkdl turns a .pth into safetensors).

Nothing is overwritten: the command refuses when a file it would write exists. Values keep \
their precision: f64 files stay f64, others are written as f32 (f16 and bf16 widen to f32 \
exactly); --dtype overrides. Afterwards the written checkpoint is loaded back and compared with \
the input: every parameter, and the logits of one forward over --check-tokens seeded random \
tokens, must be bit-identical (exit 1 otherwise; the written files are left for inspection).

Examples:
  rwkv-lab convert --checkpoint tests/fixtures/reference-tiny/model.pth --out /tmp/tiny-hf
  rwkv-lab convert --checkpoint tests/fixtures/tokenizer-tiny --out /tmp/tiny.safetensors
  rwkv-lab convert --checkpoint RWKV-4-Pile-169M.pth --out rwkv-169m-hf --dtype f32")]
pub struct ConvertArgs {
    /// The checkpoint to read: a BlinkDL .pth, a .safetensors file, or a Hugging Face folder.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// Where to write: a folder for --to hf, a .safetensors file for --to blinkdl.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Layout to write [default: the other one].
    #[arg(long, value_enum)]
    pub to: Option<Layout>,
    /// Precision to write [default: f64 if the input holds f64 values, else f32].
    #[arg(long, value_enum)]
    pub dtype: Option<Dtype>,
    /// Number of tokens in the logits check.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub check_tokens: usize,
    /// Refuse to start when the estimated memory exceeds this, e.g. 4G [default: half the RAM].
    #[arg(long, value_name = "SIZE", value_parser = memory_budget)]
    pub memory_budget: Option<u64>,
}

/// What the conversion writes, decided (and checked) before anything is written.
struct Target {
    layout: Layout,
    /// Files to create, in order; none of them exists.
    files: Vec<PathBuf>,
    /// A tokenizer.json to copy next to a Hugging Face folder's model.
    tokenizer: Option<(PathBuf, PathBuf)>,
}

fn tokenizer_next_to(path: &Path) -> Option<PathBuf> {
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

fn plan_target(args: &ConvertArgs, ckpt: &Checkpoint) -> Result<Target> {
    let layout = args.to.unwrap_or(match ckpt.format {
        Format::BlinkDlPth | Format::BlinkDlSafetensors => Layout::Hf,
        Format::HfSafetensors | Format::HfPytorch => Layout::Blinkdl,
    });
    let out = &args.out;
    let exists = |p: &Path| p.exists() || p.symlink_metadata().is_ok();
    match layout {
        Layout::Hf => {
            if exists(out) && !out.is_dir() {
                bail!(
                    "--out {}: exists and is not a folder; --to hf writes a folder (config.json, model.safetensors)",
                    out.display()
                );
            }
            let tokenizer = tokenizer_next_to(&args.checkpoint);
            let mut files = vec![out.join("model.safetensors"), out.join("config.json")];
            if tokenizer.is_some() {
                files.push(out.join("tokenizer.json"));
            }
            if let Some(f) = files.iter().find(|f| exists(f)) {
                bail!("{}: exists; refusing to overwrite it", f.display());
            }
            Ok(Target {
                layout,
                tokenizer: tokenizer.map(|t| (t, out.join("tokenizer.json"))),
                files,
            })
        }
        Layout::Blinkdl => {
            if out.is_dir() {
                bail!(
                    "--out {}: is a folder; --to blinkdl writes one file, e.g. {}",
                    out.display(),
                    out.join("model.safetensors").display()
                );
            }
            if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
                bail!(
                    "--out {}: the file name must end in .safetensors (the layout is BlinkDL's, the container safetensors)",
                    out.display()
                );
            }
            if exists(out) {
                bail!("{}: exists; refusing to overwrite it", out.display());
            }
            Ok(Target {
                layout,
                files: vec![out.clone()],
                tokenizer: None,
            })
        }
    }
}

/// Outcome of the comparison of input and output.
struct Check {
    tensors: usize,
    values: usize,
    differing_tensors: Vec<String>,
    tokens: usize,
    max_logit_diff: f64,
    logits_identical: bool,
}

struct Convert<'a> {
    args: &'a ConvertArgs,
    ckpt: &'a Checkpoint,
    target: &'a Target,
}

impl Job for Convert<'_> {
    type Output = Check;

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<Check> {
        let model = self.ckpt.to_model::<B>(&device)?;
        match self.target.layout {
            Layout::Hf => save_hf(&model, &self.args.out)?,
            Layout::Blinkdl => save_blinkdl_safetensors(&model, &self.args.out)?,
        }
        if let Some((from, to)) = &self.target.tokenizer {
            copy_new(from, to)?;
        }
        // the written checkpoint, read back as any user would read it
        let back = load(&self.args.out)?.to_model::<B>(&device)?;
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
        let v = self.ckpt.config.vocab_size as u64;
        let mut rng = SplitMix64::new(0xC0_4E_27);
        let tokens: Vec<i64> = (0..self.args.check_tokens)
            .map(|_| rng.below(v) as i64)
            .collect();
        let ids = || {
            burn::tensor::Tensor::<B, 2, burn::tensor::Int>::from_data(
                burn::tensor::TensorData::new(tokens.clone(), [1, tokens.len()]),
                &device,
            )
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
        Ok(Check {
            tensors: a.len(),
            values,
            differing_tensors: differing,
            tokens: tokens.len(),
            max_logit_diff,
            logits_identical,
        })
    }
}

/// Copies `from` to `to`, which must not exist (create_new: never overwrites).
fn copy_new(from: &Path, to: &Path) -> Result<()> {
    let mut src = std::fs::File::open(from)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", from.display()))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", to.display()))?;
    std::io::copy(&mut src, &mut dst)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", to.display()))?;
    Ok(())
}

/// Runs the command; returns whether the written checkpoint matched the input bit for bit.
pub fn run(args: ConvertArgs) -> Result<bool> {
    // clap refuses 0 (`util::memory_budget`); arguments built in code get the same rule here
    let budget = match args.memory_budget {
        Some(0) => bail!("--memory-budget: must be more than 0 bytes"),
        Some(b) => b,
        None => default_memory_budget(),
    };
    let read = rwkv_checkpoint::read_bytes_estimate(&args.checkpoint)?;
    if read > budget {
        bail!(
            "reading {} needs about {} (values held as float64), over the memory budget of {}; raise --memory-budget",
            args.checkpoint.display(),
            fmt_bytes(read as f64),
            fmt_bytes(budget as f64)
        );
    }
    let ckpt = load(&args.checkpoint)?;
    let target = plan_target(&args, &ckpt)?;
    let dtype = args.dtype.unwrap_or(if ckpt.dtypes().contains("f64") {
        Dtype::F64
    } else {
        Dtype::F32
    });
    let e = match dtype {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
    };
    // two host copies (input and the file read back), two models, the serialised bytes,
    // and one forward each for the logits check
    let cfg = &ckpt.config;
    let need = param_count(cfg)
        .and_then(|p| p.checked_mul(16))
        .zip(model_bytes(cfg, e))
        .and_then(|(hosts, m)| m.checked_mul(3)?.checked_add(hosts))
        .zip(forward_bytes(cfg, 1, args.check_tokens, WkvMode::Scan, e))
        .and_then(|(a, f)| a.checked_add(f.checked_mul(2)?));
    match need {
        Some(n) if n <= budget => {}
        _ => bail!(
            "converting {} needs about {}, over the memory budget of {}; raise --memory-budget",
            args.checkpoint.display(),
            need.map_or("more than 2^64 bytes".into(), |n| fmt_bytes(n as f64)),
            fmt_bytes(budget as f64)
        ),
    }
    println!(
        "read {} ({}, {}): V = {}, C = {}, L = {}, {} parameters",
        ckpt.path.display(),
        ckpt.format.describe(),
        ckpt.dtypes().into_iter().collect::<Vec<_>>().join("/"),
        cfg.vocab_size,
        cfg.d_model,
        cfg.n_layers,
        fmt_count(param_count(cfg).unwrap_or(0))
    );
    let check = dispatch(
        BackendKind::Ndarray,
        dtype,
        Convert {
            args: &args,
            ckpt: &ckpt,
            target: &target,
        },
    );
    let check = match check {
        Ok(c) => c,
        Err(e) => {
            // files written before the failure are the user's now: name them, never delete
            let written: Vec<String> = target
                .files
                .iter()
                .filter(|f| f.exists())
                .map(|f| f.display().to_string())
                .collect();
            if written.is_empty() {
                return Err(e);
            }
            return Err(e.context(format!("after writing {}", written.join(", "))));
        }
    };
    let layout = match target.layout {
        Layout::Hf => "Hugging Face folder",
        Layout::Blinkdl => "BlinkDL names, safetensors",
    };
    println!(
        "wrote {} ({layout}, {}): {}",
        args.out.display(),
        dtype.name(),
        target
            .files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if target.layout == Layout::Blinkdl
        && let Some(t) = tokenizer_next_to(&args.checkpoint)
    {
        println!(
            "the tokenizer stays at {}: pass --tokenizer {} to generate",
            t.display(),
            t.display()
        );
    }
    let params_ok = check.differing_tensors.is_empty();
    if params_ok && check.logits_identical {
        println!(
            "check: read back, all {} tensors ({} values) and the logits of {} tokens are bit-identical",
            check.tensors,
            fmt_count(check.values as u64),
            check.tokens
        );
        Ok(true)
    } else {
        println!(
            "check FAILED: {} of {} tensors differ{}; logits of {} tokens: max |difference| {:.3e}; the written files are left for inspection",
            check.differing_tensors.len(),
            check.tensors,
            check
                .differing_tensors
                .first()
                .map(|k| format!(" (first: {k})"))
                .unwrap_or_default(),
            check.tokens,
            check.max_logit_diff
        );
        Ok(false)
    }
}
