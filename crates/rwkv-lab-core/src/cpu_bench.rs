//! The speed benchmark behind `rwkv-lab bench`: RNN-mode decoding (ms per token, per step
//! engine), GPT-mode prefill (tokens/s per sequence length and formulation) and the dense
//! products of the model's shapes (GFLOP/s), each through the one timing loop of
//! [`crate::timing`] (warm-up, device sync before the clock stops, median). Measures and
//! returns rows; the CLI prints them as ratios within one run.

use std::num::NonZeroUsize;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use lab_util::{SplitMix64, float_opts};
use rwkv::decode::{CpuDecoder, DecoderState};
use rwkv::generate::StepEngine;
use rwkv::{Rwkv, RwkvConfig, WkvBackend, WkvMode};

use crate::bench::BenchError;
use crate::meter::NoMeter;
use crate::timing::{Stats, time_repeated};

/// The shape of an RWKV-4 model (`d_ffn = 4·d_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Width C.
    pub d_model: usize,
    /// Blocks L.
    pub layers: usize,
}

impl ModelShape {
    /// The RWKV-4 configuration of this shape.
    pub fn config(self) -> RwkvConfig {
        RwkvConfig::rwkv4(self.vocab, self.d_model, self.layers)
    }

    /// A model of this shape with random parameters (every parameter drawn, as
    /// `verify --random` does).
    ///
    /// # Errors
    /// An invalid shape (e.g. a zero).
    pub fn random_model<B: Backend>(
        self,
        device: &B::Device,
        seed: u64,
    ) -> Result<Rwkv<B>, BenchError> {
        self.config()
            .init_randomized::<B>(device, seed)
            .map_err(|e| BenchError::Run(e.to_string()))
    }
}

/// One decode measurement.
#[derive(Debug, Clone)]
pub struct DecodeRow {
    /// What ran the steps.
    pub engine: StepEngine,
    /// Seconds per token: median, min, max over the timed steps.
    pub stats: Stats,
    /// Bytes of weights one step reads (the model's parameters, one embedding row).
    pub bytes_per_step: u64,
}

/// Seconds of each of `warmup + steps` RNN steps of `model` through `engine` (one
/// sequence, a fixed seeded token stream), the warm-up ones dropped; each step's clock
/// stops with its logits on the host.
///
/// # Errors
/// The model's or the decoder's errors.
pub fn run_decode<B: WkvBackend>(
    model: &Rwkv<B>,
    engine: StepEngine,
    warmup: usize,
    steps: NonZeroUsize,
    seed: u64,
) -> Result<DecodeRow, BenchError> {
    let run = |e: rwkv::RwkvError| BenchError::Run(e.to_string());
    let config = &model.config;
    let mut rng = SplitMix64::new(seed ^ 0xdec0de);
    let tokens: Vec<i64> = (0..warmup + steps.get())
        .map(|_| rng.below(config.vocab_size as u64) as i64)
        .collect();
    let device = model.emb.weight.device();
    let mut secs = Vec::with_capacity(tokens.len());
    let params = model.num_params() as u64;
    let emb = (config.vocab_size * config.d_model) as u64;
    // every parameter but the embedding, plus one embedding row
    let weights = params - emb + config.d_model as u64;
    let bytes_per_step;
    match engine {
        StepEngine::Model => {
            bytes_per_step = weights * core::mem::size_of::<B::FloatElem>() as u64;
            let mut state = model.zero_state(1, &device);
            for &t in &tokens {
                let start = Instant::now();
                let tok = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![t], [1]), &device);
                let logits = model.step(tok, &mut state).map_err(run)?;
                let _ = logits.into_data();
                secs.push(start.elapsed().as_secs_f64());
            }
        }
        StepEngine::CpuDecoder => {
            let decoder = CpuDecoder::from_model(model).map_err(run)?;
            bytes_per_step = weights * 4;
            let mut state: DecoderState = decoder.zero_state();
            let mut row = vec![0f32; decoder.vocab_size()];
            for &t in &tokens {
                let start = Instant::now();
                decoder.step(t, &mut state, &mut row).map_err(run)?;
                secs.push(start.elapsed().as_secs_f64());
            }
        }
    }
    Ok(DecodeRow {
        engine,
        stats: Stats::of(&secs[warmup..]).expect("at least one timed step"),
        bytes_per_step,
    })
}

/// Seconds of one whole-sequence forward over `seq_len` tokens (one sequence, logits of
/// every position), median of `repeats` after `warmup`.
///
/// # Errors
/// The model's errors or a failed device sync.
pub fn run_prefill<B: WkvBackend>(
    model: &Rwkv<B>,
    seq_len: usize,
    mode: WkvMode,
    warmup: usize,
    repeats: NonZeroUsize,
    seed: u64,
) -> Result<Stats, BenchError> {
    let config = &model.config;
    let device = model.emb.weight.device();
    let mut rng = SplitMix64::new(seed ^ 0x9f11);
    let ids: Vec<i64> = (0..seq_len)
        .map(|_| rng.below(config.vocab_size as u64) as i64)
        .collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, seq_len]), &device);
    let timed = time_repeated(
        warmup,
        repeats,
        &NoMeter,
        || B::sync(&device).map_err(|e| BenchError::Run(format!("device sync failed: {e:?}"))),
        || {
            model
                .forward(tokens.clone(), None, mode)
                .map(|(logits, _)| logits)
                .map_err(|e| BenchError::Run(e.to_string()))
        },
    )?;
    Ok(timed.stats)
}

/// One dense product `[m, k] × [k, n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmShape {
    /// What it is in the model (e.g. `"ffn.key"`).
    pub name: &'static str,
    /// Rows of the left operand (tokens).
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of the result.
    pub n: usize,
}

impl GemmShape {
    /// `2·m·k·n`.
    pub fn flops(self) -> f64 {
        2.0 * self.m as f64 * self.k as f64 * self.n as f64
    }
}

/// The distinct products of a forward over `m` tokens of `shape` (time-mix projections,
/// channel-mix in and out, the head).
pub fn model_gemms(shape: ModelShape, m: usize) -> Vec<GemmShape> {
    let (c, v) = (shape.d_model, shape.vocab);
    vec![
        GemmShape {
            name: "att.key (C→C)",
            m,
            k: c,
            n: c,
        },
        GemmShape {
            name: "ffn.key (C→4C)",
            m,
            k: c,
            n: 4 * c,
        },
        GemmShape {
            name: "ffn.value (4C→C)",
            m,
            k: 4 * c,
            n: c,
        },
        GemmShape {
            name: "head (C→V)",
            m,
            k: c,
            n: v,
        },
    ]
}

/// Seconds of `[m, k] × [k, n]` on `B` (random operands), median of `repeats` after
/// `warmup`.
///
/// # Errors
/// A failed device sync.
pub fn run_gemm<B: Backend>(
    g: GemmShape,
    device: &B::Device,
    warmup: usize,
    repeats: NonZeroUsize,
    seed: u64,
) -> Result<Stats, BenchError> {
    let mut rng = SplitMix64::new(seed ^ 0x6e33);
    let mut fill = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.range(-1.0, 1.0) as f32).collect() };
    let a = Tensor::<B, 2>::from_data(
        TensorData::new(fill(g.m * g.k), [g.m, g.k]),
        float_opts::<B>(device),
    );
    let b = Tensor::<B, 2>::from_data(
        TensorData::new(fill(g.k * g.n), [g.k, g.n]),
        float_opts::<B>(device),
    );
    let timed = time_repeated(
        warmup,
        repeats,
        &NoMeter,
        || B::sync(device).map_err(|e| BenchError::Run(format!("device sync failed: {e:?}"))),
        || Ok::<_, BenchError>(a.clone().matmul(b.clone())),
    )?;
    Ok(timed.stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn each_part_measures_a_tiny_model() {
        let shape = ModelShape {
            vocab: 40,
            d_model: 16,
            layers: 2,
        };
        let dev = Default::default();
        let model = shape.random_model::<B>(&dev, 1).unwrap();
        let one = NonZeroUsize::new(3).unwrap();
        for engine in [StepEngine::Model, StepEngine::CpuDecoder] {
            let row = run_decode(&model, engine, 1, one, 0).unwrap();
            assert!(row.stats.median > 0.0 && row.stats.min <= row.stats.max);
        }
        // both engines read the same weights: every parameter but the embedding, plus one row
        let d = run_decode(&model, StepEngine::CpuDecoder, 0, one, 0).unwrap();
        let m = run_decode(&model, StepEngine::Model, 0, one, 0).unwrap();
        assert_eq!(d.bytes_per_step, m.bytes_per_step);
        let p = run_prefill(&model, 8, WkvMode::Scan, 0, one, 0).unwrap();
        assert!(p.median > 0.0);
        let gs = model_gemms(shape, 4);
        assert_eq!(gs.len(), 4);
        assert_eq!(gs[3].n, 40);
        assert_eq!(gs[1].flops(), 2.0 * 4.0 * 16.0 * 64.0);
        assert!(run_gemm::<B>(gs[0], &dev, 0, one, 0).unwrap().median > 0.0);
    }
}
