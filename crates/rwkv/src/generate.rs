//! Text generation: prompt in GPT mode, continuation in RNN mode, and the check that a
//! whole-sequence forward at every step picks the same tokens.

use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

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
                reason: format!("must be >= 0, got {temperature}"),
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

/// Result of [`generate`].
#[derive(Debug, Clone)]
pub struct Generation {
    /// The new tokens.
    pub tokens: Vec<i64>,
    /// The logits each new token was drawn from (one row of V per token).
    pub logits: Vec<Vec<f64>>,
    /// Seconds for the prompt (GPT mode).
    pub prompt_seconds: f64,
    /// Seconds for each RNN step after the first token.
    pub step_seconds: Vec<f64>,
}

fn ids<B: Backend>(tokens: &[i64], device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(tokens.to_vec(), [1, tokens.len()]), device)
}

fn last_row<B: Backend>(logits: Tensor<B, 3>) -> Vec<f64> {
    let [_, t, v] = logits.dims();
    to_f64(logits.slice([0..1, t - 1..t, 0..v]))
}

/// Processes `prompt` in GPT mode with `prompt_mode`, then generates `max_new` tokens in
/// RNN mode, one `step` each.
pub fn generate<B: WkvBackend>(
    model: &Rwkv<B>,
    prompt: &[i64],
    max_new: usize,
    sampler: &mut Sampler,
    prompt_mode: WkvMode,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(RwkvError::EmptySequence);
    }
    let device = model.emb.weight.device();
    let start = Instant::now();
    let (logits, mut state) = model.forward(ids::<B>(prompt, &device), None, prompt_mode)?;
    let mut row = last_row(logits);
    let prompt_seconds = start.elapsed().as_secs_f64();
    let mut out = Generation {
        tokens: Vec::new(),
        logits: Vec::new(),
        prompt_seconds,
        step_seconds: Vec::new(),
    };
    for i in 0..max_new {
        let next = sampler.sample(&row) as i64;
        out.tokens.push(next);
        out.logits.push(std::mem::take(&mut row));
        if i + 1 == max_new {
            break;
        }
        let start = Instant::now();
        let tok = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![next], [1]), &device);
        row = to_f64(model.step(tok, &mut state)?);
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
        step_seconds: Vec::new(),
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
}
