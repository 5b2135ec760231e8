//! Linear warm-up then cosine decay, from Burn's own schedulers.
//!
//! Burn 0.21's `ComposedLrScheduler` combines schedulers by sum, product or average at every
//! step, not one after the other, so the two parts are Burn's `LinearLrScheduler` (steps
//! `0..warmup_steps`, from `lr / warmup_steps` up to `lr`) and `CosineAnnealingLrScheduler`
//! (steps `warmup_steps..steps`, from `lr` down to `min_lr` at the last step), switched at
//! `warmup_steps`. Their positions are Burn's scheduler records, saved in the checkpoint.

use burn::backend::NdArray;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::lr_scheduler::cosine::{
    CosineAnnealingLrScheduler, CosineAnnealingLrSchedulerConfig,
};
use burn::optim::lr_scheduler::linear::{LinearLrScheduler, LinearLrSchedulerConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::train::TrainConfig;

/// Scheduler records: Burn's records of both schedulers are plain counters, independent of the
/// backend type parameter (`NdArray` is named only to instantiate it).
type Rec = NdArray;

/// Where the schedule stands: steps taken and Burn's records of both parts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedulePosition {
    /// Steps taken.
    pub step: u64,
    /// Record of the warm-up scheduler (`None` without warm-up).
    pub linear: Option<usize>,
    /// Record of the cosine scheduler (`None` when warm-up covers every step).
    pub cosine: Option<usize>,
}

/// Linear warm-up, then cosine decay.
#[derive(Clone, Debug)]
pub struct Schedule {
    warmup: u64,
    step: u64,
    linear: Option<LinearLrScheduler>,
    cosine: Option<CosineAnnealingLrScheduler>,
}

impl Schedule {
    /// The schedule of `cfg` (validated).
    ///
    /// # Errors
    /// Burn's schedulers refuse `lr` outside (0, 1] or `min_lr` outside [0, lr].
    pub fn new(cfg: &TrainConfig) -> Result<Self> {
        let err = |field| {
            move |reason: String| TrainError::Config {
                field,
                reason: format!("refused by Burn's scheduler: {reason}"),
            }
        };
        let w = cfg.warmup_steps;
        let linear = match w {
            0 => None,
            1 => Some(
                LinearLrSchedulerConfig::new(cfg.lr, cfg.lr, 1)
                    .init()
                    .map_err(err("lr"))?,
            ),
            _ => Some(
                LinearLrSchedulerConfig::new(cfg.lr / w as f64, cfg.lr, (w - 1) as usize)
                    .init()
                    .map_err(err("lr"))?,
            ),
        };
        let rest = cfg.steps.saturating_sub(w);
        let cosine = if rest == 0 {
            None
        } else {
            Some(
                CosineAnnealingLrSchedulerConfig::new(cfg.lr, (rest - 1).max(1) as usize)
                    .with_min_lr(cfg.min_lr)
                    .init()
                    .map_err(err("min_lr"))?,
            )
        };
        Ok(Self {
            warmup: w,
            step: 0,
            linear,
            cosine,
        })
    }

    /// The learning rate of the next step.
    pub fn step(&mut self) -> f64 {
        let lr = match (self.step < self.warmup, &mut self.linear, &mut self.cosine) {
            (true, Some(l), _) => l.step(),
            (_, _, Some(c)) => c.step(),
            (_, Some(l), None) => l.step(),
            (_, None, None) => 0.0, // unreachable for a validated config (steps ≥ 1)
        };
        self.step += 1;
        lr
    }

    /// The position, for the checkpoint.
    pub fn position(&self) -> SchedulePosition {
        SchedulePosition {
            step: self.step,
            linear: self.linear.as_ref().map(|l| l.to_record::<Rec>()),
            cosine: self.cosine.as_ref().map(|c| c.to_record::<Rec>()),
        }
    }

    /// Continues from a saved position.
    pub fn restore(&mut self, p: SchedulePosition) {
        self.step = p.step;
        self.linear = self.linear.take().map(|l| match p.linear {
            Some(r) => l.load_record::<Rec>(r),
            None => l,
        });
        self.cosine = self.cosine.take().map(|c| match p.cosine {
            Some(r) => c.load_record::<Rec>(r),
            None => c,
        });
    }
}
