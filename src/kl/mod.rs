//! Kullback–Leibler divergences: closed forms for pairs that have one, and a Monte
//! Carlo estimator for every other pair.
//!
//! `KL(q ‖ p) = E_q[log q(z) − log p(z)]`, per example, summed over the event
//! dimensions, in nats.
//!
//! # Adding a closed form for your own pair
//! Implement [`KlDivergence<P>`] for your `Q`:
//! ```text
//! impl<E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<MyPrior<E, D, T>> for MyPosterior<E, D, T> {
//!     type Output = PerExample<E, D, T>;
//!     fn kl_divergence(self, p: MyPrior<E, D, T>) -> Result<Self::Output> { /* … */ }
//! }
//! ```
//! and override your model's
//! [`LatentVariableModel::closed_form_kl`](crate::LatentVariableModel::closed_form_kl)
//! to return `Some(q.fork().kl_divergence(p.fork()))`, so that [`Elbo`](crate::Elbo)
//! uses it. For the built-in pairs nothing is needed: the default `closed_form_kl`
//! looks the pair up with [`registered_kl`].

use dfdx::prelude::*;

use std::any::Any;

use crate::distributions::{
    check_batch, check_shape, Bernoulli, Beta, Categorical, Dirichlet, Distribution, Exponential,
    Gamma, Laplace, LogNormal, MultivariateNormal, Normal, Poisson, Reparameterizable,
    StandardNormal,
};
use crate::error::{Error, Result};

mod divergence;
mod families;
pub mod registry;
use crate::kernels::ops::{cst, mean_over_samples, Events, PerExample, Real};
pub use divergence::{KlDivergence, KlPerDimension};
pub use registry::{is_registered, register_kl, unregister_kl};

/// `KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²))_i = log σ₂ − log σ₁ + (σ₁² + (μ₁ − μ₂)²) / (2σ₂²) − ½`
/// (e.g. Bishop 2006, exercise 1.30, per dimension).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlPerDimension<Normal<N, E, D, T>>
    for Normal<N, E, D, T>
{
    type Output = Events<N, E, D, T>;

    fn kl_per_dimension(self, p: Normal<N, E, D, T>) -> Result<Self::Output> {
        check_shape("KL(Normal‖Normal)", self.loc.shape(), p.loc.shape())?;
        let q_ls = self.log_scale.with_empty_tape();
        let p_ls = p.log_scale.with_empty_tape();
        let log_ratio = p.log_scale - self.log_scale; // log σ₂ − log σ₁
        let var_ratio = ((q_ls - p_ls.with_empty_tape()) * cst::<E>(2.0)).exp(); // σ₁²/σ₂²
        let diff = (self.loc - p.loc) * (-p_ls).exp(); // (μ₁ − μ₂)/σ₂
        Ok(log_ratio + (var_ratio + diff.square()) * cst::<E>(0.5) - cst::<E>(0.5))
    }
}

/// `KL(N(μ, σ²) ‖ N(0, 1))_i = ½(σ_i² + μ_i² − 1) − log σ_i`
/// (Kingma & Welling 2014, Appendix B).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlPerDimension<StandardNormal<N, E, D, T>>
    for Normal<N, E, D, T>
{
    type Output = Events<N, E, D, T>;

    fn kl_per_dimension(self, p: StandardNormal<N, E, D, T>) -> Result<Self::Output> {
        check_shape(
            "KL(Normal‖StandardNormal)",
            self.loc.shape(),
            &(p.batch_size(), p.dim()),
        )?;
        let ls = self.log_scale.with_empty_tape();
        let var = (self.log_scale * cst::<E>(2.0)).exp();
        Ok((var + self.loc.square() - cst::<E>(1.0)) * cst::<E>(0.5) - ls)
    }
}

/// The closed form summed over dimensions: see [`KlPerDimension`] for the formula.
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<Normal<N, E, D, T>>
    for Normal<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: Normal<N, E, D, T>) -> Result<Self::Output> {
        Ok(self.kl_per_dimension(p)?.sum::<(usize,), Axis<1>>())
    }
}

/// The fast path for the standard-normal prior: see [`KlPerDimension`] for the formula.
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<StandardNormal<N, E, D, T>>
    for Normal<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: StandardNormal<N, E, D, T>) -> Result<Self::Output> {
        Ok(self.kl_per_dimension(p)?.sum::<(usize,), Axis<1>>())
    }
}

/// `KL(Bern(σ(a)) ‖ Bern(σ(b))) = Σ_i σ(a)(a − b) + log σ(−a) − log σ(−b)`
/// `= Σ_i σ(a)(a − b) − softplus(a) + softplus(b)`.
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<Bernoulli<N, E, D, T>>
    for Bernoulli<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: Bernoulli<N, E, D, T>) -> Result<Self::Output> {
        check_shape(
            "KL(Bernoulli‖Bernoulli)",
            self.logits.shape(),
            p.logits.shape(),
        )?;
        let a = self.logits;
        let a2 = a.with_empty_tape();
        let a3 = a.with_empty_tape();
        let b = p.logits;
        let b2 = b.with_empty_tape();
        let pa = a2.sigmoid();
        // softplus(x) = BCEWithLogits(x, 0)
        let zeros = a3.device().zeros_like(a3.shape()).put_tape(T::default());
        let zeros2 = a3.device().zeros_like(a3.shape()).put_tape(T::default());
        let sp_a = a3.bce_with_logits(zeros);
        let sp_b = b2.bce_with_logits(zeros2);
        let kl = (a - b) * pa - sp_a + sp_b;
        Ok(kl.sum::<(usize,), Axis<1>>())
    }
}

/// Monte Carlo estimate of `KL(q ‖ p) ≈ (1/L) Σ_{l=1}^{L} log q(z_l) − log p(z_l)`,
/// `z_l ~ q` drawn by [`Reparameterizable::rsample`], so the estimate is differentiable
/// in `q`'s (and `p`'s) parameters. Unbiased for any pair; use it where no closed form
/// exists (e.g. a Normal posterior against a mixture prior).
///
/// Shapes: `q` and `p` are batches of the same size `B`; the result is `(B,)`.
///
/// # Errors
/// [`Error::InvalidSetting`] if `samples == 0`; [`Error::ShapeMismatch`] if the batch
/// sizes differ.
pub fn monte_carlo_kl<N: Dim, E, D, T, Q, P>(
    q: Q,
    p: P,
    samples: usize,
) -> Result<PerExample<E, D, T>>
where
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    Q: Reparameterizable<N, E, D, Tape = T>,
    P: Distribution<N, E, D, Tape = T>,
{
    if samples == 0 {
        return Err(Error::invalid(
            "samples",
            "the Monte Carlo KL needs at least 1 sample",
        ));
    }
    check_batch("monte_carlo_kl", q.batch_size(), p.batch_size())?;
    let (z, log_q) = q.repeat(samples).rsample_with_log_prob()?;
    let log_p = p.repeat(samples).log_prob(z.with_empty_tape())?;
    // The draws' own tape (z's path back to q's parameters) joins the estimate's.
    let (_, z_tape) = z.split_tape();
    let (kl, tape) = mean_over_samples(log_q - log_p, samples).split_tape();
    Ok(kl.put_tape(tape.merge(z_tape)))
}

/// `KL(Laplace(μ₁, b₁) ‖ Laplace(μ₂, b₂)) = Σ_i log(b₂/b₁) + |μ₁ − μ₂|/b₂
/// + (b₁/b₂) exp(−|μ₁ − μ₂|/b₁) − 1` (Gil, Alajaji & Linder 2013, Table 3).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<Laplace<N, E, D, T>>
    for Laplace<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: Laplace<N, E, D, T>) -> Result<Self::Output> {
        check_shape("KL(Laplace‖Laplace)", self.loc.shape(), p.loc.shape())?;
        let q_ls = self.log_scale.with_empty_tape();
        let q_ls2 = self.log_scale.with_empty_tape();
        let p_ls = p.log_scale.with_empty_tape();
        let p_ls2 = p.log_scale.with_empty_tape();
        let log_ratio = p.log_scale - self.log_scale; // log b₂ − log b₁
        let d = (self.loc - p.loc).abs();
        let d2 = d.with_empty_tape();
        let t1 = d * (-p_ls).exp();
        let t2 = (q_ls - p_ls2 - d2 * (-q_ls2).exp()).exp();
        Ok((log_ratio + t1 + t2 - cst::<E>(1.0)).sum::<(usize,), Axis<1>>())
    }
}

/// `KL(Cat(π) ‖ Cat(ρ)) = Σ_k π_k (log π_k − log ρ_k)`.
impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<Categorical<K, E, D, T>>
    for Categorical<K, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: Categorical<K, E, D, T>) -> Result<Self::Output> {
        check_shape(
            "KL(Categorical‖Categorical)",
            self.logits.shape(),
            p.logits.shape(),
        )?;
        let probs = self.logits.with_empty_tape().softmax::<Axis<1>>();
        let log_q = self.logits.log_softmax::<Axis<1>>();
        let log_p = p.logits.log_softmax::<Axis<1>>();
        Ok(((log_q - log_p) * probs).sum::<(usize,), Axis<1>>())
    }
}

fn try_pair<Q: 'static, P: 'static, Qc, Pc, N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    q: &Q,
    p: &P,
) -> Option<Result<PerExample<E, D, T>>>
where
    Qc: 'static + Distribution<N, E, D> + KlDivergence<Pc, Output = PerExample<E, D, T>>,
    Pc: 'static + Distribution<N, E, D>,
{
    let q = (q as &dyn Any).downcast_ref::<Qc>()?;
    let p = (p as &dyn Any).downcast_ref::<Pc>()?;
    Some(q.fork().kl_divergence(p.fork()))
}

/// The registry of closed forms: `KL(q ‖ p)` if the concrete pair `(Q, P)` is one of
/// the built-in pairs with a closed form — Normal‖Normal, Normal‖StandardNormal,
/// Laplace‖Laplace, Bernoulli‖Bernoulli, Categorical‖Categorical, Poisson‖Poisson,
/// Gamma‖Gamma, Exponential‖Exponential, Beta‖Beta, LogNormal‖LogNormal,
/// Dirichlet‖Dirichlet, MultivariateNormal‖StandardNormal, MultivariateNormal‖
/// MultivariateNormal — or a pair a user registered with
/// [`register_kl`], else `None`. The arguments are not
/// consumed (their forks are).
///
/// This is what [`LatentVariableModel::closed_form_kl`](crate::LatentVariableModel::closed_form_kl)
/// does by default, so [`Elbo`](crate::Elbo) picks the closed form whenever one exists
/// and the Monte Carlo estimate otherwise, with no per-pair code in the model.
pub fn registered_kl<N: Dim, E, D, T, Q, P>(q: &Q, p: &P) -> Option<Result<PerExample<E, D, T>>>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Q: 'static,
    P: 'static,
{
    try_pair::<Q, P, Normal<N, E, D, T>, StandardNormal<N, E, D, T>, N, E, D, T>(q, p)
        .or_else(|| try_pair::<Q, P, Normal<N, E, D, T>, Normal<N, E, D, T>, N, E, D, T>(q, p))
        .or_else(|| try_pair::<Q, P, Laplace<N, E, D, T>, Laplace<N, E, D, T>, N, E, D, T>(q, p))
        .or_else(|| {
            try_pair::<Q, P, Bernoulli<N, E, D, T>, Bernoulli<N, E, D, T>, N, E, D, T>(q, p)
        })
        .or_else(|| {
            try_pair::<Q, P, Categorical<N, E, D, T>, Categorical<N, E, D, T>, N, E, D, T>(q, p)
        })
        .or_else(|| try_pair::<Q, P, Poisson<N, E, D, T>, Poisson<N, E, D, T>, N, E, D, T>(q, p))
        .or_else(|| try_pair::<Q, P, Gamma<N, E, D, T>, Gamma<N, E, D, T>, N, E, D, T>(q, p))
        .or_else(|| {
            try_pair::<Q, P, Exponential<N, E, D, T>, Exponential<N, E, D, T>, N, E, D, T>(q, p)
        })
        .or_else(|| try_pair::<Q, P, Beta<N, E, D, T>, Beta<N, E, D, T>, N, E, D, T>(q, p))
        .or_else(|| {
            try_pair::<Q, P, LogNormal<N, E, D, T>, LogNormal<N, E, D, T>, N, E, D, T>(q, p)
        })
        .or_else(|| {
            try_pair::<Q, P, Dirichlet<N, E, D, T>, Dirichlet<N, E, D, T>, N, E, D, T>(q, p)
        })
        .or_else(|| {
            type Mvn<N, E, D, T> = MultivariateNormal<N, E, D, T>;
            try_pair::<Q, P, Mvn<N, E, D, T>, StandardNormal<N, E, D, T>, N, E, D, T>(q, p)
                .or_else(|| try_pair::<Q, P, Mvn<N, E, D, T>, Mvn<N, E, D, T>, N, E, D, T>(q, p))
        })
        .or_else(|| registry::lookup::<E, D, T, Q, P>(q, p))
}

fn try_pair_per_dimension<Q, P, Qc, Pc, N, E, D, T>(
    q: &Q,
    p: &P,
) -> Option<Result<Events<N, E, D, T>>>
where
    Q: 'static,
    P: 'static,
    N: Dim,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    Qc: 'static + Distribution<N, E, D> + KlPerDimension<Pc, Output = Events<N, E, D, T>>,
    Pc: 'static + Distribution<N, E, D>,
{
    let q = (q as &dyn Any).downcast_ref::<Qc>()?;
    let p = (p as &dyn Any).downcast_ref::<Pc>()?;
    Some(q.fork().kl_per_dimension(p.fork()))
}

/// The registry of per-dimension closed forms: `KL(q_j ‖ p_j)` for each coordinate,
/// shape `(batch, N)`, nats, if the concrete pair `(Q, P)` is Normal‖StandardNormal or
/// Normal‖Normal (the pairs with [`KlPerDimension`]), else `None`. The arguments are not
/// consumed (their forks are). Used by [`crate::eval::kl_per_dimension`] so that the
/// evaluation reports the KL per latent dimension wherever it has a closed form.
pub fn registered_kl_per_dimension<N, E, D, T, Q, P>(
    q: &Q,
    p: &P,
) -> Option<Result<Events<N, E, D, T>>>
where
    N: Dim,
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Q: 'static,
    P: 'static,
{
    type Nrm<N, E, D, T> = Normal<N, E, D, T>;
    try_pair_per_dimension::<Q, P, Nrm<N, E, D, T>, StandardNormal<N, E, D, T>, N, E, D, T>(q, p)
        .or_else(|| {
            try_pair_per_dimension::<Q, P, Nrm<N, E, D, T>, Nrm<N, E, D, T>, N, E, D, T>(q, p)
        })
}
