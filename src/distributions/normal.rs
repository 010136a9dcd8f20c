//! The diagonal Normal distribution and the standard-normal prior.

use std::marker::PhantomData;

use dfdx::prelude::*;

use super::{check_shape, Distribution, Entropy, Mode, Reparameterizable, Variance};
use crate::error::Result;
use crate::kernels::ops::{cst, repeat_rows, Events, PerExample, Real, LN_2PI};

/// A batch of diagonal Normal distributions `N(μ, diag σ²)` over `R^N`.
///
/// Parameterized by `loc = μ` and the unconstrained `log_scale = log σ` (so any real
/// `log_scale` is valid and `σ = exp(log_scale)` is always positive), both of shape
/// `(batch, N)`.
///
/// - `log_prob(x) = Σ_i −½((x_i − μ_i)/σ_i)² − log σ_i − ½ log 2π`
/// - `rsample() = μ + σ ⊙ ε`, `ε ~ N(0, I)` (Kingma & Welling 2014, §2.4), so
///   `∂z/∂μ = 1` and `∂z/∂log σ = ε σ`.
/// - `entropy() = Σ_i ½ + ½ log 2π + log σ_i`
pub struct Normal<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// The mean `μ`, shape `(batch, N)`.
    pub loc: Events<N, E, D, T>,
    /// `log σ`, shape `(batch, N)`.
    pub log_scale: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Normal<N, E, D, T> {
    /// A Normal from its mean and log standard deviation.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if `loc` and `log_scale` have different shapes.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::{Distribution, Normal};
    ///
    /// let dev = Cpu::default();
    /// // One example in two dimensions: μ = 0, ln σ = 0.
    /// let q = Normal::new(
    ///     dev.tensor_from_vec(vec![0.0f64, 0.0], (1, Const::<2>)),
    ///     dev.tensor_from_vec(vec![0.0, 0.0], (1, Const::<2>)),
    /// )?;
    /// let lp = q.log_prob(dev.tensor_from_vec(vec![0.0, 0.0], (1, Const::<2>)))?;
    /// // −½ ln 2π per dimension, summed over the two.
    /// assert!((lp.as_vec()[0] + (2.0 * std::f64::consts::PI).ln()).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(loc: Events<N, E, D, T>, log_scale: Events<N, E, D, T>) -> Result<Self> {
        check_shape("Normal::new (log_scale)", loc.shape(), log_scale.shape())?;
        Ok(Self { loc, log_scale })
    }

    /// The standard deviation `σ = exp(log_scale)`, shape `(batch, N)`.
    pub fn scale(self) -> Events<N, E, D, T> {
        self.log_scale.exp()
    }

    /// The variance `σ²`, shape `(batch, N)`.
    pub fn variance(self) -> Events<N, E, D, T> {
        (self.log_scale * cst::<E>(2.0)).exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D> for Normal<N, E, D, T> {
    /// `σ²`.
    fn variance(self) -> Events<N, E, D, T> {
        Normal::variance(self)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for Normal<N, E, D, T> {
    /// `μ`.
    fn mode(&self) -> Events<N, E, D> {
        self.loc.retaped::<NoneTape>()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D>
    for StandardNormal<N, E, D, T>
{
    /// 1.
    fn variance(self) -> Events<N, E, D, T> {
        self.device
            .ones_like(&(self.batch, self.dim))
            .put_tape(T::default())
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for StandardNormal<N, E, D, T> {
    /// 0.
    fn mode(&self) -> Events<N, E, D> {
        self.device.zeros_like(&(self.batch, self.dim))
    }
}

impl<N: Dim, E: Real, D: Device<E>> Normal<N, E, D, NoneTape> {
    /// A Normal from its mean and standard deviation given as host values (row-major,
    /// `batch · N` values each), checked.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if a slice's length is not a multiple of `N` or the two
    /// differ; [`Error::InvalidSetting`](crate::Error::InvalidSetting) if a `scale` is not positive and finite or a
    /// `loc` is not finite.
    pub fn from_host(dev: &D, dim: N, loc: &[E], scale: &[E]) -> Result<Self> {
        let (loc, log_scale) = super::host_loc_scale::<N, E, D>(dev, "Normal", dim, loc, scale)?;
        Ok(Self { loc, log_scale })
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for Normal<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.loc.shape().0
    }

    fn device(&self) -> D {
        self.loc.device().clone()
    }

    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("Normal::log_prob", self.loc.shape(), x.shape())?;
        let ls = self.log_scale.with_empty_tape();
        let z = (x - self.loc) * (-self.log_scale).exp();
        let lp = (z.square() * cst::<E>(-0.5)) - ls - cst::<E>(0.5 * LN_2PI);
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        let eps = E::standard_normal(self.loc.device(), self.loc.shape());
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

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D>
    for Normal<N, E, D, T>
{
    fn rsample(self) -> Events<N, E, D, T> {
        let eps = E::standard_normal(self.loc.device(), self.loc.shape());
        self.loc + self.log_scale.exp() * eps
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for Normal<N, E, D, T> {
    type Tape = T;
    fn entropy(self) -> PerExample<E, D, T> {
        (self.log_scale + cst::<E>(0.5 + 0.5 * LN_2PI)).sum::<(usize,), Axis<1>>()
    }
}

/// A batch of standard Normal distributions `N(0, I)` over `R^N`: the usual VAE prior.
///
/// It has no parameters, so its tape type `T` is whatever the computation it joins
/// uses. `log_prob(x) = Σ_i −½ x_i² − ½ log 2π`; its KL from a [`Normal`] has the fast
/// closed form of Kingma & Welling 2014, Appendix B.
#[derive(Debug)]
pub struct StandardNormal<N: Dim, E, D, T = NoneTape> {
    batch: usize,
    dim: N,
    device: D,
    marker: PhantomData<fn() -> (E, T)>,
}

impl<N: Dim, E, D: Clone, T> Clone for StandardNormal<N, E, D, T> {
    fn clone(&self) -> Self {
        Self {
            batch: self.batch,
            dim: self.dim,
            device: self.device.clone(),
            marker: PhantomData,
        }
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> StandardNormal<N, E, D, T> {
    /// `batch` standard Normals over `R^N` on `device`; `dim` is `N`'s value
    /// (`Const` for a size fixed at compile time, a `usize` for one chosen at run time).
    pub fn new(batch: usize, dim: N, device: &D) -> Self {
        Self {
            batch,
            dim,
            device: device.clone(),
            marker: PhantomData,
        }
    }

    /// The event size `N`.
    pub fn dim(&self) -> N {
        self.dim
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D>
    for StandardNormal<N, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn device(&self) -> D {
        self.device.clone()
    }

    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape(
            "StandardNormal::log_prob",
            &(self.batch, self.dim),
            x.shape(),
        )?;
        let lp = x.square() * cst::<E>(-0.5) - cst::<E>(0.5 * LN_2PI);
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        E::standard_normal(&self.device, &(self.batch, self.dim))
    }

    fn mean(self) -> Events<N, E, D, T> {
        self.device
            .zeros_like(&(self.batch, self.dim))
            .put_tape(T::default())
    }

    fn fork(&self) -> Self {
        self.clone()
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            batch: self.batch * n,
            ..self
        }
    }

    fn into_tape(self) -> T {
        T::default()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D>
    for StandardNormal<N, E, D, T>
{
    fn rsample(self) -> Events<N, E, D, T> {
        self.sample().put_tape(T::default())
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for StandardNormal<N, E, D, T> {
    type Tape = T;
    fn entropy(self) -> PerExample<E, D, T> {
        self.device.ones_like(&(self.batch,)).put_tape(T::default())
            * cst::<E>(self.dim.size() as f64 * (0.5 + 0.5 * LN_2PI))
    }
}
