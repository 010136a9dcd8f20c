//! Learning-rate schedules, as functions of the optimizer step, and the per-epoch
//! callback of the trainer.

use std::sync::Arc;

use super::metrics::EpochMetrics;
use crate::error::{Error, Result};

/// How the learning rate changes with the optimizer step `t = 0, 1, …` (PyTorch's
/// `torch.optim.lr_scheduler` equivalents, stepped once per optimizer step), on top of
/// which [`super::TrainConfig::warmup_steps`] ramps it up linearly.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LrSchedule {
    /// `lr` throughout.
    #[default]
    Constant,
    /// `lr · gamma^⌊t / every⌋` (`StepLR(step_size=every, gamma)`).
    Step {
        /// Steps between decays (≥ 1).
        every: usize,
        /// The factor of each decay, in `(0, 1]`.
        gamma: f64,
    },
    /// `min_lr + (lr − min_lr) · (1 + cos(π t / T)) / 2` for `t ≤ T`, `min_lr` after
    /// (`CosineAnnealingLR(T_max=T, eta_min=min_lr)`), with `T` the run's total number
    /// of optimizer steps (epochs × steps per epoch).
    Cosine {
        /// The final learning rate, in `[0, lr)`.
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The learning rate at step `t` of `total` with base rate `lr` and a linear
    /// warm-up over the first `warmup` steps (`lr · (t + 1) / warmup` while
    /// `t < warmup`, multiplying the schedule's rate).
    ///
    /// # Examples
    /// ```
    /// use latent::train::LrSchedule;
    /// let s = LrSchedule::Step { every: 10, gamma: 0.5 };
    /// assert_eq!(s.lr_at(1e-3, 25, 100, 0), 2.5e-4);
    /// let c = LrSchedule::Cosine { min_lr: 0.0 };
    /// assert!((c.lr_at(1.0, 50, 100, 0) - 0.5).abs() < 1e-12);
    /// assert_eq!(LrSchedule::Constant.lr_at(1e-3, 1, 100, 4), 5e-4);
    /// ```
    pub fn lr_at(&self, lr: f64, t: usize, total: usize, warmup: usize) -> f64 {
        let base = match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Step { every, gamma } => lr * gamma.powi((t / every.max(1)) as i32),
            LrSchedule::Cosine { min_lr } => {
                let frac = (t as f64 / total.max(1) as f64).min(1.0);
                min_lr + (lr - min_lr) * (1.0 + (std::f64::consts::PI * frac).cos()) / 2.0
            }
        };
        if t < warmup {
            base * (t + 1) as f64 / warmup as f64
        } else {
            base
        }
    }

    /// Checks the schedule's settings against the base rate `lr`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for `every = 0`, `gamma` outside `(0, 1]`, or `min_lr`
    /// outside `[0, lr)`.
    pub fn check(&self, lr: f64) -> Result<()> {
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Step { every, gamma } => {
                if every == 0 {
                    return Err(Error::invalid("lr_schedule.every", "must be at least 1"));
                }
                if !(gamma > 0.0 && gamma <= 1.0) {
                    return Err(Error::invalid(
                        "lr_schedule.gamma",
                        format!("must lie in (0, 1], got {gamma}"),
                    ));
                }
                Ok(())
            }
            LrSchedule::Cosine { min_lr } => {
                if !(min_lr >= 0.0 && min_lr < lr) {
                    return Err(Error::invalid(
                        "lr_schedule.min_lr",
                        format!("must lie in [0, lr = {lr}), got {min_lr}"),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// A function the trainer calls with each epoch's metrics, after they are logged and
/// the checkpoint written, for users' own logging (TensorBoard, a database, …); an
/// error it returns ends training with that error.
#[derive(Clone)]
pub struct EpochCallback(pub Arc<EpochFn>);

/// The function inside an [`EpochCallback`].
pub type EpochFn = dyn Fn(&EpochMetrics) -> Result<()> + Send + Sync;

impl EpochCallback {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&EpochMetrics) -> Result<()> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for EpochCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EpochCallback")
    }
}

/// Two callbacks are equal when they are the same function object.
impl PartialEq for EpochCallback {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
