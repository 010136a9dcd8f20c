//! What one training step computes: the [`Task`] a trainer runs, and the task of
//! maximizing an [`Objective`] of a [`LatentVariableModel`].

use dfdx::prelude::*;

use crate::data::{Conditioning, Dataset};
use crate::error::Result;
use crate::eval::{evaluate, evaluate_batches, EvalReport};
use crate::inference::conditional::{ConditionalModel, Conditioned};
use crate::inference::elbo::Elbo;
use crate::inference::model::LatentVariableModel;
use crate::inference::objective::{Objective, SignalMoments};
use crate::kernels::ops::Real;

/// Where training is: the optimizer step about to be taken and the weight the KL
/// warm-up puts on the KL term.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// 0-based optimizer step, counted over all epochs.
    pub step: usize,
    /// 1-based epoch.
    pub epoch: usize,
    /// `min(1, step / kl_warmup_steps)`, or 1 without warm-up.
    pub kl_weight: f64,
}

/// A training batch before it becomes tensors: which images of which data set, on which
/// device, and the generator for dynamic binarization if it is on.
pub struct Batch<'a, D> {
    /// The training set.
    pub data: &'a Dataset,
    /// The images of this batch.
    pub indices: &'a [usize],
    /// Set for dynamic binarization: each pixel is a fresh Bernoulli draw from it.
    pub binarize: Option<&'a mut dyn rand::RngCore>,
    /// Where the tensors go.
    pub device: &'a D,
}

impl<D> Batch<'_, D> {
    /// The images as a `(batch, X)` tensor (see [`Dataset::batch`]).
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the images do not have `X` pixels.
    pub fn images<X: Dim + Default, E: Real>(self) -> Result<crate::kernels::ops::Events<X, E, D>>
    where
        D: Device<E>,
    {
        self.data
            .batch::<X, E, D>(self.device, self.indices, self.binarize)
    }

    /// The class labels of the batch, in order.
    pub fn labels(&self) -> Vec<u8> {
        self.indices.iter().map(|&i| self.data.labels[i]).collect()
    }
}

/// One kind of training, as [`crate::train::fit_task`] runs it: how a batch of the data
/// set becomes a scalar loss, what happens after each optimizer update, and how the
/// model is evaluated after each epoch.
///
/// [`ObjectiveTask`] (what [`crate::train::fit`] uses) covers every
/// [`LatentVariableModel`]; models trained otherwise (a conditional model that needs the
/// labels, a VQ-VAE with its codebook losses and EMA updates) implement their own.
pub trait Task<E: Dtype, D: Device<E>, M> {
    /// The loss to minimize on `batch`, a scalar in nats per example (e.g. `−mean(ELBO)`),
    /// carrying the tape started by `grads`.
    ///
    /// # Errors
    /// Shape mismatches between data and model, the model's errors.
    fn loss(
        &mut self,
        model: &M,
        batch: Batch<'_, D>,
        grads: Gradients<E, D>,
        progress: Progress,
    ) -> Result<Tensor<(), E, D, OwnedTape<E, D>>>;

    /// Called after each optimizer update, e.g. for updates that are not gradient steps
    /// (an exponential moving average of a codebook). The default does nothing.
    ///
    /// # Errors
    /// Whatever the update reports.
    fn after_update(&mut self, model: &mut M, progress: Progress) -> Result<()> {
        let _ = (model, progress);
        Ok(())
    }

    /// Folds into this task what a data-parallel replica of it recorded in its
    /// [`Task::loss`] (the replica is a clone of this task taken before the step), so
    /// that [`Task::after_update`] sees the whole batch. Called once per replica
    /// `r = 1, 2, …` in order, after this task's own `loss` on replica 0's share. The
    /// default keeps nothing (right for stateless tasks); the VQ-VAE's task appends
    /// the replica's codes for its EMA codebook update and dead-code restarts.
    fn absorb(&mut self, replica: Self)
    where
        Self: Sized,
    {
        let _ = replica;
    }

    /// Shares across the ranks of a run on several processes what this task recorded in
    /// its [`Task::loss`] (after [`Task::absorb`] has folded in the replicas of this
    /// process), so that [`Task::after_update`] sees the whole global batch on every
    /// rank, in rank order — what one process with all the replicas would have seen.
    /// Called by every rank after each step when the run has more than one process. The
    /// default shares nothing (right for stateless tasks); the VQ-VAE's task gathers
    /// every rank's codes and encoder outputs.
    ///
    /// # Errors
    /// The transport's errors.
    fn exchange(&mut self, world: &dyn crate::distributed::Communicator) -> Result<()> {
        let _ = world;
        Ok(())
    }

    /// Evaluates the model on the (already binarized) test set after each epoch.
    ///
    /// # Errors
    /// [`crate::Error::NonFinite`] for a non-finite result, the model's errors.
    fn evaluate(&mut self, model: &M, test: &Dataset, device: &D) -> Result<EvalReport>;

    /// A short description for logs.
    fn describe(&self) -> String;

    /// Latent draws per example in [`Task::loss`] (see [`Objective::draws`]), for the
    /// trainer's up-front memory check. The default is 1.
    fn draws(&self) -> usize {
        1
    }

    /// What this task carries from one step to the next beyond the model's tensors
    /// (e.g. a VQ-VAE's EMA statistics and its random generator), as JSON, saved in each
    /// checkpoint the trainer writes so that [`Task::restore`] can continue a run
    /// exactly. The default (a stateless task) is `null`.
    ///
    /// # Errors
    /// If the state cannot be encoded.
    fn state(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    /// Takes back the state [`Task::state`] returned, when a run is resumed. The default
    /// ignores it.
    ///
    /// # Errors
    /// [`crate::Error::InvalidSetting`] for a state this task cannot take (another task's,
    /// or sizes that do not fit).
    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// Maximizes an [`Objective`] of a [`LatentVariableModel`] over `(batch, X)` images,
/// with the trainer's KL warm-up applied through [`Objective::scheduled`], and reports
/// the single-sample ELBO (`Elbo::default()`) on the test set.
///
/// An objective with running state (NVIL's moments) observes each batch through
/// [`Objective::objective_observed`]; the task sums the observations over the replicas
/// and ranks and hands them to [`Objective::update`] after the step, and saves and
/// restores [`Objective::state`] with every checkpoint.
#[derive(Debug, Clone)]
pub struct ObjectiveTask<O> {
    /// The objective to maximize.
    pub objective: O,
    observed: SignalMoments,
}

impl<O> ObjectiveTask<O> {
    /// A task maximizing `objective`.
    pub fn new(objective: O) -> Self {
        Self {
            objective,
            observed: SignalMoments::default(),
        }
    }
}

/// Sums the replicas' and ranks' observations, for [`Task::exchange`].
fn exchange_moments(
    observed: &mut SignalMoments,
    world: &dyn crate::distributed::Communicator,
) -> Result<()> {
    let mut v = [observed.count, observed.sum, observed.sum_sq];
    world.all_reduce_sum_f64(&mut v)?;
    *observed = SignalMoments {
        count: v[0],
        sum: v[1],
        sum_sq: v[2],
    };
    Ok(())
}

/// [`Objective::restore`], skipping the `null` of a checkpoint written without state.
fn restore_objective<O: Objective>(objective: &mut O, state: &serde_json::Value) -> Result<()> {
    if state.is_null() {
        Ok(())
    } else {
        objective.restore(state)
    }
}

impl<X: Dim + Default, Z: Dim, E, D, M, O> Task<E, D, M> for ObjectiveTask<O>
where
    E: Real,
    D: Device<E> + 'static,
    M: LatentVariableModel<E, D, OwnedTape<E, D>, X = X, Z = Z>
        + LatentVariableModel<E, D, NoneTape, X = X, Z = Z>,
    O: Objective + Clone,
{
    fn loss(
        &mut self,
        model: &M,
        batch: Batch<'_, D>,
        grads: Gradients<E, D>,
        progress: Progress,
    ) -> Result<Tensor<(), E, D, OwnedTape<E, D>>> {
        let x = batch.images::<X, E>()?;
        let objective = self.objective.scheduled(progress.step, progress.kl_weight);
        let (value, observed) =
            objective.objective_observed(model, crate::kernels::ops::observed(x, grads))?;
        self.observed += observed;
        Ok(-value.mean::<(), Axis<0>>())
    }

    fn after_update(&mut self, _model: &mut M, _progress: Progress) -> Result<()> {
        self.objective.update(&self.observed);
        self.observed = SignalMoments::default();
        Ok(())
    }

    fn absorb(&mut self, replica: Self) {
        self.observed += replica.observed;
    }

    fn exchange(&mut self, world: &dyn crate::distributed::Communicator) -> Result<()> {
        exchange_moments(&mut self.observed, world)
    }

    fn evaluate(&mut self, model: &M, test: &Dataset, device: &D) -> Result<EvalReport> {
        evaluate(model, &Elbo::default(), test, device, 1000)
    }

    fn describe(&self) -> String {
        self.objective.describe()
    }

    fn draws(&self) -> usize {
        self.objective.draws()
    }

    fn state(&self) -> Result<serde_json::Value> {
        self.objective.state()
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        restore_objective(&mut self.objective, state)
    }
}

/// Maximizes an [`Objective`] of a [`ConditionalModel`], with `x` and `y` split from
/// each batch by a [`Conditioning`] (the label, the top rows of the image, …), through
/// the [`Conditioned`] adapter; reports the conditional ELBO (a bound on `log p(x | y)`,
/// `Elbo::default()`) on the test set.
#[derive(Debug, Clone)]
pub struct ConditionalTask<O, C> {
    /// The objective to maximize.
    pub objective: O,
    /// How a batch splits into `x` and `y`.
    pub conditioning: C,
    observed: SignalMoments,
}

impl<O: Objective, C> ConditionalTask<O, C> {
    /// `conditional <objective>`, for logs (what [`Task::describe`] returns).
    pub fn describe(&self) -> String {
        format!("conditional {}", self.objective.describe())
    }
}

impl<O, C> ConditionalTask<O, C> {
    /// A task maximizing `objective` of `x` given `y` as `conditioning` splits them.
    pub fn new(objective: O, conditioning: C) -> Self {
        Self {
            objective,
            conditioning,
            observed: SignalMoments::default(),
        }
    }
}

impl<X: Dim + Default, Y: Dim, Z: Dim, E, D, M, O, C> Task<E, D, M> for ConditionalTask<O, C>
where
    E: Real,
    D: Device<E> + 'static,
    M: ConditionalModel<E, D, OwnedTape<E, D>, X = X, Y = Y, Z = Z>
        + ConditionalModel<E, D, NoneTape, X = X, Y = Y, Z = Z>,
    O: Objective + Clone,
    C: Conditioning<X, Y>,
{
    fn loss(
        &mut self,
        model: &M,
        batch: Batch<'_, D>,
        grads: Gradients<E, D>,
        progress: Progress,
    ) -> Result<Tensor<(), E, D, OwnedTape<E, D>>> {
        let (x, y) = self.conditioning.tensors::<E, D>(
            batch.data,
            batch.indices,
            batch.binarize,
            batch.device,
        )?;
        let bound = Conditioned::new(model, y);
        let objective = self.objective.scheduled(progress.step, progress.kl_weight);
        let (value, observed) =
            objective.objective_observed(&bound, crate::kernels::ops::observed(x, grads))?;
        self.observed += observed;
        Ok(-value.mean::<(), Axis<0>>())
    }

    fn after_update(&mut self, _model: &mut M, _progress: Progress) -> Result<()> {
        self.objective.update(&self.observed);
        self.observed = SignalMoments::default();
        Ok(())
    }

    fn absorb(&mut self, replica: Self) {
        self.observed += replica.observed;
    }

    fn exchange(&mut self, world: &dyn crate::distributed::Communicator) -> Result<()> {
        exchange_moments(&mut self.observed, world)
    }

    fn state(&self) -> Result<serde_json::Value> {
        self.objective.state()
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        restore_objective(&mut self.objective, state)
    }

    fn evaluate(&mut self, model: &M, test: &Dataset, device: &D) -> Result<EvalReport> {
        let elbo = Elbo::default();
        evaluate_batches(test.len(), 1000, |idx| {
            let (x, y) = self.conditioning.tensors::<E, D>(test, idx, None, device)?;
            elbo.estimate(&Conditioned::new(model, y), x)
        })
    }

    fn describe(&self) -> String {
        ConditionalTask::describe(self)
    }

    fn draws(&self) -> usize {
        self.objective.draws()
    }
}
