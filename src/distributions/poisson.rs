//! The Poisson distribution over counts.

use dfdx::prelude::*;

use super::{check_shape, check_support, draw_host, Distribution, Mode, ValueSupport, Variance};
use crate::error::Result;
use crate::kernels::ops::{repeat_rows, to_f64_vec, Events, PerExample, Real};
use crate::special::lgamma;

/// A batch of independent Poisson distributions over `{0, 1, 2, …}^N`, `Poisson(λ)`
/// (`torch.distributions.Poisson(rate)`), with the rate on the unconstrained
/// `log_rate = ln λ`, shape `(batch, N)`.
///
/// # Formula
/// - `log_prob(x) = Σ_i x_i ln λ_i − λ_i − ln Γ(x_i + 1)` (nats, summed over `N`);
/// - mean and variance `λ`, mode `⌊λ⌋` (as torch);
/// - no closed-form entropy, no pathwise sampler (a discrete family).
///
/// `sample` draws on the host (rand_distr's PTRS / inversion samplers) from a generator
/// seeded by the device's, reading the rates in place on the `Cpu`.
///
/// Source: Johnson, Kemp & Kotz, *Univariate Discrete Distributions* (2005), ch. 4.
pub struct Poisson<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `ln λ`, shape `(batch, N)`.
    pub log_rate: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Poisson<N, E, D, T> {
    /// A Poisson from its log-rate (any real value), shape `(batch, N)`.
    pub fn new(log_rate: Events<N, E, D, T>) -> Self {
        Self { log_rate }
    }

    /// The rate `λ = exp(log_rate)`, shape `(batch, N)`.
    pub fn rate(self) -> Events<N, E, D, T> {
        self.log_rate.exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>> Poisson<N, E, D> {
    /// A Poisson from host rates (`batch · N`, row-major), checked.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the length is not a multiple of `N`;
    /// [`crate::Error::InvalidSetting`] for a rate that is not positive and finite.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::Poisson;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// let p = Poisson::from_rate(&dev, Const::<1>, &[2.0f64])?;
    /// let lp = p.log_prob(dev.tensor_from_vec(vec![3.0], (1, Const::<1>)))?;
    /// // ln(2³ e⁻² / 3!)
    /// assert!((lp.as_vec()[0] - (3.0 * 2f64.ln() - 2.0 - 6f64.ln())).abs() < 1e-12);
    /// assert!(Poisson::from_rate(&dev, Const::<1>, &[-1.0f64]).is_err());
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn from_rate(dev: &D, dim: N, rate: &[E]) -> Result<Self> {
        let v = super::host_positive(dev, "Poisson::from_rate (rate)", dim, rate)?;
        Ok(Self { log_rate: v.ln() })
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for Poisson<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.log_rate.shape().0
    }

    fn device(&self) -> D {
        self.log_rate.device().clone()
    }

    /// # Errors
    /// [`crate::Error::ShapeMismatch`]; [`crate::Error::InvalidSetting`] if an event is
    /// not a non-negative integer (naming its row and column).
    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("Poisson::log_prob", self.log_rate.shape(), x.shape())?;
        check_support("Poisson", &x, ValueSupport::Counts)?;
        // ln x! of counts: data, so no gradient is recorded (a discrete event has none).
        let log_factorial = lgamma(x.retaped::<NoneTape>() + E::one());
        let rate = self.log_rate.with_empty_tape().exp();
        let lp = self.log_rate * x - rate - log_factorial;
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        let rate = to_f64_vec(&self.log_rate.retaped::<NoneTape>().exp());
        draw_host(self.log_rate.device(), *self.log_rate.shape(), |rng, i| {
            poisson_draw(rng, rate[i])
        })
    }

    fn mean(self) -> Events<N, E, D, T> {
        self.log_rate.exp()
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

/// One Poisson draw of rate `λ` (0 for `λ < 1e-16`; NaN for an invalid rate).
pub(crate) fn poisson_draw(rng: &mut rand_xoshiro::Xoshiro256PlusPlus, rate: f64) -> f64 {
    use rand_distr::Distribution as _;
    // Below ~1e-16, e^{−λ} rounds to 1 and rand_distr 0.4's inversion returns −1;
    // P(X ≥ 1) ≈ λ is then below the resolution of f64 anyway.
    if rate >= 0.0 && (-rate).exp() == 1.0 {
        return 0.0;
    }
    match rand_distr::Poisson::new(rate) {
        Ok(p) => p.sample(rng),
        Err(_) => f64::NAN,
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D> for Poisson<N, E, D, T> {
    /// `λ`.
    fn variance(self) -> Events<N, E, D, T> {
        self.log_rate.exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for Poisson<N, E, D, T> {
    /// `⌊λ⌋` (when `λ` is an integer, `λ − 1` is a mode too).
    fn mode(&self) -> Events<N, E, D> {
        super::map_host(&self.log_rate, |l| l.exp().floor())
    }
}
