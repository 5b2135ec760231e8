//! Text generation: prompt in GPT mode, continuation in RNN mode, and the check that a
//! whole-sequence forward at every step picks the same tokens.
//!
//! [`generate_streaming`] hands every new token to a callback as soon as it is sampled (the
//! CLI prints it there; this crate never prints). [`GenerateOptions::prompt_piece`] runs a
//! long prompt in pieces with the state carried from one piece to the next. That is exact:
//! the state a forward returns is the recurrence's state after its last token (paper
//! eq. 16; `docs/design.md`, state carrying), so the pieces see the same history as one
//! whole-prompt forward, while the working memory is that of one piece. [`model_bytes`] and
//! [`forward_bytes`] estimate memory from the configuration alone, in checked arithmetic, so
//! that a caller can refuse or split work before allocating it.

use std::ops::ControlFlow;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::config::RwkvConfig;
use crate::decode::{CpuDecoder, DecoderState};
use crate::error::{Result, RwkvError};
use crate::model::Rwkv;
use crate::verify::to_f64;
use crate::wkv::{WkvBackend, WkvMode};
use lab_util::SplitMix64;

/// Temperature and nucleus (top-p) sampling with a seeded generator; greedy (argmax) when
/// the temperature is 0.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f64,
    top_p: f64,
    rng: SplitMix64,
}

impl Sampler {
    /// `temperature ≥ 0` (0 = greedy), `0 < top_p ≤ 1`.
    pub fn new(temperature: f64, top_p: f64, seed: u64) -> Result<Self> {
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(RwkvError::Config {
                field: "temperature",
                reason: format!("must be ≥ 0 and finite, got {temperature}"),
            });
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(RwkvError::Config {
                field: "top_p",
                reason: format!("must be in (0, 1], got {top_p}"),
            });
        }
        Ok(Self {
            temperature,
            top_p,
            rng: SplitMix64::new(seed),
        })
    }

    /// Whether this sampler is greedy.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Picks a token from one row of logits. Draws exactly one random number per call
    /// (also when greedy), so two samplers with the same seed stay in step.
    pub fn sample(&mut self, logits: &[f64]) -> usize {
        let u = self.rng.uniform();
        let argmax = logits
            .iter()
            .enumerate()
            .fold(0, |best, (i, x)| if *x > logits[best] { i } else { best });
        if self.is_greedy() {
            return argmax;
        }
        let m = logits[argmax];
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, x)| (i, ((x - m) / self.temperature).exp()))
            .collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = probs.iter().map(|p| p.1).sum();
        let mut kept = 0.0;
        let mut cut = probs.len();
        for (i, p) in probs.iter().enumerate() {
            kept += p.1 / total;
            if kept >= self.top_p {
                cut = i + 1;
                break;
            }
        }
        let nucleus = &probs[..cut];
        let mass: f64 = nucleus.iter().map(|p| p.1).sum();
        let mut acc = 0.0;
        for p in nucleus {
            acc += p.1 / mass;
            if u < acc {
                return p.0;
            }
        }
        nucleus.last().map(|p| p.0).unwrap_or(argmax)
    }
}

/// How [`generate_streaming`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateOptions {
    /// WKV formulation of the prompt's whole-sequence forward(s).
    pub prompt_mode: WkvMode,
    /// Tokens per prompt forward: the prompt runs in pieces of at most this many tokens,
    /// the state carried between them (exact; bounds the working memory). `None`: the
    /// whole prompt in one forward.
    pub prompt_piece: Option<usize>,
    /// Keep each new token's row of logits in [`Generation::logits`] (`V` f64 per token;
    /// needed to compare two runs, not to generate).
    pub keep_logits: bool,
    /// What runs the RNN-mode steps after the prompt.
    pub step_engine: StepEngine,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            prompt_mode: WkvMode::Parallel,
            prompt_piece: None,
            keep_logits: true,
            step_engine: StepEngine::Model,
        }
    }
}

/// What runs the RNN-mode steps of a generation (the prompt always runs in the model's
/// GPT mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepEngine {
    /// [`Rwkv::step`] on the model's backend and precision.
    #[default]
    Model,
    /// [`CpuDecoder`]: f32 on the host, weights laid out once for matrix–vector products
    /// (equal to [`Rwkv::step`] to f32 rounding; about 4 more bytes per parameter).
    CpuDecoder,
}

impl StepEngine {
    /// `"model"` or `"cpu-decoder"`.
    pub fn name(self) -> &'static str {
        match self {
            StepEngine::Model => "model",
            StepEngine::CpuDecoder => "cpu-decoder",
        }
    }
}

/// One new token, as handed to the callback of [`generate_streaming`].
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    /// 0 for the first new token.
    pub index: usize,
    /// The token id.
    pub token: i64,
    /// The logits it was drawn from (`V` values).
    pub logits: &'a [f64],
}

/// Result of [`generate`] and [`generate_streaming`].
#[derive(Debug, Clone)]
pub struct Generation {
    /// The new tokens.
    pub tokens: Vec<i64>,
    /// The logits each new token was drawn from (one row of V per token); empty unless
    /// [`GenerateOptions::keep_logits`].
    pub logits: Vec<Vec<f64>>,
    /// Seconds for the prompt (GPT mode), up to its last row of logits on the host.
    pub prompt_seconds: f64,
    /// Number of prompt forwards (pieces).
    pub prompt_pieces: usize,
    /// Seconds for each RNN step (one per new token after the first), each up to its
    /// logits on the host; sampling and the callback are not included.
    pub step_seconds: Vec<f64>,
    /// Whether the callback stopped the generation before `max_new` tokens.
    pub stopped: bool,
}

impl Generation {
    /// Mean seconds per RNN step, if there was one.
    pub fn seconds_per_step(&self) -> Option<f64> {
        (!self.step_seconds.is_empty())
            .then(|| self.step_seconds.iter().sum::<f64>() / self.step_seconds.len() as f64)
    }
}

fn ids<B: Backend>(tokens: &[i64], device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(tokens.to_vec(), [1, tokens.len()]), device)
}

/// The last row of `[1, T, V]` logits, on the host. Reading the data waits for the
/// backend, so a clock stopped after this call includes the device work.
fn last_row<B: Backend>(logits: Tensor<B, 3>) -> Vec<f64> {
    let [_, t, v] = logits.dims();
    to_f64(logits.slice([0..1, t - 1..t, 0..v]))
}

/// Processes `prompt` in GPT mode with `prompt_mode`, then generates `max_new` tokens in
/// RNN mode, one `step` each, keeping every row of logits.
pub fn generate<B: WkvBackend>(
    model: &Rwkv<B>,
    prompt: &[i64],
    max_new: usize,
    sampler: &mut Sampler,
    prompt_mode: WkvMode,
) -> Result<Generation> {
    let opts = GenerateOptions {
        prompt_mode,
        ..GenerateOptions::default()
    };
    generate_streaming(model, prompt, max_new, sampler, opts, |_| {
        ControlFlow::Continue(())
    })
}

/// As [`generate`], handing each new token to `on_token` as soon as it is sampled (before
/// the next RNN step). `on_token` returning `Break` stops the generation there
/// ([`Generation::stopped`]).
///
/// # Errors
/// An empty prompt, a prompt id outside `0..V`, `prompt_piece = Some(0)`, chunk length 0.
pub fn generate_streaming<B: WkvBackend>(
    model: &Rwkv<B>,
    prompt: &[i64],
    max_new: usize,
    sampler: &mut Sampler,
    opts: GenerateOptions,
    mut on_token: impl FnMut(NewToken<'_>) -> ControlFlow<()>,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(RwkvError::EmptySequence);
    }
    if opts.prompt_piece == Some(0) {
        return Err(RwkvError::Config {
            field: "prompt_piece",
            reason: "must be at least 1 token".into(),
        });
    }
    let device = model.emb.weight.device();
    let piece = opts.prompt_piece.unwrap_or(prompt.len()).min(prompt.len());
    let start = Instant::now();
    let mut state = None;
    let mut logits = None;
    let mut pieces = 0;
    for chunk in prompt.chunks(piece) {
        let (l, s) = model.forward(ids::<B>(chunk, &device), state.take(), opts.prompt_mode)?;
        state = Some(s);
        logits = Some(l);
        pieces += 1;
    }
    let (Some(logits), Some(mut state)) = (logits, state) else {
        return Err(RwkvError::EmptySequence);
    };
    let mut row = last_row(logits);
    let prompt_seconds = start.elapsed().as_secs_f64();
    // built after the prompt (its time is in neither figure), and only when a step follows:
    // the layout copy of the weights
    let mut decoding = match opts.step_engine {
        StepEngine::CpuDecoder if max_new > 1 => {
            let d = CpuDecoder::from_model(model)?;
            let buf = vec![0f32; d.vocab_size()];
            Some((d, DecoderState::from_state(&state)?, buf))
        }
        _ => None,
    };
    let mut out = Generation {
        tokens: Vec::new(),
        logits: Vec::new(),
        prompt_seconds,
        prompt_pieces: pieces,
        step_seconds: Vec::new(),
        stopped: false,
    };
    for i in 0..max_new {
        let next = sampler.sample(&row) as i64;
        out.tokens.push(next);
        let flow = on_token(NewToken {
            index: i,
            token: next,
            logits: &row,
        });
        if opts.keep_logits {
            out.logits.push(std::mem::take(&mut row));
        }
        if flow.is_break() {
            out.stopped = i + 1 < max_new;
            break;
        }
        if i + 1 == max_new {
            break;
        }
        let start = Instant::now();
        row = match &mut decoding {
            Some((d, s, buf)) => {
                d.step(next, s, buf)?;
                buf.iter().map(|&x| x as f64).collect()
            }
            None => {
                let tok = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![next], [1]), &device);
                to_f64(model.step(tok, &mut state)?)
            }
        };
        out.step_seconds.push(start.elapsed().as_secs_f64());
    }
    Ok(out)
}

/// The same continuation recomputed with a whole-sequence forward (from scratch, in
/// `mode`) before every token: O(N²) work, for checking [`generate`].
pub fn generate_by_forward<B: WkvBackend>(
    model: &Rwkv<B>,
    prompt: &[i64],
    max_new: usize,
    sampler: &mut Sampler,
    mode: WkvMode,
) -> Result<Generation> {
    let device = model.emb.weight.device();
    let mut seq = prompt.to_vec();
    let mut out = Generation {
        tokens: Vec::new(),
        logits: Vec::new(),
        prompt_seconds: 0.0,
        prompt_pieces: 0,
        step_seconds: Vec::new(),
        stopped: false,
    };
    for _ in 0..max_new {
        let (logits, _) = model.forward(ids::<B>(&seq, &device), None, mode)?;
        let row = last_row(logits);
        let next = sampler.sample(&row) as i64;
        seq.push(next);
        out.tokens.push(next);
        out.logits.push(row);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Memory estimates (checked arithmetic: `None` means "does not fit in 64 bits", which a
// caller reports as over any budget rather than as a wrapped, misleading number)

/// Number of parameters, `2VC + L(4C² + 2CF + C²) + 11CL + 2C (+ 2C for ln0)`, the same
/// count as [`RwkvConfig::num_params`], in checked arithmetic.
pub fn param_count(config: &RwkvConfig) -> Option<u64> {
    let (v, c, l, f) = (
        config.vocab_size as u64,
        config.d_model as u64,
        config.n_layers as u64,
        config.d_ffn as u64,
    );
    let ln0 = if config.variant.ln0 { 2 * c } else { 0 };
    let emb_head = v.checked_mul(c)?.checked_mul(2)?;
    // per layer: 4 C×C in time mix, C×F twice and C×C in channel mix, 11 vectors of C
    let per_layer = c
        .checked_mul(c)?
        .checked_mul(5)?
        .checked_add(c.checked_mul(f)?.checked_mul(2)?)?
        .checked_add(c.checked_mul(11)?)?;
    emb_head
        .checked_add(per_layer.checked_mul(l)?)?
        .checked_add(2 * c)?
        .checked_add(ln0)
}

/// Bytes of the parameters at `elem` bytes per value.
pub fn model_bytes(config: &RwkvConfig, elem: usize) -> Option<u64> {
    param_count(config)?.checked_mul(elem as u64)
}

/// Estimated working memory in bytes of one [`Rwkv::forward`] over `batch × time` tokens:
/// the activations of one block and the logits, `B·T·(12C + F + V)` values, plus the WKV
/// formulation's own intermediates: `4·B·C·T²` for the parallel form (its `[T, T]` logits
/// per channel, paper eq. 16 for every t at once), `4·B·C·T·min(L, T)` for `chunked:L`, `4·B·T·C` for
/// the scan and the recurrence, plus the state `5·L·B·C`. The same terms as the scaling
/// runner's prefill estimate.
pub fn forward_bytes(
    config: &RwkvConfig,
    batch: usize,
    time: usize,
    mode: WkvMode,
    elem: usize,
) -> Option<u64> {
    let (b, t, e) = (batch as u64, time as u64, elem as u64);
    let (v, c, l, f) = (
        config.vocab_size as u64,
        config.d_model as u64,
        config.n_layers as u64,
        config.d_ffn as u64,
    );
    let bt = b.checked_mul(t)?;
    let width = c.checked_mul(12)?.checked_add(f)?.checked_add(v)?;
    let activations = bt.checked_mul(width)?;
    let span = match mode {
        WkvMode::Parallel => t,
        WkvMode::Chunked { len } => (len as u64).min(t),
        WkvMode::Scan | WkvMode::Recurrent => 1,
    };
    let wkv = bt.checked_mul(c)?.checked_mul(span)?.checked_mul(4)?;
    let state = l.checked_mul(b)?.checked_mul(c)?.checked_mul(5)?;
    activations
        .checked_add(wkv)?
        .checked_add(state)?
        .checked_mul(e)
}

/// The longest prompt piece (at most `time`, at least 1) whose [`forward_bytes`] fits in
/// `available` bytes, or `None` when not even one token fits.
pub fn largest_piece(
    config: &RwkvConfig,
    time: usize,
    mode: WkvMode,
    elem: usize,
    available: u64,
) -> Option<usize> {
    let fits = |t: usize| forward_bytes(config, 1, t, mode, elem).is_some_and(|b| b <= available);
    if time == 0 || !fits(1) {
        return None;
    }
    if fits(time) {
        return Some(time);
    }
    // forward_bytes grows with t: bisect for the largest fitting length
    let (mut lo, mut hi) = (1, time);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_and_sampling_is_seeded() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        let mut g = Sampler::new(0.0, 1.0, 1).unwrap();
        assert_eq!(g.sample(&logits), 1);
        let draws = |seed| {
            let mut s = Sampler::new(1.0, 1.0, seed).unwrap();
            (0..200).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        let d = draws(3);
        assert!(d.contains(&1) && d.contains(&3) && d.contains(&0));
        // top-p 0.5 keeps only the two best (1 and 3 hold ~0.82 of the mass together)
        let mut s = Sampler::new(1.0, 0.5, 9).unwrap();
        assert!(
            (0..200)
                .map(|_| s.sample(&logits))
                .all(|t| t == 1 || t == 3)
        );
        assert!(Sampler::new(-1.0, 1.0, 0).is_err());
        assert!(Sampler::new(1.0, 0.0, 0).is_err());
    }

    #[test]
    fn param_count_matches_the_config_and_overflow_is_none() {
        for cfg in [
            RwkvConfig::rwkv4(50, 32, 2),
            RwkvConfig::new(300, 24, 3, 40),
            RwkvConfig::rwkv4(7, 4, 1).with_variant(crate::Variant {
                ln0: false,
                ..Default::default()
            }),
        ] {
            assert_eq!(param_count(&cfg), Some(cfg.num_params() as u64), "{cfg:?}");
        }
        let huge = RwkvConfig::rwkv4(10_000_000, 1 << 40, 4);
        assert_eq!(param_count(&huge), None);
        assert_eq!(
            model_bytes(&RwkvConfig::rwkv4(1 << 40, 1 << 22, 1), 4),
            None
        );
        assert_eq!(
            forward_bytes(
                &RwkvConfig::rwkv4(50, 32, 2),
                1,
                usize::MAX,
                WkvMode::Parallel,
                4
            ),
            None
        );
    }

    #[test]
    fn forward_estimate_orders_the_formulations_and_pieces_fit() {
        let cfg = RwkvConfig::rwkv4(50_277, 768, 12);
        let at = |mode| forward_bytes(&cfg, 1, 5000, mode, 4).unwrap();
        assert!(at(WkvMode::Parallel) > at(WkvMode::Chunked { len: 64 }));
        assert!(at(WkvMode::Chunked { len: 64 }) > at(WkvMode::Scan));
        assert_eq!(at(WkvMode::Scan), at(WkvMode::Recurrent));
        // T = 5000, C = 768, f32: the [T, T] intermediates alone are 4·C·T²·4 bytes ≈ 307 GB
        assert!(at(WkvMode::Parallel) > 300_000_000_000);
        let budget = 2_000_000_000;
        let p = largest_piece(&cfg, 5000, WkvMode::Parallel, 4, budget).unwrap();
        assert!(forward_bytes(&cfg, 1, p, WkvMode::Parallel, 4).unwrap() <= budget);
        assert!(forward_bytes(&cfg, 1, p + 1, WkvMode::Parallel, 4).unwrap() > budget);
        assert_eq!(
            largest_piece(&cfg, 5000, WkvMode::Scan, 4, u64::MAX),
            Some(5000)
        );
        assert_eq!(largest_piece(&cfg, 5000, WkvMode::Scan, 4, 10), None);
    }
}
