//! How a guide's draw carries gradient back to its parameters: pathwise
//! (reparameterized families) or through the score `∇ log q(z)` (discrete families).

use dfdx::prelude::*;

use super::{Bernoulli, Categorical, Distribution, Reparameterizable};
use crate::error::Result;
use crate::kernels::ops::{cst, Events, PerExample, Real};

/// A draw `z` and its score (`None` for a pathwise draw): what
/// [`GuideDistribution::draw`] returns, shapes `(batch, N)` and `(batch,)`.
pub type Drawn<N, E, D, T> = (Events<N, E, D, T>, Option<PerExample<E, D, T>>);

/// One draw per distribution of a guide `q(z | x)` with what the estimators need from
/// it, shapes `(batch, N)` and `(batch,)`, nats.
pub struct GuideDraw<N: Dim, E: Dtype, D: Storage<E>, T> {
    /// The draw `z`. It carries the pathwise tape (`∂z/∂φ`) for reparameterized
    /// coordinates; discrete coordinates carry none.
    pub z: Events<N, E, D, T>,
    /// `log q(z | x)`, carrying the tape to `q`'s parameters.
    pub log_q: PerExample<E, D, T>,
    /// `log q` of the coordinates drawn without a pathwise gradient, carrying the tape
    /// to `q`'s parameters: the score `∇_φ log q(z | x)` of the score-function
    /// (REINFORCE) estimator (Williams 1992; Mnih & Gregor 2014, eq. 4). `None` when
    /// every coordinate is reparameterized.
    pub score: Option<PerExample<E, D, T>>,
}

/// A family a guide `q(z | x)` may use: every [`Reparameterizable`] family (drawn
/// pathwise, `z = g(ε, φ)`), and the discrete families [`Bernoulli`] and
/// [`Categorical`], whose draws carry no gradient and whose parameters learn through the
/// score `∇_φ log q(z)` instead (TFP's `reparameterization_type`, Pyro's
/// `has_rsample`).
///
/// The estimators ([`crate::Elbo`], [`crate::ImportanceWeighted`], [`crate::Nvil`],
/// [`crate::Vimco`]) draw through this trait, so one model interface serves both kinds
/// of latent. For a family of your own that has no `rsample`, implement this trait and
/// return the score (see the Bernoulli implementation: a [`Distribution::fork`] scores
/// the draw a second time).
pub trait GuideDistribution<N: Dim, E: Dtype, D: Device<E>>: Distribution<N, E, D> {
    /// One draw per distribution and its score (`None` for a reparameterized family),
    /// shapes `(batch, N)` and `(batch,)`.
    ///
    /// # Errors
    /// The family's `log_prob` errors.
    fn draw(self) -> Result<Drawn<N, E, D, Self::Tape>>;

    /// One draw per distribution with `log q(z)` and its score.
    ///
    /// # Errors
    /// The family's `log_prob` errors.
    fn draw_with_log_prob(self) -> Result<GuideDraw<N, E, D, Self::Tape>>;

    /// A reparameterized draw of the family's Concrete relaxation at `temperature`
    /// (Maddison et al. 2017; Jang et al. 2017), shape `(batch, N)`: for a Bernoulli,
    /// `σ((ℓ + log u − log(1 − u)) / τ)`, `u ~ U(0, 1)`. `None` (the default) for a
    /// family without one; a reparameterized family has no need of one.
    fn relaxed_rsample(self, temperature: f64) -> Option<Events<N, E, D, Self::Tape>> {
        let _ = temperature;
        None
    }
}

/// [`GuideDistribution::draw`] of a reparameterized family: `rsample`, no score.
///
/// # Errors
/// None; the `Result` matches the trait.
pub fn pathwise_draw<N: Dim, E: Dtype, D: Device<E>, Q: Reparameterizable<N, E, D>>(
    q: Q,
) -> Result<Drawn<N, E, D, Q::Tape>> {
    Ok((q.rsample(), None))
}

/// [`GuideDistribution::draw_with_log_prob`] of a reparameterized family:
/// [`Reparameterizable::rsample_with_log_prob`], no score.
///
/// # Errors
/// The family's `log_prob` errors.
pub fn pathwise_draw_with_log_prob<
    N: Dim,
    E: Dtype,
    D: Device<E>,
    Q: Reparameterizable<N, E, D>,
>(
    q: Q,
) -> Result<GuideDraw<N, E, D, Q::Tape>> {
    let (z, log_q) = q.rsample_with_log_prob()?;
    Ok(GuideDraw {
        z,
        log_q,
        score: None,
    })
}

/// Implements [`GuideDistribution`] for a [`Reparameterizable`] family with the
/// generic parameters `<N, E, D, T>` (draws are pathwise, no score), so that it can be a
/// guide's family in a [`crate::LatentVariableModel`]: `latent::pathwise_guide!(MyFamily);`.
/// (Rust's coherence rules forbid one blanket implementation for every
/// reparameterizable family beside the discrete ones.)
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::{Distribution, Events, GuideDistribution, PerExample, Real, Reparameterizable};
///
/// /// A point mass at `loc`, drawn pathwise (`z = loc`).
/// struct Point<N: Dim, E: Dtype, D: Device<E>, T> { loc: Events<N, E, D, T> }
/// impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for Point<N, E, D, T> {
///     type Tape = T;
///     fn batch_size(&self) -> usize { self.loc.shape().0 }
///     fn device(&self) -> D { self.loc.device().clone() }
///     fn log_prob(self, x: Events<N, E, D, T>) -> latent::Result<PerExample<E, D, T>> {
///         Ok((self.loc - x).square().sum::<(usize,), Axis<1>>().negate())
///     }
///     fn sample(&self) -> Events<N, E, D> { self.loc.retaped() }
///     fn mean(self) -> Events<N, E, D, T> { self.loc }
///     fn fork(&self) -> Self { Point { loc: self.loc.with_empty_tape() } }
///     fn repeat(self, n: usize) -> Self { Point { loc: latent::ops::repeat_rows(self.loc, n) } }
///     fn into_tape(self) -> T { self.loc.split_tape().1 }
/// }
/// impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D> for Point<N, E, D, T> {
///     fn rsample(self) -> Events<N, E, D, T> { self.loc }
/// }
/// latent::pathwise_guide!(Point);
///
/// let dev = Cpu::default();
/// let q = Point { loc: dev.tensor_from_vec(vec![1.5f64], (1, Const::<1>)) };
/// let (z, score) = q.draw()?;
/// assert_eq!((z.as_vec(), score.is_none()), (vec![1.5], true));
/// # Ok::<(), latent::Error>(())
/// ```
#[macro_export]
macro_rules! pathwise_guide {
    ($family:ident) => {
        impl<
                N: $crate::__dfdx::prelude::Dim,
                E: $crate::Real,
                D: $crate::__dfdx::prelude::Device<E>,
                T: $crate::__dfdx::prelude::Tape<E, D>,
            > $crate::GuideDistribution<N, E, D> for $family<N, E, D, T>
        {
            fn draw(self) -> $crate::Result<$crate::distributions::Drawn<N, E, D, T>> {
                $crate::distributions::pathwise_draw(self)
            }

            fn draw_with_log_prob(self) -> $crate::Result<$crate::GuideDraw<N, E, D, T>> {
                $crate::distributions::pathwise_draw_with_log_prob(self)
            }
        }
    };
}

/// A discrete draw scored twice: `log q(z)` on the original's tape (so the networks that
/// made the parameters get their gradient) and the score on a fork's.
fn scored<N: Dim, E: Dtype, D: Device<E>, Q: Distribution<N, E, D>>(
    q: Q,
) -> Result<GuideDraw<N, E, D, Q::Tape>> {
    let z = q.sample();
    let score = q.fork().log_prob(z.clone().retaped())?;
    let log_q = q.log_prob(z.clone().retaped())?;
    Ok(GuideDraw {
        z: z.retaped(),
        log_q,
        score: Some(score),
    })
}

/// A discrete draw and its score on the original's tape.
fn score_only<N: Dim, E: Dtype, D: Device<E>, Q: Distribution<N, E, D>>(
    q: Q,
) -> Result<Drawn<N, E, D, Q::Tape>> {
    let z = q.sample();
    let score = q.log_prob(z.clone().retaped())?;
    Ok((z.retaped(), Some(score)))
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> GuideDistribution<N, E, D>
    for Bernoulli<N, E, D, T>
{
    fn draw(self) -> Result<Drawn<N, E, D, T>> {
        score_only(self)
    }

    fn draw_with_log_prob(self) -> Result<GuideDraw<N, E, D, T>> {
        scored(self)
    }

    /// The binary Concrete (relaxed Bernoulli) of Maddison et al. 2017, §3.3:
    /// `σ((ℓ + L) / τ)` with logistic noise `L = log u − log(1 − u)`.
    fn relaxed_rsample(self, temperature: f64) -> Option<Events<N, E, D, T>> {
        let dev = self.logits.device().clone();
        let shape = *self.logits.shape();
        let tiny = E::min_positive_value();
        let u = E::uniform01(&dev, &shape).clamp(
            tiny.to_f64().unwrap_or(0.0),
            1.0 - E::epsilon().to_f64().unwrap_or(0.0),
        );
        let noise = u.clone().ln() - (dev.ones_like(&shape) - u).ln();
        Some(((self.logits + noise) * cst::<E>(1.0 / temperature)).sigmoid())
    }
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> GuideDistribution<K, E, D>
    for Categorical<K, E, D, T>
{
    fn draw(self) -> Result<Drawn<K, E, D, T>> {
        score_only(self)
    }

    fn draw_with_log_prob(self) -> Result<GuideDraw<K, E, D, T>> {
        scored(self)
    }

    /// The Gumbel-softmax / Concrete relaxation (Jang et al. 2017; Maddison et al. 2017):
    /// `softmax((ℓ + g) / τ)`, `g ~ Gumbel(0, 1)`.
    fn relaxed_rsample(self, temperature: f64) -> Option<Events<K, E, D, T>> {
        super::RelaxedOneHotCategorical::new(self.logits, temperature)
            .ok()
            .map(Reparameterizable::rsample)
    }
}
