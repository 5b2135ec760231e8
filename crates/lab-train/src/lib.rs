//! Training engine of rwkv-lab's ablation studies ("which part of RWKV matters?").
//!
//! * Tasks ([`task`]): byte-level language modelling on a text file (vocabulary 256, the last
//!   `val_fraction` of the file for validation, metric bits per character), and multi-query
//!   associative recall as defined by Zoology (metric: query accuracy on the test set).
//! * Variants ([`variant`]): names mapped to the switches of the one RWKV model
//!   ([`rwkv::Variant`]), and the baseline transformer at matched non-embedding size.
//! * The loop ([`train()`]), generic over the autodiff backend, one loop for both
//!   architectures ([`LabModel`]).
//!
//! # What the loop uses from Burn
//!
//! * **AdamW** (`burn::optim::AdamW`, betas and ε from [`TrainConfig`]; the paper's 0.9, 0.99,
//!   1e-8). Burn's AdamW decays every parameter it steps, so the loop runs two AdamW
//!   instances over a split of the gradients ([`GradientsParams::from_params`] with the ids
//!   of [`param_groups`]): one with `weight_decay` for the matrices of linear layers, one
//!   with 0 for biases, LayerNorm scales and shifts, `time_*` vectors and embeddings. Each
//!   optimizer skips parameters without a gradient in its half, so every parameter is
//!   stepped exactly once per step, by one of them, with its own Adam state.
//! * **Gradient clipping**: `GradientClippingConfig::Norm(c)` as the optimizer's option. In
//!   Burn 0.21 it is applied per parameter tensor (`burn-optim` `grad_clipping/base.rs`:
//!   each gradient is scaled to L2 norm ≤ c on its own), not to the global norm over all
//!   parameters as PyTorch's `clip_grad_norm_`. Off by default.
//! * **Learning-rate schedule**: Burn's `LinearLrScheduler` (warm-up) then
//!   `CosineAnnealingLrScheduler` (decay to `min_lr`), switched at `warmup_steps`
//!   ([`schedule`]); Burn's `ComposedLrScheduler` combines schedulers at every step (sum,
//!   product, average), it does not chain them.
//! * **Records**: model, both optimizers' states (Burn records, `NamedMpkBytesRecorder`).
//!
//! # Guarantees
//!
//! * Deterministic inputs: the model is initialised from `seed` on the host (identical on
//!   every backend), the batch of step `s` is a pure function of `(seed, s)`, the schedule is
//!   a function of the step, and a checkpoint restores model, both Adam states and the
//!   schedule. Reported losses are summed on the host in f64 ([`masked_cross_entropy`]).
//!   **Limit (measured):** Burn 0.21's ndarray autodiff does not return bit-identical
//!   gradients from one run to the next (the first gradient of `head.weight` differs in its
//!   last bits between two identical runs, also with one thread; the forward pass and the
//!   first loss are identical). Reruns and resumed runs therefore agree to f32 rounding
//!   (~1e-7 relative after a few steps, tested at 1e-5), not bit for bit.
//! * Checkpoint at every evaluation ([`checkpoint`]): written into a temporary folder and
//!   published by an atomic rename of its pointer, so a failed write leaves the previous
//!   checkpoint valid. A resumed run's evaluation points equal an uninterrupted run's
//!   (except the measured `tokens_per_s` and `wall_s`) within that rounding.
//! * MQAR's seq_len: [`TaskSpec::load`] refuses a `seq_len` other than `input_seq_len`.
//! * A NaN or infinite training loss ends the run with [`Outcome::Diverged`] (not an error).
//! * Tokens per second are measured over training steps only (forward, backward,
//!   optimizer; the loss scalar is read every step, which waits for the device).
//!
//! The library never prints; the caller observes a run through [`Observer`].

pub mod bench;
pub mod checkpoint;
pub mod error;
pub mod schedule;
pub mod task;
pub mod train;
pub mod variant;

pub use burn::optim::GradientsParams;
pub use error::{BoxError, Result, TrainError};
pub use task::{Batch, CorpusTask, Examples, IGNORE, MqarTask, Task, TaskSpec};
pub use train::{
    Control, EvalPoint, LabModel, Observer, Outcome, ParamGroupEntry, TrainConfig, evaluate,
    masked_cross_entropy, param_groups, train, train_from,
};
pub use variant::{Arch, VARIANT_NAMES, matched_transformer, variant_arch};
