//! The training loop: Adam on the negative objective of an [`Elbo`](crate::Elbo), with seeded
//! shuffling, binarization, a progress bar, per-epoch metrics and checkpoints.

use std::path::PathBuf;
use std::time::Instant;

use dfdx::optim::AdamConfig;
use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::checkpoint::{save_checkpoint_with, CheckpointMeta, TrainingState};
use super::metrics::{EpochMetrics, MetricsLog};
use super::parallel::{DataParallel, ThreadSafe};
use super::resume;
use super::run_dir::RunDir;
use super::schedule::{EpochCallback, LrSchedule};
use super::spec::ModelSpec;
use super::task::{ObjectiveTask, Progress, Task};
use crate::data::{shuffled_batches, Binarization, Dataset};
use crate::distributed::{
    agree, check_agreement, check_same, fnv1a, shard, world, Communicator, FNV_OFFSET,
};
use crate::error::{Error, Result};
use crate::kernels::cpu::is_cpu;
use crate::model::LatentVariableModel;
use crate::objective::Objective;
use crate::ops::Real;
use crate::optim::Adam;

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
    /// ([`Objective::scheduled`]). 0 (the default) turns it off. Any model and objective
    /// with a KL term can use it.
    #[serde(default)]
    pub kl_warmup_steps: usize,
    /// Data-parallel replicas on the CPU: each batch is split across this many threads,
    /// each computing the gradient of its share with single-threaded matrix products,
    /// and the gradients are summed in a fixed order before one Adam update (see
    /// [`fit_task`]). 0 (the default) means one per available core (across processes:
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
    /// to [`fit_task`] for per-epoch evaluation: pass a validation split there, and
    /// keep the test split for one evaluation at the end) in `out_dir/best.safetensors`,
    /// written atomically with its metadata ([`super::CheckpointMeta`], the epoch in
    /// `training.epoch`) whenever the ELBO improves.
    #[serde(default)]
    pub keep_best: bool,
    /// Early stopping: end training when the evaluated ELBO has not improved for this
    /// many epochs (`None`: train all `epochs`). [`TrainReport::stopped_early`] says
    /// whether it did.
    #[serde(default)]
    pub patience: Option<usize>,
    /// A budget of wall-clock seconds for the training steps (evaluation excluded): the
    /// run ends after the first epoch whose steps bring the total past it, as early
    /// stopping does ([`TrainReport::stopped_early`]). `None` (the default): no limit.
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
    /// observations and the log-density terms; `draws` = [`Task::draws`], e.g. the
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

impl TrainConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for zero epochs or batch size, or a learning rate that
    /// is not positive and finite.
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
        super::parallel::replica_count::<E, D>(self.threads)
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

/// What [`fit`] returns: the per-epoch metrics and the overall throughput.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// One entry per epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Images per second over all training steps (evaluation excluded).
    pub train_images_per_s: f64,
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// The epoch with the highest evaluated ELBO, and that ELBO.
    #[serde(default)]
    pub best: Option<(usize, f64)>,
    /// Whether [`TrainConfig::patience`] or [`TrainConfig::time_limit`] ended training
    /// before `epochs`.
    #[serde(default)]
    pub stopped_early: bool,
    /// [`crate::distributed::parameter_checksum`] of the trained model: the same on every
    /// rank of a run across processes (the trainer checks it after each epoch there;
    /// in one process it is taken once, after training).
    #[serde(default)]
    pub parameter_checksum: u64,
}

/// The test split as the model sees it: binarized once with a fixed seed for
/// `Static` and `Dynamic`, unchanged for `None`.
pub fn prepare_test(test: &Dataset, binarization: Binarization, seed: u64) -> Dataset {
    match binarization {
        Binarization::None => test.clone(),
        Binarization::Static | Binarization::Dynamic => {
            test.binarized(&mut StdRng::seed_from_u64(seed ^ 0x7e57))
        }
    }
}

/// Trains `model` with Adam on `−mean(objective)` over `train` (any [`Objective`]: an
/// [`Elbo`](crate::Elbo), an [`crate::ImportanceWeighted`] bound, …), evaluating the ELBO
/// (`Elbo::default()`: one sample, closed-form KL where available, β = 1) on `test`
/// (prepared with [`prepare_test`]) after every epoch. This is [`fit_task`] with an
/// [`ObjectiveTask`].
///
/// After each epoch it appends an [`EpochMetrics`] line to `out_dir/metrics.jsonl` and
/// writes `out_dir/checkpoint.safetensors` atomically (when `out_dir` is set).
///
/// Across processes ([`crate::distributed::world`] of several ranks, e.g. under `mpirun`
/// with `Mpi::init`, feature `mpi`), every rank calls it with the same data and
/// settings; `batch_size` is the global batch, split across all ranks' replicas (see
/// [`fit_task`]).
///
/// # Errors
/// [`Error::InvalidSetting`] for invalid settings; [`Error::NonFinite`] naming epoch and
/// step as soon as a training loss is NaN or infinite — no update is applied with it,
/// and the checkpoint of the last completed epoch stays intact; I/O and checkpoint
/// errors; the estimator's errors.
pub fn fit<X: Dim + Default, Z: Dim, E, D, M, O>(
    model: &mut M,
    objective: &O,
    train: &Dataset,
    test: &Dataset,
    config: &TrainConfig,
    device: &D,
) -> Result<TrainReport>
where
    E: Real + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E> + 'static,
    D: ThreadSafe,
    M: TensorCollection<E, D>
        + LatentVariableModel<E, D, OwnedTape<E, D>, X = X, Z = Z>
        + LatentVariableModel<E, D, NoneTape, X = X, Z = Z>
        + ThreadSafe,
    O: Objective + Clone + ThreadSafe,
{
    let mut task = ObjectiveTask::new(objective.clone());
    fit_task(model, &mut task, train, test, config, device)
}

/// The training loop behind [`fit`], for any [`Task`]: seeded shuffling, static or
/// dynamic binarization, Adam on [`Task::loss`], the KL warm-up weight, a progress bar,
/// [`Task::evaluate`] on the prepared test set after each epoch, `metrics.jsonl` and an
/// atomic checkpoint per epoch.
///
/// # Across processes
/// When [`crate::distributed::world`] has several ranks, each runs this function on the
/// same data with the same settings: rank 0 starts the run (claims `out_dir`, resumes
/// from its checkpoint) and sends its weights, Adam's state and the task's state to the
/// others, so all start alike. Every rank draws the same shuffled global batches from
/// `seed`, computes the gradient of its share with its threads, and the ranks sum the
/// gradients with one all-reduce before the same Adam update everywhere
/// ([`DataParallel::gradients`]). Each rank evaluates its shard of the test set and the
/// sums are reduced. Rank 0 alone writes files and shows progress. After each epoch the
/// ranks compare [`crate::distributed::parameter_checksum`]s. A run of `N` ranks with
/// `R` threads each is the run of one process with `N · R` threads.
///
/// # Errors
/// As [`fit`]; across processes also [`Error::ReplicasDiverged`] when the ranks'
/// parameters differ after an epoch, and [`Error::PeerFailed`] on every rank but the one
/// that failed at a step taken together.
pub fn fit_task<E, D, M, K>(
    model: &mut M,
    task: &mut K,
    train: &Dataset,
    test: &Dataset,
    config: &TrainConfig,
    device: &D,
) -> Result<TrainReport>
where
    E: Real + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E> + ThreadSafe + 'static,
    M: TensorCollection<E, D> + ThreadSafe,
    K: Task<E, D, M> + Clone + ThreadSafe,
{
    let mut config = config.clone().validated()?;
    let world = world();
    let leader = world.rank() == 0;
    if world.size() > 1 {
        // The ranks must walk the same data with the same settings: their sums would
        // agree whatever they were given, so check the inputs themselves.
        let settings =
            serde_json::to_vec(&config).map_err(|e| Error::invalid("settings", e.to_string()))?;
        check_same(&*world, "settings", fnv1a(FNV_OFFSET, &settings))?;
        check_same(&*world, "training data", data_hash(train))?;
        check_same(&*world, "test data", data_hash(test))?;
    }
    config.progress &= leader;
    crate::data::check_pair(train, test, "the data given to the trainer")?;
    check_memory::<E>(&config, task.draws(), train.dim())?;
    if train.is_real_valued() && config.binarization != Binarization::None {
        return Err(Error::invalid(
            "binarization",
            "real-valued data cannot be binarized (use Binarization::None)",
        ));
    }
    let train = match config.binarization {
        Binarization::Static => train.binarized(&mut StdRng::seed_from_u64(config.seed)),
        _ => train.clone(),
    };
    let test = prepare_test(test, config.binarization, config.seed);
    let _claim = agree(
        &*world,
        "to claim the run directory",
        match &config.out_dir {
            Some(dir) if leader && config.resume => RunDir::resume(dir).map(Some),
            Some(dir) if leader => RunDir::claim(dir, config.overwrite).map(Some),
            _ => Ok(None),
        },
    )?;

    let mut grads = model.try_alloc_grads().map_err(Error::device)?;
    let mut parallel = DataParallel::new(model, config.threads, config.seed)?;
    let mut opt = Adam::new(
        model,
        AdamConfig {
            lr: config.lr,
            weight_decay: config.weight_decay.map(dfdx::optim::WeightDecay::Decoupled),
            ..Default::default()
        },
        parallel.replicas(),
    )?;
    let mut report = TrainReport {
        epochs: Vec::new(),
        train_images_per_s: 0.0,
        train_seconds: 0.0,
        best: None,
        stopped_early: false,
        parameter_checksum: 0,
    };
    let (mut first_epoch, mut global_step) = (1, 0);
    if let (true, Some(dir)) = (config.resume, &config.out_dir) {
        let replicas = parallel.total_replicas();
        // Rank 0 reads the run; the others read copies of its files.
        let copy = share_run(&*world, dir)?;
        let from = copy.as_ref().map_or(dir.as_path(), |t| t.path());
        let resumed = agree(
            &*world,
            "to resume the run",
            resume::load(from, &config, replicas, model, &mut opt, |state| {
                task.restore(state)
            }),
        )?;
        first_epoch = resumed.epoch + 1;
        global_step = resumed.step;
        report.epochs = resumed.metrics;
        report.best = resumed.best;
    } else if world.size() > 1 {
        share_weights(&*world, model)?;
        // The task's state too (e.g. a VQ-VAE's restart generator), from rank 0.
        let state = agree(&*world, "to send the task's state", task.state())?;
        let mut bytes =
            serde_json::to_vec(&state).map_err(|e| Error::invalid("task state", e.to_string()))?;
        world.broadcast_bytes(&mut bytes)?;
        if world.rank() > 0 {
            let state: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::invalid("task state", e.to_string()))?;
            task.restore(&state)?;
        }
    }
    if world.size() > 1 {
        check_agreement(&*world, model, first_epoch - 1)?;
    }
    let mut log = match &config.out_dir {
        Some(dir) if leader && config.resume => {
            Some(MetricsLog::append_to(dir.join(resume::METRICS_FILE))?)
        }
        Some(dir) if leader => Some(MetricsLog::create(dir.join(resume::METRICS_FILE))?),
        _ => None,
    };
    // Each rank evaluates its shard of the test set; the sums are reduced.
    let test = if world.size() > 1 {
        let range = shard(test.len(), world.rank(), world.size());
        test.select(&range.collect::<Vec<_>>())
    } else {
        test
    };
    let mut total_images = 0usize;
    let on_cpu = is_cpu::<E, D, f32>() || is_cpu::<E, D, f64>();

    for epoch in first_epoch..=config.epochs {
        // Every random stream of the epoch from the seed and the epoch number, so a
        // resumed run draws what the uninterrupted one did.
        let seed = resume::epoch_seed(config.seed, epoch);
        let mut rng = StdRng::seed_from_u64(seed);
        parallel.reseed(seed);
        let epoch_device: D = if on_cpu {
            super::parallel::replica_device::<D>(seed, parallel.first_replica())
        } else {
            device.clone()
        };
        let batches = shuffled_batches(train.len(), config.batch_size, &mut rng)?;
        let bar = progress_bar(&config, epoch, batches.len());
        let start = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for (step, idx) in batches.iter().enumerate() {
            let progress = Progress {
                step: global_step,
                epoch,
                kl_weight: config.kl_weight(global_step),
            };
            let dynamic = config.binarization == Binarization::Dynamic;
            let binarize = if dynamic { Some(&mut rng) } else { None };
            let (value, new_grads, used) = parallel.step(
                model,
                task,
                &train,
                idx,
                binarize,
                &epoch_device,
                grads,
                progress,
            )?;
            if !value.is_finite() {
                bar.abandon();
                return Err(Error::NonFinite {
                    what: "training loss".into(),
                    epoch,
                    step: step + 1,
                    value,
                });
            }
            grads = new_grads;
            let total = config.epochs * batches.len();
            opt.set_lr(config.lr_schedule.lr_at(
                config.lr,
                global_step,
                total,
                config.warmup_steps,
            ))?;
            // The replicas' gradients are summed in the same pass as the update, and
            // every buffer left zeroed for the next step.
            let scale = match config.grad_clip {
                None => 1.0,
                Some(max) => {
                    let norm =
                        opt.gradient_norm(model, &mut grads, &mut parallel.pending()[..used])?;
                    if !norm.is_finite() {
                        bar.abandon();
                        return Err(Error::NonFinite {
                            what: "gradient norm".into(),
                            epoch,
                            step: step + 1,
                            value: norm,
                        });
                    }
                    (max / (norm + 1e-6)).min(1.0)
                }
            };
            opt.update_sum_scaled(model, &mut grads, &mut parallel.pending()[..used], scale)?;
            task.after_update(model, progress)?;
            global_step += 1;
            loss_sum += value * idx.len() as f64;
            seen += idx.len();
            bar.inc(1);
            if step % 10 == 0 {
                bar.set_message(format!("loss {:.2}", loss_sum / seen as f64));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        total_images += seen;
        report.train_seconds += seconds;

        // The evaluation draws its own stream of the epoch too (on the CPU), so a
        // resumed run logs the same test figures. It knows no epoch: name the one it
        // followed.
        let eval_device: D = if on_cpu {
            super::parallel::replica_device::<D>(seed ^ 0xe7a1_u64, world.rank())
        } else {
            device.clone()
        };
        let eval = task.evaluate(model, &test, &eval_device);
        let eval = agree(&*world, "in the evaluation after the epoch", eval)
            .and_then(|e| reduce_eval(&*world, e))
            .map_err(|e| match e {
                Error::NonFinite { what, value, .. } => Error::NonFinite {
                    what: format!("{what} (evaluation after the epoch)"),
                    epoch,
                    step: batches.len(),
                    value,
                },
                other => other,
            })?;
        let metrics = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen as f64,
            test_elbo: eval.elbo,
            test_reconstruction: eval.reconstruction,
            test_kl: eval.kl,
            train_images_per_s: seen as f64 / seconds,
            train_seconds: seconds,
        };
        if config.progress {
            eprintln!(
                "{} epoch {epoch}/{}: train loss {:.2}, test ELBO {:.2} (rec {:.2}, KL {:.2}), {:.0} images/s",
                task.describe(),
                config.epochs,
                metrics.train_loss,
                metrics.test_elbo,
                metrics.test_reconstruction,
                metrics.test_kl,
                metrics.train_images_per_s
            );
        }
        if let Some(log) = log.as_mut() {
            log.append(&metrics)?;
        }
        let improved = report.best.is_none_or(|(_, v)| eval.elbo > v);
        if improved {
            report.best = Some((epoch, eval.elbo));
        }
        if world.size() > 1 {
            // One process has nothing to compare: its checksum is taken once, at the end.
            report.parameter_checksum = check_agreement(&*world, model, epoch)?;
        }
        let written = match &config.out_dir {
            Some(dir) if leader => (|| {
                let meta = CheckpointMeta {
                    training: Some(TrainingState {
                        config: config.clone(),
                        objective: task.describe(),
                        epoch,
                        step: global_step,
                        replicas: parallel.total_replicas(),
                        task: task.state()?,
                        best: report.best,
                    }),
                    ..CheckpointMeta::new(config.model.clone())
                };
                if improved && config.keep_best {
                    save_checkpoint_with(model, &[], &meta, dir.join(resume::BEST_FILE))?;
                }
                resume::save(dir, model, &opt, &meta)
            })(),
            _ => Ok(()),
        };
        agree(&*world, "to write the checkpoint", written)?;
        if let Some(callback) = &config.on_epoch {
            (callback.0)(&metrics)?;
        }
        report.epochs.push(metrics);
        if let (Some(p), Some((best, _))) = (config.patience, report.best) {
            if epoch - best >= p && epoch < config.epochs {
                report.stopped_early = true;
                if config.progress {
                    eprintln!("early stop after epoch {epoch}: no better ELBO since epoch {best}");
                }
                break;
            }
        }
        if let Some(limit) = config.time_limit {
            let mut over = [f64::from(u8::from(report.train_seconds > limit))];
            world.all_reduce_sum_f64(&mut over)?;
            if over[0] > 0.0 && epoch < config.epochs {
                report.stopped_early = true;
                if config.progress {
                    eprintln!(
                        "stopped after epoch {epoch}: the time limit of {limit:.0} s of training is spent"
                    );
                }
                break;
            }
        }
    }
    report.train_images_per_s = total_images as f64 / report.train_seconds.max(1e-9);
    if world.size() == 1 {
        report.parameter_checksum = crate::distributed::parameter_checksum(model)?;
    }
    Ok(report)
}

/// A hash of a data set's shape, labels and values, to check that every rank was given
/// the same.
fn data_hash(data: &Dataset) -> u64 {
    let mut h = fnv1a(FNV_OFFSET, &(data.len() as u64).to_le_bytes());
    h = fnv1a(h, &(data.dim() as u64).to_le_bytes());
    h = fnv1a(h, &data.labels);
    h = fnv1a(h, &data.images);
    if let Some(values) = &data.values {
        for v in values {
            h = fnv1a(h, &v.to_le_bytes());
        }
    }
    h
}

/// Sums each rank's evaluation of its shard into the evaluation of the whole test set:
/// the means weighted by the shards' sizes.
fn reduce_eval(
    world: &dyn Communicator,
    e: crate::eval::EvalReport,
) -> Result<crate::eval::EvalReport> {
    if world.size() == 1 {
        return Ok(e);
    }
    let n = e.n as f64;
    let mut sums = [e.elbo * n, e.reconstruction * n, e.kl * n, n];
    world.all_reduce_sum_f64(&mut sums)?;
    let total = sums[3].max(1.0);
    crate::eval::EvalReport {
        elbo: sums[0] / total,
        reconstruction: sums[1] / total,
        kl: sums[2] / total,
        n: sums[3] as usize,
    }
    .checked("test ELBO")
}

/// Across processes: rank 0 sends the bytes of the checkpoint and metrics log of the run
/// in `dir`; every other rank writes them into a private temporary directory, which it
/// returns (rank 0 returns `None` and reads `dir`). Rank 0 failing to read is every
/// rank's error.
fn share_run(world: &dyn Communicator, dir: &std::path::Path) -> Result<Option<tempfile::TempDir>> {
    if world.size() == 1 {
        return Ok(None);
    }
    let mut copy = None;
    for name in [resume::CHECKPOINT_FILE, resume::METRICS_FILE] {
        let path = dir.join(name);
        let read = if world.rank() == 0 {
            std::fs::read(&path).map_err(|e| Error::io(&path, e))
        } else {
            Ok(Vec::new())
        };
        let mut bytes = agree(world, "to read the run to resume", read)?;
        world.broadcast_bytes(&mut bytes)?;
        if world.rank() > 0 {
            let tmp = match copy.take() {
                Some(t) => t,
                None => tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?,
            };
            let to = tmp.path().join(name);
            std::fs::write(&to, &bytes).map_err(|e| Error::io(&to, e))?;
            copy = Some(tmp);
        }
    }
    Ok(copy)
}

/// Across processes at the start of a run: every rank takes rank 0's weights (as
/// Horovod's `broadcast_parameters`), so the ranks start alike however their models
/// were initialized.
fn share_weights<E, D, M>(world: &dyn Communicator, model: &mut M) -> Result<()>
where
    E: Real + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let tmp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let path = tmp.path().join("initial.safetensors");
    let written = if world.rank() == 0 {
        save_checkpoint_with(model, &[], &CheckpointMeta::new(None), &path)
            .and_then(|()| std::fs::read(&path).map_err(|e| Error::io(&path, e)))
    } else {
        Ok(Vec::new())
    };
    let mut bytes = agree(world, "to send the initial weights", written)?;
    world.broadcast_bytes(&mut bytes)?;
    if world.rank() > 0 {
        std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        super::checkpoint::load_checkpoint(model, &path)?;
    }
    Ok(())
}

/// Refuses settings whose activations would not fit in [`TrainConfig::memory_limit`].
fn check_memory<E>(config: &TrainConfig, draws: usize, width: usize) -> Result<()> {
    let limit = config
        .memory_limit
        .unwrap_or_else(crate::data::default_max_bytes);
    let needed = (config.batch_size as u128)
        * (draws as u128)
        * (width as u128)
        * 4
        * std::mem::size_of::<E>() as u128;
    if needed > limit as u128 {
        return Err(Error::MemoryLimit {
            what: format!(
                "a training step of {} examples × {draws} latent draws × {width} values",
                config.batch_size
            ),
            needed,
            limit: limit as u128,
        });
    }
    Ok(())
}

fn progress_bar(config: &TrainConfig, epoch: usize, steps: usize) -> indicatif::ProgressBar {
    if !config.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps as u64);
    let style = indicatif::ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{}", config.epochs));
    bar
}
