//! The training loop: Adam on the negative objective of an [`Elbo`](crate::Elbo), with seeded
//! shuffling, binarization, a progress bar, per-epoch metrics and checkpoints.

use dfdx::prelude::*;

pub use super::config::TrainConfig;
use super::parallel::ThreadSafe;
pub use super::report::TrainReport;
pub use super::stages::prepare_test;
use super::stages::{Prepared, Training};
use super::task::{ObjectiveTask, Task};
use crate::data::Dataset;
use crate::distributed::world;
use crate::error::Result;
use crate::inference::model::LatentVariableModel;
use crate::inference::objective::Objective;
use crate::kernels::ops::Real;

/// Trains `model` with Adam on `−mean(objective)` over `train` (any [`Objective`]: an
/// [`Elbo`](crate::Elbo), an [`crate::ImportanceWeighted`] bound, …), evaluating the ELBO
/// (`Elbo::default()`: one sample, closed-form KL where available, β = 1) on `test`
/// (prepared with [`prepare_test`]) after every epoch. This is [`fit_task`] with an
/// [`ObjectiveTask`].
///
/// After each epoch it appends an [`EpochMetrics`](super::EpochMetrics) line to `out_dir/metrics.jsonl` and
/// writes `out_dir/checkpoint.safetensors` atomically (when `out_dir` is set).
///
/// Across processes ([`crate::distributed::world`] of several ranks, e.g. under `mpirun`
/// with `Mpi::init`, feature `mpi`), every rank calls it with the same data and
/// settings; `batch_size` is the global batch, split across all ranks' replicas (see
/// [`fit_task`]).
///
/// # Errors
/// [`Error::InvalidSetting`](crate::Error::InvalidSetting) for invalid settings; [`Error::NonFinite`](crate::Error::NonFinite) naming epoch and
/// step as soon as a training loss is NaN or infinite — no update is applied with it,
/// and the checkpoint of the last completed epoch stays intact; I/O and checkpoint
/// errors; the estimator's errors.
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::data::embedded;
/// use latent::train::{fit, TrainConfig};
/// use latent::Elbo;
///
/// let dev = Cpu::default();
/// // A 784-32-4 MLP VAE on 512 of the embedded Fashion-MNIST images, one epoch.
/// let mut model = latent_models::mlp_vae::<_, _, _, f32, _>(&dev, (784, 32, 4))?;
/// let data = embedded()?;
/// let config = TrainConfig { epochs: 1, batch_size: 64, threads: 1, ..Default::default() };
/// let report = fit(&mut model, &Elbo::new(1)?, &data.train.take(512), &data.test.take(200), &config, &dev)?;
/// // An untrained decoder scores about 784 ln 2 = 543 nats per image; one epoch beats it.
/// let elbo = report.epochs[0].test_elbo;
/// assert!(elbo < 0.0 && elbo > -543.0, "{elbo}");
/// # Ok::<(), latent::Error>(())
/// ```
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
/// ([`DataParallel::gradients`](super::DataParallel::gradients)). Each rank evaluates its shard of the test set and the
/// sums are reduced. Rank 0 alone writes files and shows progress. After each epoch the
/// ranks compare [`crate::distributed::parameter_checksum`]s. A run of `N` ranks with
/// `R` threads each is the run of one process with `N · R` threads.
///
/// # Errors
/// As [`fit`]; across processes also [`Error::ReplicasDiverged`](crate::Error::ReplicasDiverged) when the ranks'
/// parameters differ after an epoch, and [`Error::PeerFailed`](crate::Error::PeerFailed) on every rank but the one
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
    // Subnormal arithmetic is flushed while training (see `FlushSubnormals`).
    let _flush = crate::kernels::FlushSubnormals::new();
    let world = world();
    let plan = config.check()?.quiet_unless(world.rank() == 0);
    let data = Prepared::new::<E, D>(&plan, &*world, task.draws(), train, test)?;
    let mut training = Training::start(plan, world, model, task, device, data)?;
    for epoch in training.first_epoch()..=training.plan().epochs {
        let trained = training.train_epoch(epoch)?;
        let eval = training.evaluate(epoch, &trained)?;
        training.record(epoch, &trained, eval)?;
        if training.should_stop(epoch)? {
            break;
        }
    }
    training.finish()
}
