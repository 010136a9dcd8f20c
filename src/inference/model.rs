//! The interface between a latent-variable model and the estimators.

use dfdx::prelude::*;

use crate::distributions::{Distribution, GuideDistribution};
use crate::error::Result;
use crate::kernels::ops::{Events, PerExample, Real};
use crate::kl::registered_kl;

/// A latent-variable model `p(x, z) = p(z) p(x | z)` with an amortized guide `q(z | x)`,
/// over observations in `R^X` (or `{0,1}^X`) and latents in `R^Z`.
///
/// This is what [`Elbo`](crate::Elbo) and the trainer consume. `T` is the tape of the
/// computation: implement the trait for every `T: Tape<E, D>` (as the models in
/// `latent-models` do) so the model can be both trained (`OwnedTape`) and evaluated
/// (`NoneTape`).
///
/// The model carries its sizes as the associated types `X` and `Z`, dfdx [`Dim`]s:
/// `Const<N>` for sizes fixed at compile time, `usize` for sizes chosen at run time.
/// Callers therefore never name them: `elbo.estimate(&model, x)`, `model.guide(x)`.
pub trait LatentVariableModel<E: Real, D: Device<E>, T: Tape<E, D>> {
    /// The observation size: `x` has shape `(batch, X)`.
    type X: Dim;
    /// The latent size: `z` has shape `(batch, Z)`.
    type Z: Dim;
    /// The family of the guide `q(z | x)`: reparameterized (a Normal, a flow) or
    /// discrete (a [`Bernoulli`](crate::Bernoulli), a
    /// [`Categorical`](crate::distributions::Categorical)), which the estimators train
    /// through its score (see [`GuideDistribution`]).
    type Posterior: GuideDistribution<Self::Z, E, D, Tape = T> + 'static;
    /// The family of the prior `p(z)`.
    type Prior: Distribution<Self::Z, E, D, Tape = T> + 'static;
    /// The family of the likelihood `p(x | z)`.
    type Likelihood: Distribution<Self::X, E, D, Tape = T> + 'static;

    /// `q(z | x)` for a batch `x` of shape `(batch, X)`.
    ///
    /// # Errors
    /// Whatever the guide's network reports (e.g. [`crate::Error::Device`]).
    fn guide(&self, x: Events<Self::X, E, D, T>) -> Result<Self::Posterior>;

    /// The prior `p(z)`, repeated for `batch` examples.
    ///
    /// # Errors
    /// Whatever a learned prior's network reports.
    fn prior(&self, batch: usize, device: &D) -> Result<Self::Prior>;

    /// `p(x | z)` for a batch of latents `z` of shape `(batch, Z)`.
    ///
    /// # Errors
    /// Whatever the decoder reports.
    fn likelihood(&self, z: Events<Self::Z, E, D, T>) -> Result<Self::Likelihood>;

    /// `KL(q ‖ p)` in closed form when the pair has one, shape `(batch,)`, in nats;
    /// `None` makes [`Elbo`](crate::Elbo) estimate it by Monte Carlo.
    ///
    /// The default looks the pair up in [`registered_kl`] (every built-in pair with a
    /// closed form). Override it for a pair of your own: take
    /// [`Distribution::fork`]s of `q` and `p` and call
    /// [`KlDivergence::kl_divergence`](crate::KlDivergence::kl_divergence).
    fn closed_form_kl(
        &self,
        q: &Self::Posterior,
        p: &Self::Prior,
    ) -> Option<Result<PerExample<E, D, T>>>
    where
        D: 'static,
        T: 'static,
    {
        registered_kl::<Self::Z, E, D, T, _, _>(q, p)
    }

    /// A learned, input-dependent baseline `C_ψ(x)` for the score-function gradient of
    /// a discrete guide, shape `(batch,)`, nats: NVIL's baseline network (Mnih & Gregor
    /// 2014, §3.3), which Pyro attaches to the guide as `nn_baseline`. Its parameters
    /// are the model's, so the trainer updates and checkpoints them with the rest;
    /// [`crate::Nvil`] fits it to the learning signal. `None` (the default): the model
    /// has none.
    ///
    /// # Errors
    /// The baseline network's errors.
    fn baseline(&self, x: Events<Self::X, E, D, T>) -> Option<Result<PerExample<E, D, T>>> {
        let _ = x;
        None
    }
}
