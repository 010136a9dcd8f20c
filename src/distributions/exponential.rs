//! The exponential distribution over positive reals.

use dfdx::prelude::*;

use super::{
    check_shape, check_support, Distribution, Entropy, Mode, Reparameterizable, ValueSupport,
    Variance,
};
use crate::error::Result;
use crate::kernels::ops::{cst, repeat_rows, Events, PerExample, Real};

/// A batch of independent exponential distributions over `[0, ∞)^N`, `Exponential(λ)`
/// (`torch.distributions.Exponential(rate)`), with the rate on the unconstrained
/// `log_rate = ln λ`, shape `(batch, N)`.
///
/// # Formula
/// - `log_prob(x) = Σ_i ln λ_i − λ_i x_i`, nats;
/// - `rsample() = −ln(1 − u) / λ`, `u ~ U[0, 1)` (inversion), pathwise in `λ`;
/// - mean `1/λ`, variance `1/λ²`, mode 0, entropy `Σ_i 1 − ln λ_i`.
///
/// Source: Johnson, Kotz & Balakrishnan, *Continuous Univariate Distributions* Vol. 1
/// (1994), ch. 19.
pub struct Exponential<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `ln λ`, shape `(batch, N)`.
    pub log_rate: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Exponential<N, E, D, T> {
    /// An exponential from its log-rate (any real value), shape `(batch, N)`.
    pub fn new(log_rate: Events<N, E, D, T>) -> Self {
        Self { log_rate }
    }

    /// The rate `λ`, shape `(batch, N)`.
    pub fn rate(self) -> Events<N, E, D, T> {
        self.log_rate.exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>> Exponential<N, E, D> {
    /// An exponential from host rates (`batch · N`, row-major), checked.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the length is not a multiple of `N`;
    /// [`crate::Error::InvalidSetting`] for a rate that is not positive and finite.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::Exponential;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// // Exponential(λ = 2): ln p(1) = ln λ − λ.
    /// let e = Exponential::from_rate(&dev, Const::<1>, &[2.0f64])?;
    /// let lp = e.log_prob(dev.tensor_from_vec(vec![1.0], (1, Const::<1>)))?;
    /// assert!((lp.as_vec()[0] - (2f64.ln() - 2.0)).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn from_rate(dev: &D, dim: N, rate: &[E]) -> Result<Self> {
        let v = super::host_positive(dev, "Exponential::from_rate (rate)", dim, rate)?;
        Ok(Self { log_rate: v.ln() })
    }
}

/// `−ln(1 − u)`, `u ~ U[0, 1)`: standard exponential draws, finite.
fn standard_exponential<N: Dim, E: Real, D: Device<E>>(
    dev: &D,
    shape: &(usize, N),
) -> Events<N, E, D> {
    (-E::uniform01(dev, shape) + E::one()).ln().negate()
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D>
    for Exponential<N, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.log_rate.shape().0
    }

    fn device(&self) -> D {
        self.log_rate.device().clone()
    }

    /// # Errors
    /// [`crate::Error::ShapeMismatch`]; [`crate::Error::InvalidSetting`] for a negative
    /// or non-finite event (naming its row and column).
    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("Exponential::log_prob", self.log_rate.shape(), x.shape())?;
        check_support("Exponential", &x, ValueSupport::NonNegative)?;
        let rate = self.log_rate.with_empty_tape().exp();
        let lp = self.log_rate - rate * x;
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        let eps = standard_exponential(self.log_rate.device(), self.log_rate.shape());
        eps * self.log_rate.retaped::<NoneTape>().negate().exp()
    }

    fn mean(self) -> Events<N, E, D, T> {
        self.log_rate.negate().exp()
    }

    fn fork(&self) -> Self {
        Self {
            log_rate: self.log_rate.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            log_rate: repeat_rows(self.log_rate, n),
        }
    }

    fn into_tape(self) -> T {
        self.log_rate.split_tape().1
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D>
    for Exponential<N, E, D, T>
{
    fn rsample(self) -> Events<N, E, D, T> {
        let eps = standard_exponential(self.log_rate.device(), self.log_rate.shape());
        self.log_rate.negate().exp() * eps
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D> for Exponential<N, E, D, T> {
    /// `1/λ²`.
    fn variance(self) -> Events<N, E, D, T> {
        (self.log_rate * cst::<E>(-2.0)).exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for Exponential<N, E, D, T> {
    /// 0.
    fn mode(&self) -> Events<N, E, D> {
        self.log_rate.device().zeros_like(self.log_rate.shape())
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for Exponential<N, E, D, T> {
    type Tape = T;
    /// `Σ_i 1 − ln λ_i`.
    fn entropy(self) -> PerExample<E, D, T> {
        (self.log_rate.negate() + E::one()).sum::<(usize,), Axis<1>>()
    }
}
