//! The record schema: one CSV row per measurement, plus a `meta.json` per run.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One measurement (or one skipped or failed measurement).
///
/// Kinds:
/// - `prefill`: one whole-sequence forward of `seq_len` tokens (`batch` sequences);
///   `median_s`/`min_s`/`max_s` over `repeats` timed runs; `peak_bytes` is the peak
///   memory allocated during the call above what was allocated before it; `state_bytes`
///   the size of the returned RWKV state or filled KV cache.
/// - `generate`: the `position`-th new token (1-based) after a prompt of
///   `seq_len - position` tokens, i.e. the context holds `seq_len` tokens after it;
///   `median_s` etc. is that token's latency, `cumulative_s` the median time to generate
///   tokens 1..=position, `state_bytes` the state / KV cache after it, `peak_bytes` the peak
///   allocated during that token's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Study name, e.g. `scaling`.
    pub study: String,
    /// `prefill` or `generate`.
    pub kind: String,
    /// `rwkv` or `transformer`.
    pub model: String,
    /// How it ran: `parallel`, `chunked:64`, `scan`, `rnn` (RWKV); `explicit`, `fused`,
    /// `kv-cache` (transformer).
    pub variant: String,
    /// Backend name (`ndarray`, `flex`, `wgpu`, `cuda`).
    pub backend: String,
    /// `f32` or `f64`.
    pub dtype: String,
    /// Batch size.
    pub batch: usize,
    /// Tokens in context after this measurement (prefill: T).
    pub seq_len: usize,
    /// Generate: index of the new token (1-based); prefill: 0.
    pub position: usize,
    /// Model width.
    pub d_model: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Parameters of the model.
    pub params: u64,
    /// Timed repeats behind the statistics.
    pub repeats: usize,
    /// Median seconds (empty when skipped).
    pub median_s: Option<f64>,
    /// Fastest repeat.
    pub min_s: Option<f64>,
    /// Slowest repeat.
    pub max_s: Option<f64>,
    /// Generate: median cumulative seconds for tokens 1..=position.
    pub cumulative_s: Option<f64>,
    /// Peak bytes allocated during the measured call (CPU: counting allocator; GPU: device
    /// memory in use).
    pub peak_bytes: Option<u64>,
    /// Bytes of the carried state (RWKV) or KV cache (transformer) at the end.
    pub state_bytes: Option<u64>,
    /// `ok`, `skipped` (estimate over the memory budget) or `error`.
    pub status: String,
    /// Estimated working memory, for skipped rows (and recorded for all).
    pub estimate_bytes: Option<u64>,
    /// Free text: why skipped, the error, etc.
    pub note: String,
    /// `git describe --always --dirty` of the code that measured.
    pub git_rev: String,
    /// Parameters without the token embedding, positional table and output head (the
    /// convention of Kaplan et al. 2020; the models are matched on this count).
    #[serde(default)]
    pub params_non_embedding: Option<u64>,
}

impl Record {
    /// The key that identifies a measurement, for `--resume`.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.kind,
            self.model,
            self.variant,
            self.batch,
            self.seq_len,
            self.position,
            self.backend
        )
    }

    /// Whether the measurement ran (`status == "ok"`).
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }

    /// Whether this is a prefill measurement.
    pub fn is_prefill(&self) -> bool {
        self.kind == "prefill"
    }

    /// Whether this is a generation measurement.
    pub fn is_generate(&self) -> bool {
        self.kind == "generate"
    }

    /// Generate: tokens of prompt before the first new token (`seq_len - position`);
    /// prefill: `seq_len`.
    pub fn prompt_len(&self) -> usize {
        self.seq_len.saturating_sub(self.position)
    }
}

/// What a run was: written as `meta.json` next to `records.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The command line that produced the records.
    pub command: String,
    /// The resolved spec, as YAML text.
    pub spec: String,
    /// Seed of parameters and tokens.
    pub seed: u64,
    /// Backend.
    pub backend: String,
    /// Device description.
    pub device: String,
    /// Precision.
    pub dtype: String,
    /// Git revision.
    pub git_rev: String,
    /// `name version` of the crates that matter (burn, rwkv-lab).
    pub versions: Vec<String>,
    /// CPU model, cores, memory.
    pub machine: String,
    /// UTC start time (RFC 3339).
    pub started: String,
    /// UTC end time, empty while running or if interrupted.
    pub finished: String,
}

/// Errors reading records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// I/O or CSV error, with the file.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Reads every row of a records CSV.
pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<Record>, RecordError> {
    let path = path.as_ref();
    let err = |reason: String| RecordError::Read {
        path: path.display().to_string(),
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    reader
        .deserialize()
        .map(|r| r.map_err(|e| err(e.to_string())))
        .collect()
}
