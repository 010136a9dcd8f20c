//! The training settings, checked once before a run.

use std::path::PathBuf;

use super::schedule::{EpochCallback, LrSchedule};
use super::spec::ModelSpec;
use crate::data::Binarization;
use crate::error::{Error, Result};

/// Training settings. The defaults are those of the reference PyTorch VAE: Adam with
/// learning rate 1e-3, batch 128, 10 epochs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set (≥ 1).
    pub epochs: usize,
    /// Images per optimizer step (≥ 1).
    pub batch_size: usize,
    /// Adam's learning rate (positive, finite).
    pub lr: f64,
    /// Seeds shuffling and binarization (seed the device separately for `ε`).
    pub seed: u64,
    /// How pixels become observations.
    pub binarization: Binarization,
    /// Show a progress bar with the running loss on stderr.
    pub progress: bool,
    /// Where `metrics.jsonl` and `checkpoint.safetensors` go; nothing is written if unset.
    /// The trainer claims it for the run ([`super::RunDir`]): a directory in use
    /// by another process, or holding an earlier run without `overwrite`, is a typed
    /// error.
    pub out_dir: Option<PathBuf>,
    /// Replace an earlier run found in `out_dir` (its outputs are removed first).
    #[serde(default)]
    pub overwrite: bool,
    /// KL warm-up (Bowman et al. 2016; Sønderby et al. 2016): the KL term's weight rises
    /// linearly from 0 at step 0 to 1 at this many optimizer steps, then stays 1
    /// ([`Objective::scheduled`](crate::Objective::scheduled)). 0 (the default) turns it off. Any model and objective
    /// with a KL term can use it.
    #[serde(default)]
    pub kl_warmup_steps: usize,
    /// Data-parallel replicas on the CPU: each batch is split across this many threads,
    /// each computing the gradient of its share with single-threaded matrix products,
    /// and the gradients are summed in a fixed order before one Adam update (see
    /// [`fit_task`](super::fit_task)). 0 (the default) means one per available core (across processes:
    /// the cores divided among the ranks on the same machine); 1 is the plain
    /// single-threaded loop. Off the `Cpu` device it is always 1. The same seed and the
    /// same count give the same run; different counts draw different `ε`. Across
    /// processes this is the count per rank, and `N` ranks of `R` threads run as one
    /// process of `N · R` threads.
    #[serde(default)]
    pub threads: usize,
    /// Continue the run in `out_dir` from its checkpoint instead of starting anew:
    /// weights, Adam's moments and step count, the task's state, epoch and step are
    /// restored, the metrics log is cut to the completed epochs, and training goes on to
    /// `epochs`. On the `Cpu` the result equals the uninterrupted run bit for bit: every
    /// epoch's random streams come from `seed` and the epoch number
    /// ([`super::resume::epoch_seed`]). The settings that shape the run (batch size,
    /// learning rate, seed, binarization, warm-up, threads) must be the saved ones.
    #[serde(default)]
    pub resume: bool,
    /// Keep the model of the epoch with the highest evaluated ELBO (on the split passed
    /// to [`fit_task`](super::fit_task) for per-epoch evaluation: pass a validation split there, and
    /// keep the test split for one evaluation at the end) in `out_dir/best.safetensors`,
    /// written atomically with its metadata ([`super::CheckpointMeta`], the epoch in
    /// `training.epoch`) whenever the ELBO improves.
    #[serde(default)]
    pub keep_best: bool,
    /// Early stopping: end training when the evaluated ELBO has not improved for this
    /// many epochs (`None`: train all `epochs`). [`TrainReport::stopped_early`](super::TrainReport::stopped_early) says
    /// whether it did.
    #[serde(default)]
    pub patience: Option<usize>,
    /// A budget of wall-clock seconds for the training steps (evaluation excluded): the
    /// run ends after the first epoch whose steps bring the total past it, as early
    /// stopping does ([`TrainReport::stopped_early`](super::TrainReport::stopped_early)). `None` (the default): no limit.
    /// Across processes the ranks stop together (when any rank is over the budget).
    #[serde(default)]
    pub time_limit: Option<f64>,
    /// How the learning rate changes with the optimizer step (constant, step decay,
    /// cosine), on top of `warmup_steps`.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Linear learning-rate warm-up over this many optimizer steps: step `t < W` uses
    /// `(t + 1) / W` of the scheduled rate. 0 (the default) is none.
    #[serde(default)]
    pub warmup_steps: usize,
    /// Clip the gradient by its global L2 norm before each update: with `‖g‖` the norm
    /// of the whole batch's gradient over all trainable tensors, `g ← g · min(1,
    /// max_norm / (‖g‖ + 10⁻⁶))` (`torch.nn.utils.clip_grad_norm_`). `None` (the
    /// default) does not clip. CPU only.
    #[serde(default)]
    pub grad_clip: Option<f64>,
    /// Decoupled weight decay λ (AdamW, Loshchilov & Hutter 2019): each update also
    /// subtracts `lr · λ · θ`. `None` (the default) is plain Adam.
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// Called with each epoch's metrics after they are logged and the checkpoint is
    /// written; an error it returns ends training. Not serialized.
    #[serde(skip)]
    pub on_epoch: Option<EpochCallback>,
    /// The memory a training step may need, in bytes; `None` (the default) is half of
    /// the memory the system reports available ([`crate::data::default_max_bytes`]).
    /// Settings whose activations alone would exceed it (`batch_size · draws · X`
    /// values four times over: the decoder's output, its gradient, the repeated
    /// observations and the log-density terms; `draws` = [`Task::draws`](super::Task::draws), e.g. the
    /// ELBO's `L` or the IWAE's `k`) are refused before training with
    /// [`Error::MemoryLimit`], instead of an allocation failure that aborts the process.
    #[serde(default)]
    pub memory_limit: Option<usize>,
    /// What the checkpoints say the model is ([`ModelSpec`]), written into their
    /// metadata and `config.json`, and checked on resume; `None` writes no model
    /// description. Not part of the serialized configuration (the checkpoint's metadata
    /// holds it).
    #[serde(skip)]
    pub model: Option<ModelSpec>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
            binarization: Binarization::None,
            progress: false,
            out_dir: None,
            overwrite: false,
            kl_warmup_steps: 0,
            threads: 0,
            resume: false,
            keep_best: false,
            patience: None,
            time_limit: None,
            lr_schedule: LrSchedule::Constant,
            warmup_steps: 0,
            grad_clip: None,
            weight_decay: None,
            on_epoch: None,
            memory_limit: None,
            model: None,
        }
    }
}

/// A [`TrainConfig`] that [`TrainConfig::check`] has accepted: the type the training
/// loop takes, so the loop never checks a setting again (linfa's `ParamGuard` idea).
/// It reads as the configuration through `Deref`.
#[derive(Debug, Clone)]
pub struct TrainPlan(TrainConfig);

impl std::ops::Deref for TrainPlan {
    type Target = TrainConfig;

    fn deref(&self) -> &TrainConfig {
        &self.0
    }
}

impl TrainPlan {
    /// The checked configuration, as given (what a checkpoint records).
    pub fn config(&self) -> &TrainConfig {
        &self.0
    }

    /// The same plan without progress output: every rank of a run across processes but
    /// rank 0 trains quietly.
    pub(crate) fn quiet_unless(mut self, leader: bool) -> Self {
        self.0.progress &= leader;
        self
    }
}

impl TrainConfig {
    /// Checks the settings once and returns the [`TrainPlan`] the training loop takes.
    ///
    /// # Errors
    /// As [`TrainConfig::validated`].
    ///
    /// # Examples
    /// ```
    /// use latent::train::TrainConfig;
    ///
    /// let plan = TrainConfig { epochs: 3, batch_size: 64, ..Default::default() }.check()?;
    /// assert_eq!(plan.epochs, 3);
    /// let zero = TrainConfig { batch_size: 0, ..Default::default() }.check();
    /// assert!(matches!(zero, Err(latent::Error::InvalidSetting { .. })));
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn check(&self) -> Result<TrainPlan> {
        self.clone().validated().map(TrainPlan)
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for zero epochs or batch size, a learning rate that is
    /// not positive and finite, `resume` or `keep_best` without an `out_dir`, `resume`
    /// with `overwrite`, an invalid schedule, gradient clip, weight decay, time limit,
    /// or a patience of zero.
    pub fn validated(self) -> Result<Self> {
        if self.epochs == 0 {
            return Err(Error::invalid("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid(
                "lr",
                format!("must be positive and finite, got {}", self.lr),
            ));
        }
        if self.resume && self.out_dir.is_none() {
            return Err(Error::invalid("resume", "needs the run's out_dir"));
        }
        if self.keep_best && self.out_dir.is_none() {
            return Err(Error::invalid(
                "keep_best",
                "needs an out_dir to write into",
            ));
        }
        self.lr_schedule.check(self.lr)?;
        if let Some(c) = self.grad_clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::invalid(
                    "grad_clip",
                    format!("must be positive and finite, got {c}"),
                ));
            }
        }
        if let Some(w) = self.weight_decay {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::invalid(
                    "weight_decay",
                    format!("must be finite and non-negative, got {w}"),
                ));
            }
        }
        if let Some(t) = self.time_limit {
            if !(t.is_finite() && t > 0.0) {
                return Err(Error::invalid(
                    "time_limit",
                    format!("must be a positive number of seconds, got {t}"),
                ));
            }
        }
        if self.patience == Some(0) {
            return Err(Error::invalid("patience", "must be at least 1 epoch"));
        }
        if self.resume && self.overwrite {
            return Err(Error::invalid(
                "resume",
                "cannot both resume and overwrite a run",
            ));
        }
        Ok(self)
    }

    /// The number of data-parallel replicas this configuration runs with on device
    /// `D` with dtype `E`: `threads`, or the available cores for 0; 1 off the CPU.
    pub fn replicas<E: 'static, D: 'static>(&self) -> usize {
        super::threads::replica_count::<E, D>(self.threads)
    }

    /// The KL weight at optimizer step `step` (0-based): `min(1, step / kl_warmup_steps)`,
    /// or 1 without warm-up.
    pub fn kl_weight(&self, step: usize) -> f64 {
        if self.kl_warmup_steps == 0 {
            1.0
        } else {
            (step as f64 / self.kl_warmup_steps as f64).min(1.0)
        }
    }
}
