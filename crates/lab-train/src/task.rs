//! The two shipped tasks: byte-level language modelling on a text file, and multi-query
//! associative recall (MQAR) as defined by Zoology (Arora et al. 2023, arXiv:2312.04927,
//! `zoology/data/associative_recall.py::multiquery_ar`).
//!
//! Everything is generated on the host from seeds with [`lab_util::SplitMix64`]: the batch of
//! training step `s` is a pure function of `(seed, s)` ([`Task::train_batch`]), so a resumed
//! run needs nothing but the step to draw the same data as an uninterrupted one. The MQAR
//! generator follows Zoology's definition step for step but uses this generator, not
//! NumPy's/PyTorch's: the same seed gives other examples than Zoology's code, with the same
//! distribution.

use std::path::PathBuf;

use lab_util::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Label of a position that carries no loss (PyTorch's `ignore_index`, Zoology's `-100`).
pub const IGNORE: i64 = -100;

/// Byte-level language modelling on a text file (vocabulary 256).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusTask {
    /// The text file.
    pub path: PathBuf,
    /// Fraction of the file, at its end, held out for validation (0.1: the last 10%).
    pub val_fraction: f64,
}

/// Zoology's `multiquery_ar`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqarTask {
    /// Vocabulary size V; keys come from `[1, V/2)`, values from `[V/2, V)`.
    pub vocab_size: usize,
    /// Input length L (even; `V > L`).
    pub input_seq_len: usize,
    /// Key-value pairs per example (`4 · num_kv_pairs ≤ L`).
    pub num_kv_pairs: usize,
    /// Exponent `a` of the gap distribution `p(g) ∝ a·g^(a-1)` (Zoology: 0.01).
    pub power_a: f64,
    /// Replace the filler zeros of the inputs by uniform random tokens (Zoology: true).
    pub random_non_queries: bool,
    /// Examples of the training set.
    pub num_train_examples: usize,
    /// Examples of the test set (the metric is computed on all of them).
    pub num_test_examples: usize,
    /// Seed of the training set.
    pub train_seed: u64,
    /// Seed of the test set (must differ from `train_seed`).
    pub test_seed: u64,
}

/// A task and its parameters, as a study file names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskSpec {
    /// Byte-level language modelling.
    Corpus(CorpusTask),
    /// Multi-query associative recall.
    Mqar(MqarTask),
}

impl TaskSpec {
    /// `corpus` or `mqar`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskSpec::Corpus(_) => "corpus",
            TaskSpec::Mqar(_) => "mqar",
        }
    }

    /// `bits_per_char` (lower is better) or `query_accuracy` (higher is better).
    pub fn metric_name(&self) -> &'static str {
        match self {
            TaskSpec::Corpus(_) => "bits_per_char",
            TaskSpec::Mqar(_) => "query_accuracy",
        }
    }

    /// Vocabulary size of the model the task needs (256 for the corpus).
    pub fn vocab_size(&self) -> usize {
        match self {
            TaskSpec::Corpus(_) => 256,
            TaskSpec::Mqar(m) => m.vocab_size,
        }
    }

    /// Reads the corpus or generates the MQAR sets, once; the result is shared by all runs.
    ///
    /// `seq_len` is the training sequence length; MQAR examples have length
    /// `input_seq_len`, and another `seq_len` is refused.
    ///
    /// # Errors
    /// A missing or too short corpus file, a parameter out of its domain (naming the field).
    pub fn load(&self, seq_len: usize) -> Result<Task> {
        if seq_len == 0 {
            return Err(TrainError::Config {
                field: "seq_len",
                reason: "must be at least 1".into(),
            });
        }
        let data = match self {
            TaskSpec::Corpus(c) => TaskData::Corpus(Corpus::load(c, seq_len)?),
            TaskSpec::Mqar(m) => {
                if seq_len != m.input_seq_len {
                    return Err(TrainError::Config {
                        field: "seq_len",
                        reason: format!(
                            "is {seq_len}, but MQAR examples have input_seq_len = {}; set both alike",
                            m.input_seq_len
                        ),
                    });
                }
                m.validate()?;
                TaskData::Mqar(Mqar {
                    train: m.generate(m.num_train_examples, m.train_seed),
                    test: m.generate(m.num_test_examples, m.test_seed),
                })
            }
        };
        Ok(Task {
            spec: self.clone(),
            seq_len,
            data,
        })
    }
}

/// A batch on the host, row-major `[rows, time]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Input ids.
    pub inputs: Vec<i64>,
    /// Target ids, [`IGNORE`] where no loss is taken.
    pub targets: Vec<i64>,
    /// Rows B.
    pub rows: usize,
    /// Time steps T.
    pub time: usize,
}

impl Batch {
    /// The rows cut into `parts` contiguous slices (at most `rows`), as even as they go: the
    /// first `rows % parts` slices get one row more.
    pub fn row_slices(&self, parts: usize) -> Vec<Batch> {
        let parts = parts.clamp(1, self.rows.max(1));
        let (base, extra) = (self.rows / parts, self.rows % parts);
        let mut start = 0;
        (0..parts)
            .map(|k| {
                let rows = base + usize::from(k < extra);
                let range = start * self.time..(start + rows) * self.time;
                start += rows;
                Batch {
                    inputs: self.inputs[range.clone()].to_vec(),
                    targets: self.targets[range].to_vec(),
                    rows,
                    time: self.time,
                }
            })
            .collect()
    }
}

/// MQAR examples, row-major `[n, L]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Examples {
    /// Inputs.
    pub inputs: Vec<i64>,
    /// Labels ([`IGNORE`] except at the answer positions).
    pub labels: Vec<i64>,
    /// Number of examples.
    pub n: usize,
    /// Length L of each.
    pub len: usize,
}

impl Examples {
    /// Inputs of example `i`.
    pub fn input(&self, i: usize) -> &[i64] {
        &self.inputs[i * self.len..(i + 1) * self.len]
    }

    /// Labels of example `i`.
    pub fn label(&self, i: usize) -> &[i64] {
        &self.labels[i * self.len..(i + 1) * self.len]
    }

    fn batch(&self, rows: impl Iterator<Item = usize>) -> Batch {
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        let mut n = 0;
        for i in rows {
            inputs.extend_from_slice(self.input(i));
            targets.extend_from_slice(self.label(i));
            n += 1;
        }
        Batch {
            inputs,
            targets,
            rows: n,
            time: self.len,
        }
    }
}

#[derive(Debug)]
struct Corpus {
    train: Vec<u8>,
    val: Vec<u8>,
}

#[derive(Debug)]
struct Mqar {
    train: Examples,
    test: Examples,
}

#[derive(Debug)]
enum TaskData {
    Corpus(Corpus),
    Mqar(Mqar),
}

/// A loaded task: its data, generated or read once, shared (`&Task`) by every run.
#[derive(Debug)]
pub struct Task {
    spec: TaskSpec,
    seq_len: usize,
    data: TaskData,
}

/// The generator of training step `step` of a run seeded with `seed`.
pub fn step_rng(seed: u64, step: u64) -> SplitMix64 {
    let mut h = SplitMix64::new(step ^ 0xD1B5_4A32_D192_ED03);
    SplitMix64::new(seed ^ h.next_u64())
}

impl Task {
    /// The spec it was loaded from.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// Sequence length T of every batch.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Vocabulary size of the model the task needs.
    pub fn vocab_size(&self) -> usize {
        self.spec.vocab_size()
    }

    /// The training batch of step `step` (0-based): a pure function of `(seed, step)`.
    /// Corpus: `rows` windows of `T + 1` bytes at uniform random offsets of the training
    /// part. MQAR: `rows` training examples drawn uniformly with replacement.
    pub fn train_batch(&self, seed: u64, step: u64, rows: usize) -> Batch {
        let mut rng = step_rng(seed, step);
        match &self.data {
            TaskData::Corpus(c) => {
                let t = self.seq_len;
                let starts = (0..rows).map(|_| rng.below((c.train.len() - t) as u64) as usize);
                window_batch(&c.train, starts.collect(), t)
            }
            TaskData::Mqar(m) => {
                let n = m.train.n as u64;
                m.train.batch((0..rows).map(|_| rng.below(n) as usize))
            }
        }
    }

    /// The fixed evaluation set in batches of at most `rows`. Corpus: `eval_batches · rows`
    /// windows of `T + 1` bytes at evenly spaced offsets of the validation part. MQAR: the
    /// whole test set (`eval_batches` is not used).
    pub fn eval_set(&self, rows: usize, eval_batches: usize) -> Vec<Batch> {
        let rows = rows.max(1);
        match &self.data {
            TaskData::Corpus(c) => {
                let t = self.seq_len;
                let n = (rows * eval_batches).max(1);
                let last = c.val.len() - t - 1;
                let starts: Vec<usize> = (0..n)
                    .map(|i| if n == 1 { 0 } else { i * last / (n - 1) })
                    .collect();
                starts
                    .chunks(rows)
                    .map(|s| window_batch(&c.val, s.to_vec(), t))
                    .collect()
            }
            TaskData::Mqar(m) => (0..m.test.n)
                .step_by(rows)
                .map(|i0| m.test.batch(i0..(i0 + rows).min(m.test.n)))
                .collect(),
        }
    }

    /// The MQAR sets (training, test); `None` for the corpus.
    pub fn mqar_examples(&self) -> Option<(&Examples, &Examples)> {
        match &self.data {
            TaskData::Mqar(m) => Some((&m.train, &m.test)),
            TaskData::Corpus(_) => None,
        }
    }

    /// Bytes of the (training, validation) parts; `None` for MQAR.
    pub fn corpus_split(&self) -> Option<(&[u8], &[u8])> {
        match &self.data {
            TaskData::Corpus(c) => Some((&c.train, &c.val)),
            TaskData::Mqar(_) => None,
        }
    }
}

/// Windows of `t + 1` bytes: inputs the first `t`, targets the last `t`.
fn window_batch(bytes: &[u8], starts: Vec<usize>, t: usize) -> Batch {
    let mut inputs = Vec::with_capacity(starts.len() * t);
    let mut targets = Vec::with_capacity(starts.len() * t);
    for &s in &starts {
        inputs.extend(bytes[s..s + t].iter().map(|&b| b as i64));
        targets.extend(bytes[s + 1..s + t + 1].iter().map(|&b| b as i64));
    }
    Batch {
        inputs,
        targets,
        rows: starts.len(),
        time: t,
    }
}

impl Corpus {
    fn load(c: &CorpusTask, seq_len: usize) -> Result<Self> {
        let bad = |field, reason: String| TrainError::Task {
            task: "corpus",
            field,
            reason,
        };
        if !(c.val_fraction > 0.0 && c.val_fraction < 1.0) {
            return Err(bad(
                "val_fraction",
                format!("must lie strictly between 0 and 1, got {}", c.val_fraction),
            ));
        }
        let bytes = std::fs::read(&c.path).map_err(|source| TrainError::CorpusMissing {
            path: c.path.clone(),
            source,
        })?;
        let split = ((bytes.len() as f64) * (1.0 - c.val_fraction)).floor() as usize;
        let (train, val) = bytes.split_at(split);
        // training windows need T + 1 bytes and at least two offsets; validation T + 1
        if train.len() < seq_len + 2 || val.len() < seq_len + 1 {
            return Err(bad(
                "path",
                format!(
                    "{} has {} bytes: too short for windows of seq_len + 1 = {} bytes in both \
                     the training part ({} bytes) and the validation part ({} bytes)",
                    c.path.display(),
                    bytes.len(),
                    seq_len + 1,
                    train.len(),
                    val.len()
                ),
            ));
        }
        Ok(Self {
            train: train.to_vec(),
            val: val.to_vec(),
        })
    }
}

impl MqarTask {
    /// Zoology's assertions, as errors naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: String| {
            Err(TrainError::Task {
                task: "mqar",
                field,
                reason,
            })
        };
        let (v, l, n) = (self.vocab_size, self.input_seq_len, self.num_kv_pairs);
        if l == 0 || l % 2 != 0 {
            return bad(
                "input_seq_len",
                format!("must be even and positive, got {l}"),
            );
        }
        if v <= l {
            return bad(
                "vocab_size",
                format!("must be larger than input_seq_len = {l}, got {v}"),
            );
        }
        if n == 0 {
            return bad("num_kv_pairs", "must be at least 1".into());
        }
        if n.checked_mul(4).is_none_or(|x| x > l) {
            return bad(
                "num_kv_pairs",
                format!(
                    "is {n}: 4 · num_kv_pairs must not exceed input_seq_len = {l} (at most {})",
                    l / 4
                ),
            );
        }
        if !(self.power_a > 0.0 && self.power_a.is_finite()) {
            return bad(
                "power_a",
                format!("must be positive and finite, got {}", self.power_a),
            );
        }
        if self.num_train_examples == 0 {
            return bad("num_train_examples", "must be at least 1".into());
        }
        if self.num_test_examples == 0 {
            return bad("num_test_examples", "must be at least 1".into());
        }
        if self.train_seed == self.test_seed {
            return bad(
                "test_seed",
                format!(
                    "must differ from train_seed (both {}): the sets come from different seeds",
                    self.train_seed
                ),
            );
        }
        Ok(())
    }

    /// `num_examples` examples from `seed` (call [`MqarTask::validate`] first).
    ///
    /// Per example, as Zoology's `multiquery_ar`: keys without replacement from `[1, V/2)`,
    /// values without replacement from `[V/2, V)`, interleaved `k0 v0 k1 v1 …` (the context,
    /// `2n` tokens); gaps: `n` draws without replacement from `0..space`,
    /// `space = (L − 2n)/2`, weighted `p(g) ∝ a·g^(a−1)` for `g = 1..=space`; the query part
    /// (`L − 2n + 1` zeros) gets key `i` at `2·gap_i`; labels (`L + 1`, all [`IGNORE`]) get
    /// value `i` at `2·gap_i + 2n + 1`; inputs = example without its last token, labels
    /// without their first; with `random_non_queries`, every 0 of the inputs becomes a
    /// uniform token of `[0, V)`.
    pub fn generate(&self, num_examples: usize, seed: u64) -> Examples {
        let (v, l, n) = (self.vocab_size, self.input_seq_len, self.num_kv_pairs);
        let mut rng = SplitMix64::new(seed);
        let context = 2 * n;
        let space = (l - context) / 2;
        let a = self.power_a;
        let weights: Vec<f64> = (1..=space).map(|g| a * (g as f64).powf(a - 1.0)).collect();
        let total: f64 = weights.iter().sum();
        let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let mut inputs = Vec::with_capacity(num_examples * l);
        let mut labels = Vec::with_capacity(num_examples * l);
        for _ in 0..num_examples {
            let keys = sample_without_replacement(&mut rng, 1, v / 2, n);
            let values = sample_without_replacement(&mut rng, v / 2, v, n);
            let gaps = weighted_without_replacement(&mut rng, &p, n);
            let mut example = Vec::with_capacity(l + 1);
            for (k, val) in keys.iter().zip(&values) {
                example.push(*k as i64);
                example.push(*val as i64);
            }
            let mut queries = vec![0i64; l - context + 1];
            let mut label = vec![IGNORE; l + 1];
            for ((g, k), val) in gaps.iter().zip(&keys).zip(&values) {
                queries[2 * g] = *k as i64;
                label[2 * g + context + 1] = *val as i64;
            }
            example.extend(queries);
            let mut input = example[..l].to_vec();
            if self.random_non_queries {
                for t in input.iter_mut().filter(|t| **t == 0) {
                    *t = rng.below(v as u64) as i64;
                }
            }
            inputs.extend(input);
            labels.extend_from_slice(&label[1..]);
        }
        Examples {
            inputs,
            labels,
            n: num_examples,
            len: l,
        }
    }
}

/// `n` distinct integers of `[lo, hi)` in random order (partial Fisher–Yates).
fn sample_without_replacement(rng: &mut SplitMix64, lo: usize, hi: usize, n: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = (lo..hi).collect();
    for i in 0..n {
        let j = i + rng.below((pool.len() - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(n);
    pool
}

/// `n` distinct indices of `p` drawn one after the other, each with probability
/// proportional to its weight among those not drawn yet (what `torch.multinomial` without
/// replacement does).
fn weighted_without_replacement(rng: &mut SplitMix64, p: &[f64], n: usize) -> Vec<usize> {
    let mut w = p.to_vec();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let total: f64 = w.iter().sum();
        let mut x = rng.uniform() * total;
        let mut pick = None;
        for (i, &wi) in w.iter().enumerate() {
            if wi <= 0.0 {
                continue;
            }
            pick = Some(i);
            if x < wi {
                break;
            }
            x -= wi;
        }
        // rounding can leave x ≥ the last weight: the last positive entry is taken
        let i = pick.expect("fewer positive weights than draws (validated: n ≤ space)");
        w[i] = 0.0;
        out.push(i);
    }
    out
}
