//! A reparameterizable distribution pushed through a bijector.

use dfdx::prelude::*;

use super::Bijector;
use crate::distributions::{monte_carlo_mean, Distribution, Reparameterizable};
use crate::error::{Error, Result};
use crate::kernels::ops::{Events, PerExample, Real, Scored};

/// The distribution of `y = f(z₀)` for `z₀ ~ base` and a [`Bijector`] `f` (a flow of
/// several steps is a `Vec` of bijectors): a batch over `R^N`, shape `(batch, N)`.
///
/// Change of variables (Rezende & Mohamed 2015, eq. 6):
/// `log q(y) = log q₀(z₀) − log |det ∂f/∂z₀|`, `z₀ = f⁻¹(y)`.
///
/// - [`Reparameterizable::rsample_with_log_prob`] draws `z₀` by the base's
///   reparameterization and returns `y` and `log q(y)` from the forward pass alone (no
///   inverse needed): this is what [`crate::Elbo`] (Monte Carlo KL) and
///   [`crate::ImportanceWeighted`] call, so a flow guide trains and evaluates with the
///   stock estimators.
/// - [`Distribution::log_prob`] at an arbitrary `y` needs [`Bijector::inverse`]: it is
///   [`Error::Unsupported`] for a bijector without one ([`super::Planar`]).
/// - [`Distribution::mean`] has no closed form: it is the average of
///   [`MEAN_DRAWS`](crate::distributions::MEAN_DRAWS) reparameterized draws (a Monte Carlo estimate, drawn from the
///   device's generator).
///
/// # Examples
/// A planar step with `u = w · ln(e − 1) / ‖w‖²` has `û = 0` (see [`super::Planar`]):
/// the identity, so the flow's `log q` is the base Normal's.
/// ```
/// use dfdx::prelude::*;
/// use latent::flows::{Planar, TransformedDistribution};
/// use latent::prelude::*;
///
/// let dev = Cpu::default();
/// let base: Normal<usize, f64, Cpu> =
///     Normal::from_host(&dev, 2, &[0.5, -1.0], &[1.0, 2.0]).unwrap();
/// let flat = |v: [f64; 2]| dev.tensor_from_vec(v.to_vec(), (1, 2));
/// let c = (std::f64::consts::E - 1.0).ln() / 1.25; // ‖w‖² = 1.25
/// let step = Planar::new(flat([c, 0.5 * c]), flat([1.0, 0.5]), dev.tensor_from_vec(vec![0.1], (1,)))
///     .unwrap();
/// let q = TransformedDistribution::new(base, step).unwrap();
/// let (z, log_q) = q.rsample_with_log_prob().unwrap();
/// let exact: Normal<usize, f64, Cpu> =
///     Normal::from_host(&dev, 2, &[0.5, -1.0], &[1.0, 2.0]).unwrap();
/// let want = exact.log_prob(z).unwrap();
/// assert!((log_q.as_vec()[0] - want.as_vec()[0]).abs() < 1e-12);
/// ```
pub struct TransformedDistribution<B, F> {
    /// The base distribution `q₀`.
    pub base: B,
    /// The map `f` (one bijector, or a `Vec` of them applied in order).
    pub bijector: F,
}

impl<B, F> TransformedDistribution<B, F> {
    /// `f` applied to draws of `base`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the bijector's batch size is not the base's (an
    /// empty `Vec` of bijectors fits any batch).
    pub fn new<N: Dim, E: Dtype, D: Device<E>>(base: B, bijector: F) -> Result<Self>
    where
        B: Distribution<N, E, D>,
        F: Bijector<N, E, D>,
    {
        let (b, f) = (base.batch_size(), bijector.batch_size());
        if f != b && f != 0 {
            return Err(Error::shape(
                "TransformedDistribution::new (bijector batch)",
                &[b],
                &[f],
            ));
        }
        Ok(Self { base, bijector })
    }
}

impl<N, E, D, B, F> Distribution<N, E, D> for TransformedDistribution<B, F>
where
    N: Dim,
    E: Real,
    D: Device<E>,
    B: Reparameterizable<N, E, D>,
    F: Bijector<N, E, D, Tape = B::Tape>,
{
    type Tape = B::Tape;

    fn batch_size(&self) -> usize {
        self.base.batch_size()
    }

    fn device(&self) -> D {
        self.base.device()
    }

    /// `log q₀(f⁻¹(y)) − log |det ∂f/∂z₀|`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] if the bijector has no inverse; shape errors.
    fn log_prob(self, y: Events<N, E, D, Self::Tape>) -> Result<PerExample<E, D, Self::Tape>> {
        let (z0, log_det) = self.bijector.inverse(y)?;
        Ok(self.base.log_prob(z0)? - log_det)
    }

    fn sample(&self) -> Events<N, E, D> {
        self.fork().rsample().retaped::<NoneTape>()
    }

    /// The average of [`MEAN_DRAWS`](crate::distributions::MEAN_DRAWS) reparameterized draws (no closed form).
    fn mean(self) -> Events<N, E, D, Self::Tape> {
        monte_carlo_mean(self)
    }

    fn fork(&self) -> Self {
        Self {
            base: self.base.fork(),
            bijector: self.bijector.fork(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            base: self.base.repeat(n),
            bijector: self.bijector.repeat(n),
        }
    }

    fn into_tape(self) -> Self::Tape {
        self.base.into_tape().merge(self.bijector.into_tape())
    }
}

impl<N, E, D, B, F> Reparameterizable<N, E, D> for TransformedDistribution<B, F>
where
    N: Dim,
    E: Real,
    D: Device<E>,
    B: Reparameterizable<N, E, D>,
    F: Bijector<N, E, D, Tape = B::Tape>,
{
    fn rsample(self) -> Events<N, E, D, Self::Tape> {
        let (y, log_det) = self.bijector.forward(self.base.rsample());
        // The log-determinant's branch used the flow's parameters too: keep its tape,
        // so no backward operation is lost.
        let (y, tape) = y.split_tape();
        let (_, tape2) = log_det.split_tape();
        y.put_tape(tape.merge(tape2))
    }

    /// `z₀ ~ base` (pathwise), `y = f(z₀)` and `log q(y) = log q₀(z₀) − log|det|`, from
    /// the forward pass: no inverse needed.
    fn rsample_with_log_prob(self) -> Result<Scored<N, E, D, Self::Tape>> {
        let (z0, log_q0) = self.base.rsample_with_log_prob()?;
        let (y, log_det) = self.bijector.forward(z0);
        Ok((y, log_q0 - log_det))
    }
}

impl<N, E, D, B, F> crate::GuideDistribution<N, E, D> for TransformedDistribution<B, F>
where
    N: Dim,
    E: Real,
    D: Device<E>,
    B: Reparameterizable<N, E, D>,
    F: Bijector<N, E, D, Tape = B::Tape>,
{
    fn draw(self) -> Result<crate::distributions::Drawn<N, E, D, Self::Tape>> {
        crate::distributions::pathwise_draw(self)
    }

    fn draw_with_log_prob(self) -> Result<crate::GuideDraw<N, E, D, Self::Tape>> {
        crate::distributions::pathwise_draw_with_log_prob(self)
    }
}
