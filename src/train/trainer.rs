//! The training loop: Adam on the negative objective of an [`Elbo`](crate::Elbo), with seeded
//! shuffling, binarization, a progress bar, per-epoch metrics and checkpoints.

use std::time::Instant;

use dfdx::optim::AdamConfig;
use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::checkpoint::{save_checkpoint_with, CheckpointMeta, TrainingState};
pub use super::config::TrainConfig;
use super::metrics::{EpochMetrics, MetricsLog};
use super::parallel::{DataParallel, ThreadSafe};
use super::resume;
use super::run_dir::RunDir;
use super::task::{ObjectiveTask, Progress, Task};
use crate::data::{shuffled_batches, Binarization, Dataset};
use crate::distributed::{
    agree, check_agreement, check_same, fnv1a, shard, world, Communicator, FNV_OFFSET,
};
use crate::error::{Error, Result};
use crate::inference::model::LatentVariableModel;
use crate::inference::objective::Objective;
use crate::kernels::cpu::is_cpu;
use crate::kernels::ops::Real;
use crate::train::optim::Adam;

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
            super::threads::replica_device::<D>(seed, parallel.first_replica())
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
            super::threads::replica_device::<D>(seed ^ 0xe7a1_u64, world.rank())
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
