//! The training loop: one loop for both architectures, Burn's AdamW (two instances: with and
//! without weight decay), Burn's gradient clipping and learning-rate schedulers, evaluation and
//! an atomic checkpoint every `eval_interval` steps, exact resume.

use std::path::Path;
use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use gpt_baseline::{AttentionPath, Transformer};
use rayon::prelude::*;
use rwkv::{Rwkv, WkvBackend, WkvMode};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CkptState};
use crate::error::{Result, TrainError};
use crate::schedule::Schedule;
use crate::task::{Batch, Task};
use crate::variant::Arch;

/// Training settings of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch: usize,
    /// Tokens per sequence (MQAR: the task's `input_seq_len`).
    pub seq_len: usize,
    /// Peak learning rate, reached after the warm-up (Burn's schedulers need `0 < lr ≤ 1`).
    pub lr: f64,
    /// Learning rate at the end of the cosine decay (`0 ≤ min_lr ≤ lr`).
    pub min_lr: f64,
    /// Steps of linear warm-up from `lr / warmup_steps` to `lr`.
    pub warmup_steps: u64,
    /// AdamW's decoupled weight decay, applied to matrices only (see [`param_groups`]).
    pub weight_decay: f64,
    /// Adam's `(β1, β2)`; the paper's 0.9, 0.99.
    pub betas: (f64, f64),
    /// Adam's ε (1e-8).
    pub eps: f64,
    /// Burn's `GradientClippingConfig::Norm(c)`: clips EACH parameter's gradient to L2 norm
    /// `c` separately (not the global norm over all parameters, as PyTorch's
    /// `clip_grad_norm_` does). `None`: no clipping.
    pub grad_clip: Option<f64>,
    /// Evaluate (and checkpoint) every this many steps, and after the last step.
    pub eval_interval: u64,
    /// Corpus: batches of the fixed validation set (MQAR evaluates the whole test set).
    pub eval_batches: usize,
    /// Seed of the initialisation and of the training batches.
    pub seed: u64,
    /// WKV formulation used for training and evaluation (`scan` on CPU).
    #[serde(with = "wkv_mode_serde")]
    pub wkv_mode: WkvMode,
    /// Row slices of each batch whose forward and backward passes run side by side, each on
    /// its own thread with its own autodiff graph; their gradients are summed in slice order
    /// (see [`Stepper`]). The result depends on this number (by f32 rounding: the sums are
    /// split differently), never on the machine's thread count. 1: the whole batch in one
    /// graph.
    #[serde(default = "one")]
    pub micro_batches: usize,
}

fn one() -> usize {
    1
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            batch: 16,
            seq_len: 128,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 10,
            weight_decay: 0.0,
            betas: (0.9, 0.99),
            eps: 1e-8,
            grad_clip: None,
            eval_interval: 50,
            eval_batches: 4,
            seed: 0,
            wkv_mode: WkvMode::Scan,
            micro_batches: 1,
        }
    }
}

mod wkv_mode_serde {
    use rwkv::WkvMode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &WkvMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&m.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<WkvMode, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl TrainConfig {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: String| Err(TrainError::Config { field, reason });
        let positive = |field, v: u64| {
            if v == 0 {
                bad(field, "must be at least 1".into())
            } else {
                Ok(())
            }
        };
        positive("steps", self.steps)?;
        positive("batch", self.batch as u64)?;
        positive("seq_len", self.seq_len as u64)?;
        positive("eval_interval", self.eval_interval)?;
        positive("eval_batches", self.eval_batches as u64)?;
        positive("micro_batches", self.micro_batches as u64)?;
        if self.micro_batches > self.batch {
            return bad(
                "micro_batches",
                format!(
                    "must not exceed batch = {} (each slice needs a row), got {}",
                    self.batch, self.micro_batches
                ),
            );
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return bad(
                "lr",
                format!("must lie in (0, 1] (Burn's schedulers), got {}", self.lr),
            );
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad(
                "min_lr",
                format!("must lie in [0, lr = {}], got {}", self.lr, self.min_lr),
            );
        }
        if self.warmup_steps > self.steps {
            return bad(
                "warmup_steps",
                format!(
                    "must not exceed steps = {}, got {}",
                    self.steps, self.warmup_steps
                ),
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(
                "weight_decay",
                format!("must be non-negative and finite, got {}", self.weight_decay),
            );
        }
        let (b1, b2) = self.betas;
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return bad(
                "betas",
                format!("each must lie in [0, 1), got ({b1}, {b2})"),
            );
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad(
                "eps",
                format!("must be positive and finite, got {}", self.eps),
            );
        }
        if let Some(c) = self.grad_clip
            && !(c > 0.0 && c.is_finite())
        {
            return bad("grad_clip", format!("must be positive and finite, got {c}"));
        }
        self.wkv_mode.validate().map_err(|e| TrainError::Config {
            field: "wkv_mode",
            reason: e.to_string(),
        })
    }
}

/// One evaluation of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Optimizer steps done.
    pub step: u64,
    /// Training tokens seen (`step · batch · seq_len`).
    pub tokens_seen: u64,
    /// Mean training loss over the steps since the previous evaluation (nats per token).
    pub train_loss: f64,
    /// Validation loss (nats per target token; MQAR: at the answer positions).
    pub val_loss: f64,
    /// `bits_per_char` (`val_loss / ln 2`) or `query_accuracy`.
    pub val_metric: f64,
    /// Training tokens per second over the steps since the previous evaluation (forward,
    /// backward and optimizer; evaluation and checkpoints excluded).
    pub tokens_per_s: f64,
    /// Training wall time so far, seconds (evaluation and checkpoints excluded).
    pub wall_s: f64,
}

/// What the observer asks the loop to do after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop now (Ctrl-C); the run returns [`Outcome::Interrupted`] and a resume continues
    /// from the last checkpoint.
    Stop,
}

/// The caller's view of a run: progress and evaluation rows.
pub trait Observer {
    /// After every optimizer step (`step` counts from 1 to `steps`).
    fn on_step(&mut self, step: u64, steps: u64, loss: f64) -> Control;
    /// After every evaluation, before its checkpoint is written.
    ///
    /// # Errors
    /// Any error stops the run with [`TrainError::Observer`].
    fn on_eval(&mut self, point: &EvalPoint) -> core::result::Result<(), crate::error::BoxError>;
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All steps done.
    Finished,
    /// Stopped by the observer; `step` is the step of the last checkpoint, where a resume
    /// continues (0: none was written).
    Interrupted {
        /// The last checkpoint's step.
        step: u64,
    },
    /// The training loss of step `step` was NaN or infinite; nothing was checkpointed for it.
    Diverged {
        /// The step (1-based) whose loss was not finite.
        step: u64,
        /// That loss.
        loss: f64,
    },
}

/// The model trained by the loop: one module type for both architectures, so that one
/// optimizer type, one record type and one loop serve both.
#[derive(Module, Debug)]
pub enum LabModel<B: Backend> {
    /// RWKV-4 (any variant).
    Rwkv(Rwkv<B>),
    /// The baseline transformer.
    Transformer(Transformer<B>),
}

impl<B: Backend> LabModel<B> {
    /// The model of `arch`, initialised from `seed` (RWKV-LM v4 init or GPT-2 init).
    ///
    /// # Errors
    /// An invalid config.
    pub fn init(arch: &Arch, seed: u64, device: &B::Device) -> Result<Self> {
        Ok(match arch {
            Arch::Rwkv(c) => LabModel::Rwkv(c.init_with_seed(device, seed)?),
            Arch::Transformer(c) => LabModel::Transformer(c.init_with_seed(device, seed)?),
        })
    }
}

impl<B: WkvBackend> LabModel<B> {
    /// Logits `[B, T, V]` of token ids `[B, T]`.
    ///
    /// # Errors
    /// Ids out of range, an empty batch, a sequence longer than the transformer's positions.
    pub fn logits(&self, tokens: Tensor<B, 2, Int>, mode: WkvMode) -> Result<Tensor<B, 3>> {
        Ok(match self {
            LabModel::Rwkv(m) => m.forward(tokens, None, mode)?.0,
            LabModel::Transformer(m) => m.forward(tokens, AttentionPath::Fused)?,
        })
    }
}

/// One trainable parameter and whether AdamW decays it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroupEntry {
    /// Module path, e.g. `Rwkv.blocks.0.att.time_decay` or `Transformer.wte.weight`.
    pub path: String,
    /// Burn's id of the parameter.
    pub id: ParamId,
    /// Rank of the tensor.
    pub rank: usize,
    /// Weight decay applies.
    pub decay: bool,
}

/// The weight-decay split: decay exactly the matrices of the linear layers (rank ≥ 2 and not
/// an embedding: `emb`, `wte`, `wpe`); no decay for biases, LayerNorm scales and shifts,
/// `time_*` vectors (all rank 1) and embeddings.
pub fn param_groups<B: Backend, M: Module<B>>(model: &M) -> Vec<ParamGroupEntry> {
    struct Split {
        path: Vec<String>,
        out: Vec<ParamGroupEntry>,
    }
    impl<B: Backend> ModuleVisitor<B> for Split {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let embedding = self
                .path
                .iter()
                .any(|s| matches!(s.as_str(), "emb" | "wte" | "wpe"));
            self.out.push(ParamGroupEntry {
                path: self.path.join("."),
                id: param.id,
                rank: D,
                decay: D >= 2 && !embedding,
            });
        }
    }
    let mut v = Split {
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

/// Token ids `[rows, time]` as a tensor.
fn ids<B: Backend>(ids: &[i64], rows: usize, time: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [rows, time]), device)
}

/// Mean cross-entropy over the positions whose target is not [`crate::IGNORE`]: the loss
/// tensor (for the backward pass), its value, and the number of such positions.
///
/// The value is summed on the host in f64, in position order, from the per-position
/// log-probabilities: Burn's ndarray reductions may split a sum differently from one call to
/// the next (SIMD head and tail depend on the buffer's alignment), which moved the reported
/// loss by an ulp between identical runs; the host sum is the same every time.
///
/// # Shapes
/// - `logits`: `[B, T, V]`; the loss tensor is `[1]`
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    batch: &Batch,
) -> (Tensor<B, 1>, f64, usize) {
    let (picked, sum, count) = masked_log_probs(logits, batch);
    let denom = count.max(1) as f64;
    (picked.sum().neg().div_scalar(denom), -sum / denom, count)
}

/// The log-probabilities of the targets `[B·T]` (zero where the target is ignored), their
/// host sum in f64 over the counted positions (in position order), and that count.
fn masked_log_probs<B: Backend>(logits: Tensor<B, 3>, batch: &Batch) -> (Tensor<B, 1>, f64, usize) {
    let [b, t, v] = logits.dims();
    let device = logits.device();
    let n = b * t;
    let logp = log_softmax(logits.reshape([n, v]), 1);
    let valid: Vec<bool> = batch.targets.iter().map(|&x| x >= 0).collect();
    let count = valid.iter().filter(|&&x| x).count();
    let index: Vec<i64> = batch.targets.iter().map(|&x| x.max(0)).collect();
    let index = Tensor::<B, 2, Int>::from_data(TensorData::new(index, [n, 1]), &device);
    let picked = logp.gather(1, index).reshape([n]);
    let host: Vec<f64> = picked
        .clone()
        .into_data()
        .convert::<f64>()
        .into_vec()
        .unwrap_or_default();
    let sum: f64 = host
        .iter()
        .zip(&valid)
        .filter(|(_, ok)| **ok)
        .map(|(x, _)| *x)
        .sum();
    let picked = if count == n {
        picked
    } else {
        let mask: Vec<f32> = valid.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::<B, 1>::from_data(
            TensorData::new(mask, [n]),
            lab_util::float_opts::<B>(&device),
        );
        picked * mask
    };
    (picked, sum, count)
}

/// Validation loss and metric of `model` on the task's fixed evaluation set.
///
/// # Errors
/// A model error.
pub fn evaluate<B: WkvBackend>(
    model: &LabModel<B>,
    task: &Task,
    batch: usize,
    eval_batches: usize,
    mode: WkvMode,
    device: &B::Device,
) -> Result<(f64, f64)> {
    let (mut loss_sum, mut count, mut correct) = (0.0f64, 0usize, 0usize);
    for b in task.eval_set(batch, eval_batches) {
        let logits = model.logits(ids::<B>(&b.inputs, b.rows, b.time, device), mode)?;
        let (_, loss, n) = masked_cross_entropy(logits.clone(), &b);
        loss_sum += loss * n as f64;
        count += n;
        let pred: Vec<i64> = logits
            .argmax(2)
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap_or_default();
        correct += pred
            .iter()
            .zip(&b.targets)
            .filter(|(p, t)| **t >= 0 && **p == **t)
            .count();
    }
    let val_loss = loss_sum / count.max(1) as f64;
    let metric = match task.spec().metric_name() {
        "query_accuracy" => correct as f64 / count.max(1) as f64,
        _ => val_loss / core::f64::consts::LN_2,
    };
    Ok((val_loss, metric))
}

pub(crate) type Adam<B> = OptimizerAdaptor<AdamW, LabModel<B>, B>;

fn adamw<B: AutodiffBackend>(cfg: &TrainConfig, weight_decay: f64) -> Adam<B> {
    let mut c = AdamWConfig::new()
        .with_beta_1(cfg.betas.0 as f32)
        .with_beta_2(cfg.betas.1 as f32)
        .with_epsilon(cfg.eps as f32)
        .with_weight_decay(weight_decay as f32);
    if let Some(clip) = cfg.grad_clip {
        c = c.with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(
            clip as f32,
        )));
    }
    c.init::<B, LabModel<B>>()
}

/// One optimizer step of the loop: forward, masked cross-entropy, backward, the two AdamW
/// steps. Shared by [`train`] and [`crate::bench`].
///
/// With `micro_batches` = M > 1 the batch's rows are cut into M contiguous slices, and each
/// slice's forward and backward run on a thread of its own. A slice works on its own copy of
/// the parameters: the same values and [`ParamId`]s, but fresh autodiff leaves (`detach`), so
/// that the slices' graphs never meet. (Burn 0.21 deadlocks when two threads build graphs
/// that share leaves: a backward holds its graph's lock and asks for the global graph
/// locator, while a forward on the other thread holds the locator and asks for that graph's
/// lock; design §14 item 11.) Each slice's loss is its sum of log-probabilities divided by
/// the whole batch's count of target positions, so the slices' gradients, summed in slice
/// order, are the gradient of the batch's mean loss, up to f32 rounding.
pub struct Stepper<B: AutodiffBackend> {
    model: Option<LabModel<B>>,
    opt_decay: Adam<B>,
    opt_plain: Adam<B>,
    decay_ids: Vec<ParamId>,
    plain_ids: Vec<ParamId>,
    mode: WkvMode,
    micro_batches: usize,
    /// The micro-batches' threads, one per slice, started once: threads started afresh
    /// every step got fresh allocator heaps whose pages the kernel had to fault in and zero
    /// (30% of a d_model-256 step in `clear_page_erms`). None with one micro-batch, or if the
    /// system refused threads: the slices then run one after the other, with the same result.
    pool: Option<rayon::ThreadPool>,
}

/// A parameter copy with fresh autodiff leaves: same ids, same values, no shared graph node.
struct FreshLeaves;

impl<B: AutodiffBackend> ModuleMapper<B> for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.detach(), mapper)
    }
}

/// A loss and its gradients split into the two parameter groups, (decayed, not decayed);
/// None when the loss was not finite (no backward was run).
pub type LossGrads = (f64, Option<(GradientsParams, GradientsParams)>);

impl<B: AutodiffBackend + WkvBackend> Stepper<B> {
    /// Fresh optimizers for `model`.
    pub fn new(model: LabModel<B>, cfg: &TrainConfig) -> Self {
        let groups = param_groups::<B, _>(&model);
        Self {
            decay_ids: groups.iter().filter(|g| g.decay).map(|g| g.id).collect(),
            plain_ids: groups.iter().filter(|g| !g.decay).map(|g| g.id).collect(),
            model: Some(model),
            opt_decay: adamw::<B>(cfg, cfg.weight_decay),
            opt_plain: adamw::<B>(cfg, 0.0),
            mode: cfg.wkv_mode,
            micro_batches: cfg.micro_batches.max(1),
            pool: (cfg.micro_batches > 1)
                .then(|| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(cfg.micro_batches)
                        .thread_name(|i| format!("micro-batch-{i}"))
                        .build()
                        .ok()
                })
                .flatten(),
        }
    }

    /// The model.
    pub fn model(&self) -> &LabModel<B> {
        self.model
            .as_ref()
            .expect("the model is only taken inside `step`")
    }

    /// The batch's mean loss and the gradients the next [`Stepper::step`] on it would apply
    /// (through the micro-batches, as the step does); nothing is updated.
    ///
    /// # Errors
    /// A model error (ids out of range...).
    pub fn gradients(&self, batch: &Batch, device: &B::Device) -> Result<LossGrads> {
        self.loss_grads(self.model(), batch, device)
    }

    /// One step at learning rate `lr`; returns the batch's loss. A non-finite loss is
    /// returned without stepping.
    ///
    /// # Errors
    /// A model error (ids out of range...).
    pub fn step(&mut self, batch: &Batch, lr: f64, device: &B::Device) -> Result<f64> {
        let model = self
            .model
            .take()
            .expect("the model is only taken inside `step`");
        let (loss_value, grads) = match self.loss_grads(&model, batch, device) {
            Ok(c) => c,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        };
        // no gradients when the loss was not finite (`loss_grads` runs no backward then)
        match grads {
            Some((g_decay, g_plain)) => {
                let model = self.opt_decay.step(lr, model, g_decay);
                self.model = Some(self.opt_plain.step(lr, model, g_plain));
            }
            _ => self.model = Some(model),
        }
        Ok(loss_value)
    }

    /// The batch's mean loss and its gradients, through `micro_batches` row slices, each on
    /// a thread of the pool (one slice: on this thread); see [`Stepper`].
    fn loss_grads(
        &self,
        model: &LabModel<B>,
        batch: &Batch,
        device: &B::Device,
    ) -> Result<LossGrads> {
        let slices = batch.row_slices(self.micro_batches);
        let count = batch.targets.iter().filter(|&&x| x >= 0).count();
        let denom = count.max(1) as f64;
        let (mode, decay_ids, plain_ids) = (self.mode, &self.decay_ids, &self.plain_ids);
        let work: Vec<(LabModel<B>, &Batch)> = slices.iter().map(|b| (model.clone(), b)).collect();
        let one = move |(local, slice): (LabModel<B>, &Batch)| -> Result<LossGrads> {
            let local = local.map(&mut FreshLeaves);
            let logits = local.logits(
                ids::<B>(&slice.inputs, slice.rows, slice.time, device),
                mode,
            )?;
            // reading the values waits for the device: timings cover the real work
            let (picked, sum, _) = masked_log_probs(logits, slice);
            if !sum.is_finite() {
                return Ok((sum, None));
            }
            let mut grads = picked.sum().neg().div_scalar(denom).backward();
            let g_decay = GradientsParams::from_params(&mut grads, &local, decay_ids);
            let g_plain = GradientsParams::from_params(&mut grads, &local, plain_ids);
            Ok((sum, Some((g_decay, g_plain))))
        };
        // results come back in slice order, whichever thread ran which slice
        let results: Vec<Result<LossGrads>> = match &self.pool {
            Some(pool) if work.len() > 1 => {
                pool.install(|| work.into_par_iter().map(one).collect())
            }
            _ => work.into_iter().map(one).collect(),
        };
        let mut sum = 0.0f64;
        let mut acc_decay = GradientsAccumulator::<LabModel<B>>::new();
        let mut acc_plain = GradientsAccumulator::<LabModel<B>>::new();
        let mut complete = true;
        // summed in slice order: the same every run
        for r in results {
            let (s, grads) = r?;
            sum += s;
            match grads {
                Some((d, p)) => {
                    acc_decay.accumulate(model, d);
                    acc_plain.accumulate(model, p);
                }
                None => complete = false,
            }
        }
        let loss_value = -sum / denom;
        if !complete || !loss_value.is_finite() {
            return Ok((loss_value, None));
        }
        Ok((loss_value, Some((acc_decay.grads(), acc_plain.grads()))))
    }
}

/// What identifies a run for resume: a checkpoint written by another one is refused.
fn fingerprint(arch: &Arch, task: &Task, cfg: &TrainConfig) -> String {
    format!(
        "{arch:?}|{:?}|{}",
        task.spec(),
        serde_json::to_string(cfg).unwrap_or_default()
    )
}

/// The checks of a run before anything is built.
fn check_run(arch: &Arch, task: &Task, cfg: &TrainConfig) -> Result<()> {
    cfg.validate()?;
    if cfg.seq_len != task.seq_len() {
        return Err(TrainError::Config {
            field: "seq_len",
            reason: format!(
                "is {}, but the task was loaded with seq_len {}",
                cfg.seq_len,
                task.seq_len()
            ),
        });
    }
    if arch.vocab_size() != task.vocab_size() {
        return Err(TrainError::Config {
            field: "vocab_size",
            reason: format!(
                "the model has {} tokens, the task {} needs {}",
                arch.vocab_size(),
                task.spec().name(),
                task.vocab_size()
            ),
        });
    }
    if let Arch::Transformer(c) = arch
        && c.max_positions < cfg.seq_len
    {
        return Err(TrainError::Config {
            field: "seq_len",
            reason: format!(
                "is {}, longer than the transformer's max_positions = {}",
                cfg.seq_len, c.max_positions
            ),
        });
    }
    Ok(())
}

/// Trains `arch` on `task` from scratch, or from the checkpoint in `ckpt_dir` when `resume`
/// and one exists. See the crate docs for the loop, the checkpoint and the guarantees.
///
/// # Errors
/// A config or model error (naming the field), a checkpoint that cannot be written or read
/// (naming the path; a failed write leaves the previous checkpoint valid), an observer error.
/// A non-finite loss is not an error: it returns [`Outcome::Diverged`].
pub fn train<B>(
    arch: &Arch,
    task: &Task,
    cfg: &TrainConfig,
    ckpt_dir: &Path,
    resume: bool,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Outcome>
where
    B: AutodiffBackend + WkvBackend,
    B::InnerBackend: WkvBackend,
{
    check_run(arch, task, cfg)?;
    let model = LabModel::<B>::init(arch, cfg.seed, device)?;
    train_from(model, arch, task, cfg, ckpt_dir, resume, device, observer)
}

/// As [`train`], starting from `model` instead of the initialisation of `arch` with
/// `cfg.seed` (`arch` still identifies the run for resume). For tests that inject a model
/// (e.g. a NaN parameter) and for warm starts.
///
/// # Errors
/// As [`train`].
#[allow(clippy::too_many_arguments)]
pub fn train_from<B>(
    model: LabModel<B>,
    arch: &Arch,
    task: &Task,
    cfg: &TrainConfig,
    ckpt_dir: &Path,
    resume: bool,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Outcome>
where
    B: AutodiffBackend + WkvBackend,
    B::InnerBackend: WkvBackend,
{
    check_run(arch, task, cfg)?;
    let fp = fingerprint(arch, task, cfg);
    let mut schedule = Schedule::new(cfg)?;
    let mut state = CkptState {
        step: 0,
        tokens_seen: 0,
        wall_s: 0.0,
        schedule: schedule.position(),
        fingerprint: fp.clone(),
    };
    let loaded = if resume {
        checkpoint::load::<B>(ckpt_dir, &fp, device)?
    } else {
        None
    };
    let (model, rest) = match loaded {
        Some(ck) => (
            model.load_record(ck.model),
            Some((ck.optim_decay, ck.optim_plain, ck.state)),
        ),
        None => (model, None),
    };
    let mut stepper = Stepper::new(model, cfg);
    if let Some((optim_decay, optim_plain, saved)) = rest {
        stepper.opt_decay = stepper.opt_decay.load_record(optim_decay);
        stepper.opt_plain = stepper.opt_plain.load_record(optim_plain);
        schedule.restore(saved.schedule);
        state = saved;
    }
    let tokens_per_step = (cfg.batch * cfg.seq_len) as u64;
    let (mut loss_sum, mut loss_n, mut interval_s) = (0.0f64, 0u64, 0.0f64);
    for s in state.step..cfg.steps {
        let t0 = Instant::now();
        let lr = schedule.step();
        let batch = task.train_batch(cfg.seed, s, cfg.batch);
        let loss_value = stepper.step(&batch, lr, device)?;
        if !loss_value.is_finite() {
            return Ok(Outcome::Diverged {
                step: s + 1,
                loss: loss_value,
            });
        }
        interval_s += t0.elapsed().as_secs_f64();
        loss_sum += loss_value;
        loss_n += 1;
        let done = s + 1;
        if done % cfg.eval_interval == 0 || done == cfg.steps {
            let (val_loss, val_metric) = evaluate(
                &stepper.model().valid(),
                task,
                cfg.batch,
                cfg.eval_batches,
                cfg.wkv_mode,
                device,
            )?;
            state.wall_s += interval_s;
            let point = EvalPoint {
                step: done,
                tokens_seen: done * tokens_per_step,
                train_loss: loss_sum / loss_n.max(1) as f64,
                val_loss,
                val_metric,
                tokens_per_s: (loss_n * tokens_per_step) as f64 / interval_s.max(1e-12),
                wall_s: state.wall_s,
            };
            observer.on_eval(&point).map_err(TrainError::Observer)?;
            state.step = done;
            state.tokens_seen = point.tokens_seen;
            state.schedule = schedule.position();
            checkpoint::save(
                ckpt_dir,
                &state,
                stepper.model(),
                &stepper.opt_decay,
                &stepper.opt_plain,
            )?;
            (loss_sum, loss_n, interval_s) = (0.0, 0, 0.0);
        }
        if observer.on_step(done, cfg.steps, loss_value) == Control::Stop {
            return Ok(Outcome::Interrupted { step: state.step });
        }
    }
    Ok(Outcome::Finished)
}
