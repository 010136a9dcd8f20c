//! The Gamma distribution over positive reals, with implicit reparameterization.

use dfdx::prelude::*;

use super::{
    check_shape, check_support, Distribution, Entropy, Mode, Reparameterizable, ValueSupport,
    Variance,
};
use crate::error::Result;
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real};
use crate::special::{digamma, lgamma, scalar::standard_gamma_grad, with_gradient};

/// A batch of independent Gamma distributions over `(0, ∞)^N`, `Gamma(α, β)` with
/// concentration `α` and rate `β` (`torch.distributions.Gamma(concentration, rate)`),
/// both on the unconstrained log scale, shape `(batch, N)` each.
///
/// # Formula
/// - `log_prob(x) = Σ_i α_i ln β_i + (α_i − 1) ln x_i − β_i x_i − ln Γ(α_i)`, nats;
/// - mean `α/β`, variance `α/β²`, mode `max(α − 1, 0)/β` (as torch);
/// - entropy `Σ_i α_i − ln β_i + ln Γ(α_i) + (1 − α_i) ψ(α_i)`;
/// - `rsample()`: `z = g/β` with `g ~ Gamma(α, 1)` drawn by rand_distr (Marsaglia &
///   Tsang 2000), and the **implicit reparameterization** gradient
///   `∂g/∂α = −(∂F(g; α)/∂α) / p(g; α)` of Figurnov, Mohamed & Mnih 2018 (eq. 6,
///   [`standard_gamma_grad`]), which is what `torch.distributions.Gamma.rsample`
///   computes (torch approximates it in single precision; this is the series, exact to
///   `f64`).
///
/// Draws below the dtype's smallest positive normal number (concentrations far below
/// 1 in `f32`) are raised to it, as torch does, so that `log_prob` of a draw is finite.
///
/// Source: Johnson, Kotz & Balakrishnan, *Continuous Univariate Distributions* Vol. 1
/// (1994), ch. 17.
pub struct Gamma<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `ln α`, shape `(batch, N)`.
    pub log_concentration: Events<N, E, D, T>,
    /// `ln β`, shape `(batch, N)`.
    pub log_rate: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Gamma<N, E, D, T> {
    /// A Gamma from `ln α` and `ln β` (any real values), shape `(batch, N)` each.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the shapes differ.
    pub fn new(
        log_concentration: Events<N, E, D, T>,
        log_rate: Events<N, E, D, T>,
    ) -> Result<Self> {
        check_shape(
            "Gamma::new (log_rate)",
            log_concentration.shape(),
            log_rate.shape(),
        )?;
        Ok(Self {
            log_concentration,
            log_rate,
        })
    }

    /// The concentration `α`, shape `(batch, N)`.
    pub fn concentration(self) -> Events<N, E, D, T> {
        self.log_concentration.exp()
    }

    /// The rate `β`, shape `(batch, N)`.
    pub fn rate(self) -> Events<N, E, D, T> {
        self.log_rate.exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>> Gamma<N, E, D> {
    /// A Gamma from host concentrations and rates (`batch · N` each, row-major), checked.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] for lengths that differ or are not multiples of
    /// `N`; [`crate::Error::InvalidSetting`] for a value that is not positive and finite.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::Gamma;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// // Gamma(α = 2, β = 3): p(x) = β^α x^(α−1) e^(−βx) / Γ(α).
    /// let g = Gamma::from_host(&dev, Const::<1>, &[2.0f64], &[3.0])?;
    /// let lp = g.log_prob(dev.tensor_from_vec(vec![1.0], (1, Const::<1>)))?;
    /// assert!((lp.as_vec()[0] - (2.0 * 3f64.ln() - 3.0)).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn from_host(dev: &D, dim: N, concentration: &[E], rate: &[E]) -> Result<Self> {
        let a = super::host_positive(dev, "Gamma::from_host (concentration)", dim, concentration)?;
        let b = super::host_positive(dev, "Gamma::from_host (rate)", dim, rate)?;
        Self::new(a.ln(), b.ln())
    }
}

/// Standard Gamma draws `g ~ Gamma(α, 1)` for the values of `alpha`, computed on the
/// host, with `∂g/∂α` (implicit reparameterization) recorded on `alpha`'s tape: the
/// result is `(α ⊙ ∂g/∂α − α₀ ∂g/∂α) + g₀` (see [`crate::special`] for why the first
/// difference is exactly zero). Draws are at least `E`'s smallest positive normal.
pub(crate) fn standard_gamma<S: Shape, E: Real, D: Device<E>, T: Tape<E, D>>(
    alpha: Tensor<S, E, D, T>,
) -> Tensor<S, E, D, T> {
    use rand_distr::Distribution as _;
    let mut rng = super::host_rng::<E, D>(alpha.device());
    let tiny = E::min_positive_value()
        .to_f64()
        .unwrap_or(f64::MIN_POSITIVE);
    let a = to_f64_vec(&alpha);
    let g: Vec<f64> = a
        .iter()
        .map(|&a| match rand_distr::Gamma::new(a, 1.0) {
            // Rounded to the dtype first, so the slope is taken at the value returned.
            Ok(d) => cst::<E>(d.sample(&mut rng).max(tiny))
                .to_f64()
                .unwrap_or(f64::NAN),
            Err(_) => f64::NAN,
        })
        .collect();
    let slope = if T::OWNS_TAPE {
        a.iter()
            .zip(&g)
            .map(|(&a, &g)| standard_gamma_grad(a, g))
            .collect()
    } else {
        Vec::new()
    };
    with_gradient(alpha, &g, slope)
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for Gamma<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.log_rate.shape().0
    }

    fn device(&self) -> D {
        self.log_rate.device().clone()
    }

    /// # Errors
    /// [`crate::Error::ShapeMismatch`]; [`crate::Error::InvalidSetting`] for an event
    /// that is not positive and finite (naming its row and column).
    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("Gamma::log_prob", self.log_rate.shape(), x.shape())?;
        check_support("Gamma", &x, ValueSupport::Positive)?;
        let a1 = self.log_concentration.with_empty_tape().exp();
        let a2 = self.log_concentration.with_empty_tape().exp();
        let a = self.log_concentration.exp();
        let rate = self.log_rate.with_empty_tape().exp();
        let log_x = x.with_empty_tape().ln();
        let lp = a * self.log_rate + (a1 - E::one()) * log_x - rate * x - lgamma(a2);
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        let a = self.log_concentration.retaped::<NoneTape>().exp();
        standard_gamma(a) * self.log_rate.retaped::<NoneTape>().negate().exp()
    }

    fn mean(self) -> Events<N, E, D, T> {
        (self.log_concentration - self.log_rate).exp()
    }

    fn fork(&self) -> Self {
        Self {
            log_concentration: self.log_concentration.with_empty_tape(),
            log_rate: self.log_rate.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            log_concentration: repeat_rows(self.log_concentration, n),
            log_rate: repeat_rows(self.log_rate, n),
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.log_concentration.split_tape();
        let (_, b) = self.log_rate.split_tape();
        a.merge(b)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D>
    for Gamma<N, E, D, T>
{
    fn rsample(self) -> Events<N, E, D, T> {
        standard_gamma(self.log_concentration.exp()) * self.log_rate.negate().exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D> for Gamma<N, E, D, T> {
    /// `α/β²`.
    fn variance(self) -> Events<N, E, D, T> {
        (self.log_concentration - self.log_rate * cst::<E>(2.0)).exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for Gamma<N, E, D, T> {
    /// `max(α − 1, 0)/β` (0 for `α ≤ 1`, where the density is largest at the origin).
    fn mode(&self) -> Events<N, E, D> {
        let a = self.log_concentration.retaped::<NoneTape>().exp();
        (a - E::one()).relu() * self.log_rate.retaped::<NoneTape>().negate().exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for Gamma<N, E, D, T> {
    type Tape = T;
    /// `Σ_i α_i − ln β_i + ln Γ(α_i) + (1 − α_i) ψ(α_i)`.
    fn entropy(self) -> PerExample<E, D, T> {
        let a1 = self.log_concentration.with_empty_tape().exp();
        let a2 = self.log_concentration.with_empty_tape().exp();
        let a3 = self.log_concentration.with_empty_tape().exp();
        let a = self.log_concentration.exp();
        let h = a - self.log_rate + lgamma(a1) - (a2 - E::one()) * digamma(a3);
        h.sum::<(usize,), Axis<1>>()
    }
}
