//! The named stages of [`fit_task`](super::fit_task): preparing the data and the run
//! directory, starting (optimizer, resume or the ranks' shared start), one epoch of
//! steps, the evaluation after it, recording it (metrics, checkpoints, callback), and
//! the stopping rules (patience, time limit).

use std::sync::Arc;
use std::time::Instant;

use dfdx::optim::AdamConfig;
use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::checkpoint::{save_checkpoint_with, CheckpointMeta, TrainingState};
use super::config::{TrainConfig, TrainPlan};
use super::metrics::{EpochMetrics, MetricsLog};
use super::optim::Adam;
use super::parallel::{DataParallel, ThreadSafe};
use super::report::TrainReport;
use super::resume;
use super::run_dir::RunDir;
use super::task::{Progress, Task};
use crate::data::{shuffled_batches, Binarization, Dataset};
use crate::distributed::{
    agree, check_agreement, check_same, fnv1a, shard, Communicator, FNV_OFFSET,
};
use crate::error::{Error, Result};
use crate::eval::EvalReport;
use crate::kernels::cpu::is_cpu;
use crate::kernels::ops::Real;

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

/// The data as training sees it, and the claim on the run directory (held for the
/// whole run).
pub(crate) struct Prepared {
    train: Dataset,
    test: Dataset,
    claim: Option<RunDir>,
    /// Whether the device is dfdx's `Cpu` (with `f32` or `f64`), where the crate's own
    /// kernels, replicas and optimizer run.
    on_cpu: bool,
}

/// Refuses, before anything is read or written, the settings that only the `Cpu`
/// device supports, when training elsewhere (`on_cpu` false): gradient clipping (its
/// global norm is taken by the `Cpu` optimizer's own kernel) and resuming (Adam's
/// moments are saved and restored by that optimizer only; dfdx's, used on CUDA, does
/// not expose them).
///
/// # Errors
/// [`Error::InvalidSetting`] naming the setting and the device.
pub(crate) fn check_device_support(config: &TrainConfig, on_cpu: bool) -> Result<()> {
    if on_cpu {
        return Ok(());
    }
    if config.grad_clip.is_some() {
        return Err(Error::invalid(
            "grad_clip",
            "gradient clipping runs on the Cpu device only; train without it on this device",
        ));
    }
    if config.resume {
        return Err(Error::invalid(
            "resume",
            "resuming restores Adam's moments, which only the Cpu optimizer keeps; \
             resume this run on the Cpu device",
        ));
    }
    Ok(())
}

impl Prepared {
    /// Checks that every rank was given the same settings and data, that the data and
    /// the memory a step needs are acceptable, binarizes (static) the training split and
    /// prepares the test split, and claims (or reopens, to resume) the run directory.
    pub(crate) fn new<E: Dtype, D: Storage<E>>(
        plan: &TrainPlan,
        world: &dyn Communicator,
        draws: usize,
        train: &Dataset,
        test: &Dataset,
    ) -> Result<Self> {
        let leader = world.rank() == 0;
        let on_cpu = is_cpu::<E, D, f32>() || is_cpu::<E, D, f64>();
        check_device_support(plan.config(), on_cpu)?;
        if world.size() > 1 {
            // The ranks must walk the same data with the same settings: their sums would
            // agree whatever they were given, so check the inputs themselves.
            let settings = serde_json::to_vec(plan.config())
                .map_err(|e| Error::invalid("settings", e.to_string()))?;
            check_same(world, "settings", fnv1a(FNV_OFFSET, &settings))?;
            check_same(world, "training data", data_hash(train))?;
            check_same(world, "test data", data_hash(test))?;
        }
        crate::data::check_pair(train, test, "the data given to the trainer")?;
        check_memory::<E>(plan, draws, train.dim())?;
        if train.is_real_valued() && plan.binarization != Binarization::None {
            return Err(Error::invalid(
                "binarization",
                "real-valued data cannot be binarized (use Binarization::None)",
            ));
        }
        let train = match plan.binarization {
            Binarization::Static => train.binarized(&mut StdRng::seed_from_u64(plan.seed)),
            _ => train.clone(),
        };
        let test = prepare_test(test, plan.binarization, plan.seed);
        let claim = agree(
            world,
            "to claim the run directory",
            match &plan.out_dir {
                Some(dir) if leader && plan.resume => RunDir::resume(dir).map(Some),
                Some(dir) if leader => RunDir::claim(dir, plan.overwrite).map(Some),
                _ => Ok(None),
            },
        )?;
        Ok(Self {
            train,
            test,
            claim,
            on_cpu,
        })
    }
}

/// One epoch's training steps, as [`Training::train_epoch`] leaves them.
pub(crate) struct Trained {
    seed: u64,
    steps: usize,
    loss_sum: f64,
    seen: usize,
    seconds: f64,
}

/// A training run under way: the model, its task and optimizer, the replicas, the
/// report so far.
pub(crate) struct Training<'a, E: Dtype, D: Storage<E>, M, K> {
    plan: TrainPlan,
    world: Arc<dyn Communicator>,
    model: &'a mut M,
    task: &'a mut K,
    device: &'a D,
    train: Dataset,
    test: Dataset,
    _claim: Option<RunDir>,
    grads: Option<Gradients<E, D>>,
    parallel: DataParallel<E, D>,
    opt: Adam<M, E, D>,
    log: Option<MetricsLog>,
    report: TrainReport,
    first_epoch: usize,
    global_step: usize,
    total_images: usize,
    on_cpu: bool,
}

impl<'a, E, D, M, K> Training<'a, E, D, M, K>
where
    E: Real + dfdx::tensor::safetensors::SafeDtype,
    D: Device<E> + ThreadSafe + 'static,
    M: TensorCollection<E, D> + ThreadSafe,
    K: Task<E, D, M> + Clone + ThreadSafe,
{
    /// Allocates the gradients, the replicas and Adam; resumes from the run directory's
    /// checkpoint, or, across processes, takes rank 0's weights and task state; opens
    /// the metrics log; and takes this rank's shard of the test set.
    pub(crate) fn start(
        plan: TrainPlan,
        world: Arc<dyn Communicator>,
        model: &'a mut M,
        task: &'a mut K,
        device: &'a D,
        data: Prepared,
    ) -> Result<Self> {
        let leader = world.rank() == 0;
        let grads = model.try_alloc_grads().map_err(Error::device)?;
        let parallel = DataParallel::new(model, plan.threads, plan.seed)?;
        let mut opt = Adam::new(
            model,
            AdamConfig {
                lr: plan.lr,
                weight_decay: plan.weight_decay.map(dfdx::optim::WeightDecay::Decoupled),
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
        if let (true, Some(dir)) = (plan.resume, &plan.out_dir) {
            let replicas = parallel.total_replicas();
            // Rank 0 reads the run; the others read copies of its files.
            let copy = share_run(&*world, dir)?;
            let from = copy.as_ref().map_or(dir.as_path(), |t| t.path());
            let resumed = agree(
                &*world,
                "to resume the run",
                resume::load(from, plan.config(), replicas, model, &mut opt, |state| {
                    task.restore(state)
                }),
            )?;
            first_epoch = resumed.epoch + 1;
            global_step = resumed.step;
            report.epochs = resumed.metrics;
            report.best = resumed.best;
        } else if world.size() > 1 {
            share_weights(&*world, model)?;
            share_task_state(&*world, task)?;
        }
        if world.size() > 1 {
            check_agreement(&*world, model, first_epoch - 1)?;
        }
        let log = match &plan.out_dir {
            Some(dir) if leader && plan.resume => {
                Some(MetricsLog::append_to(dir.join(resume::METRICS_FILE))?)
            }
            Some(dir) if leader => Some(MetricsLog::create(dir.join(resume::METRICS_FILE))?),
            _ => None,
        };
        // Each rank evaluates its shard of the test set; the sums are reduced.
        let test = if world.size() > 1 {
            let range = shard(data.test.len(), world.rank(), world.size());
            data.test.select(&range.collect::<Vec<_>>())
        } else {
            data.test
        };
        Ok(Self {
            plan,
            world,
            model,
            task,
            device,
            train: data.train,
            test,
            _claim: data.claim,
            grads: Some(grads),
            parallel,
            opt,
            log,
            report,
            first_epoch,
            global_step,
            total_images: 0,
            on_cpu: data.on_cpu,
        })
    }

    /// The checked settings.
    pub(crate) fn plan(&self) -> &TrainPlan {
        &self.plan
    }

    /// The first epoch to train: 1, or the one after a resumed run's last.
    pub(crate) fn first_epoch(&self) -> usize {
        self.first_epoch
    }

    /// One epoch of optimizer steps over shuffled batches: the replicas' gradients,
    /// the learning-rate schedule, clipping and the update.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a non-finite loss or gradient norm (no update is applied
    /// with it); the task's and the replicas' errors.
    pub(crate) fn train_epoch(&mut self, epoch: usize) -> Result<Trained> {
        let plan = &self.plan;
        // Every random stream of the epoch from the seed and the epoch number, so a
        // resumed run draws what the uninterrupted one did.
        let seed = resume::epoch_seed(plan.seed, epoch);
        let mut rng = StdRng::seed_from_u64(seed);
        self.parallel.reseed(seed);
        let epoch_device: D = if self.on_cpu {
            super::threads::replica_device::<D>(seed, self.parallel.first_replica())
        } else {
            self.device.clone()
        };
        let batches = shuffled_batches(self.train.len(), plan.batch_size, &mut rng)?;
        let bar = progress_bar(plan, epoch, batches.len());
        let start = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        let non_finite = |what: &str, step: usize, value: f64| {
            bar.abandon();
            Error::NonFinite {
                what: what.into(),
                epoch,
                step: step + 1,
                value,
            }
        };
        for (step, idx) in batches.iter().enumerate() {
            let progress = Progress {
                step: self.global_step,
                epoch,
                kl_weight: plan.kl_weight(self.global_step),
            };
            let dynamic = plan.binarization == Binarization::Dynamic;
            let binarize = if dynamic { Some(&mut rng) } else { None };
            let grads = self.grads.take().ok_or_else(|| {
                Error::invalid("training", "a failed step left no gradient buffers")
            })?;
            let (value, grads, used) = self.parallel.step(
                self.model,
                self.task,
                &self.train,
                idx,
                binarize,
                &epoch_device,
                grads,
                progress,
            )?;
            let grads = self.grads.insert(grads);
            if !value.is_finite() {
                return Err(non_finite("training loss", step, value));
            }
            let total = plan.epochs * batches.len();
            self.opt.set_lr(plan.lr_schedule.lr_at(
                plan.lr,
                self.global_step,
                total,
                plan.warmup_steps,
            ))?;
            // The replicas' gradients are summed in the same pass as the update, and
            // every buffer left zeroed for the next step.
            let pending = &mut self.parallel.pending()[..used];
            let scale = match plan.grad_clip {
                None => 1.0,
                Some(max) => {
                    let norm = self.opt.gradient_norm(self.model, grads, pending)?;
                    if !norm.is_finite() {
                        return Err(non_finite("gradient norm", step, norm));
                    }
                    (max / (norm + 1e-6)).min(1.0)
                }
            };
            self.opt
                .update_sum_scaled(self.model, grads, pending, scale)?;
            self.task.after_update(self.model, progress)?;
            self.global_step += 1;
            loss_sum += value * idx.len() as f64;
            seen += idx.len();
            bar.inc(1);
            if step % 10 == 0 {
                bar.set_message(format!("loss {:.2}", loss_sum / seen as f64));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        self.total_images += seen;
        self.report.train_seconds += seconds;
        Ok(Trained {
            seed,
            steps: batches.len(),
            loss_sum,
            seen,
            seconds,
        })
    }

    /// The task's evaluation on the (sharded) test set after an epoch, reduced over the
    /// ranks. It draws its own stream of the epoch (on the CPU), so a resumed run logs
    /// the same test figures.
    ///
    /// # Errors
    /// The task's errors; [`Error::NonFinite`] naming the epoch it followed.
    pub(crate) fn evaluate(&mut self, epoch: usize, trained: &Trained) -> Result<EvalReport> {
        let eval_device: D = if self.on_cpu {
            super::threads::replica_device::<D>(trained.seed ^ 0xe7a1_u64, self.world.rank())
        } else {
            self.device.clone()
        };
        let eval = self.task.evaluate(self.model, &self.test, &eval_device);
        // The evaluation knows no epoch: name the one it followed.
        agree(&*self.world, "in the evaluation after the epoch", eval)
            .and_then(|e| reduce_eval(&*self.world, e))
            .map_err(|e| match e {
                Error::NonFinite { what, value, .. } => Error::NonFinite {
                    what: format!("{what} (evaluation after the epoch)"),
                    epoch,
                    step: trained.steps,
                    value,
                },
                other => other,
            })
    }

    /// Records an epoch: prints it, appends it to `metrics.jsonl`, tracks the best
    /// ELBO, compares the ranks' parameters, writes the checkpoint (and `best`), and
    /// calls the user's callback.
    ///
    /// # Errors
    /// I/O and checkpoint errors; [`Error::ReplicasDiverged`] across processes; the
    /// callback's error.
    pub(crate) fn record(
        &mut self,
        epoch: usize,
        trained: &Trained,
        eval: EvalReport,
    ) -> Result<()> {
        let plan = &self.plan;
        let metrics = EpochMetrics {
            epoch,
            train_loss: trained.loss_sum / trained.seen as f64,
            test_elbo: eval.elbo,
            test_reconstruction: eval.reconstruction,
            test_kl: eval.kl,
            train_images_per_s: trained.seen as f64 / trained.seconds,
            train_seconds: trained.seconds,
        };
        if plan.progress {
            eprintln!(
                "{} epoch {epoch}/{}: train loss {:.2}, test ELBO {:.2} (rec {:.2}, KL {:.2}), {:.0} images/s",
                self.task.describe(),
                plan.epochs,
                metrics.train_loss,
                metrics.test_elbo,
                metrics.test_reconstruction,
                metrics.test_kl,
                metrics.train_images_per_s
            );
        }
        if let Some(log) = self.log.as_mut() {
            log.append(&metrics)?;
        }
        let improved = self.report.best.is_none_or(|(_, v)| eval.elbo > v);
        if improved {
            self.report.best = Some((epoch, eval.elbo));
        }
        if self.world.size() > 1 {
            // One process has nothing to compare: its checksum is taken once, at the end.
            self.report.parameter_checksum = check_agreement(&*self.world, self.model, epoch)?;
        }
        let written = match &plan.out_dir {
            Some(dir) if self.world.rank() == 0 => (|| {
                let meta = CheckpointMeta {
                    training: Some(TrainingState {
                        config: plan.config().clone(),
                        objective: self.task.describe(),
                        epoch,
                        step: self.global_step,
                        replicas: self.parallel.total_replicas(),
                        task: self.task.state()?,
                        best: self.report.best,
                    }),
                    ..CheckpointMeta::new(plan.model.clone())
                };
                if improved && plan.keep_best {
                    save_checkpoint_with(self.model, &[], &meta, dir.join(resume::BEST_FILE))?;
                }
                resume::save(dir, self.model, &self.opt, &meta)?;
                #[cfg(feature = "charts")]
                {
                    let title = plan
                        .model
                        .as_ref()
                        .map_or_else(|| "training".into(), |m| m.kind.clone());
                    let epochs = [
                        self.report.epochs.as_slice(),
                        std::slice::from_ref(&metrics),
                    ]
                    .concat();
                    crate::eval::charts::training_curves(
                        dir.join(resume::CURVES_FILE),
                        &title,
                        &epochs,
                    )?;
                }
                Ok(())
            })(),
            _ => Ok(()),
        };
        agree(&*self.world, "to write the checkpoint", written)?;
        if let Some(callback) = &plan.on_epoch {
            (callback.0)(&metrics)?;
        }
        self.report.epochs.push(metrics);
        Ok(())
    }

    /// Whether training ends after `epoch` before the last: no better ELBO for
    /// `patience` epochs, or the time limit spent (on any rank).
    ///
    /// # Errors
    /// Across processes, a failed reduction.
    pub(crate) fn should_stop(&mut self, epoch: usize) -> Result<bool> {
        let plan = &self.plan;
        if let (Some(p), Some((best, _))) = (plan.patience, self.report.best) {
            if epoch - best >= p && epoch < plan.epochs {
                self.report.stopped_early = true;
                if plan.progress {
                    eprintln!("early stop after epoch {epoch}: no better ELBO since epoch {best}");
                }
                return Ok(true);
            }
        }
        if let Some(limit) = plan.time_limit {
            let mut over = [f64::from(u8::from(self.report.train_seconds > limit))];
            self.world.all_reduce_sum_f64(&mut over)?;
            if over[0] > 0.0 && epoch < plan.epochs {
                self.report.stopped_early = true;
                if plan.progress {
                    eprintln!(
                        "stopped after epoch {epoch}: the time limit of {limit:.0} s of training is spent"
                    );
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The report: throughput over all steps and, in one process, the parameter
    /// checksum.
    ///
    /// # Errors
    /// A failed checksum (device errors).
    pub(crate) fn finish(mut self) -> Result<TrainReport> {
        self.report.train_images_per_s =
            self.total_images as f64 / self.report.train_seconds.max(1e-9);
        if self.world.size() == 1 {
            self.report.parameter_checksum = crate::distributed::parameter_checksum(self.model)?;
        }
        Ok(self.report)
    }
}

/// Across processes at the start of a run: every rank takes rank 0's task state (e.g. a
/// VQ-VAE's restart generator).
fn share_task_state<E: Dtype, D: Device<E>, M, K: Task<E, D, M>>(
    world: &dyn Communicator,
    task: &mut K,
) -> Result<()> {
    let state = agree(world, "to send the task's state", task.state())?;
    let mut bytes =
        serde_json::to_vec(&state).map_err(|e| Error::invalid("task state", e.to_string()))?;
    world.broadcast_bytes(&mut bytes)?;
    if world.rank() > 0 {
        let state: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid("task state", e.to_string()))?;
        task.restore(&state)?;
    }
    Ok(())
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
fn reduce_eval(world: &dyn Communicator, e: EvalReport) -> Result<EvalReport> {
    if world.size() == 1 {
        return Ok(e);
    }
    let n = e.n as f64;
    let mut sums = [e.elbo * n, e.reconstruction * n, e.kl * n, n];
    world.all_reduce_sum_f64(&mut sums)?;
    let total = sums[3].max(1.0);
    EvalReport {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Off the `Cpu`, clipping and resuming are refused with the setting's name;
    /// on the `Cpu`, and without them anywhere, nothing is refused.
    #[test]
    fn settings_only_the_cpu_supports_are_refused_elsewhere() {
        let clip = TrainConfig {
            grad_clip: Some(1.0),
            ..Default::default()
        };
        let resume = TrainConfig {
            resume: true,
            out_dir: Some("runs/x".into()),
            ..Default::default()
        };
        for (config, name) in [(&clip, "grad_clip"), (&resume, "resume")] {
            assert!(check_device_support(config, true).is_ok());
            match check_device_support(config, false) {
                Err(Error::InvalidSetting { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(check_device_support(&TrainConfig::default(), false).is_ok());
    }
}
