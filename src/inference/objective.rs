//! What a trainer maximizes: any per-example objective of a model on a batch.

use dfdx::prelude::*;

use crate::error::Result;
use crate::inference::elbo::Elbo;
use crate::inference::iwae::ImportanceWeighted;
use crate::inference::model::LatentVariableModel;
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

/// A choice between the built-in objectives, e.g. from a command-line flag.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnyObjective {
    /// The (β-)ELBO.
    Elbo(Elbo),
    /// The IWAE bound.
    Iwae(ImportanceWeighted),
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
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Elbo(o) => o.describe(),
            Self::Iwae(o) => o.describe(),
        }
    }

    fn draws(&self) -> usize {
        match self {
            Self::Elbo(o) => o.draws(),
            Self::Iwae(o) => o.draws(),
        }
    }

    fn scheduled(&self, step: usize, kl_weight: f64) -> Self {
        match self {
            Self::Elbo(o) => Self::Elbo(o.scheduled(step, kl_weight)),
            Self::Iwae(o) => Self::Iwae(o.scheduled(step, kl_weight)),
        }
    }
}
