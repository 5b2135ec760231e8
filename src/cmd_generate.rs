//! `rwkv-lab generate`: continue a prompt with a checkpoint (prompt in GPT mode,
//! continuation in RNN mode), optionally checking it against whole-sequence forwards.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use rwkv::WkvMode;
use rwkv::generate::{Generation, Sampler, generate, generate_by_forward};
use rwkv_checkpoint::{Checkpoint, load};
use serde::Serialize;

use crate::backend::{BackendKind, Dtype, Job, dispatch};
use crate::util::{parse_id, positive};

#[derive(Debug, Args)]
#[command(after_help = "\
The prompt is processed in one whole-sequence forward (--prompt-mode, default parallel); each new \
token then costs one RNN-mode step with the carried state. Token ids in, token ids out: no \
tokenizer is bundled (RWKV-4 Pile models use the GPT-NeoX 20B tokenizer).

With --check, the continuation is recomputed with a whole-sequence forward from scratch before \
every new token (--check-mode, O(N^2) work) and the same sampler and seed; the command fails (exit \
1) unless both pick the same tokens. Temperature 0 is greedy decoding.

Examples:
  rwkv-lab generate --checkpoint tests/fixtures/reference-tiny/model.pth --tokens 1,2,3 --max-new 16 --temperature 0 --check
  rwkv-lab generate --checkpoint path/to/RWKV-4-Pile-169M.pth --tokens 510,4107 --max-new 64 --top-p 0.85 --seed 7")]
pub struct GenerateArgs {
    /// A BlinkDL .pth, a .safetensors file, or a Hugging Face model folder.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// Prompt token ids, comma-separated.
    #[arg(long, required = true, value_delimiter = ',', value_parser = parse_id)]
    pub tokens: Vec<i64>,
    /// Number of new tokens.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub max_new: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens holding this much probability.
    #[arg(long, default_value_t = 0.85)]
    pub top_p: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Check the RNN-mode continuation against whole-sequence forwards.
    #[arg(long)]
    pub check: bool,
    /// WKV formulation for the prompt.
    #[arg(long, default_value = "parallel")]
    pub prompt_mode: WkvMode,
    /// WKV formulation for the whole-sequence forwards of --check.
    #[arg(long, default_value = "parallel")]
    pub check_mode: WkvMode,
    /// Precision.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct CheckReport {
    mode: String,
    pass: bool,
    first_mismatch: Option<usize>,
    max_logit_diff: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    checkpoint: String,
    backend: &'static str,
    dtype: &'static str,
    prompt: Vec<i64>,
    generated: Vec<i64>,
    temperature: f64,
    top_p: f64,
    seed: u64,
    prompt_mode: String,
    prompt_seconds: f64,
    seconds_per_token: Option<f64>,
    check: Option<CheckReport>,
}

struct Gen<'a> {
    args: &'a GenerateArgs,
    ckpt: &'a Checkpoint,
}

impl Job for Gen<'_> {
    type Output = (Generation, Option<Generation>);

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<Self::Output> {
        let a = self.args;
        let model = self.ckpt.to_model::<B>(&device)?;
        let mut sampler = Sampler::new(a.temperature, a.top_p, a.seed)?;
        let out = generate(&model, &a.tokens, a.max_new, &mut sampler, a.prompt_mode)?;
        let check = if a.check {
            let mut again = Sampler::new(a.temperature, a.top_p, a.seed)?;
            Some(generate_by_forward(
                &model,
                &a.tokens,
                a.max_new,
                &mut again,
                a.check_mode,
            )?)
        } else {
            None
        };
        Ok((out, check))
    }
}

fn ids(v: &[i64]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs the command; returns whether the check (if any) passed.
pub fn run(args: GenerateArgs) -> Result<bool> {
    let ckpt = load(&args.checkpoint)?;
    let v = ckpt.config.vocab_size;
    if let Some(bad) = args.tokens.iter().find(|t| **t as u64 >= v as u64) {
        bail!(
            "token id {bad} is outside the vocabulary of {} (V = {v})",
            args.checkpoint.display()
        );
    }
    if let WkvMode::Chunked { len: 0 } = args.prompt_mode {
        bail!("--prompt-mode chunked:0: the chunk length must be at least 1");
    }
    let (out, check) = dispatch(
        args.backend,
        args.dtype,
        Gen {
            args: &args,
            ckpt: &ckpt,
        },
    )?;
    let check_report = check.as_ref().map(|c| {
        let first_mismatch = out.tokens.iter().zip(&c.tokens).position(|(a, b)| a != b);
        let max_logit_diff = out
            .logits
            .iter()
            .zip(&c.logits)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0.0, f64::max);
        CheckReport {
            mode: args.check_mode.to_string(),
            pass: first_mismatch.is_none(),
            first_mismatch,
            max_logit_diff,
        }
    });
    let per_token = (!out.step_seconds.is_empty())
        .then(|| out.step_seconds.iter().sum::<f64>() / out.step_seconds.len() as f64);
    let report = Report {
        checkpoint: ckpt.path.display().to_string(),
        backend: args.backend.name(),
        dtype: args.dtype.name(),
        prompt: args.tokens.clone(),
        generated: out.tokens.clone(),
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        prompt_mode: args.prompt_mode.to_string(),
        prompt_seconds: out.prompt_seconds,
        seconds_per_token: per_token,
        check: check_report,
    };
    let pass = report.check.as_ref().is_none_or(|c| c.pass);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(pass);
    }
    let sampling = if args.temperature == 0.0 {
        "greedy".to_string()
    } else {
        format!(
            "temperature {}, top-p {}, seed {}",
            args.temperature, args.top_p, args.seed
        )
    };
    println!(
        "checkpoint {} ({}); {} on {}; {sampling}",
        report.checkpoint,
        ckpt.format.describe(),
        report.dtype,
        report.backend
    );
    println!(
        "prompt    ({} tokens): {}",
        report.prompt.len(),
        ids(&report.prompt)
    );
    println!(
        "generated ({} tokens): {}",
        report.generated.len(),
        ids(&report.generated)
    );
    match per_token {
        Some(s) => println!(
            "prompt {:.2} ms ({}), then {:.3} ms per token in RNN mode ({} steps)",
            out.prompt_seconds * 1e3,
            report.prompt_mode,
            s * 1e3,
            out.step_seconds.len()
        ),
        None => println!(
            "prompt {:.2} ms ({})",
            out.prompt_seconds * 1e3,
            report.prompt_mode
        ),
    }
    if let (Some(c), Some(again)) = (&report.check, &check) {
        match c.first_mismatch {
            None => println!(
                "check: whole-sequence forwards ({}) pick the same {} tokens (max |logit difference| {:.2e})",
                c.mode,
                out.tokens.len(),
                c.max_logit_diff
            ),
            Some(i) => println!(
                "check FAILED: new token {i}: RNN mode chose {}, a whole-sequence forward ({}) chose {} (max |logit difference| {:.2e})",
                out.tokens[i], c.mode, again.tokens[i], c.max_logit_diff
            ),
        }
    }
    Ok(pass)
}
