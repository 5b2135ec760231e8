//! Series extracted from records: one (x, y) list per (model, variant) and quantity.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use lab_records::{Model, ScalingRecord};

/// What a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Prefill: median seconds of one forward of T tokens, vs T.
    PrefillTime,
    /// Prefill: peak bytes allocated during the forward, vs T.
    PrefillMemory,
    /// Generate: median latency of the position-th new token, vs position.
    GenerationLatency,
    /// Generate: median cumulative seconds for tokens 1..=n, vs n.
    GenerationCumulative,
    /// Generate: bytes of the RWKV state or KV cache, vs tokens in context.
    StateBytes,
}

impl Quantity {
    /// Every quantity, in report order.
    pub const ALL: [Quantity; 5] = [
        Quantity::PrefillTime,
        Quantity::PrefillMemory,
        Quantity::GenerationLatency,
        Quantity::GenerationCumulative,
        Quantity::StateBytes,
    ];

    /// Short description, e.g. `prefill time vs T`.
    pub fn describe(self) -> &'static str {
        match self {
            Quantity::PrefillTime => "prefill time vs T",
            Quantity::PrefillMemory => "prefill peak memory vs T",
            Quantity::GenerationLatency => "per-token latency vs position",
            Quantity::GenerationCumulative => "cumulative generation time vs tokens",
            Quantity::StateBytes => "state / KV-cache bytes vs context",
        }
    }

    /// The symbol of the x variable in fit ranges (`T`, `n`, `context`).
    pub fn x_symbol(self) -> &'static str {
        match self {
            Quantity::PrefillTime | Quantity::PrefillMemory => "T",
            Quantity::GenerationLatency => "position",
            Quantity::GenerationCumulative => "n",
            Quantity::StateBytes => "context",
        }
    }

    /// Whether y is seconds (else bytes).
    pub fn is_time(self) -> bool {
        matches!(
            self,
            Quantity::PrefillTime | Quantity::GenerationLatency | Quantity::GenerationCumulative
        )
    }

    fn wants(self, r: &ScalingRecord) -> bool {
        match self {
            Quantity::PrefillTime | Quantity::PrefillMemory => r.is_prefill(),
            _ => r.is_generate(),
        }
    }

    fn point(self, r: &ScalingRecord) -> Option<(usize, f64)> {
        let y = match self {
            Quantity::PrefillTime | Quantity::GenerationLatency => r.median_s?,
            Quantity::PrefillMemory => r.peak_bytes? as f64,
            Quantity::GenerationCumulative => r.cumulative_s?,
            Quantity::StateBytes => r.state_bytes? as f64,
        };
        let x = match self {
            Quantity::PrefillTime | Quantity::PrefillMemory | Quantity::StateBytes => r.seq_len,
            Quantity::GenerationLatency | Quantity::GenerationCumulative => r.position,
        };
        y.is_finite().then_some((x, y))
    }
}

/// What identifies one series. Fields other than model and variant only split a series
/// when the records hold several values of them (several batch sizes, backends, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SeriesKey {
    /// Which model.
    pub model: Model,
    /// Formulation or attention path: `parallel`, `chunked:64`, `scan`, `rnn`, `explicit`,
    /// `fused`, `kv-cache`.
    pub method: String,
    /// Batch size.
    pub batch: usize,
    /// Backend.
    pub backend: String,
    /// Precision.
    pub dtype: String,
    /// Generation latency and cumulative time: the prompt length; otherwise None.
    pub prompt_len: Option<usize>,
}

impl SeriesKey {
    /// Whether the model is RWKV.
    pub fn is_rwkv(&self) -> bool {
        self.model == Model::Rwkv
    }

    /// Whether the model is the baseline transformer.
    pub fn is_transformer(&self) -> bool {
        self.model == Model::Transformer
    }

    /// `chunked:N` → Some(N).
    pub fn chunk_len(&self) -> Option<usize> {
        self.method
            .strip_prefix("chunked:")
            .and_then(|n| n.parse().ok())
    }

    /// Same run conditions (batch, backend, dtype) as `other`.
    pub fn same_conditions(&self, other: &SeriesKey) -> bool {
        self.batch == other.batch && self.backend == other.backend && self.dtype == other.dtype
    }

    fn sort_key(
        &self,
    ) -> (
        Model,
        usize,
        usize,
        String,
        usize,
        String,
        String,
        Option<usize>,
    ) {
        let method = match self.method.as_str() {
            "parallel" => 0,
            v if v.starts_with("chunked:") => 1,
            "scan" => 2,
            "recurrent" => 3,
            "rnn" => 4,
            "explicit" => 5,
            "fused" => 6,
            "kv-cache" => 7,
            _ => 8,
        };
        (
            self.model,
            method,
            self.chunk_len().unwrap_or(0),
            self.method.clone(),
            self.batch,
            self.backend.clone(),
            self.dtype.clone(),
            self.prompt_len,
        )
    }
}

impl PartialOrd for SeriesKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeriesKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

/// One series: points sorted by x, one per x.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// What it measures.
    pub quantity: Quantity,
    /// Whose it is.
    pub key: SeriesKey,
    /// Legend label, e.g. `rwkv chunked:64` (plus `B=4`, the backend, the dtype or the
    /// prompt length where the records hold several).
    pub label: String,
    /// (x, y), sorted by x; y in seconds or bytes.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// The point at x, if measured.
    pub fn at(&self, x: f64) -> Option<f64> {
        self.points.iter().find(|p| p.0 == x).map(|p| p.1)
    }
}

/// Extracts every series of one quantity from the `ok` records (skipped and failed rows
/// have no timings). Where one measurement appears twice (a resumed run), the later row wins.
/// Series come in a stable order: RWKV before the transformer, then by variant
/// (`parallel`, `chunked:N` by N, `scan`, `rnn`; `explicit`, `fused`, `kv-cache`).
pub fn extract(records: &[ScalingRecord], quantity: Quantity) -> Vec<Series> {
    let relevant: Vec<&ScalingRecord> = records.iter().filter(|r| quantity.wants(r)).collect();
    let distinct = |f: &dyn Fn(&ScalingRecord) -> String| {
        relevant.iter().map(|r| f(r)).collect::<BTreeSet<_>>().len() > 1
    };
    let by_batch = distinct(&|r| r.batch.to_string());
    let by_backend = distinct(&|r| r.backend.clone());
    let by_dtype = distinct(&|r| r.dtype.clone());
    let with_prompt = matches!(
        quantity,
        Quantity::GenerationLatency | Quantity::GenerationCumulative
    );
    let by_prompt = with_prompt && distinct(&|r| r.prompt_len().to_string());

    let mut groups: BTreeMap<SeriesKey, BTreeMap<usize, f64>> = BTreeMap::new();
    for r in relevant.iter().filter(|r| r.is_ok()) {
        let Some((x, y)) = quantity.point(r) else {
            continue;
        };
        let key = SeriesKey {
            model: r.model,
            method: r.method.clone(),
            batch: r.batch,
            backend: r.backend.clone(),
            dtype: r.dtype.clone(),
            prompt_len: with_prompt.then(|| r.prompt_len()),
        };
        groups.entry(key).or_default().insert(x, y);
    }
    groups
        .into_iter()
        .map(|(key, pts)| {
            let mut label = format!("{} {}", key.model, key.method);
            if by_batch {
                label += &format!(" B={}", key.batch);
            }
            if by_backend {
                label += &format!(" {}", key.backend);
            }
            if by_dtype {
                label += &format!(" {}", key.dtype);
            }
            if by_prompt {
                label += &format!(" prompt={}", key.prompt_len.unwrap_or(0));
            }
            Series {
                quantity,
                key,
                label,
                points: pts.into_iter().map(|(x, y)| (x as f64, y)).collect(),
            }
        })
        .collect()
}

/// Prefill time (s) vs T, per (model, variant).
pub fn prefill_time(records: &[ScalingRecord]) -> Vec<Series> {
    extract(records, Quantity::PrefillTime)
}

/// Prefill peak memory (bytes) vs T, per (model, variant).
pub fn prefill_memory(records: &[ScalingRecord]) -> Vec<Series> {
    extract(records, Quantity::PrefillMemory)
}

/// Per-token generation latency (s) vs position, per (model, variant).
pub fn generation_latency(records: &[ScalingRecord]) -> Vec<Series> {
    extract(records, Quantity::GenerationLatency)
}

/// Cumulative generation time (s) vs tokens generated, per (model, variant).
pub fn generation_cumulative(records: &[ScalingRecord]) -> Vec<Series> {
    extract(records, Quantity::GenerationCumulative)
}

/// State / KV-cache bytes vs tokens in context, per (model, variant).
pub fn state_bytes(records: &[ScalingRecord]) -> Vec<Series> {
    extract(records, Quantity::StateBytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lab_records::Model::{Rwkv, Transformer};
    use lab_records::{Conditions, Kind, Measurement, ParamCount, Status};

    /// A minimal `ok` record for tests.
    pub(crate) fn rec(
        kind: Kind,
        model: Model,
        method: &str,
        seq_len: usize,
        position: usize,
    ) -> ScalingRecord {
        // backend and dtype stay empty: series split by them only when they differ
        let run = Conditions {
            study: "scaling".into(),
            batch: 1,
            d_model: 64,
            repeats: 3,
            git_rev: "abc".into(),
            ..Default::default()
        };
        let what = Measurement::new(kind, model, method, seq_len, position);
        let params = ParamCount {
            total: 100_000,
            non_embedding: None,
        };
        ScalingRecord::new(&run, what, params)
    }

    pub(crate) fn prefill(
        model: Model,
        method: &str,
        t: usize,
        secs: f64,
        peak: u64,
    ) -> ScalingRecord {
        ScalingRecord {
            median_s: Some(secs),
            min_s: Some(secs),
            max_s: Some(secs),
            peak_bytes: Some(peak),
            ..rec(Kind::Prefill, model, method, t, 0)
        }
    }

    pub(crate) fn generate(
        model: Model,
        method: &str,
        prompt: usize,
        pos: usize,
        secs: f64,
        cum: f64,
        state: u64,
    ) -> ScalingRecord {
        ScalingRecord {
            median_s: Some(secs),
            cumulative_s: Some(cum),
            state_bytes: Some(state),
            peak_bytes: Some(1000),
            ..rec(Kind::Generate, model, method, prompt + pos, pos)
        }
    }

    #[test]
    fn prefill_series_per_model_variant_sorted() {
        let mut rs = vec![
            prefill(Transformer, "explicit", 128, 4.0, 40),
            prefill(Rwkv, "scan", 256, 2.0, 20),
            prefill(Rwkv, "chunked:64", 128, 1.5, 15),
            prefill(Rwkv, "scan", 128, 1.0, 10),
            prefill(Rwkv, "chunked:16", 128, 1.5, 15),
            prefill(Rwkv, "parallel", 128, 3.0, 30),
            generate(Rwkv, "rnn", 0, 1, 0.1, 0.1, 64),
        ];
        // A skipped row has no timings and is left out.
        rs.push(ScalingRecord {
            status: Status::Skipped,
            median_s: None,
            ..prefill(Transformer, "explicit", 8192, 0.0, 0)
        });
        let s = prefill_time(&rs);
        let labels: Vec<&str> = s.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "rwkv parallel",
                "rwkv chunked:16",
                "rwkv chunked:64",
                "rwkv scan",
                "transformer explicit"
            ]
        );
        assert_eq!(s[3].points, vec![(128.0, 1.0), (256.0, 2.0)]);
        assert_eq!(s[4].points, vec![(128.0, 4.0)]);
        let m = prefill_memory(&rs);
        assert_eq!(m[3].points, vec![(128.0, 10.0), (256.0, 20.0)]);
        assert_eq!(m[3].quantity, Quantity::PrefillMemory);
    }

    #[test]
    fn later_duplicate_wins_and_missing_values_skip() {
        let rs = vec![
            prefill(Rwkv, "scan", 128, 1.0, 10),
            prefill(Rwkv, "scan", 128, 0.5, 10),
            ScalingRecord {
                peak_bytes: None,
                ..prefill(Rwkv, "scan", 256, 2.0, 0)
            },
        ];
        assert_eq!(
            prefill_time(&rs)[0].points,
            vec![(128.0, 0.5), (256.0, 2.0)]
        );
        assert_eq!(prefill_memory(&rs)[0].points, vec![(128.0, 10.0)]);
    }

    #[test]
    fn generation_series() {
        let mut rs = Vec::new();
        for pos in 1..=4 {
            rs.push(generate(Rwkv, "rnn", 8, pos, 0.01, 0.01 * pos as f64, 512));
            rs.push(generate(
                Transformer,
                "kv-cache",
                8,
                pos,
                0.01 * pos as f64,
                0.005 * (pos * (pos + 1)) as f64,
                100 * (8 + pos) as u64,
            ));
        }
        let lat = generation_latency(&rs);
        assert_eq!(lat.len(), 2);
        assert_eq!(lat[0].label, "rwkv rnn");
        assert_eq!(lat[0].key.prompt_len, Some(8));
        assert_eq!(lat[1].points[2], (3.0, 0.03));
        let cum = generation_cumulative(&rs);
        assert_eq!(cum[0].points.last(), Some(&(4.0, 0.04)));
        let st = state_bytes(&rs);
        assert_eq!(
            st[1].points,
            vec![(9.0, 900.0), (10.0, 1000.0), (11.0, 1100.0), (12.0, 1200.0)]
        );
        assert_eq!(st[1].key.prompt_len, None);
        assert!(prefill_time(&rs).is_empty());
    }

    #[test]
    fn labels_split_only_when_needed() {
        let rs = vec![
            prefill(Rwkv, "scan", 128, 1.0, 10),
            ScalingRecord {
                batch: 4,
                ..prefill(Rwkv, "scan", 128, 3.0, 10)
            },
            generate(Rwkv, "rnn", 8, 1, 0.01, 0.01, 512),
            generate(Rwkv, "rnn", 64, 1, 0.01, 0.01, 512),
        ];
        let labels: Vec<String> = prefill_time(&rs).into_iter().map(|s| s.label).collect();
        assert_eq!(labels, ["rwkv scan B=1", "rwkv scan B=4"]);
        let labels: Vec<String> = generation_latency(&rs)
            .into_iter()
            .map(|s| s.label)
            .collect();
        assert_eq!(labels, ["rwkv rnn prompt=8", "rwkv rnn prompt=64"]);
        assert_eq!(state_bytes(&rs).len(), 1);
    }
}
