//! The WKV operator benchmark behind `bench-wkv`: each formulation on random inputs, for
//! several sequence lengths, through the same timing loop and memory estimate as the
//! scaling study. Measures and returns rows; the CLI prints them.

use std::num::NonZeroUsize;

use burn::tensor::{Element, Tensor, TensorData};
use lab_util::{SplitMix64, float_opts};
use rwkv::wkv::wkv;
use rwkv::{WkvBackend, WkvMode};

use crate::estimate::{DeviceLimits, wkv_bytes, wkv_largest_bytes};
use crate::meter::PeakMeter;
use crate::timing::{Stats, time_repeated};

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A `--modes` entry that names no formulation.
    #[error(
        "unknown formulation `{0}` in --modes (expected recurrent, parallel, chunked, chunked:LEN, scan or all)"
    )]
    UnknownMode(String),
    /// Nothing selected.
    #[error("--modes selects no formulation")]
    NoModes,
    /// No sequence length.
    #[error("--seq-lens is empty")]
    NoSeqLens,
    /// The operator or the device failed.
    #[error("{0}")]
    Run(String),
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct WkvBench {
    /// Batch size B.
    pub batch: usize,
    /// Channels C.
    pub channels: usize,
    /// Sequence lengths T, in the order measured.
    pub seq_lens: Vec<usize>,
    /// Formulations, in the order measured.
    pub modes: Vec<WkvMode>,
    /// Timed runs per measurement.
    pub repeats: NonZeroUsize,
    /// Untimed warm-up runs per measurement.
    pub warmup: usize,
    /// Bytes above which a formulation is skipped.
    pub memory_budget: u64,
    /// The device's largest single buffer: a formulation whose largest tensor is estimated
    /// above it is skipped. None: no such limit (CPU).
    pub max_buffer: Option<u64>,
    /// Seed of the random inputs.
    pub seed: u64,
}

/// One measurement (or a skipped one).
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// Sequence length.
    pub seq_len: usize,
    /// Formulation.
    pub mode: WkvMode,
    /// Estimated working memory.
    pub estimate: u64,
    /// Estimated largest single tensor.
    pub largest: u64,
    /// Median/min/max seconds, or why it was skipped (over the budget or the device's
    /// largest buffer).
    pub stats: Result<Stats, String>,
}

/// The formulations named in `names` (as `WkvMode` parses them, plus `chunked` for one
/// entry per `chunk_lens` value and `all` for [`WkvMode::all`] the same way), in order.
pub fn select_modes(names: &[String], chunk_lens: &[usize]) -> Result<Vec<WkvMode>, BenchError> {
    let mut out = Vec::new();
    for name in names {
        match name.trim().to_ascii_lowercase().as_str() {
            "chunked" => out.extend(chunk_lens.iter().map(|&len| WkvMode::Chunked { len })),
            "all" => {
                for (i, &len) in chunk_lens.iter().enumerate() {
                    out.extend(
                        WkvMode::all(len)
                            .into_iter()
                            .filter(|m| i == 0 || matches!(m, WkvMode::Chunked { .. })),
                    );
                }
            }
            other => out.push(
                other
                    .parse::<WkvMode>()
                    .map_err(|_| BenchError::UnknownMode(name.trim().to_string()))?,
            ),
        }
    }
    if out.is_empty() {
        return Err(BenchError::NoModes);
    }
    Ok(out)
}

/// Random operator inputs for one T: decays `w = -exp(U(-4, 2))`, bonuses `u ~ U(-2, 2)`,
/// keys and values `~ U(-3, 3)`.
struct Inputs<B: WkvBackend> {
    w: Tensor<B, 1>,
    u: Tensor<B, 1>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
}

impl<B: WkvBackend> Inputs<B> {
    fn new(seed: u64, b: usize, t: usize, c: usize, device: &B::Device) -> Self {
        let mut rng = SplitMix64::new(seed ^ t as u64);
        let mut draw = |n: usize, lo: f64, hi: f64| rng.fill(n, |r| r.range(lo, hi));
        let (w, u) = (draw(c, -4.0, 2.0), draw(c, -2.0, 2.0));
        let (k, v) = (draw(b * t * c, -3.0, 3.0), draw(b * t * c, -3.0, 3.0));
        let opts = || float_opts::<B>(device);
        Inputs {
            w: Tensor::<B, 1>::from_data(TensorData::new(w, [c]), opts())
                .exp()
                .neg(),
            u: Tensor::from_data(TensorData::new(u, [c]), opts()),
            k: Tensor::from_data(TensorData::new(k, [b, t, c]), opts()),
            v: Tensor::from_data(TensorData::new(v, [b, t, c]), opts()),
        }
    }
}

/// Times every (T, formulation) of `bench`; `progress` hears the label of each
/// measurement as it starts.
pub fn run_wkv<B: WkvBackend>(
    bench: &WkvBench,
    device: &B::Device,
    meter: &dyn PeakMeter,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<BenchRow>, BenchError> {
    if bench.seq_lens.is_empty() {
        return Err(BenchError::NoSeqLens);
    }
    if bench.modes.is_empty() {
        return Err(BenchError::NoModes);
    }
    let elem = <B::FloatElem as Element>::dtype().size();
    let (b, c) = (bench.batch, bench.channels);
    let mut rows = Vec::new();
    for &t in &bench.seq_lens {
        let x = Inputs::<B>::new(bench.seed, b, t, c, device);
        for &mode in &bench.modes {
            progress(&format!("T={t} {mode}"));
            let estimate = wkv_bytes(mode, b, t, c, elem);
            let largest = wkv_largest_bytes(mode, b, t, c, elem);
            let limits = DeviceLimits {
                memory_budget: bench.memory_budget,
                max_buffer: bench.max_buffer,
            };
            let stats = if let Some(why) = limits.check(estimate, largest) {
                Err(why)
            } else {
                let timed = time_repeated(
                    bench.warmup,
                    bench.repeats,
                    meter,
                    || B::sync(device).map_err(|e| format!("device sync failed: {e:?}")),
                    || {
                        wkv(
                            mode,
                            x.w.clone(),
                            x.u.clone(),
                            x.k.clone(),
                            x.v.clone(),
                            None,
                        )
                        .map(|(y, _)| y)
                        .map_err(|e| e.to_string())
                    },
                )
                .map_err(BenchError::Run)?;
                Ok(timed.stats)
            };
            rows.push(BenchRow {
                seq_len: t,
                mode,
                estimate,
                largest,
                stats,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_through_wkv_mode() {
        let names = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        let m = select_modes(&names("recurrent, chunked,scan,chunked:8,RNN"), &[16, 64]).unwrap();
        assert_eq!(
            m,
            [
                WkvMode::Recurrent,
                WkvMode::Chunked { len: 16 },
                WkvMode::Chunked { len: 64 },
                WkvMode::Scan,
                WkvMode::Chunked { len: 8 },
                WkvMode::Recurrent
            ]
        );
        assert_eq!(
            select_modes(&names("all"), &[16, 64]).unwrap(),
            [
                WkvMode::Recurrent,
                WkvMode::Parallel,
                WkvMode::Chunked { len: 16 },
                WkvMode::Scan,
                WkvMode::Chunked { len: 64 }
            ]
        );
        let e = select_modes(&names("fast"), &[16]).unwrap_err().to_string();
        assert!(e.contains("unknown formulation `fast`"), "{e}");
        assert!(select_modes(&names("chunked:0"), &[16]).is_err());
        assert!(matches!(
            select_modes(&names("chunked"), &[]),
            Err(BenchError::NoModes)
        ));
    }

    #[test]
    fn runs_and_skips_over_budget() {
        type B = burn::backend::NdArray<f32>;
        let bench = WkvBench {
            batch: 1,
            channels: 4,
            seq_lens: vec![8, 16],
            modes: vec![WkvMode::Scan, WkvMode::Parallel],
            repeats: NonZeroUsize::new(3).unwrap(),
            warmup: 1,
            memory_budget: wkv_bytes(WkvMode::Parallel, 1, 8, 4, 4),
            max_buffer: None,
            seed: 0,
        };
        let mut seen = Vec::new();
        let rows = run_wkv::<B>(
            &bench,
            &Default::default(),
            &crate::meter::NoMeter,
            &mut |l| seen.push(l.to_string()),
        )
        .unwrap();
        assert_eq!(
            seen,
            ["T=8 scan", "T=8 parallel", "T=16 scan", "T=16 parallel"]
        );
        let ran: Vec<bool> = rows.iter().map(|r| r.stats.is_ok()).collect();
        assert_eq!(ran, [true, true, true, false]);
        let s = rows[0].stats.clone().unwrap();
        assert!(s.min > 0.0 && s.min <= s.median && s.median <= s.max);
    }
}
