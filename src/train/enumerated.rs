//! The task of training an [`EnumeratedModel`] on its enumerated ELBO.

use dfdx::prelude::*;

use super::task::{Batch, Progress, Task};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::{evaluate_batches, EvalReport};
use crate::inference::enumerate::{EnumeratedElbo, EnumeratedModel};
use crate::inference::objective::Objective;
use crate::kernels::ops::Real;

/// Maximizes the [`EnumeratedElbo`] of an [`EnumeratedModel`] over `(batch, X)` images,
/// with the KL warm-up applied to β, and reports the enumerated single-sample ELBO on
/// the test set.
#[derive(Debug, Clone, Copy)]
pub struct EnumeratedTask {
    objective: EnumeratedElbo,
    values: usize,
}

impl EnumeratedTask {
    /// A task maximizing `objective` of a model whose site takes `values` values (`K`:
    /// each step evaluates the model given `y` for all `K`, so the trainer's memory check
    /// counts `K · L` draws per example).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `values == 0`.
    pub fn new(objective: EnumeratedElbo, values: usize) -> Result<Self> {
        if values == 0 {
            return Err(Error::invalid(
                "values",
                "an enumerated site needs at least 1 value",
            ));
        }
        Ok(Self { objective, values })
    }
}

impl<X: Dim + Default, Y: Dim, Z: Dim, E, D, M> Task<E, D, M> for EnumeratedTask
where
    E: Real,
    D: Device<E> + 'static,
    M: EnumeratedModel<E, D, OwnedTape<E, D>, X = X, Y = Y, Z = Z>
        + EnumeratedModel<E, D, NoneTape, X = X, Y = Y, Z = Z>,
{
    fn loss(
        &mut self,
        model: &M,
        batch: Batch<'_, D>,
        grads: Gradients<E, D>,
        progress: Progress,
    ) -> Result<Tensor<(), E, D, OwnedTape<E, D>>> {
        let x = batch.images::<X, E>()?;
        let inner = self
            .objective
            .inner()
            .scheduled(progress.step, progress.kl_weight);
        let terms = self
            .objective
            .with_inner(inner)
            .estimate(model, crate::kernels::ops::observed(x, grads))?;
        Ok(terms.loss())
    }

    fn evaluate(&mut self, model: &M, test: &Dataset, device: &D) -> Result<EvalReport> {
        let elbo = EnumeratedElbo::default();
        evaluate_batches(test.len(), 1000, |idx| {
            let x = test.batch::<X, E, D>(device, idx, None)?;
            elbo.estimate(model, x)
        })
    }

    fn describe(&self) -> String {
        format!(
            "enumerated {} over {} values",
            self.objective.inner().describe(),
            self.values
        )
    }

    fn draws(&self) -> usize {
        self.values * self.objective.inner().samples()
    }
}
