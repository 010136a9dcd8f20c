//! Conditional latent-variable models `p(x, z | y) = p(z | y) p(x | z, y)` with guide
//! `q(z | x, y)` (Sohn et al. 2015), and the adapter that lets every estimator of this
//! crate ([`crate::Elbo`], [`crate::ImportanceWeighted`], [`crate::log_marginal_likelihood`])
//! work on them unchanged.

use dfdx::prelude::*;

use crate::distributions::{Distribution, GuideDistribution};
use crate::error::{Error, Result};
use crate::inference::model::LatentVariableModel;
use crate::kernels::ops::{repeat_rows, Events, PerExample, Real};
use crate::kl::registered_kl;

/// A latent-variable model of observations `x ∈ R^X` given a condition `y ∈ R^Y`
/// (a one-hot label, the visible part of an image, …) with latents `z ∈ R^Z`:
/// `p(x, z | y) = p(z | y) p(x | z, y)` and the amortized guide `q(z | x, y)`.
///
/// Its conditional ELBO (Sohn et al. 2015, eq. 4) is
/// `log p(x | y) ≥ E_{q(z|x,y)}[log p(x | z, y)] − KL(q(z | x, y) ‖ p(z | y))`.
/// Bind a batch of conditions with [`Conditioned`] to get a [`LatentVariableModel`]
/// and estimate it with [`crate::Elbo`] (or bound `log p(x | y)` with the IWAE
/// estimators).
///
/// Implement it for every tape `T`, as for [`LatentVariableModel`].
///
/// The sizes are associated types (dfdx [`Dim`]s), as for [`LatentVariableModel`].
pub trait ConditionalModel<E: Real, D: Device<E>, T: Tape<E, D>> {
    /// The observation size: `x` has shape `(batch, X)`.
    type X: Dim;
    /// The condition size: `y` has shape `(batch, Y)`.
    type Y: Dim;
    /// The latent size: `z` has shape `(batch, Z)`.
    type Z: Dim;
    /// The family of `q(z | x, y)`: reparameterized or discrete, as
    /// [`LatentVariableModel::Posterior`].
    type Posterior: GuideDistribution<Self::Z, E, D, Tape = T> + 'static;
    /// The family of `p(z | y)`.
    type Prior: Distribution<Self::Z, E, D, Tape = T> + 'static;
    /// The family of `p(x | z, y)`.
    type Likelihood: Distribution<Self::X, E, D, Tape = T> + 'static;

    /// `q(z | x, y)` for `x` of shape `(batch, X)` and `y` of shape `(batch, Y)`.
    ///
    /// # Errors
    /// The networks' errors.
    fn guide(
        &self,
        x: Events<Self::X, E, D, T>,
        y: Events<Self::Y, E, D, T>,
    ) -> Result<Self::Posterior>;

    /// `p(z | y)` for `y` of shape `(batch, Y)` (a prior that ignores `y` is allowed).
    ///
    /// # Errors
    /// The networks' errors.
    fn prior(&self, y: Events<Self::Y, E, D, T>) -> Result<Self::Prior>;

    /// `p(x | z, y)` for `z` of shape `(n, Z)` and `y` of shape `(n, Y)`.
    ///
    /// # Errors
    /// The networks' errors.
    fn likelihood(
        &self,
        z: Events<Self::Z, E, D, T>,
        y: Events<Self::Y, E, D, T>,
    ) -> Result<Self::Likelihood>;

    /// `KL(q ‖ p)` in closed form when the pair has one (see
    /// [`LatentVariableModel::closed_form_kl`]).
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

    /// A learned baseline `C_ψ(x, y)` for the score-function gradient of a discrete
    /// guide, shape `(batch,)`, nats, for `x` of shape `(batch, X)` and `y` of shape
    /// `(batch, Y)`: NVIL's input-dependent baseline (Mnih & Gregor 2014, §3.3) with the
    /// condition among its inputs, as
    /// [`LatentVariableModel::baseline`] is for an unconditional model. [`Conditioned`]
    /// passes it on, so [`crate::Nvil`] uses it. `None` (the default): the model has
    /// none.
    ///
    /// # Errors
    /// The baseline network's errors.
    fn baseline(
        &self,
        x: Events<Self::X, E, D, T>,
        y: Events<Self::Y, E, D, T>,
    ) -> Option<Result<PerExample<E, D, T>>> {
        let _ = (x, y);
        None
    }
}

/// A [`ConditionalModel`] with a batch of conditions `y` bound to it: a
/// [`LatentVariableModel`] of `x` alone, for the batch of examples `y` belongs to.
///
/// Row `b` of every `x` passed in must belong with row `b` of `y`. When an estimator
/// draws `L` samples per example, sample-major (as [`crate::Elbo`] and the IWAE
/// estimators do), `y` is repeated to match: a batch of `n = L · batch` latents gets
/// `y` repeated `L` times. `y` carries no gradient: it is data.
pub struct Conditioned<'m, M, Y: Dim, E: Dtype, D: Storage<E>> {
    model: &'m M,
    y: Events<Y, E, D>,
}

impl<'m, M, Y: Dim, E: Real, D: Device<E>> Conditioned<'m, M, Y, E, D> {
    /// Binds the conditions `y`, shape `(batch, Y)`, to `model`.
    pub fn new(model: &'m M, y: Events<Y, E, D>) -> Self {
        Self { model, y }
    }

    /// The conditions repeated to `n` rows (sample-major), as tape `T`.
    fn y_for<T: Tape<E, D>>(&self, n: usize) -> Result<Events<Y, E, D, T>> {
        let b = self.y.shape().0;
        if b == 0 || !n.is_multiple_of(b) {
            return Err(Error::not_a_multiple(
                "Conditioned (batch of the bound conditions)",
                b,
                n,
            ));
        }
        Ok(repeat_rows(self.y.clone(), n / b).retaped::<T>())
    }
}

impl<Y: Dim, E, D, T, M> LatentVariableModel<E, D, T> for Conditioned<'_, M, Y, E, D>
where
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    M: ConditionalModel<E, D, T, Y = Y>,
{
    type X = M::X;
    type Z = M::Z;
    type Posterior = M::Posterior;
    type Prior = M::Prior;
    type Likelihood = M::Likelihood;

    fn guide(&self, x: Events<M::X, E, D, T>) -> Result<M::Posterior> {
        let y = self.y_for::<T>(x.shape().0)?;
        self.model.guide(x, y)
    }

    fn prior(&self, batch: usize, _device: &D) -> Result<M::Prior> {
        self.model.prior(self.y_for::<T>(batch)?)
    }

    fn likelihood(&self, z: Events<M::Z, E, D, T>) -> Result<M::Likelihood> {
        let y = self.y_for::<T>(z.shape().0)?;
        self.model.likelihood(z, y)
    }

    fn closed_form_kl(&self, q: &M::Posterior, p: &M::Prior) -> Option<Result<PerExample<E, D, T>>>
    where
        D: 'static,
        T: 'static,
    {
        self.model.closed_form_kl(q, p)
    }

    /// The model's [`ConditionalModel::baseline`] with the bound conditions, repeated
    /// to `x`'s rows as for the guide.
    fn baseline(&self, x: Events<M::X, E, D, T>) -> Option<Result<PerExample<E, D, T>>> {
        match self.y_for::<T>(x.shape().0) {
            Ok(y) => self.model.baseline(x, y),
            Err(e) => Some(Err(e)),
        }
    }
}
