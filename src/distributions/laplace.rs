//! The Laplace (double-exponential) distribution.

use dfdx::prelude::*;

use super::{check_shape, Distribution, Entropy, Mode, Reparameterizable, Variance};
use crate::error::Result;
use crate::kernels::ops::{cst, repeat_rows, Events, PerExample, Real};

/// A batch of independent Laplace distributions over `R^N`, `Laplace(μ, b)`, with the
/// scale on the unconstrained `log_scale = log b`, both of shape `(batch, N)`.
///
/// - `log_prob(x) = Σ_i −|x_i − μ_i| / b_i − log(2 b_i)`
/// - `rsample() = μ + b ⊙ (log u₁ − log u₂)`, `u₁, u₂ ~ U(0, 1)` (the difference of two
///   standard exponentials is standard Laplace), pathwise in `μ` and `b`.
/// - mean `μ`, variance `2b²`, entropy `Σ_i 1 + log(2 b_i)`.
///
/// Source: Johnson, Kotz & Balakrishnan, *Continuous Univariate Distributions* Vol. 2,
/// ch. 24; `torch.distributions.Laplace`.
pub struct Laplace<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// The location `μ` (also mean and median), shape `(batch, N)`.
    pub loc: Events<N, E, D, T>,
    /// `log b`, shape `(batch, N)`.
    pub log_scale: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Laplace<N, E, D, T> {
    /// A Laplace from its location and log-scale.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the batch sizes differ.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::Laplace;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// // Laplace(0, b = 1): p(x) = e^(−|x|) / 2.
    /// let d = Laplace::new(
    ///     dev.tensor_from_vec(vec![0.0f64], (1, Const::<1>)),
    ///     dev.tensor_from_vec(vec![0.0], (1, Const::<1>)),
    /// )?;
    /// let lp = d.log_prob(dev.tensor_from_vec(vec![-1.5], (1, Const::<1>)))?;
    /// assert!((lp.as_vec()[0] - (-1.5 - 2f64.ln())).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(loc: Events<N, E, D, T>, log_scale: Events<N, E, D, T>) -> Result<Self> {
        check_shape("Laplace::new (log_scale)", loc.shape(), log_scale.shape())?;
        Ok(Self { loc, log_scale })
    }

    /// The variance `2b²`, shape `(batch, N)`.
    pub fn variance(self) -> Events<N, E, D, T> {
        (self.log_scale * cst::<E>(2.0)).exp() * cst::<E>(2.0)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D> for Laplace<N, E, D, T> {
    /// `2b²`.
    fn variance(self) -> Events<N, E, D, T> {
        Laplace::variance(self)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for Laplace<N, E, D, T> {
    /// `μ`.
    fn mode(&self) -> Events<N, E, D> {
        self.loc.retaped::<NoneTape>()
    }
}

impl<N: Dim, E: Real, D: Device<E>> Laplace<N, E, D, NoneTape> {
    /// A Laplace from host values (`batch · N` each, row-major), checked.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) for lengths that differ or are not multiples of `N`;
    /// [`Error::InvalidSetting`](crate::Error::InvalidSetting) for a non-finite `loc` or a `scale` that is not
    /// positive and finite.
    pub fn from_host(dev: &D, dim: N, loc: &[E], scale: &[E]) -> Result<Self> {
        let (loc, log_scale) = super::host_loc_scale::<N, E, D>(dev, "Laplace", dim, loc, scale)?;
        Ok(Self { loc, log_scale })
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for Laplace<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.loc.shape().0
    }

    fn device(&self) -> D {
        self.loc.device().clone()
    }

    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("Laplace::log_prob", self.loc.shape(), x.shape())?;
        let ls = self.log_scale.with_empty_tape();
        let lp = -((x - self.loc).abs() * (-self.log_scale).exp()) - ls - cst::<E>(2f64.ln());
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        let eps = standard_laplace(self.loc.device(), self.loc.shape());
        self.loc.retaped::<NoneTape>() + self.log_scale.retaped::<NoneTape>().exp() * eps
    }

    fn mean(self) -> Events<N, E, D, T> {
        self.loc
    }

    fn fork(&self) -> Self {
        Self {
            loc: self.loc.with_empty_tape(),
            log_scale: self.log_scale.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            loc: repeat_rows(self.loc, n),
            log_scale: repeat_rows(self.log_scale, n),
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.loc.split_tape();
        let (_, b) = self.log_scale.split_tape();
        a.merge(b)
    }
}

/// Standard Laplace draws `log u₁ − log u₂`; `u` is kept away from 0 so the logs are finite.
fn standard_laplace<N: Dim, E: Real, D: Device<E>>(dev: &D, shape: &(usize, N)) -> Events<N, E, D> {
    let tiny = cst::<E>(1e-30).max(E::min_positive_value());
    let u1 = E::uniform01(dev, shape).maximum(dev.ones_like(shape) * tiny);
    let u2 = E::uniform01(dev, shape).maximum(dev.ones_like(shape) * tiny);
    u1.ln() - u2.ln()
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D>
    for Laplace<N, E, D, T>
{
    fn rsample(self) -> Events<N, E, D, T> {
        let eps = standard_laplace(self.loc.device(), self.loc.shape());
        self.loc + self.log_scale.exp() * eps
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for Laplace<N, E, D, T> {
    type Tape = T;
    fn entropy(self) -> PerExample<E, D, T> {
        (self.log_scale + cst::<E>(1.0 + 2f64.ln())).sum::<(usize,), Axis<1>>()
    }
}
