//! `rwkv-lab generate`: continue a prompt with a checkpoint (prompt in GPT mode,
//! continuation in RNN mode), streaming each new token as it is produced, optionally as text
//! through a Hugging Face `tokenizer.json`, and optionally checking the continuation against
//! whole-sequence forwards. Memory is estimated before anything large is allocated.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{ArgGroup, Args};
use lab_util::fmt_bytes;
use rwkv::generate::{
    GenerateOptions, Generation, NewToken, Sampler, forward_bytes, generate_by_forward,
    generate_streaming, largest_piece, model_bytes, param_count,
};
use rwkv::{RwkvConfig, WkvMode};
use rwkv_checkpoint::{Checkpoint, load};
use serde::Serialize;
use tokenizers::Tokenizer;

use crate::backend::{BackendKind, Dtype, Job, dispatch};
use crate::util::{memory_budget, parse_id, positive};
use lab_records::provenance::default_memory_budget;

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("input").required(true).args(["tokens", "prompt"])),
    after_help = "\
The prompt is processed in one whole-sequence forward (--prompt-mode, default parallel); each new \
token then costs one RNN-mode step with the carried state. New tokens are printed as they are \
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
    /// Print one JSON object at the end instead of streaming.
    #[arg(long)]
    pub json: bool,
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

#[derive(Debug, Serialize)]
struct CheckReport {
    mode: String,
    pass: bool,
    first_mismatch: Option<usize>,
    max_logit_diff: f64,
}

#[derive(Debug, Serialize)]
struct MemoryReport {
    budget: u64,
    checkpoint_host: u64,
    model: u64,
    prompt_forward: u64,
    check_forward: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Report {
    checkpoint: String,
    tokenizer: Option<String>,
    backend: &'static str,
    dtype: &'static str,
    prompt: Vec<i64>,
    prompt_text: Option<String>,
    generated: Vec<i64>,
    text: Option<String>,
    temperature: f64,
    top_p: f64,
    seed: u64,
    prompt_mode: String,
    prompt_pieces: usize,
    prompt_seconds: f64,
    prompt_tokens_per_second: f64,
    seconds_per_token: Option<f64>,
    tokens_per_second: Option<f64>,
    memory: MemoryReport,
    notes: Vec<String>,
    check: Option<CheckReport>,
}

/// What the memory check decided.
struct Plan {
    prompt_mode: WkvMode,
    prompt_piece: Option<usize>,
    check_mode: WkvMode,
    memory: MemoryReport,
    notes: Vec<String>,
}

fn elem(dtype: Dtype) -> usize {
    match dtype {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
    }
}

fn over(what: &str, need: Option<u64>, budget: u64) -> String {
    over_limit(
        what,
        need,
        &format!("the memory budget of {}", fmt_bytes(budget as f64)),
    )
}

/// As [`over`], against what the budget leaves once the model is in memory.
fn over_left(what: &str, need: Option<u64>, left: u64) -> String {
    over_limit(
        what,
        need,
        &format!(
            "the {} that the memory budget leaves after the model",
            fmt_bytes(left as f64)
        ),
    )
}

fn over_limit(what: &str, need: Option<u64>, limit: &str) -> String {
    match need {
        Some(n) => format!("{what} needs about {}, over {limit}", fmt_bytes(n as f64)),
        None => format!("{what} needs more than 2^64 bytes, over {limit}"),
    }
}

/// Sizes the run from the configuration (checked arithmetic) and picks how the prompt and
/// the check run within `budget`, or says why nothing fits.
fn plan(args: &GenerateArgs, config: &RwkvConfig, prompt_len: usize, budget: u64) -> Result<Plan> {
    let e = elem(args.dtype);
    let hint = "raise --memory-budget or use a smaller model";
    let params = param_count(config);
    // the checkpoint's values stay in host memory as f64 while the model exists
    let host = params.and_then(|p| p.checked_mul(8));
    let model = model_bytes(config, e);
    let vocab = config.vocab_size as u64;
    let rows = |n: usize| (n as u64).checked_mul(vocab)?.checked_mul(8);
    // generated ids, plus both runs' rows of logits when checking
    let kept = (args.max_new as u64).checked_mul(8).and_then(|ids| {
        if args.check {
            rows(args.max_new)?.checked_mul(2)?.checked_add(ids)
        } else {
            Some(ids)
        }
    });
    let fixed = host.zip(model).and_then(|(h, m)| h.checked_add(m));
    let after_model = match fixed {
        Some(f) if f <= budget => budget - f,
        _ => bail!(
            "{} (estimated before allocating it); {hint}",
            over(
                &format!(
                    "the model ({} parameters, V = {}, C = {}, L = {}) with its float64 host copy",
                    params.map_or("more than 2^64".into(), lab_util::fmt_count),
                    config.vocab_size,
                    config.d_model,
                    config.n_layers,
                ),
                fixed,
                budget
            ),
        ),
    };
    let available = match kept {
        Some(k) if k <= after_model => after_model - k,
        _ => {
            let (what, fix) = if args.check {
                (
                    "keeping the generated ids and, for --check, two rows of V logits per token",
                    "lower --max-new or drop --check",
                )
            } else {
                ("keeping the generated ids", "lower --max-new")
            };
            bail!(
                "{}; {fix}",
                over_left(
                    &format!("--max-new {}: {what}", args.max_new),
                    kept,
                    after_model
                )
            )
        }
    };
    let mut notes = Vec::new();
    let explicit = args.prompt_mode.is_some();
    let asked = args.prompt_mode.unwrap_or(WkvMode::Parallel);
    let whole = |mode| forward_bytes(config, 1, prompt_len, mode, e);
    let fits = |mode| whole(mode).is_some_and(|b| b <= available);
    let (mut prompt_mode, mut piece) = (asked, None);
    if !fits(asked) {
        let reason = over_left(
            &format!("one {asked} forward over the {prompt_len}-token prompt"),
            whole(asked),
            available,
        );
        if !explicit && fits(WkvMode::Scan) {
            prompt_mode = WkvMode::Scan;
            notes.push(format!(
                "{reason}; using the scan form instead (O(T·C), same result)"
            ));
        } else {
            if !explicit {
                prompt_mode = WkvMode::Scan;
            }
            let Some(p) = largest_piece(config, prompt_len, prompt_mode, e, available) else {
                bail!(
                    "{}; {hint}",
                    over_left(
                        &format!("a {prompt_mode} forward of even one token"),
                        forward_bytes(config, 1, 1, prompt_mode, e),
                        available
                    )
                );
            };
            piece = Some(p);
            notes.push(format!(
                "{reason}; running it in {} pieces of at most {p} tokens ({}), the state carried between them (exact)",
                prompt_len.div_ceil(p),
                prompt_mode
            ));
        }
    }
    let prompt_forward =
        forward_bytes(config, 1, piece.unwrap_or(prompt_len), prompt_mode, e).unwrap_or(u64::MAX);

    let mut check_mode = args.check_mode.unwrap_or(WkvMode::Parallel);
    let mut check_forward = None;
    if args.check {
        let longest = prompt_len.saturating_add(args.max_new - 1);
        let need = |mode| forward_bytes(config, 1, longest, mode, e);
        let ok = |mode| need(mode).is_some_and(|b| b <= available);
        if !ok(check_mode) {
            let reason = over_left(
                &format!("--check: a {check_mode} forward over {longest} tokens"),
                need(check_mode),
                available,
            );
            if args.check_mode.is_none() && ok(WkvMode::Scan) {
                notes.push(format!("{reason}; checking with the scan form instead"));
                check_mode = WkvMode::Scan;
            } else {
                bail!(
                    "{reason}; use --check-mode scan, a smaller --max-new, or raise --memory-budget"
                );
            }
        }
        check_forward = need(check_mode);
    }
    Ok(Plan {
        prompt_mode,
        prompt_piece: piece,
        check_mode,
        memory: MemoryReport {
            budget,
            checkpoint_host: host.unwrap_or(u64::MAX),
            model: model.unwrap_or(u64::MAX),
            prompt_forward,
            check_forward,
        },
        notes,
    })
}

/// Where the tokenizer is: `--tokenizer` (a file, or a folder holding tokenizer.json), else
/// tokenizer.json in the checkpoint's folder, else none.
fn tokenizer_path(args: &GenerateArgs) -> Result<Option<PathBuf>> {
    if let Some(t) = &args.tokenizer {
        let file = if t.is_dir() {
            t.join("tokenizer.json")
        } else {
            t.clone()
        };
        if !file.is_file() {
            bail!("--tokenizer {}: no such file", file.display());
        }
        return Ok(Some(file));
    }
    let folder = if args.checkpoint.is_dir() {
        Some(args.checkpoint.as_path())
    } else {
        args.checkpoint.parent()
    };
    Ok(folder
        .map(|f| {
            if f.as_os_str().is_empty() {
                Path::new(".").join("tokenizer.json")
            } else {
                f.join("tokenizer.json")
            }
        })
        .filter(|p| p.is_file()))
}

fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| {
        let msg = e.to_string();
        anyhow::anyhow!(
            "{}: cannot read as a Hugging Face tokenizer.json: {}",
            path.display(),
            msg.lines().next().unwrap_or("")
        )
    })
}

/// Prints tokens as they come: text through a decode stream (which holds back a token that
/// ends inside a UTF-8 character until the character is complete), or comma-separated ids.
type Stream<'t> = tokenizers::DecodeStream<
    't,
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

struct Printer<'t> {
    tokenizer: Option<&'t Tokenizer>,
    /// `None` with a tokenizer: the stream failed, the text comes out at the end.
    stream: Option<Stream<'t>>,
    ids: Vec<u32>,
    printed: String,
    quiet: bool,
    first: bool,
    error: Option<std::io::Error>,
}

impl<'t> Printer<'t> {
    fn new(tokenizer: Option<&'t Tokenizer>, quiet: bool) -> Self {
        Self {
            tokenizer,
            stream: tokenizer.map(|t| t.decode_stream(false)),
            ids: Vec::new(),
            printed: String::new(),
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
        if self.tokenizer.is_none() {
            let s = if self.first {
                id.to_string()
            } else {
                format!(",{id}")
            };
            self.first = false;
            return self.write(&s);
        };
        let id = id as u32;
        self.ids.push(id);
        let Some(stream) = self.stream.as_mut() else {
            return ControlFlow::Continue(());
        };
        match stream.step(id) {
            Ok(Some(chunk)) => {
                self.printed.push_str(&chunk);
                self.write(&chunk)
            }
            Ok(None) => ControlFlow::Continue(()),
            // a decoder whose output is not prefix-stable: print the rest at the end
            Err(_) => {
                self.stream = None;
                ControlFlow::Continue(())
            }
        }
    }

    /// Whatever the stream still holds back (an incomplete character at the very end comes
    /// out as U+FFFD), and the full decoded text.
    fn finish(&mut self) -> Result<Option<String>> {
        let Some(tok) = self.tokenizer else {
            let _ = self.write("\n");
            return Ok(None);
        };
        let full = tok
            .decode(&self.ids, false)
            .map_err(|e| anyhow::anyhow!("decoding the generated tokens: {e}"))?;
        let rest = full.strip_prefix(&self.printed).unwrap_or("").to_string();
        let end = if full.ends_with('\n') { "" } else { "\n" };
        let _ = self.write(&format!("{rest}{end}"));
        Ok(Some(full))
    }
}

struct Gen<'a, 'p> {
    args: &'a GenerateArgs,
    ckpt: &'a Checkpoint,
    prompt: &'a [i64],
    plan: &'a Plan,
    printer: &'a mut Printer<'p>,
}

impl Job for Gen<'_, '_> {
    type Output = (Generation, Option<Generation>);

    fn run<B: crate::backend::Metered>(self, device: B::Device) -> Result<Self::Output> {
        let a = self.args;
        let model = self.ckpt.to_model::<B>(&device)?;
        let mut sampler = Sampler::new(a.temperature, a.top_p, a.seed)?;
        let opts = GenerateOptions {
            prompt_mode: self.plan.prompt_mode,
            prompt_piece: self.plan.prompt_piece,
            keep_logits: a.check,
        };
        // warm-up: one one-token forward, so that the prompt's time excludes the backend's
        // one-time setup (thread pools, kernel compilation on GPUs)
        let warm = burn::tensor::Tensor::<B, 2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(vec![self.prompt[0]], [1, 1]),
            &device,
        );
        let (warm, _) = model.forward(warm, None, self.plan.prompt_mode)?;
        let _ = warm.into_data();
        let printer = self.printer;
        let out = generate_streaming(
            &model,
            self.prompt,
            a.max_new,
            &mut sampler,
            opts,
            |t: NewToken<'_>| printer.token(t.token),
        )?;
        let check = if a.check && !out.stopped {
            let mut again = Sampler::new(a.temperature, a.top_p, a.seed)?;
            Some(generate_by_forward(
                &model,
                self.prompt,
                a.max_new,
                &mut again,
                self.plan.check_mode,
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

/// Runs the command; returns whether the check (if any) passed.
pub fn run(args: GenerateArgs) -> Result<bool> {
    let budget = args.memory_budget.unwrap_or_else(default_memory_budget);
    let tok_path = tokenizer_path(&args)?;
    if args.prompt.is_some() && tok_path.is_none() {
        bail!(
            "--prompt needs a tokenizer: there is no tokenizer.json next to {}; give --tokenizer FILE, or token ids with --tokens",
            args.checkpoint.display()
        );
    }
    let tokenizer = tok_path.as_deref().map(load_tokenizer).transpose()?;

    // reading the checkpoint holds its values as f64: check that before reading it
    let read = rwkv_checkpoint::read_bytes_estimate(&args.checkpoint)?;
    if read > budget {
        bail!(
            "{}; raise --memory-budget or use a smaller model",
            over(
                &format!(
                    "reading {} (values held as float64)",
                    args.checkpoint.display()
                ),
                Some(read),
                budget
            )
        );
    }
    let ckpt = load(&args.checkpoint)?;
    let v = ckpt.config.vocab_size;

    let prompt: Vec<i64> = match (&args.prompt, &tokenizer) {
        (Some(text), Some(tok)) => tok
            .encode(text.as_str(), true)
            .map_err(|e| anyhow::anyhow!("--prompt: the tokenizer cannot encode it: {e}"))?
            .get_ids()
            .iter()
            .map(|&i| i64::from(i))
            .collect(),
        _ => args.tokens.clone(),
    };
    if prompt.is_empty() {
        bail!("--prompt: the text encodes to no tokens; give a non-empty prompt");
    }
    if let Err(e) = ckpt.config.check_tokens(&prompt, [1, prompt.len()]) {
        let from = match (&args.prompt, &tok_path) {
            (Some(_), Some(p)) => format!(
                " (the tokenizer {} knows {} ids; it does not belong to this model)",
                p.display(),
                tokenizer.as_ref().map_or(0, |t| t.get_vocab_size(true))
            ),
            _ => String::new(),
        };
        bail!("{}: {e}{from}", args.checkpoint.display());
    }
    let mut notes = Vec::new();
    if let (Some(t), Some(p)) = (&tokenizer, &tok_path) {
        let n = t.get_vocab_size(true);
        if n < v {
            notes.push(format!(
                "the tokenizer {} knows {n} ids but the model has V = {v}; ids from {n} up print as nothing",
                p.display()
            ));
        }
    }
    let plan = plan(&args, &ckpt.config, prompt.len(), budget)?;
    notes.extend(plan.notes.iter().cloned());
    if !args.json {
        for n in &notes {
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
    let shown = ckpt.path.display().to_string();
    let mut printer = Printer::new(tokenizer.as_ref(), args.json);
    let mut prompt_text = None;
    if !args.json {
        println!(
            "checkpoint {shown} ({}); {} on {}; {sampling}",
            ckpt.format.describe(),
            args.dtype.name(),
            args.backend.name()
        );
        match &tok_path {
            Some(p) => println!(
                "tokenizer {}; prompt of {} tokens, then {} new tokens:",
                p.display(),
                prompt.len(),
                args.max_new
            ),
            None => {
                println!(
                    "prompt    ({} tokens): {}",
                    prompt.len(),
                    ids_short(&prompt)
                );
                print!("generated ({} tokens): ", args.max_new);
            }
        }
    }
    if let Some(tok) = &tokenizer {
        // the prompt goes through the same decode stream, so that the continuation's first
        // characters are decoded in context (a leading space, a character split across the
        // boundary); it is printed as the tokenizer reads it back
        for &id in &prompt {
            let _ = printer.token(id);
        }
        let ids32: Vec<u32> = prompt.iter().map(|&i| i as u32).collect();
        prompt_text = tok.decode(&ids32, false).ok();
    }
    let (out, check) = dispatch(
        args.backend,
        args.dtype,
        Gen {
            args: &args,
            ckpt: &ckpt,
            prompt: &prompt,
            plan: &plan,
            printer: &mut printer,
        },
    )?;
    let full = printer.finish()?;
    if let Some(e) = &printer.error
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        bail!("writing to standard output: {e}");
    }
    let text = match (full, &prompt_text) {
        (Some(f), Some(p)) => Some(f.strip_prefix(p.as_str()).unwrap_or(&f).to_string()),
        (f, _) => f,
    };

    let check_report = check.as_ref().map(|c| {
        let first_mismatch = out.tokens.iter().zip(&c.tokens).position(|(a, b)| a != b);
        let max_logit_diff = out
            .logits
            .iter()
            .zip(&c.logits)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0.0, f64::max);
        CheckReport {
            mode: plan.check_mode.to_string(),
            pass: first_mismatch.is_none(),
            first_mismatch,
            max_logit_diff,
        }
    });
    let per_token = out.seconds_per_step();
    let report = Report {
        checkpoint: shown,
        tokenizer: tok_path.as_ref().map(|p| p.display().to_string()),
        backend: args.backend.name(),
        dtype: args.dtype.name(),
        prompt: prompt.clone(),
        prompt_text,
        generated: out.tokens.clone(),
        text,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        prompt_mode: plan.prompt_mode.to_string(),
        prompt_pieces: out.prompt_pieces,
        prompt_seconds: out.prompt_seconds,
        prompt_tokens_per_second: prompt.len() as f64 / out.prompt_seconds,
        seconds_per_token: per_token,
        tokens_per_second: per_token.map(|s| 1.0 / s),
        memory: plan.memory,
        notes,
        check: check_report,
    };
    let pass = report.check.as_ref().is_none_or(|c| c.pass);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(pass);
    }
    if printer.error.is_some() {
        // the reader went away (broken pipe): nothing more to say
        return Ok(pass);
    }
    let pieces = if out.prompt_pieces > 1 {
        format!(", {} pieces", out.prompt_pieces)
    } else {
        String::new()
    };
    let prompt_part = format!(
        "prompt: {} tokens in {:.2} ms ({}{pieces}; {:.0} tokens/s)",
        prompt.len(),
        out.prompt_seconds * 1e3,
        report.prompt_mode,
        report.prompt_tokens_per_second
    );
    match per_token {
        Some(s) => println!(
            "{prompt_part}; new tokens: {:.3} ms per token in RNN mode ({:.0} tokens/s over {} steps)",
            s * 1e3,
            1.0 / s,
            out.step_seconds.len()
        ),
        None => println!("{prompt_part}"),
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
