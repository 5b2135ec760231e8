//! `rwkv-lab generate`: continue a prompt with a checkpoint (prompt in GPT mode,
//! continuation in RNN mode), streaming each new token as it is produced, optionally as text
//! through a Hugging Face `tokenizer.json`, and optionally checking the continuation against
//! whole-sequence forwards. Memory is estimated before anything large is allocated.
//! Arguments, backend choice and printing; the generation itself is
//! `rwkv_lab_core::generate`.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{ArgGroup, Args};
use rwkv::WkvMode;
use rwkv::generate::StepEngine;
use rwkv_lab_core::generate::{Outcome, Prepared, Report, Request, TextStream, generate, prepare};
use tokenizers::Tokenizer;

use crate::backend::{BackendKind, Dtype, Job, Metered, dispatch};
use crate::util::{memory_budget, parse_id, positive};
use lab_records::provenance::default_memory_budget;

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("input").required(true).args(["tokens", "prompt"])),
    after_help = "\
The prompt is processed in one whole-sequence forward (--prompt-mode, default parallel); each new \
token then costs one RNN-mode step with the carried state. For f32 on a CPU backend the steps run \
in the CPU decoder (--step-engine cpu-decoder: weights laid out once for matrix-vector products, \
each read once per token; equal to the model's step to f32 rounding); --step-engine model runs \
them through the backend. New tokens are printed as they are \
produced; at the end, the prompt's time and the time per new token (tokens/s) are printed \
separately.

Text: when the checkpoint's folder holds a tokenizer.json (Hugging Face RWKV-4 folders do), or \
--tokenizer FILE is given, --prompt TEXT is accepted and the continuation is printed as text. \
Characters that span several tokens are printed once complete. Without a tokenizer, token ids \
in (--tokens), token ids out. RWKV-4 Pile models use the GPT-NeoX 20B tokenizer.

Memory: before loading, the checkpoint's size is checked against --memory-budget (default: half \
the RAM); after loading, the model's size and the prompt forward's working memory (the parallel \
form needs O(T²·C)) are estimated from the configuration. A prompt whose forward would not fit \
runs in the scan form (default mode) or in pieces with the state carried between them (exact; \
said on stderr); a model that does not fit is refused with the estimate, before allocating it.

With --check, the continuation is recomputed with a whole-sequence forward from scratch before \
every new token (--check-mode, O(N^2) work) and the same sampler and seed; the command fails (exit \
1) unless both pick the same tokens. Temperature 0 is greedy decoding.

Examples:
  rwkv-lab generate --checkpoint tests/fixtures/tokenizer-tiny --prompt \"To be, or not\" --max-new 40 --seed 1
  rwkv-lab generate --checkpoint tests/fixtures/reference-tiny/model.pth --tokens 1,2,3 --max-new 16 --temperature 0 --check
  rwkv-lab generate --checkpoint RWKV-4-Pile-169M.pth --tokenizer 20B_tokenizer.json --prompt \"The\" --top-p 0.85
  rwkv-lab generate --checkpoint m.pth --tokens 510,4107 --max-new 64 --memory-budget 2G --json")]
pub struct GenerateArgs {
    /// A BlinkDL .pth, a .safetensors file, or a Hugging Face model folder.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// Prompt token ids, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_id, value_name = "IDS")]
    pub tokens: Vec<i64>,
    /// Prompt text (needs a tokenizer: tokenizer.json next to the checkpoint, or --tokenizer).
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub prompt: Option<String>,
    /// A Hugging Face tokenizer.json (or a folder holding one); default: the checkpoint's own.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Number of new tokens.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub max_new: usize,
    /// Sampling temperature, ≥ 0; 0 = greedy.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = temperature)]
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens holding this much probability, in (0, 1].
    #[arg(long, default_value_t = 0.85, allow_negative_numbers = true, value_parser = top_p)]
    pub top_p: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Check the RNN-mode continuation against whole-sequence forwards.
    #[arg(long)]
    pub check: bool,
    /// WKV formulation for the prompt: parallel, scan, chunked:LEN or recurrent [default: parallel].
    #[arg(long, value_name = "MODE")]
    pub prompt_mode: Option<WkvMode>,
    /// WKV formulation for the whole-sequence forwards of --check [default: parallel].
    #[arg(long, value_name = "MODE")]
    pub check_mode: Option<WkvMode>,
    /// Refuse (or split) work estimated above this much memory, e.g. 4G [default: half the RAM].
    #[arg(long, value_name = "SIZE", value_parser = memory_budget)]
    pub memory_budget: Option<u64>,
    /// Precision.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
    /// What runs the RNN steps after the prompt [default: cpu-decoder for f32 on a CPU
    /// backend, model otherwise].
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub step_engine: Option<Engine>,
    /// Print one JSON object at the end instead of streaming.
    #[arg(long)]
    pub json: bool,
}

/// `--step-engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// The model's own RNN step on --backend (any backend and precision).
    Model,
    /// A CPU engine with weights laid out once for matrix-vector products; f32, equal to the
    /// model's step to f32 rounding (`rwkv::decode`).
    CpuDecoder,
}

impl GenerateArgs {
    /// The engine of the RNN steps: as asked, else the CPU decoder where the model itself
    /// runs f32 on the CPU (it is the same arithmetic there, only faster).
    fn step_engine(&self) -> Result<StepEngine> {
        let cpu = matches!(self.backend, BackendKind::Ndarray | BackendKind::Flex);
        Ok(match self.step_engine {
            Some(Engine::Model) => StepEngine::Model,
            Some(Engine::CpuDecoder) if self.dtype != Dtype::F32 => bail!(
                "--step-engine cpu-decoder computes in f32; with --dtype {} use --step-engine model",
                self.dtype.name()
            ),
            Some(Engine::CpuDecoder) => StepEngine::CpuDecoder,
            None if cpu && self.dtype == Dtype::F32 => StepEngine::CpuDecoder,
            None => StepEngine::Model,
        })
    }
}

/// clap value parser: a finite number ≥ 0.
fn temperature(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() {
        Err(format!("must be a finite number ≥ 0, got {v}"))
    } else if v < 0.0 {
        Err(format!("must be ≥ 0, got {v}"))
    } else {
        Ok(v)
    }
}

/// clap value parser: a number in (0, 1].
fn top_p(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!("must be in (0, 1], got {v}"))
    }
}

/// Prints tokens as they come: text through the library's [`TextStream`] (a character
/// that spans several tokens once complete), or comma-separated ids.
struct Printer<'t> {
    text: Option<TextStream<'t>>,
    quiet: bool,
    first: bool,
    error: Option<std::io::Error>,
}

impl<'t> Printer<'t> {
    fn new(tokenizer: Option<&'t Tokenizer>, quiet: bool) -> Self {
        Self {
            text: tokenizer.map(TextStream::new),
            quiet,
            first: true,
            error: None,
        }
    }

    fn write(&mut self, s: &str) -> ControlFlow<()> {
        if self.quiet || self.error.is_some() {
            return ControlFlow::Continue(());
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    /// One token: its text once complete (or its id).
    fn token(&mut self, id: i64) -> ControlFlow<()> {
        match self.text.as_mut() {
            Some(text) => match text.push(id) {
                Some(chunk) => self.write(&chunk),
                None => ControlFlow::Continue(()),
            },
            None => {
                let s = if self.first {
                    id.to_string()
                } else {
                    format!(",{id}")
                };
                self.first = false;
                self.write(&s)
            }
        }
    }

    /// Whatever the stream still holds back, and the full decoded text.
    fn finish(&mut self) -> Result<Option<String>> {
        let Some(text) = &self.text else {
            let _ = self.write("\n");
            return Ok(None);
        };
        let (rest, full) = text.finish()?;
        let end = if full.ends_with('\n') { "" } else { "\n" };
        let _ = self.write(&format!("{rest}{end}"));
        Ok(Some(full))
    }
}

struct Gen<'a, 'p> {
    req: &'a Request,
    prep: &'a Prepared,
    printer: &'a mut Printer<'p>,
}

impl Job for Gen<'_, '_> {
    type Output = Outcome;

    fn run<B: Metered>(self, device: B::Device) -> Result<Outcome> {
        let printer = self.printer;
        Ok(generate::<B>(&device, self.req, self.prep, |t| {
            printer.token(t.token)
        })?)
    }
}

fn ids(v: &[i64]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Ids, comma-separated; a long list shows its first 16 and last 4 ids.
fn ids_short(v: &[i64]) -> String {
    if v.len() <= 24 {
        return ids(v);
    }
    format!(
        "{},...,{} ({} more)",
        ids(&v[..16]),
        ids(&v[v.len() - 4..]),
        v.len() - 20
    )
}

impl GenerateArgs {
    /// The library's request.
    fn request(&self) -> Result<Request> {
        Ok(Request {
            checkpoint: self.checkpoint.clone(),
            tokenizer: self.tokenizer.clone(),
            tokens: self.tokens.clone(),
            prompt: self.prompt.clone(),
            max_new: self.max_new,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            check: self.check,
            prompt_mode: self.prompt_mode,
            check_mode: self.check_mode,
            memory_budget: self.memory_budget.unwrap_or_else(default_memory_budget),
            element_bytes: self.dtype.element_bytes(),
            step_engine: self.step_engine()?,
        })
    }
}

/// Runs the command; returns whether the check (if any) passed.
pub fn run(args: GenerateArgs) -> Result<bool> {
    let req = args.request()?;
    let prep = prepare(&req)?;
    if !args.json {
        for n in &prep.notes {
            eprintln!("note: {n}");
        }
    }
    let sampling = if args.temperature == 0.0 {
        "greedy".to_string()
    } else {
        format!(
            "temperature {}, top-p {}, seed {}",
            args.temperature, args.top_p, args.seed
        )
    };
    let prompt = &prep.prompt;
    let tokenizer = prep.text.as_ref().map(|t| &t.tokenizer);
    let mut printer = Printer::new(tokenizer, args.json);
    if !args.json {
        println!(
            "checkpoint {} ({}); {} on {}; {sampling}",
            prep.checkpoint.path.display(),
            prep.checkpoint.format.describe(),
            args.dtype.name(),
            args.backend.name()
        );
        match &prep.text {
            Some(t) => println!(
                "tokenizer {}; prompt of {} tokens, then {} new tokens:",
                t.path.display(),
                prompt.len(),
                args.max_new
            ),
            None => {
                println!("prompt    ({} tokens): {}", prompt.len(), ids_short(prompt));
                print!("generated ({} tokens): ", args.max_new);
            }
        }
    }
    if tokenizer.is_some() {
        // the prompt goes through the same decode stream, so that the continuation's first
        // characters are decoded in context (a leading space, a character split across the
        // boundary); it is printed as the tokenizer reads it back
        for &id in prompt {
            let _ = printer.token(id);
        }
    }
    let job = Gen {
        req: &req,
        prep: &prep,
        printer: &mut printer,
    };
    let out = dispatch(args.backend, args.dtype, job)?;
    let full = printer.finish()?;
    if let Some(e) = &printer.error
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        bail!("writing to standard output: {e}");
    }
    let report = Report::new(
        &req,
        &prep,
        &out,
        full,
        args.backend.name(),
        args.dtype.name(),
    );
    let pass = report.pass();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(pass);
    }
    if printer.error.is_some() {
        // the reader went away (broken pipe): nothing more to say
        return Ok(pass);
    }
    let g = &out.generation;
    let pieces = if g.prompt_pieces > 1 {
        format!(", {} pieces", g.prompt_pieces)
    } else {
        String::new()
    };
    let prompt_part = format!(
        "prompt: {} tokens in {:.2} ms ({}{pieces}; {:.0} tokens/s)",
        prompt.len(),
        g.prompt_seconds * 1e3,
        report.prompt_mode,
        report.prompt_tokens_per_second
    );
    match report.seconds_per_token {
        Some(s) => println!(
            "{prompt_part}; new tokens: {:.3} ms per token in RNN mode, {} ({} tokens/s over {} steps)",
            s * 1e3,
            report.step_engine,
            if s > 0.01 {
                format!("{:.1}", 1.0 / s)
            } else {
                format!("{:.0}", 1.0 / s)
            },
            g.step_seconds.len()
        ),
        None => println!("{prompt_part}"),
    }
    if let (Some(c), Some(again)) = (&report.check, &out.check) {
        match c.first_mismatch {
            None => println!(
                "check: whole-sequence forwards ({}) pick the same {} tokens (max |logit difference| {:.2e})",
                c.mode,
                g.tokens.len(),
                c.max_logit_diff
            ),
            Some(i) => println!(
                "check FAILED: new token {i}: RNN mode chose {}, a whole-sequence forward ({}) chose {} (max |logit difference| {:.2e})",
                g.tokens[i], c.mode, again.tokens[i], c.max_logit_diff
            ),
        }
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_parsers_give_the_real_reason() {
        assert_eq!(temperature("0"), Ok(0.0));
        assert_eq!(temperature("0.7"), Ok(0.7));
        assert!(temperature("-1").unwrap_err().contains("must be ≥ 0"));
        assert!(temperature("inf").unwrap_err().contains("finite"));
        assert!(temperature("NaN").is_err());
        assert!(temperature("hot").unwrap_err().contains("not a number"));
        assert_eq!(top_p("1"), Ok(1.0));
        assert!(top_p("0").unwrap_err().contains("(0, 1]"));
        assert!(top_p("-0.5").unwrap_err().contains("(0, 1]"));
        assert!(top_p("1.5").is_err());
        assert!(memory_budget("0").unwrap_err().contains("more than 0"));
        assert_eq!(memory_budget("1K"), Ok(1024));
    }
}
