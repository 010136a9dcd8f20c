//! What a trainer maximizes: any per-example objective of a model on a batch.

use dfdx::prelude::*;

use crate::error::Result;
use crate::inference::concrete::Concrete;
use crate::inference::elbo::Elbo;
use crate::inference::iwae::ImportanceWeighted;
use crate::inference::model::LatentVariableModel;
use crate::inference::nvil::{Moments, Nvil};
pub use crate::inference::signal::SignalMoments;
use crate::inference::vimco::Vimco;
use crate::kernels::ops::{Events, PerExample, Real};

/// A training objective to **maximize**, per example, in nats: the ELBO, the IWAE
/// bound, or one of your own. [`crate::train::fit`] minimizes `−mean(objective)`.
pub trait Objective {
    /// The objective per example, shape `(batch,)`, carrying `x`'s tape.
    ///
    /// # Errors
    /// Invalid settings and the model's errors.
    fn objective<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>;

    /// A short description for logs, e.g. `elbo(L=1, β=1)` or `iwae(k=5)`.
    fn describe(&self) -> String;

    /// Latent draws per example (`L` of the ELBO, `k` of the IWAE bound): each is a
    /// pass of the decoder whose activations the backward pass keeps, so the trainer
    /// refuses settings whose `batch · draws · X` values would not fit in memory
    /// ([`crate::train::TrainConfig::memory_limit`]). The default is 1.
    fn draws(&self) -> usize {
        1
    }

    /// The objective to use at optimizer step `step` (0-based) when the trainer's KL
    /// warm-up puts weight `kl_weight ∈ [0, 1]` on the KL term
    /// ([`crate::train::TrainConfig::kl_warmup_steps`]). Objectives that change during
    /// training (a capacity schedule, say) read `step` as well.
    ///
    /// The default ignores both and returns a copy: right for objectives with no KL
    /// term to weight (the IWAE bound).
    fn scheduled(&self, step: usize, kl_weight: f64) -> Self
    where
        Self: Sized + Clone,
    {
        let _ = (step, kl_weight);
        self.clone()
    }

    /// The objective with what it observed on the batch for its running state
    /// ([`Objective::update`]): NVIL's moments of its learning signal. The trainer calls
    /// this rather than [`Objective::objective`]; the default observes nothing.
    ///
    /// # Errors
    /// As [`Objective::objective`].
    fn objective_observed<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<(PerExample<E, D, T>, SignalMoments)>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        Ok((self.objective(model, x)?, SignalMoments::default()))
    }

    /// Folds what [`Objective::objective_observed`] saw on a whole batch (summed over
    /// the data-parallel replicas and ranks) into the objective's running state, after
    /// the optimizer step. The default keeps no state.
    fn update(&mut self, batch: &SignalMoments) {
        let _ = batch;
    }

    /// The running state beyond its settings (NVIL's moments), as JSON: the trainer
    /// saves it in each checkpoint and hands it to [`Objective::restore`] on resume.
    /// The default (no state) is `null`.
    ///
    /// # Errors
    /// If the state cannot be encoded.
    fn state(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    /// Takes back what [`Objective::state`] returned. The default ignores it.
    ///
    /// # Errors
    /// [`crate::Error::InvalidSetting`] for a state this objective cannot take.
    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

impl Objective for Elbo {
    fn objective<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        Ok(self.estimate(model, x)?.objective)
    }

    fn describe(&self) -> String {
        format!("elbo(L={}, β={})", self.samples(), self.beta())
    }

    fn draws(&self) -> usize {
        self.samples()
    }

    /// `β · kl_weight`: the ELBO's KL term is annealed from 0 to β (Bowman et al. 2016, §3.1;
    /// Sønderby et al. 2016, §2.3).
    fn scheduled(&self, _step: usize, kl_weight: f64) -> Self {
        self.with_beta_unchecked(self.beta() * kl_weight)
    }
}

impl Objective for ImportanceWeighted {
    fn objective<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        self.estimate(model, x)
    }

    fn describe(&self) -> String {
        format!("iwae(k={})", self.k)
    }

    fn draws(&self) -> usize {
        self.k
    }
}

impl Objective for Nvil {
    fn objective<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        Ok(self.estimate(model, x)?.0)
    }

    fn objective_observed<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<(PerExample<E, D, T>, SignalMoments)>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        self.estimate(model, x)
    }

    fn describe(&self) -> String {
        format!("nvil(L={}, β={})", self.samples(), self.beta())
    }

    fn draws(&self) -> usize {
        self.samples()
    }

    fn scheduled(&self, _step: usize, kl_weight: f64) -> Self {
        self.with_beta_unchecked(self.beta() * kl_weight)
    }

    fn update(&mut self, batch: &SignalMoments) {
        Nvil::update(self, batch);
    }

    fn state(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self.moments())
            .map_err(|e| crate::Error::invalid("nvil state", e.to_string()))
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let m: Moments = serde_json::from_value(state.clone())
            .map_err(|e| crate::Error::invalid("nvil state", e.to_string()))?;
        *self = self.with_moments(m.checked()?);
        Ok(())
    }
}

impl Objective for Vimco {
    fn objective<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        self.estimate(model, x)
    }

    fn describe(&self) -> String {
        format!("vimco(k={})", self.k())
    }

    fn draws(&self) -> usize {
        self.k()
    }
}

impl Objective for Concrete {
    fn objective<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        self.estimate(model, x)
    }

    fn describe(&self) -> String {
        format!(
            "concrete(τ={:.3}, τ_0={}, τ_min={}, r={})",
            self.temperature(),
            self.initial_temperature(),
            self.min_temperature(),
            self.anneal_rate()
        )
    }

    /// The temperature of step `step` and `β · kl_weight`.
    fn scheduled(&self, step: usize, kl_weight: f64) -> Self {
        self.at(step, kl_weight)
    }
}

/// A choice between the built-in objectives, e.g. from a command-line flag.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnyObjective {
    /// The (β-)ELBO.
    Elbo(Elbo),
    /// The IWAE bound.
    Iwae(ImportanceWeighted),
    /// NVIL (a discrete guide's score with learned and running baselines).
    Nvil(Nvil),
    /// VIMCO (the multi-sample bound with leave-one-out baselines).
    Vimco(Vimco),
    /// The Concrete relaxation of a discrete guide.
    Concrete(Concrete),
}

impl Objective for AnyObjective {
    fn objective<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        match self {
            Self::Elbo(o) => o.objective(model, x),
            Self::Iwae(o) => o.objective(model, x),
            Self::Nvil(o) => o.objective(model, x),
            Self::Vimco(o) => o.objective(model, x),
            Self::Concrete(o) => o.objective(model, x),
        }
    }

    fn objective_observed<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<(PerExample<E, D, T>, SignalMoments)>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        match self {
            Self::Nvil(o) => o.objective_observed(model, x),
            _ => Ok((self.objective(model, x)?, SignalMoments::default())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Elbo(o) => o.describe(),
            Self::Iwae(o) => o.describe(),
            Self::Nvil(o) => o.describe(),
            Self::Vimco(o) => o.describe(),
            Self::Concrete(o) => o.describe(),
        }
    }

    fn draws(&self) -> usize {
        match self {
            Self::Elbo(o) => o.draws(),
            Self::Iwae(o) => o.draws(),
            Self::Nvil(o) => o.draws(),
            Self::Vimco(o) => o.draws(),
            Self::Concrete(o) => o.draws(),
        }
    }

    fn scheduled(&self, step: usize, kl_weight: f64) -> Self {
        match self {
            Self::Elbo(o) => Self::Elbo(o.scheduled(step, kl_weight)),
            Self::Iwae(o) => Self::Iwae(o.scheduled(step, kl_weight)),
            Self::Nvil(o) => Self::Nvil(o.scheduled(step, kl_weight)),
            Self::Vimco(o) => Self::Vimco(o.scheduled(step, kl_weight)),
            Self::Concrete(o) => Self::Concrete(o.scheduled(step, kl_weight)),
        }
    }

    fn update(&mut self, batch: &SignalMoments) {
        if let Self::Nvil(o) = self {
            Objective::update(o, batch);
        }
    }

    fn state(&self) -> Result<serde_json::Value> {
        match self {
            Self::Nvil(o) => o.state(),
            _ => Ok(serde_json::Value::Null),
        }
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        match self {
            Self::Nvil(o) => o.restore(state),
            _ => Ok(()),
        }
    }
}
