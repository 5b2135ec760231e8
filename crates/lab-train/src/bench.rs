//! Training throughput: the loop's own step ([`crate::train::Stepper`]) on random bytes.

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use lab_util::SplitMix64;
use rwkv::WkvBackend;

use crate::error::Result;
use crate::task::Batch;
use crate::train::{LabModel, Stepper, TrainConfig};
use crate::variant::Arch;

/// Result of [`bench`].
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    /// Timed steps.
    pub steps: usize,
    /// Seconds per step (mean over the timed steps).
    pub step_s: f64,
    /// Training tokens per second (`batch · seq_len / step_s`).
    pub tokens_per_s: f64,
    /// Parameters of the model.
    pub num_params: usize,
}

/// Trains `arch` on uniform random tokens for `warmup + steps` steps of `cfg.batch ×
/// cfg.seq_len` tokens at the constant rate `cfg.lr` and times the last `steps`
/// (forward, backward, both AdamW steps; the loss is read every step).
///
/// # Errors
/// A config or model error.
pub fn bench<B: AutodiffBackend + WkvBackend>(
    arch: &Arch,
    cfg: &TrainConfig,
    warmup: usize,
    steps: usize,
    device: &B::Device,
) -> Result<BenchResult> {
    cfg.validate()?;
    let model = LabModel::<B>::init(arch, cfg.seed, device)?;
    let mut stepper = Stepper::new(model, cfg);
    let mut rng = SplitMix64::new(cfg.seed);
    let v = arch.vocab_size() as u64;
    let n = cfg.batch * cfg.seq_len;
    let mut batch = || {
        let tokens: Vec<i64> = (0..n + cfg.batch).map(|_| rng.below(v) as i64).collect();
        Batch {
            inputs: tokens[..n].to_vec(),
            targets: tokens[cfg.batch..].to_vec(),
            rows: cfg.batch,
            time: cfg.seq_len,
        }
    };
    for _ in 0..warmup {
        stepper.step(&batch(), cfg.lr, device)?;
    }
    let batches: Vec<Batch> = (0..steps).map(|_| batch()).collect();
    let t0 = Instant::now();
    for b in &batches {
        stepper.step(b, cfg.lr, device)?;
    }
    let step_s = t0.elapsed().as_secs_f64() / steps.max(1) as f64;
    Ok(BenchResult {
        steps,
        step_s,
        tokens_per_s: n as f64 / step_s,
        num_params: arch.num_params(),
    })
}
