//! The grid of an ablation study: every (variant × seed × setting) run, resolved into the
//! engine's task, model and training config, in a fixed order; and `--shard K/N`.
//!
//! Order (documented, stable): variants in the spec's order, then seeds in the spec's
//! order, then settings (the sweep's cartesian product, `seq_len_kv_pairs` slowest, then
//! `d_model`, `n_layers`, `lr`). Run `index` counts in that order from 0.
//!
//! Shards: `--shard K/N` (K 0-based, `0 ≤ K < N`, as Slurm's `$SLURM_ARRAY_TASK_ID` with
//! `--array=0-(N-1)`) runs the runs whose `index % N == K`: round-robin, so each shard gets
//! a share of every variant, and the shards together cover the grid exactly once.

use std::fmt;
use std::str::FromStr;

use lab_records::{GridRun, RunKey};
use lab_train::{CorpusTask, MqarTask, TaskSpec, TrainConfig};
use rwkv::RwkvConfig;
use serde::{Deserialize, Serialize};

use super::spec::AblationSpec;

/// `--shard K/N`: the K-th (0-based) of N slices of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// K, 0-based.
    pub index: usize,
    /// N.
    pub count: usize,
}

impl Shard {
    /// Whether the run at grid position `index` belongs to this shard.
    pub fn contains(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N` with `0 ≤ K < N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "--shard `{s}`: {why}; write K/N with K counted from 0 and 0 <= K < N \
                 (e.g. 0/4 ... 3/4; a Slurm array --array=0-3 with --shard $SLURM_ARRAY_TASK_ID/4)"
            ))
        };
        let Some((k, n)) = s.split_once('/') else {
            return bad("no `/`");
        };
        let (Ok(index), Ok(count)) = (k.trim().parse::<usize>(), n.trim().parse::<usize>()) else {
            return bad("K and N must be whole numbers");
        };
        if count == 0 {
            return bad("N must be at least 1");
        }
        if index >= count {
            return bad(&format!("K = {index} is not below N = {count}"));
        }
        Ok(Shard { index, count })
    }
}

/// One point of the sweep (None: the spec's value).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Setting {
    /// MQAR `(input_seq_len, num_kv_pairs)`.
    pub seq_len_kv_pairs: Option<(usize, usize)>,
    /// Width.
    pub d_model: Option<usize>,
    /// Depth.
    pub n_layers: Option<usize>,
    /// Learning rate.
    pub lr: Option<f64>,
}

impl Setting {
    /// `key=value` joined by `,` (empty without a sweep): the records' `setting` column.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some((t, k)) = self.seq_len_kv_pairs {
            parts.push(format!("input_seq_len={t}"));
            parts.push(format!("num_kv_pairs={k}"));
        }
        if let Some(d) = self.d_model {
            parts.push(format!("d_model={d}"));
        }
        if let Some(l) = self.n_layers {
            parts.push(format!("n_layers={l}"));
        }
        if let Some(lr) = self.lr {
            parts.push(format!("lr={lr}"));
        }
        parts.join(",")
    }
}

/// Every setting of the spec's sweep (one empty setting without a sweep).
pub fn settings(spec: &AblationSpec) -> Vec<Setting> {
    let Some(sweep) = &spec.sweep else {
        return vec![Setting::default()];
    };
    fn axis<T: Copy>(v: &Option<crate::spec::NonEmpty<T>>) -> Vec<Option<T>> {
        match v {
            Some(list) => list.0.iter().map(|x| Some(*x)).collect(),
            None => vec![None],
        }
    }
    let mut out = Vec::new();
    for p in axis(&sweep.seq_len_kv_pairs) {
        for d in axis(&sweep.d_model) {
            for l in axis(&sweep.n_layers) {
                for lr in axis(&sweep.lr) {
                    out.push(Setting {
                        seq_len_kv_pairs: p,
                        d_model: d.map(|d| d.get()),
                        n_layers: l.map(|l| l.get()),
                        lr,
                    });
                }
            }
        }
    }
    out
}

/// One planned run, resolved for the engine.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Position, id and key (as kept in `meta.json`).
    pub grid: GridRun,
    /// The engine's variant name (`lab_train::VARIANT_NAMES`).
    pub variant_name: String,
    /// The base RWKV model with this run's sizes (the variant is applied by the engine).
    pub base: RwkvConfig,
    /// The task with this run's parameters.
    pub task: TaskSpec,
    /// Budget, optimizer, seed.
    pub train: TrainConfig,
}

/// Folder-safe form of a label: letters, digits and `_ - . =` kept, others become `_`.
fn folder_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The stable id of a run: `label[-setting]-seedN`, folder-safe.
pub fn run_id(label: &str, setting: &str, seed: u64) -> String {
    let setting = if setting.is_empty() {
        String::new()
    } else {
        format!("-{}", setting.replace(',', "-"))
    };
    folder_safe(&format!("{label}{setting}-seed{seed}"))
}

/// The whole grid of `spec`, in the documented order. Errors when two runs would share an
/// id (labels differing only in characters that are not folder-safe).
pub fn grid(spec: &AblationSpec) -> Result<Vec<RunPlan>, String> {
    let settings = settings(spec);
    let mut out = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let t = &spec.train;
    for v in &spec.variants.0 {
        for &seed in &spec.seeds.0 {
            for s in &settings {
                let d_model = s
                    .d_model
                    .or(v.d_model.map(|d| d.get()))
                    .unwrap_or(spec.model.d_model.get());
                let n_layers = s
                    .n_layers
                    .or(v.n_layers.map(|d| d.get()))
                    .unwrap_or(spec.model.n_layers.get());
                let d_ffn = v
                    .d_ffn
                    .or(spec.model.d_ffn)
                    .map(|f| f.get())
                    .unwrap_or(4 * d_model);
                let (task, seq_len) = match (&spec.task.mqar, &spec.task.corpus) {
                    (Some(m), _) => {
                        let (seq, pairs) = s
                            .seq_len_kv_pairs
                            .unwrap_or((m.input_seq_len, m.num_kv_pairs));
                        let task = TaskSpec::Mqar(MqarTask {
                            vocab_size: m.vocab_size,
                            input_seq_len: seq,
                            num_kv_pairs: pairs,
                            power_a: m.power_a,
                            random_non_queries: m.random_non_queries,
                            num_train_examples: m.num_train_examples,
                            num_test_examples: m.num_test_examples,
                            train_seed: m.train_seed,
                            test_seed: m.test_seed,
                        });
                        (task, seq)
                    }
                    (None, Some(c)) => {
                        let task = TaskSpec::Corpus(CorpusTask {
                            path: c.path.clone(),
                            val_fraction: c.val_fraction,
                        });
                        (task, t.seq_len.map_or(1, |s| s.get()))
                    }
                    (None, None) => return Err("the spec names no task".into()),
                };
                let lr = s.lr.or(v.lr).unwrap_or(t.lr);
                // min_lr keeps its ratio to lr when lr is swept or overridden
                let min_lr = t.min_lr.map_or(lr / 10.0, |m| m / t.lr * lr);
                let per_step = (t.batch.get() * seq_len) as u64;
                let steps = t
                    .steps
                    .unwrap_or_else(|| t.tokens.unwrap_or(1).div_ceil(per_step))
                    .max(1);
                let train = TrainConfig {
                    steps,
                    batch: t.batch.get(),
                    seq_len,
                    lr,
                    min_lr,
                    warmup_steps: t.warmup_steps.min(steps),
                    weight_decay: t.weight_decay,
                    betas: (0.9, 0.99),
                    eps: 1e-8,
                    grad_clip: t.grad_clip,
                    eval_interval: t.eval_interval,
                    eval_batches: t.eval_batches.get(),
                    seed,
                    wkv_mode: t.wkv.0,
                    micro_batches: t.resolved_micro_batches().get(),
                };
                let setting = s.label();
                let id = run_id(v.label(), &setting, seed);
                if !ids.insert(id.clone()) {
                    return Err(format!(
                        "two runs would share the id `{id}`: give the variants labels that \
                         differ in letters or digits"
                    ));
                }
                out.push(RunPlan {
                    grid: GridRun {
                        index: out.len(),
                        id,
                        key: RunKey {
                            task: spec.task_name().into(),
                            variant: v.label().into(),
                            setting,
                            seed,
                        },
                        steps,
                    },
                    variant_name: v.name.0.clone(),
                    base: RwkvConfig::new(task.vocab_size(), d_model, n_layers, d_ffn),
                    task,
                    train,
                });
            }
        }
    }
    Ok(out)
}

/// The runs of `shard` (all runs without one), in grid order.
pub fn select(grid: Vec<RunPlan>, shard: Option<Shard>) -> Vec<RunPlan> {
    grid.into_iter()
        .filter(|r| shard.is_none_or(|s| s.contains(r.grid.index)))
        .collect()
}
