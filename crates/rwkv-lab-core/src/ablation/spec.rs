//! Ablation-study specs (`experiments/ablation-*.yaml`): YAML parsed into plain serde
//! structs with `deny_unknown_fields` everywhere. Errors name the file, the line and column
//! and the field: serde's own errors carry serde_yaml's location, and the checks made after
//! parsing find the line of the field they name ([`locate`]).
//!
//! ```yaml
//! study: ablation-mqar
//! model: { d_model: 64, n_layers: 2 }          # d_ffn: default 4 · d_model
//! task:
//!   mqar: { vocab_size: 256, input_seq_len: 64, num_kv_pairs: 8,
//!           num_train_examples: 20000, num_test_examples: 1000 }
//!   # or: corpus: { path: data/shakespeare-tragedies.txt }  (relative to this file)
//! train: { steps: 400, batch: 32, lr: 3e-3, min_lr: 3e-4, warmup_steps: 20,
//!          weight_decay: 0.1, grad_clip: 1.0, eval_interval: 50, eval_batches: 4 }
//!          # micro_batches: 4 (row slices trained side by side; default 4, at most batch)
//! seeds: [0, 1, 2]
//! variants: [{ name: full }, { name: no_bonus }, { name: transformer }]
//! sweep: { d_model: [32, 64] }                  # optional
//! quick: { steps: 60, seeds: [0], variants: [full, no_bonus] }
//! ```

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::spec::{Formulation, NonEmpty, SpecError};

/// The variant names a spec may use (the engine's list, `lab_train::VARIANT_NAMES`).
pub use lab_train::VARIANT_NAMES;

/// A variant name, checked against [`VARIANT_NAMES`] while parsing (so an unknown name is
/// reported at its line, with the valid names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct VariantName(pub String);

impl<'de> Deserialize<'de> for VariantName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if VARIANT_NAMES.contains(&s.as_str()) {
            Ok(VariantName(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "unknown variant `{s}`; the variants are: {}",
                VARIANT_NAMES.join(", ")
            )))
        }
    }
}

/// The base model: RWKV-4 of this size; the vocabulary comes from the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Width C.
    pub d_model: NonZeroUsize,
    /// Blocks L.
    pub n_layers: NonZeroUsize,
    /// Channel-mix width F (default 4 · d_model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_ffn: Option<NonZeroUsize>,
}

/// Character-level language modelling on a byte corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusSpec {
    /// The text file: relative to the spec's folder, else to the working folder.
    pub path: PathBuf,
    /// The last fraction of the file held out for validation.
    #[serde(default = "tenth")]
    pub val_fraction: f64,
}

fn tenth() -> f64 {
    0.1
}

/// Multi-query associative recall as Zoology defines it (Arora et al. 2023).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqarSpec {
    /// Vocabulary V (keys from [1, V/2), values from [V/2, V)).
    pub vocab_size: usize,
    /// Sequence length (the training sequence length).
    pub input_seq_len: usize,
    /// Key-value pairs per example.
    pub num_kv_pairs: usize,
    /// Power-law exponent of the query gaps (Zoology: 0.01).
    #[serde(default = "power_a")]
    pub power_a: f64,
    /// Fill non-query positions with random tokens (Zoology: true).
    #[serde(default = "yes")]
    pub random_non_queries: bool,
    /// Training examples.
    pub num_train_examples: usize,
    /// Test examples (the metric's).
    pub num_test_examples: usize,
    /// Seed of the training set.
    #[serde(default)]
    pub train_seed: u64,
    /// Seed of the test set (differs from the training seed).
    #[serde(default = "one_u64")]
    pub test_seed: u64,
}

fn power_a() -> f64 {
    0.01
}
fn yes() -> bool {
    true
}
fn one_u64() -> u64 {
    1
}

/// The task: exactly one of `corpus` and `mqar`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// Character-level language modelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus: Option<CorpusSpec>,
    /// Associative recall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqar: Option<MqarSpec>,
}

/// The training budget and optimizer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Optimizer steps (or give `tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Training tokens: steps = ceil(tokens / (batch · seq_len)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Sequences per step.
    pub batch: NonZeroUsize,
    /// Tokens per sequence (corpus; MQAR uses `input_seq_len`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<NonZeroUsize>,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine decay (default lr / 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lr: Option<f64>,
    /// Linear warm-up steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// AdamW weight decay (not applied to biases, norms, time_* vectors, embeddings).
    #[serde(default)]
    pub weight_decay: f64,
    /// Gradient clipping (Burn's, per tensor norm); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    /// Evaluate (and checkpoint) every this many steps, and at the last step.
    pub eval_interval: u64,
    /// Validation batches per evaluation.
    pub eval_batches: NonZeroUsize,
    /// WKV formulation used in training (default `scan`).
    #[serde(default = "scan")]
    pub wkv: Formulation,
    /// Row slices of each batch trained side by side on their own threads, gradients summed
    /// in slice order (`lab_train::TrainConfig::micro_batches`). Default
    /// [`DEFAULT_MICRO_BATCHES`], at most `batch`. Results depend on it by f32 rounding and
    /// never on the machine; 1 trains the whole batch in one graph (the studies committed
    /// before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_batches: Option<NonZeroUsize>,
}

impl TrainSpec {
    /// The micro-batches every run trains with: the spec's, or [`DEFAULT_MICRO_BATCHES`]
    /// (at most `batch`).
    pub fn resolved_micro_batches(&self) -> NonZeroUsize {
        self.micro_batches.unwrap_or_else(|| {
            NonZeroUsize::new(DEFAULT_MICRO_BATCHES.min(self.batch.get())).unwrap_or(self.batch)
        })
    }
}

/// Micro-batches of a training step when the spec does not say: the fastest on the 2-core
/// development machine (flex and ndarray; 1.6–1.7x one graph's tokens/s at d_model 128 and
/// 256), and enough slices for 4 cores.
pub const DEFAULT_MICRO_BATCHES: usize = 4;

fn scan() -> Formulation {
    Formulation(rwkv::WkvMode::Scan)
}

/// One variant of the study: a name and optional overrides of the base model and the
/// learning rate. `label` (default: the name) is what records and reports show; labels
/// are unique.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// One of [`VARIANT_NAMES`].
    pub name: VariantName,
    /// The name in records (default `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Overrides `model.d_model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_model: Option<NonZeroUsize>,
    /// Overrides `model.n_layers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_layers: Option<NonZeroUsize>,
    /// Overrides `model.d_ffn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_ffn: Option<NonZeroUsize>,
    /// Overrides `train.lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

impl VariantSpec {
    /// The label of its records.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name.0)
    }
}

/// Plain settings swept over (their cartesian product, in the field order below, the
/// first varying slowest). `seq_len_kv_pairs` is zipped: each entry is one
/// `[input_seq_len, num_kv_pairs]` pair of an MQAR task (Zoology's Figure 2 grid).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// MQAR `[input_seq_len, num_kv_pairs]` pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len_kv_pairs: Option<NonEmpty<(usize, usize)>>,
    /// Model widths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_model: Option<NonEmpty<NonZeroUsize>>,
    /// Depths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_layers: Option<NonEmpty<NonZeroUsize>>,
    /// Learning rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<NonEmpty<f64>>,
}

/// Overrides applied by `--quick`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickSpec {
    /// Replaces `train.steps` (and drops `train.tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Replaces `train.batch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<NonZeroUsize>,
    /// Replaces `train.eval_interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_interval: Option<u64>,
    /// Replaces `train.eval_batches`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_batches: Option<NonZeroUsize>,
    /// Replaces `train.warmup_steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// Replaces `seeds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<NonEmpty<u64>>,
    /// Keeps only these variants (labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<NonEmpty<String>>,
    /// Replaces `sweep` (`{}`: no sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSpec>,
    /// Replaces the MQAR task's `num_train_examples`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_train_examples: Option<usize>,
    /// Replaces the MQAR task's `num_test_examples`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_test_examples: Option<usize>,
}

/// An ablation study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationSpec {
    /// Name written into every record.
    pub study: String,
    /// The base model.
    pub model: ModelSpec,
    /// The task.
    pub task: TaskSection,
    /// Budget and optimizer.
    pub train: TrainSpec,
    /// Training seeds (initialisation and data order); every variant runs every seed.
    pub seeds: NonEmpty<u64>,
    /// The variants.
    pub variants: NonEmpty<VariantSpec>,
    /// Settings swept over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSpec>,
    /// `--quick` overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick: Option<QuickSpec>,
}

/// The line and column (1-based) of the field at `path` (`task.mqar.num_kv_pairs`,
/// `variants[2].lr`) in YAML `text`: each key is searched after the previous one's line.
/// None when a key is not written there (a default).
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for seg in path.split('.') {
        let (key, index) = match seg.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let pattern = format!("{key}:");
        let hit = lines.iter().enumerate().skip(from).find_map(|(i, l)| {
            let body = l.trim_start().trim_start_matches("- ").trim_start();
            let inline = l
                .find(&format!("{{ {pattern}"))
                .or(l.find(&format!(", {pattern}")));
            if body.starts_with(&pattern) {
                Some((i, l.len() - body.len()))
            } else {
                inline.map(|c| (i, c + 2))
            }
        })?;
        from = hit.0;
        found = Some(hit);
        // list items: the index-th line starting with `- ` after the key (block style)
        if let Some(n) = index {
            let items: Vec<usize> = (from + 1..lines.len())
                .filter(|&i| lines[i].trim_start().starts_with("- "))
                .collect();
            if let Some(&i) = items.get(n) {
                from = i;
                found = Some((i, lines[i].len() - lines[i].trim_start().len()));
            }
        }
    }
    found.map(|(l, c)| (l + 1, c + 1))
}

impl AblationSpec {
    /// Parses YAML text; `path` is only used in messages, `base` is the folder relative
    /// paths (the corpus) are resolved against (None: the working folder).
    pub fn parse(text: &str, path: &str, base: Option<&Path>) -> Result<Self, SpecError> {
        let mut spec: AblationSpec = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            SpecError::Parse {
                path: format!("{path}{at}"),
                reason: e.to_string(),
            }
        })?;
        spec.check(text, path, base)?;
        Ok(spec)
    }

    /// Reads and parses a file (relative paths inside it resolve against its folder).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SpecError> {
        let path = path.as_ref();
        let (text, shown) = crate::spec::read_spec(path)?;
        Self::parse(&text, &shown, path.parent())
    }

    /// The spec with the `quick` overrides applied (and `quick` removed); an error when
    /// the spec has no `quick:` section.
    pub fn quick(&self, path: &str) -> Result<Self, SpecError> {
        let Some(q) = self.quick.clone() else {
            return Err(crate::spec::no_quick_section(path));
        };
        let mut s = self.clone();
        if let Some(n) = q.steps {
            s.train.steps = Some(n);
            s.train.tokens = None;
        }
        if let Some(b) = q.batch {
            s.train.batch = b;
        }
        if let Some(n) = q.eval_interval {
            s.train.eval_interval = n;
        }
        if let Some(n) = q.eval_batches {
            s.train.eval_batches = n;
        }
        if let Some(n) = q.warmup_steps {
            s.train.warmup_steps = n;
        }
        if let Some(seeds) = q.seeds {
            s.seeds = seeds;
        }
        if let Some(keep) = q.variants {
            s.variants = NonEmpty(
                self.variants
                    .0
                    .iter()
                    .filter(|v| keep.0.iter().any(|k| k == v.label()))
                    .cloned()
                    .collect(),
            );
        }
        if let Some(sweep) = q.sweep {
            s.sweep = Some(sweep).filter(|w| *w != SweepSpec::default());
        }
        if let Some(m) = s.task.mqar.as_mut() {
            if let Some(n) = q.num_train_examples {
                m.num_train_examples = n;
            }
            if let Some(n) = q.num_test_examples {
                m.num_test_examples = n;
            }
        }
        s.quick = None;
        Ok(s)
    }

    /// The resolved spec as YAML (as `meta.json` keeps it).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# not serialisable: {e}\n"))
    }

    /// The task's name in records: `corpus` or `mqar`.
    pub fn task_name(&self) -> &'static str {
        if self.task.mqar.is_some() {
            "mqar"
        } else {
            "corpus"
        }
    }

    /// Constraints between fields, and the corpus file (resolved against `base`).
    fn check(&mut self, text: &str, path: &str, base: Option<&Path>) -> Result<(), SpecError> {
        let invalid = |field: &str, reason: String| {
            let at = locate(text, field)
                .map(|(l, c)| format!(":{l}:{c}"))
                .unwrap_or_default();
            Err(SpecError::Invalid {
                path: format!("{path}{at}"),
                field: field.into(),
                reason,
            })
        };
        match (&mut self.task.corpus, &self.task.mqar) {
            (None, None) | (Some(_), Some(_)) => {
                return invalid(
                    "task",
                    "give exactly one task: `corpus: {path: ...}` or `mqar: {...}`".into(),
                );
            }
            (Some(c), None) => {
                if !(c.val_fraction > 0.0 && c.val_fraction < 1.0) {
                    return invalid(
                        "task.corpus.val_fraction",
                        format!("must lie in (0, 1), got {}", c.val_fraction),
                    );
                }
                let candidates: Vec<PathBuf> = if c.path.is_absolute() {
                    vec![c.path.clone()]
                } else {
                    base.map(|b| b.join(&c.path))
                        .into_iter()
                        .chain([c.path.clone()])
                        .collect()
                };
                match candidates.iter().find(|p| p.is_file()) {
                    Some(p) => c.path = p.clone(),
                    None => {
                        return invalid(
                            "task.corpus.path",
                            format!(
                                "corpus file not found (looked for {})",
                                candidates
                                    .iter()
                                    .map(|p| p.display().to_string())
                                    .collect::<Vec<_>>()
                                    .join(" and ")
                            ),
                        );
                    }
                }
                if self.train.seq_len.is_none() {
                    return invalid(
                        "train.seq_len",
                        "the corpus task needs `train.seq_len` (tokens per sequence)".into(),
                    );
                }
            }
            (None, Some(m)) => {
                if let Err((field, reason)) =
                    check_mqar(m, m.input_seq_len, m.num_kv_pairs, "task.mqar")
                {
                    return invalid(&field, reason);
                }
                if self.train.seq_len.is_some() {
                    return invalid(
                        "train.seq_len",
                        "MQAR trains on `task.mqar.input_seq_len`; remove `train.seq_len`".into(),
                    );
                }
                for (f, n) in [
                    ("task.mqar.num_train_examples", m.num_train_examples),
                    ("task.mqar.num_test_examples", m.num_test_examples),
                ] {
                    if n == 0 {
                        return invalid(f, "must be at least 1".into());
                    }
                }
                if m.train_seed == m.test_seed {
                    return invalid(
                        "task.mqar.test_seed",
                        format!(
                            "equals train_seed = {}: the test set must come from another seed",
                            m.train_seed
                        ),
                    );
                }
            }
        }
        let t = &self.train;
        match (t.steps, t.tokens) {
            (Some(0), _) => return invalid("train.steps", "must be at least 1".into()),
            (_, Some(0)) => return invalid("train.tokens", "must be at least 1".into()),
            (Some(_), Some(_)) | (None, None) => {
                return invalid(
                    "train.steps",
                    "give exactly one of `steps` and `tokens`".into(),
                );
            }
            _ => {}
        }
        let lr_ok = |lr: f64| lr > 0.0 && lr <= 1.0;
        if !lr_ok(t.lr) {
            return invalid("train.lr", format!("must lie in (0, 1], got {}", t.lr));
        }
        if let Some(m) = t.min_lr
            && !(m >= 0.0 && m <= t.lr)
        {
            return invalid(
                "train.min_lr",
                format!("must lie in [0, lr = {}], got {m}", t.lr),
            );
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return invalid(
                "train.weight_decay",
                format!("must be non-negative, got {}", t.weight_decay),
            );
        }
        if let Some(c) = t.grad_clip
            && !(c > 0.0 && c.is_finite())
        {
            return invalid("train.grad_clip", format!("must be positive, got {c}"));
        }
        if t.eval_interval == 0 {
            return invalid("train.eval_interval", "must be at least 1".into());
        }
        if let Some(m) = t.micro_batches
            && m > t.batch
        {
            return invalid(
                "train.micro_batches",
                format!(
                    "must not exceed batch = {} (each slice needs a row), got {m}",
                    t.batch
                ),
            );
        }
        let mut labels = std::collections::HashSet::new();
        for (i, v) in self.variants.0.iter().enumerate() {
            if !labels.insert(v.label().to_string()) {
                return invalid(
                    &format!("variants[{i}].name"),
                    format!(
                        "label `{}` is used twice; give one of them a `label:`",
                        v.label()
                    ),
                );
            }
            if let Some(lr) = v.lr
                && !lr_ok(lr)
            {
                return invalid(
                    &format!("variants[{i}].lr"),
                    format!("must lie in (0, 1], got {lr}"),
                );
            }
        }
        if !labels.contains("full") {
            return invalid(
                "variants",
                "lists no `full` variant: the report compares every variant with it".into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(s) = self.seeds.0.iter().find(|s| !seen.insert(**s)) {
            return invalid("seeds", format!("seed {s} is listed twice"));
        }
        for (prefix, sweep) in [
            ("sweep", self.sweep.as_ref()),
            (
                "quick.sweep",
                self.quick.as_ref().and_then(|q| q.sweep.as_ref()),
            ),
        ] {
            let Some(sweep) = sweep else { continue };
            if let Some(pairs) = &sweep.seq_len_kv_pairs {
                let Some(m) = &self.task.mqar else {
                    return invalid(
                        &format!("{prefix}.seq_len_kv_pairs"),
                        "sweeps an MQAR setting, and the task is not `mqar`".into(),
                    );
                };
                for &(t, k) in &pairs.0 {
                    if let Err((_, reason)) = check_mqar(m, t, k, "") {
                        return invalid(
                            &format!("{prefix}.seq_len_kv_pairs"),
                            format!("[{t}, {k}]: {reason}"),
                        );
                    }
                }
            }
            if let Some(lrs) = &sweep.lr
                && let Some(lr) = lrs.0.iter().find(|l| !lr_ok(**l))
            {
                return invalid(
                    &format!("{prefix}.lr"),
                    format!("must lie in (0, 1], got {lr}"),
                );
            }
            for (i, v) in self.variants.0.iter().enumerate() {
                for (field, over, swept) in [
                    ("d_model", v.d_model.is_some(), sweep.d_model.is_some()),
                    ("n_layers", v.n_layers.is_some(), sweep.n_layers.is_some()),
                    ("lr", v.lr.is_some(), sweep.lr.is_some()),
                ] {
                    if over && swept {
                        return invalid(
                            &format!("variants[{i}].{field}"),
                            format!("`{field}` is swept (`{prefix}.{field}`) and also set here"),
                        );
                    }
                }
            }
        }
        if let Some(q) = &self.quick {
            if let Some(keep) = &q.variants {
                for k in &keep.0 {
                    if !labels.contains(k.as_str()) {
                        let mut all: Vec<&String> = labels.iter().collect();
                        all.sort();
                        return invalid(
                            "quick.variants",
                            format!(
                                "`{k}` is not a variant of this study ({})",
                                all.iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                }
                if !keep.0.iter().any(|k| k == "full") {
                    return invalid(
                        "quick.variants",
                        "must keep `full`: the report compares every variant with it".into(),
                    );
                }
            }
            if q.steps == Some(0) {
                return invalid("quick.steps", "must be at least 1".into());
            }
            if q.eval_interval == Some(0) {
                return invalid("quick.eval_interval", "must be at least 1".into());
            }
            if (q.num_train_examples.is_some() || q.num_test_examples.is_some())
                && self.task.mqar.is_none()
            {
                return invalid(
                    "quick.num_train_examples",
                    "overrides the MQAR task, and the task is not `mqar`".into(),
                );
            }
            for (f, n) in [
                ("quick.num_train_examples", q.num_train_examples),
                ("quick.num_test_examples", q.num_test_examples),
            ] {
                if n == Some(0) {
                    return invalid(f, "must be at least 1".into());
                }
            }
        }
        Ok(())
    }
}

/// Zoology's constraints on an MQAR task (`multiquery_ar` asserts them), with
/// `input_seq_len` = `t` and `num_kv_pairs` = `k`: the error names the field under
/// `prefix`.
fn check_mqar(m: &MqarSpec, t: usize, k: usize, prefix: &str) -> Result<(), (String, String)> {
    let f = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    if t == 0 || t % 2 != 0 {
        return Err((
            f("input_seq_len"),
            format!("must be even and positive, got {t}"),
        ));
    }
    if k == 0 {
        return Err((f("num_kv_pairs"), "must be at least 1".into()));
    }
    if 4 * k > t {
        return Err((
            f("num_kv_pairs"),
            format!(
                "{k} key-value pairs do not fit in input_seq_len = {t}: Zoology needs \
                 4 · num_kv_pairs ≤ input_seq_len (pairs, then as many query slots), i.e. \
                 at most {} pairs",
                t / 4
            ),
        ));
    }
    if m.vocab_size <= t {
        return Err((
            f("vocab_size"),
            format!(
                "must exceed input_seq_len = {t} (Zoology), got {}",
                m.vocab_size
            ),
        ));
    }
    if m.vocab_size / 2 <= k {
        return Err((
            f("vocab_size"),
            format!(
                "{} leaves {} distinct keys in [1, V/2), fewer than num_kv_pairs = {k}",
                m.vocab_size,
                m.vocab_size / 2 - 1
            ),
        ));
    }
    if !(m.power_a > 0.0 && m.power_a.is_finite()) {
        return Err((f("power_a"), format!("must be positive, got {}", m.power_a)));
    }
    Ok(())
}
