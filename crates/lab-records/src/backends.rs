//! The backend comparison's rows (`rwkv-lab compare-backends`): one CSV row per
//! measurement of one backend, with its output compared against the reference backend's
//! output for the same weights and tokens.

use serde::{Deserialize, Serialize};

use crate::row::{Row, Status, StudyKind, named};

/// What a row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Measured {
    /// One whole-sequence forward (GPT mode) of `seq_len` tokens.
    Prefill,
    /// One new token in RNN mode, logits on the host (per-token latency).
    Decode,
    /// One dense product `[m, k] × [k, n]` (`method` is `MxKxN`, `seq_len` is m).
    Matmul,
}

named!(Measured { Prefill => "prefill", Decode => "decode", Matmul => "matmul" });

/// One measurement of one backend (or one skipped or failed measurement).
///
/// - `prefill`: one forward over `seq_len` tokens (one sequence, logits of every
///   position) in the WKV formulation `method`; `median_s`/`min_s`/`max_s` over `repeats`
///   timed runs after warm-up, each ending with a device sync. The output compared is
///   the last position's logits.
/// - `decode`: `repeats` RNN-mode steps after warm-up steps, each timed from the token id
///   to its logits on the host; `method` is the step engine (`model`: the model's own
///   step on the backend; `cpu-decoder`: the CPU decoder fed the same weights). `seq_len`
///   is the number of tokens stepped (warm-up included); the output compared is the last
///   step's logits.
/// - `matmul`: one dense product `[m, k] × [k, n]` of seeded operands (`method` is
///   `MxKxN`, `seq_len` m, `d_model` k, `vocab` n), timed like a prefill; the whole product
///   is compared. It isolates the precision of a backend's matrix products (TF32 tensor
///   cores round operands to 10-bit mantissas).
///
/// `max_abs_diff` is `max |y - y_ref|` over the compared logits, where `y_ref` is the
/// reference backend's output for the same measurement (the first backend of the run);
/// `max_rel_diff` divides it by `max |y_ref|`. Both are empty on the reference's own rows
/// and when the reference did not run that measurement.
///
/// The field order is the CSV's column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendRow {
    /// Study name (`backends`).
    pub study: String,
    /// Prefill or decode.
    pub measured: Measured,
    /// Backend name (`ndarray`, `flex`, `wgpu`, `cuda`).
    pub backend: String,
    /// `f32` or `f64`.
    pub dtype: String,
    /// Prefill: the WKV formulation (`scan`, `chunked:64`, ...); decode: the step engine.
    pub method: String,
    /// Prefill: T; decode: tokens stepped (warm-up and timed).
    pub seq_len: usize,
    /// Model width.
    pub d_model: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Parameters.
    pub params: u64,
    /// Timed runs (prefill) or timed steps (decode).
    pub repeats: usize,
    /// Median seconds per forward (prefill) or per token (decode).
    pub median_s: Option<f64>,
    /// Fastest.
    pub min_s: Option<f64>,
    /// Slowest.
    pub max_s: Option<f64>,
    /// Tokens per second at the median.
    pub tokens_per_s: Option<f64>,
    /// The backend the outputs are compared with (`ndarray:f64` style label).
    pub reference: String,
    /// Largest absolute difference from the reference's output.
    pub max_abs_diff: Option<f64>,
    /// `max_abs_diff / max |reference output|`.
    pub max_rel_diff: Option<f64>,
    /// Estimated working memory of the measurement.
    pub estimate_bytes: Option<u64>,
    /// Estimated largest single tensor (checked against the device's largest buffer).
    pub largest_tensor_bytes: Option<u64>,
    /// Ok, skipped or error.
    pub status: Status,
    /// Why skipped, the error, or what to know about the figure.
    pub note: String,
    /// `git describe --always --dirty` of the measuring code.
    pub git_rev: String,
}

impl BackendRow {
    /// `backend` for f32, `backend:dtype` otherwise (how the CLI and the report name a
    /// backend run).
    pub fn label(&self) -> String {
        backend_label(&self.backend, &self.dtype)
    }

    /// Whether the measurement ran.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// `backend` for f32, `backend:dtype` otherwise.
pub fn backend_label(backend: &str, dtype: &str) -> String {
    if dtype == "f32" {
        backend.to_string()
    } else {
        format!("{backend}:{dtype}")
    }
}

impl Row for BackendRow {
    const KIND: StudyKind = StudyKind::Backends;

    fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.measured,
            self.label(),
            self.method,
            self.seq_len,
            self.d_model
        )
    }

    fn counts_as_done(&self) -> bool {
        self.status != Status::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip_and_labels() {
        let row = BackendRow {
            study: "backends".into(),
            measured: Measured::Prefill,
            backend: "ndarray".into(),
            dtype: "f64".into(),
            method: "chunked:64".into(),
            seq_len: 128,
            d_model: 64,
            n_layers: 2,
            vocab: 256,
            params: 1000,
            repeats: 3,
            median_s: Some(0.5),
            min_s: Some(0.4),
            max_s: Some(0.6),
            tokens_per_s: Some(256.0),
            reference: "ndarray:f64".into(),
            max_abs_diff: None,
            max_rel_diff: None,
            estimate_bytes: Some(10),
            largest_tensor_bytes: Some(5),
            status: Status::Ok,
            note: String::new(),
            git_rev: "abc".into(),
        };
        assert_eq!(row.label(), "ndarray:f64");
        let mut w = csv::Writer::from_writer(vec![]);
        w.serialize(&row).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert!(
            text.starts_with("study,measured,backend,dtype,method,seq_len"),
            "{text}"
        );
        let back: BackendRow = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(back, row);
        assert_eq!(backend_label("cuda", "f32"), "cuda");
    }
}
