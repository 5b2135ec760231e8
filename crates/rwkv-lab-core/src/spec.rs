//! Scaling-study specs: YAML parsed into plain serde structs with `deny_unknown_fields`.
//! Every check that can happen while parsing does (non-zero sizes, non-empty lists, known
//! formulation names), so errors carry the field path and the line.

use std::num::NonZeroUsize;
use std::path::Path;

use lab_util::parse_bytes;
use serde::{Deserialize, Deserializer, Serialize};

/// Errors reading a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// YAML syntax, unknown field, wrong type or invalid value (the message names the field
    /// and the line).
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// serde_yaml's message: `field.path: what ... at line L column C`.
        reason: String,
    },
    /// A constraint between fields.
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// The error of `--quick` on a spec without a `quick:` section (rather than silently the
/// full study).
pub fn no_quick_section(path: &str) -> SpecError {
    SpecError::Invalid {
        path: path.into(),
        field: "quick".into(),
        reason: "--quick asks for the spec's `quick:` overrides, and this spec has none; add \
                 a `quick:` section or run without --quick"
            .into(),
    }
}

/// The text of a spec file and the name its messages give it.
pub fn read_spec(path: &Path) -> Result<(String, String), SpecError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SpecError::Io {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    Ok((text, shown))
}

/// A non-empty list (rejects `[]` while parsing, so the error has a line number).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct NonEmpty<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = NonEmpty<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a non-empty list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element()? {
                    out.push(x);
                }
                if out.is_empty() {
                    // raised inside the sequence, so the error carries the field's path
                    return Err(serde::de::Error::invalid_length(0, &self));
                }
                Ok(NonEmpty(out))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// A WKV formulation name as written in the spec (`parallel`, `chunked:64`, `scan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formulation(pub rwkv::WkvMode);

impl Serialize for Formulation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Formulation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.parse::<rwkv::WkvMode>() {
            Ok(rwkv::WkvMode::Recurrent) => Err(serde::de::Error::custom(
                "`recurrent` is the token-by-token oracle; for prefill use parallel, chunked:LEN or scan (generation always runs in RNN mode)",
            )),
            Ok(m) => Ok(Formulation(m)),
            Err(e) => Err(serde::de::Error::custom(e.to_string())),
        }
    }
}

/// An attention path of the baseline transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Scores materialised, masked softmax.
    Explicit,
    /// Burn's fused `attention` op.
    Fused,
}

impl Attention {
    /// `explicit` or `fused`, as in specs and records.
    pub fn name(self) -> &'static str {
        match self {
            Attention::Explicit => "explicit",
            Attention::Fused => "fused",
        }
    }
}

/// Model sizes shared by both models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Vocabulary size V.
    pub vocab: NonZeroUsize,
    /// Width C.
    pub d_model: NonZeroUsize,
    /// Blocks L.
    pub n_layers: NonZeroUsize,
    /// Attention heads of the transformer (must divide d_model).
    pub n_heads: NonZeroUsize,
}

/// The prefill measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefillSpec {
    /// Sequence lengths T.
    pub seq_lens: NonEmpty<NonZeroUsize>,
    /// RWKV formulations to time.
    #[serde(default = "default_formulations")]
    pub rwkv: Vec<Formulation>,
    /// Transformer attention paths to time.
    #[serde(default = "default_attention")]
    pub transformer: Vec<Attention>,
    /// Largest T to run per variant (`parallel: 512`, `explicit: 4096`, `chunked:64: 2048`);
    /// longer ones are recorded as skipped. Keeps the quadratic forms within a time budget.
    #[serde(default)]
    pub max_seq_len: std::collections::BTreeMap<String, NonZeroUsize>,
}

/// Every formulation but the recurrent oracle, chunks of 64.
fn default_formulations() -> Vec<Formulation> {
    rwkv::WkvMode::all(64)
        .into_iter()
        .filter(|m| *m != rwkv::WkvMode::Recurrent)
        .map(Formulation)
        .collect()
}

fn default_attention() -> Vec<Attention> {
    vec![Attention::Explicit, Attention::Fused]
}

/// The generation measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationSpec {
    /// Prompt length before generating.
    pub prompt_len: NonZeroUsize,
    /// New tokens to generate.
    pub new_tokens: NonZeroUsize,
    /// Record every this many positions (and the last one).
    #[serde(default = "one")]
    pub record_every: NonZeroUsize,
}

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}

/// Overrides applied by `--quick`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickSpec {
    /// Replaces `model`.
    pub model: Option<ModelSpec>,
    /// Replaces `prefill.seq_lens`.
    pub seq_lens: Option<NonEmpty<NonZeroUsize>>,
    /// Replaces `generation.new_tokens`.
    pub new_tokens: Option<NonZeroUsize>,
    /// Replaces `generation.record_every`.
    pub record_every: Option<NonZeroUsize>,
    /// Replaces `repeats`.
    pub repeats: Option<NonZeroUsize>,
}

/// A scaling study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingSpec {
    /// Name written into every record.
    #[serde(default = "default_study")]
    pub study: String,
    /// Seed of parameters and tokens.
    #[serde(default)]
    pub seed: u64,
    /// Batch size.
    #[serde(default = "one")]
    pub batch: NonZeroUsize,
    /// Timed repeats per measurement (at least 3).
    #[serde(default = "three")]
    pub repeats: NonZeroUsize,
    /// Untimed warm-up runs per measurement.
    #[serde(default = "one_usize")]
    pub warmup: usize,
    /// Skip measurements estimated above this many bytes (e.g. `6G`); default: half of RAM.
    #[serde(default)]
    pub memory_budget: Option<String>,
    /// Model sizes.
    pub model: ModelSpec,
    /// Prefill measurements.
    pub prefill: PrefillSpec,
    /// Generation measurements (omit to skip).
    #[serde(default)]
    pub generation: Option<GenerationSpec>,
    /// `--quick` overrides.
    #[serde(default)]
    pub quick: Option<QuickSpec>,
}

fn default_study() -> String {
    "scaling".into()
}

fn three() -> NonZeroUsize {
    NonZeroUsize::new(3).expect("3 > 0")
}

fn one_usize() -> usize {
    1
}

impl ScalingSpec {
    /// Parses YAML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, SpecError> {
        let spec: ScalingSpec = serde_yaml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.into(),
            reason: e.to_string(),
        })?;
        spec.check(path)?;
        Ok(spec)
    }

    /// Reads and parses a file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SpecError> {
        let (text, shown) = read_spec(path.as_ref())?;
        Self::parse(&text, &shown)
    }

    /// The spec with the `quick` overrides applied (and `quick` removed). A spec without a
    /// `quick:` section is an error rather than silently the full study; `path` names the
    /// spec in the message.
    pub fn quick(&self, path: &str) -> Result<Self, SpecError> {
        let Some(q) = self.quick.clone() else {
            return Err(no_quick_section(path));
        };
        let mut s = self.clone();
        if let Some(m) = q.model {
            s.model = m;
        }
        if let Some(t) = q.seq_lens {
            s.prefill.seq_lens = t;
        }
        if let (Some(n), Some(g)) = (q.new_tokens, s.generation.as_mut()) {
            g.new_tokens = n;
        }
        if let (Some(n), Some(g)) = (q.record_every, s.generation.as_mut()) {
            g.record_every = n;
        }
        if let Some(r) = q.repeats {
            s.repeats = r;
        }
        s.quick = None;
        Ok(s)
    }

    /// Constraints between fields.
    fn check(&self, path: &str) -> Result<(), SpecError> {
        let invalid = |field: &str, reason: String| {
            Err(SpecError::Invalid {
                path: path.into(),
                field: field.into(),
                reason,
            })
        };
        let check_model = |m: &ModelSpec, field: &str| {
            if !m.d_model.get().is_multiple_of(m.n_heads.get()) {
                return invalid(
                    field,
                    format!(
                        "n_heads = {} does not divide d_model = {}",
                        m.n_heads, m.d_model
                    ),
                );
            }
            Ok(())
        };
        check_model(&self.model, "model.n_heads")?;
        if let Some(m) = self.quick.as_ref().and_then(|q| q.model.as_ref()) {
            check_model(m, "quick.model.n_heads")?;
        }
        // the quick profile is checked like the full one: it must not be a way around a rule
        let quick = self.quick.as_ref();
        for (field, repeats) in [
            ("repeats", Some(self.repeats)),
            ("quick.repeats", quick.and_then(|q| q.repeats)),
        ] {
            if let Some(r) = repeats.filter(|r| r.get() < 3) {
                return invalid(
                    field,
                    format!(
                        "at least 3 timed repeats are needed for a median and a spread, got {r}"
                    ),
                );
            }
        }
        if self.generation.is_none() {
            for (field, given) in [
                (
                    "quick.new_tokens",
                    quick.is_some_and(|q| q.new_tokens.is_some()),
                ),
                (
                    "quick.record_every",
                    quick.is_some_and(|q| q.record_every.is_some()),
                ),
            ] {
                if given {
                    return invalid(
                        field,
                        "overrides the generation measurements, and the spec has no \
                         `generation:` section"
                            .into(),
                    );
                }
            }
        }
        if self.prefill.rwkv.is_empty() && self.prefill.transformer.is_empty() {
            return invalid(
                "prefill",
                "neither `rwkv` nor `transformer` lists anything to measure".into(),
            );
        }
        let variants: Vec<String> = self
            .prefill
            .rwkv
            .iter()
            .map(|f| f.0.to_string())
            .chain(
                self.prefill
                    .transformer
                    .iter()
                    .map(|a| a.name().to_string()),
            )
            .collect();
        if let Some(k) = self
            .prefill
            .max_seq_len
            .keys()
            .find(|k| !variants.contains(k))
        {
            return invalid(
                &format!("prefill.max_seq_len.{k}"),
                format!(
                    "`{k}` is not one of the listed variants ({})",
                    variants.join(", ")
                ),
            );
        }
        if let Some(b) = &self.memory_budget {
            match parse_bytes(b) {
                None => {
                    return invalid(
                        "memory_budget",
                        format!("`{b}` is not a size like 6G, 512M or 1000000"),
                    );
                }
                // a budget of nothing would skip every measurement: never what was meant
                Some(0) => return invalid("memory_budget", "must be more than 0 bytes".into()),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The resolved spec as YAML, as `meta.json` keeps it.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# not serialisable: {e}\n"))
    }

    /// The memory budget in bytes, if set.
    pub fn memory_budget_bytes(&self) -> Option<u64> {
        self.memory_budget.as_deref().and_then(parse_bytes)
    }

    /// The spec's length limit for a variant name, if any.
    pub fn max_seq_len(&self, variant: &str) -> Option<usize> {
        self.prefill.max_seq_len.get(variant).map(|n| n.get())
    }

    /// Sequence lengths, ascending.
    pub fn seq_lens(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.prefill.seq_lens.0.iter().map(|n| n.get()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The differences between two specs as `meta.json` keeps them (YAML), one per field named
/// by its path (`model.d_model is 512 in the recorded run, 256 now`); line by line where
/// either does not parse.
pub fn spec_differences(recorded: &str, now: &str) -> Vec<String> {
    let parse = |t: &str| serde_yaml::from_str::<serde_json::Value>(t).ok();
    match (parse(recorded), parse(now)) {
        (Some(a), Some(b)) => lab_records::value_differences(&a, &b),
        _ => lab_records::text_differences(recorded, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
study: scaling
seed: 3
batch: 1
repeats: 3
model: { vocab: 256, d_model: 64, n_layers: 2, n_heads: 4 }
prefill:
  seq_lens: [64, 128]
  rwkv: [parallel, 'chunked:16', scan]
  transformer: [explicit, fused]
  max_seq_len: { parallel: 64 }
generation: { prompt_len: 8, new_tokens: 32, record_every: 4 }
quick:
  seq_lens: [16, 32]
  new_tokens: 8
";

    fn err(text: &str) -> String {
        ScalingSpec::parse(text, "spec.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_and_applies_quick() {
        let s = ScalingSpec::parse(GOOD, "spec.yaml").unwrap();
        assert_eq!(s.seq_lens(), vec![64, 128]);
        assert_eq!(s.prefill.rwkv[1].0, rwkv::WkvMode::Chunked { len: 16 });
        let q = s.quick("spec.yaml").unwrap();
        assert_eq!(q.seq_lens(), vec![16, 32]);
        assert_eq!(q.generation.unwrap().new_tokens.get(), 8);
        assert!(q.quick.is_none());
    }

    #[test]
    fn quick_is_checked_and_never_silently_the_full_spec() {
        let full = GOOD[..GOOD.find("quick:").unwrap()].to_string();
        let e = ScalingSpec::parse(&full, "full.yaml")
            .unwrap()
            .quick("full.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("full.yaml: quick: ") && e.contains("has none"),
            "{e}"
        );
        // the quick profile cannot go below the three-repeat minimum of the full one
        let e = err(&format!("{GOOD}  repeats: 1\n"));
        assert!(e.contains("quick.repeats: at least 3"), "{e}");
        let three = ScalingSpec::parse(&format!("{GOOD}  repeats: 4\n"), "s").unwrap();
        assert_eq!(three.quick("s").unwrap().repeats.get(), 4);
        // generation overrides need a generation section
        let no_gen = GOOD.replace(
            "generation: { prompt_len: 8, new_tokens: 32, record_every: 4 }\n",
            "",
        );
        let e = err(&no_gen);
        assert!(
            e.contains("quick.new_tokens") && e.contains("no `generation:`"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let e = err(&GOOD.replace("seed: 3", "sede: 3"));
        assert!(
            e.contains("unknown field `sede`") && e.contains("line 3"),
            "{e}"
        );
        let e = err(&GOOD.replace("seq_lens: [64, 128]", "seq_lens: []"));
        assert!(
            e.contains("prefill.seq_lens") && e.contains("non-empty") && e.contains("line 8"),
            "{e}"
        );
        let e = err(&GOOD.replace("seq_lens: [64, 128]", "seq_lens: [64, 0]"));
        assert!(
            e.contains("prefill.seq_lens[1]") && e.contains("line 8"),
            "{e}"
        );
        let e = err(&GOOD.replace("d_model: 64", "d_model: -64"));
        assert!(e.contains("model.d_model") && e.contains("line 6"), "{e}");
        let e = err(&GOOD.replace("d_model: 64", "d_model: wide"));
        assert!(e.contains("model.d_model") && e.contains("line 6"), "{e}");
        let e = err(&GOOD.replace("'chunked:16'", "'chunked:0'"));
        assert!(
            e.contains("prefill.rwkv") && e.contains("chunk length") && e.contains("line 9"),
            "{e}"
        );
        let e = err(&GOOD.replace("scan]", "fast]"));
        assert!(e.contains("unknown WKV mode `fast`"), "{e}");
        let e = err(&GOOD.replace("[explicit, fused]", "[explicit, flash]"));
        assert!(
            e.contains("prefill.transformer[1]") && e.contains("unknown variant `flash`"),
            "{e}"
        );
        let e = err(&GOOD.replace("n_heads: 4", "n_heads: 5"));
        assert!(
            e.contains("model.n_heads") && e.contains("does not divide"),
            "{e}"
        );
        let e = err(&GOOD.replace("repeats: 3", "repeats: 2"));
        assert!(e.contains("repeats") && e.contains("at least 3"), "{e}");
        let e = err(&GOOD.replace("batch: 1", "batch: 1\nmemory_budget: lots"));
        assert!(e.contains("memory_budget"), "{e}");
        let e = err(&GOOD.replace("batch: 1", "batch: 1\nmemory_budget: 0"));
        assert!(
            e.contains("memory_budget: must be more than 0 bytes"),
            "{e}"
        );
        let e = err(&GOOD.replace("new_tokens: 8", "new_tokens: 8\n  extra: 1"));
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = err(&GOOD.replace("{ parallel: 64 }", "{ paralel: 64 }"));
        assert!(
            e.contains("prefill.max_seq_len.paralel")
                && e.contains("not one of the listed variants"),
            "{e}"
        );
        let e = err("model: [1, 2");
        assert!(e.contains("spec.yaml"), "{e}");
    }

    #[test]
    fn shipped_spec_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../experiments/scaling.yaml"
        );
        let s = ScalingSpec::load(path).unwrap();
        assert!(s.seq_lens().contains(&8192));
        assert!(s.quick("scaling.yaml").unwrap().seq_lens().len() >= 4);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("2K"), Some(2048));
        assert_eq!(parse_bytes("1.5G"), Some(1610612736));
        assert_eq!(parse_bytes("x"), None);
    }
}
