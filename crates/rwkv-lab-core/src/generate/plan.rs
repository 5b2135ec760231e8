//! The memory plan of a generation, made from the configuration before anything large is
//! allocated (checked arithmetic: `None` means "beyond 64 bits", which fits no budget):
//! the model with its float64 host copy must fit the budget; what it leaves must hold the
//! generated ids (and, for the check, two rows of logits per token) and the prompt's
//! forward. A prompt forward that does not fit runs in the scan form (default mode) or in
//! pieces with the state carried between them (exact: paper eq. 16, `docs/design.md`,
//! state carrying), said in a note; the check's forwards fall back to the scan form.

use std::fmt;

use lab_util::fmt_bytes;
use rwkv::generate::{StepEngine, forward_bytes, largest_piece, model_bytes, param_count};
use rwkv::{RwkvConfig, WkvMode};
use serde::Serialize;

use super::{GenerateError, Request};

/// What an estimate is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The whole memory budget (bytes).
    Budget(u64),
    /// What the budget leaves once the model is in memory (bytes).
    Left(u64),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Budget(b) => write!(f, "the memory budget of {}", fmt_bytes(*b as f64)),
            Limit::Left(l) => write!(
                f,
                "the {} that the memory budget leaves after the model",
                fmt_bytes(*l as f64)
            ),
        }
    }
}

/// `{what} needs about N, over {limit}` (or `needs more than 2^64 bytes`).
pub fn over(what: &str, need: Option<u64>, limit: Limit) -> String {
    match need {
        Some(n) => format!("{what} needs about {}, over {limit}", fmt_bytes(n as f64)),
        None => format!("{what} needs more than 2^64 bytes, over {limit}"),
    }
}

/// The estimates of a generation, in bytes (as reported in `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryReport {
    /// The budget.
    pub budget: u64,
    /// The checkpoint's values, held as f64 on the host while the model exists.
    pub checkpoint_host: u64,
    /// The model's parameters.
    pub model: u64,
    /// One prompt forward (one piece, when in pieces).
    pub prompt_forward: u64,
    /// The longest whole-sequence forward of the check, if checking.
    pub check_forward: Option<u64>,
}

/// What the memory check decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// WKV formulation of the prompt forward(s).
    pub prompt_mode: WkvMode,
    /// Tokens per prompt forward, when the prompt runs in pieces.
    pub prompt_piece: Option<usize>,
    /// WKV formulation of the check's whole-sequence forwards.
    pub check_mode: WkvMode,
    /// The estimates.
    pub memory: MemoryReport,
    /// What was changed to fit, one sentence each.
    pub notes: Vec<String>,
}

/// Sizes the run from the configuration (checked arithmetic) and picks how the prompt and
/// the check run within `req.memory_budget`, or says why nothing fits.
///
/// # Errors
/// The model, the kept ids and logits, a one-token prompt forward, or (with an explicit
/// `check_mode`) the check's forward does not fit.
pub fn plan(req: &Request, config: &RwkvConfig, prompt_len: usize) -> Result<Plan, GenerateError> {
    let (e, budget) = (req.element_bytes, req.memory_budget);
    let params = param_count(config);
    // the checkpoint's values stay in host memory as f64 while the model exists
    let host = params.and_then(|p| p.checked_mul(8));
    let model = model_bytes(config, e).and_then(|m| match req.step_engine {
        // the CPU decoder's own f32 copy of the weights
        StepEngine::CpuDecoder => m.checked_add(model_bytes(config, 4)?),
        StepEngine::Model => Some(m),
    });
    let vocab = config.vocab_size as u64;
    let rows = |n: usize| (n as u64).checked_mul(vocab)?.checked_mul(8);
    // generated ids, plus both runs' rows of logits when checking
    let kept = (req.max_new as u64).checked_mul(8).and_then(|ids| {
        if req.check {
            rows(req.max_new)?.checked_mul(2)?.checked_add(ids)
        } else {
            Some(ids)
        }
    });
    let fixed = host.zip(model).and_then(|(h, m)| h.checked_add(m));
    let after_model = match fixed {
        Some(f) if f <= budget => budget - f,
        _ => {
            return Err(GenerateError::ModelTooLarge {
                params,
                vocab: config.vocab_size,
                d_model: config.d_model,
                n_layers: config.n_layers,
                needed: fixed,
                budget,
            });
        }
    };
    let available = match kept {
        Some(k) if k <= after_model => after_model - k,
        _ => {
            return Err(GenerateError::KeptTooLarge {
                max_new: req.max_new,
                check: req.check,
                needed: kept,
                left: after_model,
            });
        }
    };
    let left = Limit::Left(available);
    let mut notes = Vec::new();
    let explicit = req.prompt_mode.is_some();
    let asked = req.prompt_mode.unwrap_or(WkvMode::Parallel);
    let whole = |mode| forward_bytes(config, 1, prompt_len, mode, e);
    let fits = |mode| whole(mode).is_some_and(|b| b <= available);
    let (mut prompt_mode, mut piece) = (asked, None);
    if !fits(asked) {
        let reason = over(
            &format!("one {asked} forward over the {prompt_len}-token prompt"),
            whole(asked),
            left,
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
                return Err(GenerateError::PromptTooLarge {
                    mode: prompt_mode,
                    needed: forward_bytes(config, 1, 1, prompt_mode, e),
                    left: available,
                });
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

    let mut check_mode = req.check_mode.unwrap_or(WkvMode::Parallel);
    let mut check_forward = None;
    if req.check {
        let longest = prompt_len.saturating_add(req.max_new - 1);
        let need = |mode| forward_bytes(config, 1, longest, mode, e);
        let ok = |mode| need(mode).is_some_and(|b| b <= available);
        if !ok(check_mode) {
            if req.check_mode.is_none() && ok(WkvMode::Scan) {
                notes.push(format!(
                    "{}; checking with the scan form instead",
                    check_over(check_mode, longest, need(check_mode), available)
                ));
                check_mode = WkvMode::Scan;
            } else {
                return Err(GenerateError::CheckTooLarge {
                    mode: check_mode,
                    tokens: longest,
                    needed: need(check_mode),
                    left: available,
                });
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

/// Why the check's forward in `mode` over `tokens` tokens does not fit.
pub(super) fn check_over(mode: WkvMode, tokens: usize, needed: Option<u64>, left: u64) -> String {
    over(
        &format!("--check: a {mode} forward over {tokens} tokens"),
        needed,
        Limit::Left(left),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(max_new: usize, check: bool, budget: u64) -> Request {
        Request {
            max_new,
            check,
            memory_budget: budget,
            ..Request::new("m.pth")
        }
    }

    #[test]
    fn a_prompt_that_does_not_fit_falls_back_or_runs_in_pieces() {
        let config = RwkvConfig::rwkv4(50, 32, 2);
        let free = plan(&request(6, false, 1 << 30), &config, 400).unwrap();
        assert_eq!(free.prompt_mode, WkvMode::Parallel);
        assert_eq!((free.prompt_piece, free.notes.len()), (None, 0));
        // the parallel form needs ~79 MiB for 400 tokens, the scan ~1 MiB
        let scan = plan(&request(6, false, 4 << 20), &config, 400).unwrap();
        assert_eq!(scan.prompt_mode, WkvMode::Scan);
        assert!(scan.notes[0].contains("using the scan form"), "{scan:?}");
        let explicit = Request {
            prompt_mode: Some(WkvMode::Parallel),
            ..request(6, false, 4 << 20)
        };
        let pieces = plan(&explicit, &config, 400).unwrap();
        let p = pieces.prompt_piece.unwrap();
        assert!(p > 1 && p < 400, "{pieces:?}");
        assert!(pieces.memory.prompt_forward <= 4 << 20);
        assert!(pieces.notes[0].contains(&format!("{} pieces", 400usize.div_ceil(p))));
    }

    #[test]
    fn what_never_fits_is_refused_with_the_estimate() {
        let config = RwkvConfig::rwkv4(50, 32, 2);
        let e = plan(&request(4, false, 1000), &config, 3).unwrap_err();
        assert!(
            matches!(
                e,
                GenerateError::ModelTooLarge {
                    params: Some(30656),
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("before allocating"), "{e}");
        let e = plan(&request(usize::MAX / 4, true, 1 << 30), &config, 3).unwrap_err();
        assert!(matches!(
            e,
            GenerateError::KeptTooLarge { needed: None, .. }
        ));
        assert!(e.to_string().contains("more than 2^64 bytes"), "{e}");
        let explicit = Request {
            check_mode: Some(WkvMode::Parallel),
            ..request(6, true, 4 << 20)
        };
        let e = plan(&explicit, &config, 400).unwrap_err();
        assert!(e.to_string().contains("--check-mode scan"), "{e}");
        // the default check mode falls back to the scan form
        let fallback = plan(&request(6, true, 4 << 20), &config, 400).unwrap();
        assert_eq!(fallback.check_mode, WkvMode::Scan);
        assert!(fallback.memory.check_forward.is_some());
    }
}
