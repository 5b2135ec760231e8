//! Generation behind `rwkv-lab generate`, callable from Rust: resolve the prompt (token
//! ids, or text through a Hugging Face `tokenizer.json`), check sizes against the memory
//! budget before anything large is allocated ([`plan`]), then continue the prompt (prompt in
//! GPT mode, new tokens in RNN mode, each handed to a callback as it is sampled) and
//! optionally check the continuation against whole-sequence forwards. The decode loop is
//! [`rwkv::generate`]; this module never prints.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use burn::backend::NdArray;
//! use rwkv_lab_core::generate::{Request, generate, prepare};
//!
//! let req = Request { tokens: vec![1, 2, 3], max_new: 8, ..Request::new("model.pth") };
//! let prepared = prepare(&req).unwrap();
//! let out = generate::<NdArray<f32>>(&Default::default(), &req, &prepared, |t| {
//!     println!("{}", t.token);
//!     ControlFlow::Continue(())
//! })
//! .unwrap();
//! assert_eq!(out.generation.tokens.len(), 8);
//! ```

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::{Int, Tensor, TensorData};
use rwkv::generate::{
    GenerateOptions, Generation, NewToken, Sampler, StepEngine, generate_by_forward,
    generate_streaming,
};
use rwkv::{RwkvError, WkvBackend, WkvMode};
use rwkv_checkpoint::{Checkpoint, CheckpointError, load};
use serde::Serialize;
use tokenizers::Tokenizer;

mod plan;
mod text;

pub use plan::{Limit, MemoryReport, Plan, over, plan};
pub use text::{TextStream, load_tokenizer, tokenizer_path};

/// What to refuse when nothing fits: the common advice.
const HINT: &str = "raise --memory-budget or use a smaller model";

/// Errors of a generation; each message is one line naming the option or file.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// `--tokenizer` names no file.
    #[error("--tokenizer {}: no such file", .0.display())]
    NoTokenizerFile(PathBuf),
    /// A prompt text, but no tokenizer to encode it.
    #[error(
        "--prompt needs a tokenizer: there is no tokenizer.json next to {}; give --tokenizer FILE, or token ids with --tokens",
        .checkpoint.display()
    )]
    NoTokenizer {
        /// The checkpoint, as given.
        checkpoint: PathBuf,
    },
    /// The tokenizer file cannot be read.
    #[error("{}: cannot read as a Hugging Face tokenizer.json: {reason}", .path.display())]
    TokenizerRead {
        /// The file.
        path: PathBuf,
        /// The reader's first line of explanation.
        reason: String,
    },
    /// Reading the checkpoint (values held as f64) would not fit the budget.
    #[error(
        "{}; {}",
        over(&format!("reading {} (values held as float64)", .path.display()), Some(*.needed), Limit::Budget(*.budget)),
        HINT
    )]
    ReadTooLarge {
        /// The checkpoint, as given.
        path: PathBuf,
        /// Estimated bytes.
        needed: u64,
        /// The budget.
        budget: u64,
    },
    /// The model with its float64 host copy would not fit the budget.
    #[error(
        "{} (estimated before allocating it); {}",
        over(
            &format!(
                "the model ({} parameters, V = {}, C = {}, L = {}) with its float64 host copy",
                .params.map_or("more than 2^64".into(), lab_util::fmt_count),
                .vocab,
                .d_model,
                .n_layers,
            ),
            *.needed,
            Limit::Budget(*.budget)
        ),
        HINT
    )]
    ModelTooLarge {
        /// Parameters (None: beyond 64-bit arithmetic).
        params: Option<u64>,
        /// V.
        vocab: usize,
        /// C.
        d_model: usize,
        /// L.
        n_layers: usize,
        /// Estimated bytes.
        needed: Option<u64>,
        /// The budget.
        budget: u64,
    },
    /// The generated ids (and the check's logits) would not fit what the model leaves.
    #[error("{}", kept_too_large(*.max_new, *.check, *.needed, *.left))]
    KeptTooLarge {
        /// New tokens asked for.
        max_new: usize,
        /// Whether checking (two rows of logits kept per token).
        check: bool,
        /// Estimated bytes.
        needed: Option<u64>,
        /// What the budget leaves after the model.
        left: u64,
    },
    /// Not even a one-token prompt forward fits.
    #[error(
        "{}; {}",
        over(&format!("a {} forward of even one token", .mode), *.needed, Limit::Left(*.left)),
        HINT
    )]
    PromptTooLarge {
        /// The prompt's formulation.
        mode: WkvMode,
        /// Estimated bytes.
        needed: Option<u64>,
        /// What the budget leaves after the model.
        left: u64,
    },
    /// The check's whole-sequence forward in the mode asked for does not fit.
    #[error(
        "{}; use --check-mode scan, a smaller --max-new, or raise --memory-budget",
        plan::check_over(*.mode, *.tokens, *.needed, *.left)
    )]
    CheckTooLarge {
        /// The check's formulation.
        mode: WkvMode,
        /// Its longest sequence.
        tokens: usize,
        /// Estimated bytes.
        needed: Option<u64>,
        /// What the budget leaves after the model.
        left: u64,
    },
    /// The tokenizer cannot encode the prompt text.
    #[error("--prompt: the tokenizer cannot encode it: {0}")]
    Encode(String),
    /// The prompt text encodes to no tokens.
    #[error("--prompt: the text encodes to no tokens; give a non-empty prompt")]
    EmptyPrompt,
    /// A prompt id the model does not have.
    #[error(
        "{}: {error}{}",
        .checkpoint.display(),
        .tokenizer.as_ref().map(|(p, n)| format!(
            " (the tokenizer {} knows {n} ids; it does not belong to this model)",
            p.display()
        )).unwrap_or_default()
    )]
    Tokens {
        /// The checkpoint, as given.
        checkpoint: PathBuf,
        /// The model's reason.
        error: RwkvError,
        /// The tokenizer the prompt text came through, and its number of ids.
        tokenizer: Option<(PathBuf, usize)>,
    },
    /// Decoding the generated tokens failed.
    #[error("decoding the generated tokens: {0}")]
    Decode(String),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] RwkvError),
    /// The checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

fn kept_too_large(max_new: usize, check: bool, needed: Option<u64>, left: u64) -> String {
    let (what, fix) = if check {
        (
            "keeping the generated ids and, for --check, two rows of V logits per token",
            "lower --max-new or drop --check",
        )
    } else {
        ("keeping the generated ids", "lower --max-new")
    };
    let what = format!("--max-new {max_new}: {what}");
    format!("{}; {fix}", over(&what, needed, Limit::Left(left)))
}

/// What to generate (the options of `rwkv-lab generate`).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// A BlinkDL .pth, a .safetensors file, or a Hugging Face model folder.
    pub checkpoint: PathBuf,
    /// A tokenizer.json (or a folder holding one); default: the checkpoint's own, if any.
    pub tokenizer: Option<PathBuf>,
    /// Prompt token ids (used when `prompt` is `None`).
    pub tokens: Vec<i64>,
    /// Prompt text (needs a tokenizer).
    pub prompt: Option<String>,
    /// Number of new tokens.
    pub max_new: usize,
    /// Sampling temperature, ≥ 0; 0 is greedy.
    pub temperature: f64,
    /// Nucleus sampling mass, in (0, 1].
    pub top_p: f64,
    /// Seed of the sampler.
    pub seed: u64,
    /// Recompute the continuation with whole-sequence forwards and compare.
    pub check: bool,
    /// The prompt's formulation (`None`: parallel, with the scan form as fallback).
    pub prompt_mode: Option<WkvMode>,
    /// The check's formulation (`None`: parallel, with the scan form as fallback).
    pub check_mode: Option<WkvMode>,
    /// Bytes the generation may use.
    pub memory_budget: u64,
    /// Bytes per value of the backend's float type (4 or 8).
    pub element_bytes: usize,
    /// What runs the RNN-mode steps (the CPU decoder holds a second, f32 copy of the weights).
    pub step_engine: StepEngine,
}

impl Request {
    /// The defaults of `rwkv-lab generate` for `checkpoint` (no prompt yet; 8 GiB budget).
    pub fn new(checkpoint: impl Into<PathBuf>) -> Self {
        Self {
            checkpoint: checkpoint.into(),
            tokenizer: None,
            tokens: Vec::new(),
            prompt: None,
            max_new: 32,
            temperature: 1.0,
            top_p: 0.85,
            seed: 0,
            check: false,
            prompt_mode: None,
            check_mode: None,
            memory_budget: 8 << 30,
            element_bytes: 4,
            step_engine: StepEngine::Model,
        }
    }

    /// A new sampler with the request's settings.
    fn sampler(&self) -> Result<Sampler, RwkvError> {
        Sampler::new(self.temperature, self.top_p, self.seed)
    }
}

/// The tokenizer in use.
#[derive(Debug)]
pub struct Text {
    /// Its file.
    pub path: PathBuf,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
}

/// A request resolved and sized: everything checked, nothing large allocated yet.
#[derive(Debug)]
pub struct Prepared {
    /// The checkpoint, read and validated.
    pub checkpoint: Checkpoint,
    /// The tokenizer, if any.
    pub text: Option<Text>,
    /// The prompt's ids.
    pub prompt: Vec<i64>,
    /// The prompt as the tokenizer reads it back (with a tokenizer).
    pub prompt_text: Option<String>,
    /// The memory plan.
    pub plan: Plan,
    /// What the caller should know (a tokenizer smaller than the model, what the plan
    /// changed to fit), one sentence each.
    pub notes: Vec<String>,
}

/// Resolves the tokenizer and the prompt, reads the checkpoint (its size checked against
/// the budget first) and makes the memory plan.
///
/// # Errors
/// A missing or unreadable tokenizer, a prompt text without one, a checkpoint or model
/// over the budget, an empty prompt, ids outside the vocabulary, and the checkpoint's own
/// errors.
pub fn prepare(req: &Request) -> Result<Prepared, GenerateError> {
    let budget = req.memory_budget;
    let tok_path = tokenizer_path(req.tokenizer.as_deref(), &req.checkpoint)?;
    if req.prompt.is_some() && tok_path.is_none() {
        return Err(GenerateError::NoTokenizer {
            checkpoint: req.checkpoint.clone(),
        });
    }
    let text = match tok_path {
        Some(path) => Some(Text {
            tokenizer: load_tokenizer(&path)?,
            path,
        }),
        None => None,
    };

    // reading the checkpoint holds its values as f64: check that before reading it
    let needed = rwkv_checkpoint::read_bytes_estimate(&req.checkpoint)?;
    if needed > budget {
        return Err(GenerateError::ReadTooLarge {
            path: req.checkpoint.clone(),
            needed,
            budget,
        });
    }
    let checkpoint = load(&req.checkpoint)?;
    let v = checkpoint.config.vocab_size;

    let prompt: Vec<i64> = match (&req.prompt, &text) {
        (Some(s), Some(t)) => t
            .tokenizer
            .encode(s.as_str(), true)
            .map_err(|e| GenerateError::Encode(e.to_string()))?
            .get_ids()
            .iter()
            .map(|&i| i64::from(i))
            .collect(),
        _ => req.tokens.clone(),
    };
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if let Err(error) = checkpoint.config.check_tokens(&prompt, [1, prompt.len()]) {
        return Err(GenerateError::Tokens {
            checkpoint: req.checkpoint.clone(),
            error,
            tokenizer: match (&req.prompt, &text) {
                (Some(_), Some(t)) => Some((t.path.clone(), t.tokenizer.get_vocab_size(true))),
                _ => None,
            },
        });
    }
    let mut notes = Vec::new();
    if let Some(t) = &text {
        let n = t.tokenizer.get_vocab_size(true);
        if n < v {
            notes.push(format!(
                "the tokenizer {} knows {n} ids but the model has V = {v}; ids from {n} up print as nothing",
                t.path.display()
            ));
        }
    }
    let plan = plan(req, &checkpoint.config, prompt.len())?;
    notes.extend(plan.notes.iter().cloned());
    let prompt_text = text.as_ref().and_then(|t| {
        let ids: Vec<u32> = prompt.iter().map(|&i| i as u32).collect();
        t.tokenizer.decode(&ids, false).ok()
    });
    Ok(Prepared {
        checkpoint,
        text,
        prompt,
        prompt_text,
        plan,
        notes,
    })
}

/// The continuation and, when checking, the same continuation recomputed by
/// whole-sequence forwards.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The streamed continuation (prompt in GPT mode, RNN mode after).
    pub generation: Generation,
    /// The check's continuation (none when not checking or when the callback stopped).
    pub check: Option<Generation>,
}

/// Builds the model on `B`, runs one warm-up forward (so that the prompt's time excludes
/// the backend's one-time setup: thread pools, kernel compilation on GPUs), then continues
/// the prompt as planned, handing each new token to `on_token` before the next RNN step
/// (`Break` stops there). With [`Request::check`], the continuation is recomputed with a
/// whole-sequence forward from scratch before every token, same sampler and seed.
///
/// # Errors
/// Building the model, or the model's errors.
pub fn generate<B: WkvBackend>(
    device: &B::Device,
    req: &Request,
    prep: &Prepared,
    on_token: impl FnMut(NewToken<'_>) -> ControlFlow<()>,
) -> Result<Outcome, GenerateError> {
    let model = prep.checkpoint.to_model::<B>(device)?;
    let mut sampler = req.sampler()?;
    let plan = &prep.plan;
    let opts = GenerateOptions {
        prompt_mode: plan.prompt_mode,
        prompt_piece: plan.prompt_piece,
        keep_logits: req.check,
        step_engine: req.step_engine,
    };
    let warm =
        Tensor::<B, 2, Int>::from_data(TensorData::new(vec![prep.prompt[0]], [1, 1]), device);
    let (warm, _) = model.forward(warm, None, plan.prompt_mode)?;
    let _ = warm.into_data();
    let generation = generate_streaming(
        &model,
        &prep.prompt,
        req.max_new,
        &mut sampler,
        opts,
        on_token,
    )?;
    let check = if req.check && !generation.stopped {
        let mut again = req.sampler()?;
        Some(generate_by_forward(
            &model,
            &prep.prompt,
            req.max_new,
            &mut again,
            plan.check_mode,
        )?)
    } else {
        None
    };
    Ok(Outcome { generation, check })
}

/// The comparison of the streamed continuation with the check's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The check's formulation.
    pub mode: String,
    /// Both picked the same tokens.
    pub pass: bool,
    /// The first new token where they differ.
    pub first_mismatch: Option<usize>,
    /// Largest |difference| between the rows of logits.
    pub max_logit_diff: f64,
}

impl CheckReport {
    /// Compares `out` with `check` (computed in `mode`).
    pub fn compare(out: &Generation, check: &Generation, mode: WkvMode) -> Self {
        let first_mismatch = out
            .tokens
            .iter()
            .zip(&check.tokens)
            .position(|(a, b)| a != b);
        let max_logit_diff = out
            .logits
            .iter()
            .zip(&check.logits)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0.0, f64::max);
        Self {
            mode: mode.to_string(),
            pass: first_mismatch.is_none(),
            first_mismatch,
            max_logit_diff,
        }
    }
}

/// Everything about one generation (the `--json` output of `rwkv-lab generate`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The file the tensors came from.
    pub checkpoint: String,
    /// The tokenizer file, if any.
    pub tokenizer: Option<String>,
    /// Backend name.
    pub backend: String,
    /// Float type name.
    pub dtype: String,
    /// The prompt's ids.
    pub prompt: Vec<i64>,
    /// The prompt as the tokenizer reads it back.
    pub prompt_text: Option<String>,
    /// The new tokens.
    pub generated: Vec<i64>,
    /// The new tokens as text.
    pub text: Option<String>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Sampler seed.
    pub seed: u64,
    /// The prompt's formulation.
    pub prompt_mode: String,
    /// Prompt forwards (pieces).
    pub prompt_pieces: usize,
    /// Seconds for the prompt.
    pub prompt_seconds: f64,
    /// Prompt tokens per second.
    pub prompt_tokens_per_second: f64,
    /// What ran the RNN steps (`model` or `cpu-decoder`).
    pub step_engine: String,
    /// Mean seconds per RNN step, if any.
    pub seconds_per_token: Option<f64>,
    /// RNN steps per second, if any.
    pub tokens_per_second: Option<f64>,
    /// The memory estimates.
    pub memory: MemoryReport,
    /// Notes (see [`Prepared::notes`]).
    pub notes: Vec<String>,
    /// The check, when there was one.
    pub check: Option<CheckReport>,
}

impl Report {
    /// The report of `out`; `full_text` is the decoded text of prompt and continuation
    /// (the continuation's text is what follows the prompt's).
    pub fn new(
        req: &Request,
        prep: &Prepared,
        out: &Outcome,
        full_text: Option<String>,
        backend: &str,
        dtype: &str,
    ) -> Self {
        let g = &out.generation;
        let text = match (full_text, &prep.prompt_text) {
            (Some(f), Some(p)) => Some(f.strip_prefix(p.as_str()).unwrap_or(&f).to_string()),
            (f, _) => f,
        };
        let per_token = g.seconds_per_step();
        Self {
            checkpoint: prep.checkpoint.path.display().to_string(),
            tokenizer: prep.text.as_ref().map(|t| t.path.display().to_string()),
            backend: backend.into(),
            dtype: dtype.into(),
            prompt: prep.prompt.clone(),
            prompt_text: prep.prompt_text.clone(),
            generated: g.tokens.clone(),
            text,
            temperature: req.temperature,
            top_p: req.top_p,
            seed: req.seed,
            prompt_mode: prep.plan.prompt_mode.to_string(),
            prompt_pieces: g.prompt_pieces,
            prompt_seconds: g.prompt_seconds,
            prompt_tokens_per_second: prep.prompt.len() as f64 / g.prompt_seconds,
            step_engine: req.step_engine.name().into(),
            seconds_per_token: per_token,
            tokens_per_second: per_token.map(|s| 1.0 / s),
            memory: prep.plan.memory.clone(),
            notes: prep.notes.clone(),
            check: out
                .check
                .as_ref()
                .map(|c| CheckReport::compare(g, c, prep.plan.check_mode)),
        }
    }

    /// No check, or a check that passed.
    pub fn pass(&self) -> bool {
        self.check.as_ref().is_none_or(|c| c.pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    fn fixture(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(path)
    }

    #[test]
    fn text_streams_whole_characters_and_the_tokenizer_is_found_next_to_the_model() {
        let dir = fixture("tokenizer-tiny");
        let found = tokenizer_path(None, &dir.join("model.safetensors")).unwrap();
        assert_eq!(found, Some(dir.join("tokenizer.json")));
        assert_eq!(tokenizer_path(Some(&dir), &dir).unwrap(), found);
        assert_eq!(
            tokenizer_path(None, &fixture("reference-tiny/model.pth")).unwrap(),
            None
        );
        let e = tokenizer_path(Some(&dir.join("nope.json")), &dir).unwrap_err();
        assert!(e.to_string().ends_with("nope.json: no such file"), "{e}");
        let e = load_tokenizer(&fixture("reference-tiny/config.json")).unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot read as a Hugging Face tokenizer.json")
        );

        let tok = load_tokenizer(found.as_ref().unwrap()).unwrap();
        let sentence = "café ☃ and more";
        let ids = tok.encode(sentence, true).unwrap().get_ids().to_vec();
        let mut stream = TextStream::new(&tok);
        let mut out = String::new();
        for &id in &ids {
            if let Some(chunk) = stream.push(i64::from(id)) {
                assert!(!chunk.contains('\u{FFFD}'), "{chunk:?}");
                out.push_str(&chunk);
            }
        }
        let (rest, full) = stream.finish().unwrap();
        assert_eq!(format!("{out}{rest}"), sentence);
        assert_eq!(full, sentence);
    }

    #[test]
    fn prepare_refuses_with_the_reason_and_generate_checks_itself() {
        let model = fixture("reference-tiny/model.pth");
        let text = Request {
            prompt: Some("Hello".into()),
            ..Request::new(&model)
        };
        assert!(matches!(
            prepare(&text),
            Err(GenerateError::NoTokenizer { .. })
        ));
        let foreign = Request {
            tokenizer: Some(fixture("tokenizer-tiny")),
            ..text
        };
        let e = prepare(&foreign).unwrap_err();
        assert!(
            e.to_string().contains("does not belong to this model"),
            "{e}"
        );
        let empty = Request::new(&model);
        assert!(matches!(prepare(&empty), Err(GenerateError::EmptyPrompt)));
        let tiny = Request {
            tokens: vec![1],
            memory_budget: 1024,
            ..Request::new(&model)
        };
        assert!(matches!(
            prepare(&tiny),
            Err(GenerateError::ReadTooLarge { .. })
        ));

        let req = Request {
            tokens: vec![1, 2, 3],
            max_new: 6,
            temperature: 0.0,
            check: true,
            ..Request::new(&model)
        };
        let prep = prepare(&req).unwrap();
        assert!(prep.notes.is_empty() && prep.prompt_text.is_none());
        let mut seen = Vec::new();
        let out = generate::<NdArray<f32>>(&Default::default(), &req, &prep, |t| {
            seen.push(t.token);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(seen, out.generation.tokens);
        let report = Report::new(&req, &prep, &out, None, "ndarray", "f32");
        assert!(report.pass(), "{report:?}");
        assert_eq!(report.check.as_ref().unwrap().first_mismatch, None);
        assert_eq!(report.generated.len(), 6);
        // a check that picks another token fails, naming where
        let mut other = out.check.clone().unwrap();
        other.tokens[2] += 1;
        let c = CheckReport::compare(&out.generation, &other, WkvMode::Parallel);
        assert_eq!((c.pass, c.first_mismatch), (false, Some(2)));
    }
}
