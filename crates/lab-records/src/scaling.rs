//! The scaling study's rows: one CSV row per measurement of time and memory.

use serde::{Deserialize, Serialize};

use crate::row::{Row, Status, StudyKind, named};

/// What was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One whole-sequence forward.
    Prefill,
    /// One new token after a prompt.
    Generate,
}

named!(Kind { Prefill => "prefill", Generate => "generate" });

/// Which model (the order is the report's: RWKV first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// RWKV-4.
    Rwkv,
    /// The GPT-style baseline transformer.
    Transformer,
}

named!(Model { Rwkv => "rwkv", Transformer => "transformer" });

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
///
/// The field order is the CSV's column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingRecord {
    /// Study name, e.g. `scaling`.
    pub study: String,
    /// Prefill or generate.
    pub kind: Kind,
    /// RWKV or the transformer.
    pub model: Model,
    /// How it ran, the formulation or attention path: `parallel`, `chunked:64`, `scan`,
    /// `rnn` (RWKV); `explicit`, `fused`, `kv-cache` (transformer). The CSV column is
    /// `variant` (kept for older files); in Rust "variant" names the ablation switches.
    #[serde(rename = "variant")]
    pub method: String,
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
    /// Peak bytes during the measured call (what is counted: `meta.json`'s `memory`).
    pub peak_bytes: Option<u64>,
    /// Bytes of the carried state (RWKV) or KV cache (transformer) at the end.
    pub state_bytes: Option<u64>,
    /// Ok, skipped or error.
    pub status: Status,
    /// Estimated working memory (recorded for every row; the reason of a budget skip).
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

/// What every row of one run shares.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conditions {
    /// Study name.
    pub study: String,
    /// Backend name.
    pub backend: String,
    /// Precision.
    pub dtype: String,
    /// Batch size.
    pub batch: usize,
    /// Model width.
    pub d_model: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Timed repeats per measurement.
    pub repeats: usize,
    /// Git revision of the measuring code.
    pub git_rev: String,
}

/// What identifies one measurement within a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// Prefill or generate.
    pub kind: Kind,
    /// Which model.
    pub model: Model,
    /// Formulation or attention path.
    pub method: String,
    /// Tokens in context after it.
    pub seq_len: usize,
    /// Generate: the new token's index (1-based); prefill: 0.
    pub position: usize,
}

impl Measurement {
    /// The measurement of `kind` on `model` run by `method`, `seq_len` tokens in context
    /// after it, at new-token `position` (prefill: 0).
    pub fn new(
        kind: Kind,
        model: Model,
        method: impl Into<String>,
        seq_len: usize,
        position: usize,
    ) -> Self {
        Measurement {
            kind,
            model,
            method: method.into(),
            seq_len,
            position,
        }
    }
}

/// A model's parameter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamCount {
    /// All parameters.
    pub total: u64,
    /// Without the token embedding, positional table and output head.
    pub non_embedding: Option<u64>,
}

impl ScalingRecord {
    /// An `ok` row of `what` without figures yet (the runner fills them in).
    pub fn new(run: &Conditions, what: Measurement, params: ParamCount) -> Self {
        ScalingRecord {
            study: run.study.clone(),
            kind: what.kind,
            model: what.model,
            method: what.method,
            backend: run.backend.clone(),
            dtype: run.dtype.clone(),
            batch: run.batch,
            seq_len: what.seq_len,
            position: what.position,
            d_model: run.d_model,
            n_layers: run.n_layers,
            vocab: run.vocab,
            params: params.total,
            repeats: run.repeats,
            median_s: None,
            min_s: None,
            max_s: None,
            cumulative_s: None,
            peak_bytes: None,
            state_bytes: None,
            status: Status::Ok,
            estimate_bytes: None,
            note: String::new(),
            git_rev: run.git_rev.clone(),
            params_non_embedding: params.non_embedding,
        }
    }

    /// Whether the measurement ran.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// Whether this is a prefill measurement.
    pub fn is_prefill(&self) -> bool {
        self.kind == Kind::Prefill
    }

    /// Whether this is a generation measurement.
    pub fn is_generate(&self) -> bool {
        self.kind == Kind::Generate
    }

    /// Generate: tokens of prompt before the first new token (`seq_len - position`);
    /// prefill: `seq_len`.
    pub fn prompt_len(&self) -> usize {
        self.seq_len.saturating_sub(self.position)
    }
}

impl Row for ScalingRecord {
    const KIND: StudyKind = StudyKind::Scaling;

    fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.kind,
            self.model,
            self.method,
            self.batch,
            self.seq_len,
            self.position,
            self.backend
        )
    }

    /// Failed measurements are measured again; skipped ones are not (the same spec and
    /// budget would skip them again).
    fn counts_as_done(&self) -> bool {
        self.status != Status::Error
    }
}

/// A prefill row of RWKV `scan` at `t` for tests.
#[cfg(test)]
pub(crate) fn test_row(t: usize, status: Status, note: &str) -> ScalingRecord {
    let what = Measurement::new(Kind::Prefill, Model::Rwkv, "scan", t, 0);
    ScalingRecord {
        status,
        note: note.into(),
        ..ScalingRecord::new(&Conditions::default(), what, ParamCount::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact CSV of a scaling study written before the typed record: it must read back
    /// and write out byte for byte (committed reports are re-rendered from such files).
    const OLD: &str = "study,kind,model,variant,backend,dtype,batch,seq_len,position,d_model,n_layers,vocab,params,repeats,median_s,min_s,max_s,cumulative_s,peak_bytes,state_bytes,status,estimate_bytes,note,git_rev,params_non_embedding
scaling,prefill,rwkv,chunked:16,ndarray,f32,1,128,0,512,6,256,20745216,3,0.115421981,0.110103523,0.117968758,,11427512,61440,ok,21102592,,9ea50f57f63d,20483072
scaling,prefill,transformer,explicit,ndarray,f32,1,8192,0,512,6,256,23158784,3,,,,,,,skipped,1,\"T = 8192 is beyond, the limit\",9ea50f57f63d,
scaling,generate,rwkv,rnn,ndarray,f32,1,17,1,512,6,256,20745216,3,0.013,0.012,0.014,0.013,1024,61440,error,2,boom,9ea50f57f63d,20483072
";

    #[test]
    fn csv_round_trips_byte_for_byte() {
        let mut r = csv::Reader::from_reader(OLD.as_bytes());
        let rows: Vec<ScalingRecord> = r.deserialize().collect::<Result<_, _>>().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].kind, rows[0].model), (Kind::Prefill, Model::Rwkv));
        assert_eq!(rows[0].method, "chunked:16");
        assert_eq!(rows[1].status, Status::Skipped);
        assert_eq!(rows[2].status, Status::Error);
        assert!(!rows[2].counts_as_done() && rows[1].counts_as_done());
        assert_eq!(rows[2].key(), "generate|rwkv|rnn|1|17|1|ndarray");
        let mut w = csv::Writer::from_writer(Vec::new());
        for row in &rows {
            w.serialize(row).unwrap();
        }
        assert_eq!(String::from_utf8(w.into_inner().unwrap()).unwrap(), OLD);
    }

    #[test]
    fn constructor_fills_the_shared_fields() {
        let run = Conditions {
            study: "s".into(),
            backend: "ndarray".into(),
            batch: 2,
            ..Default::default()
        };
        let what = Measurement::new(Kind::Generate, Model::Transformer, "kv-cache", 12, 4);
        let r = ScalingRecord::new(
            &run,
            what,
            ParamCount {
                total: 9,
                non_embedding: Some(3),
            },
        );
        assert_eq!((r.batch, r.params, r.params_non_embedding), (2, 9, Some(3)));
        assert_eq!(
            (r.prompt_len(), r.is_ok(), r.is_generate()),
            (8, true, true)
        );
        assert_eq!(r.key(), "generate|transformer|kv-cache|2|12|4|ndarray");
    }
}
