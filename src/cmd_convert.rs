//! `rwkv-lab convert`: write a checkpoint in the other layout (BlinkDL ↔ Hugging Face),
//! never over an existing file, and check that the written checkpoint gives the same
//! parameters and bit-identical logits as the one it came from. Arguments and printing;
//! the conversion itself is `rwkv_checkpoint::conversion`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use lab_util::fmt_count;
use rwkv::generate::param_count;
use rwkv_checkpoint::conversion::{
    self, ConversionError, RoundTrip, Target, convert, tokenizer_next_to,
};
use rwkv_checkpoint::{Checkpoint, load};

use crate::backend::{BackendKind, Dtype, Job, Metered, dispatch};
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

impl From<Layout> for conversion::Layout {
    fn from(l: Layout) -> Self {
        match l {
            Layout::Hf => conversion::Layout::Hf,
            Layout::Blinkdl => conversion::Layout::Blinkdl,
        }
    }
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

struct Convert<'a> {
    ckpt: &'a Checkpoint,
    target: &'a Target,
    check_tokens: usize,
}

impl Job for Convert<'_> {
    type Output = RoundTrip;

    fn run<B: Metered>(self, device: B::Device) -> Result<RoundTrip> {
        Ok(convert::<B>(
            &device,
            self.ckpt,
            self.target,
            self.check_tokens,
        )?)
    }
}

/// Runs the command; returns whether the written checkpoint matched the input bit for bit.
pub fn run(args: ConvertArgs) -> Result<bool> {
    // clap refuses a budget of 0 (`util::memory_budget`); arguments built in code get the
    // same rule from the library
    let budget = args.memory_budget.unwrap_or_else(default_memory_budget);
    conversion::check_read_budget(&args.checkpoint, budget)?;
    let ckpt = load(&args.checkpoint)?;
    let target = Target::plan(
        &args.checkpoint,
        ckpt.format,
        &args.out,
        args.to.map(Into::into),
    )?;
    let dtype = args.dtype.unwrap_or(if ckpt.dtypes().contains("f64") {
        Dtype::F64
    } else {
        Dtype::F32
    });
    let cfg = &ckpt.config;
    conversion::check_budget(
        &args.checkpoint,
        cfg,
        args.check_tokens,
        dtype.element_bytes(),
        budget,
    )?;
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
    let job = Convert {
        ckpt: &ckpt,
        target: &target,
        check_tokens: args.check_tokens,
    };
    let check = dispatch(BackendKind::Ndarray, dtype, job).map_err(|e| {
        // the library names the files it wrote before failing; a panic inside the backend
        // gets the same context here (the files are the user's now: never deleted)
        let written = target.written();
        if e.is::<ConversionError>() || written.is_empty() {
            return e;
        }
        let names: Vec<String> = written.iter().map(|f| f.display().to_string()).collect();
        e.context(format!("after writing {}", names.join(", ")))
    })?;
    println!(
        "wrote {} ({}, {}): {}",
        args.out.display(),
        target.layout.describe(),
        dtype.name(),
        target.file_names().join(", ")
    );
    if target.layout == conversion::Layout::Blinkdl
        && let Some(t) = tokenizer_next_to(&args.checkpoint)
    {
        println!(
            "the tokenizer stays at {}: pass --tokenizer {} to generate",
            t.display(),
            t.display()
        );
    }
    if check.identical() {
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
