//! The Beta distribution over proportions, reparameterized through two Gammas.

use dfdx::prelude::*;

use super::gamma::standard_gamma;
use super::{
    check_shape, check_support, Distribution, Entropy, Mode, Reparameterizable, ValueSupport,
    Variance,
};
use crate::error::Result;
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real};
use crate::special::{digamma, log_beta};

/// A batch of independent Beta distributions over `(0, 1)^N`, `Beta(a, b)`
/// (`torch.distributions.Beta(concentration1, concentration0)`: `a` weighs towards 1,
/// `b` towards 0), both concentrations on the unconstrained log scale, shape
/// `(batch, N)` each.
///
/// # Formula
/// - `log_prob(x) = Σ_i (a_i − 1) ln x_i + (b_i − 1) ln(1 − x_i) − ln B(a_i, b_i)`;
/// - mean `a/(a+b)`, variance `ab / ((a+b)² (a+b+1))`;
/// - mode `(a − 1)/(a + b − 2)` where `a, b > 1`; NaN elsewhere (no interior mode), as
///   TFP's `Beta.mode` with `allow_nan_stats`;
/// - entropy `Σ_i ln B(a_i, b_i) − (a_i − 1) ψ(a_i) − (b_i − 1) ψ(b_i) + (a_i + b_i − 2) ψ(a_i + b_i)`;
/// - `rsample()`: `x = g_a / (g_a + g_b)` with `g_a ~ Gamma(a, 1)`, `g_b ~ Gamma(b, 1)`
///   reparameterized implicitly (Figurnov, Mohamed & Mnih 2018, §3.3; as torch), then
///   kept within `[tiny, 1 − ε]` of the dtype, as torch's `clamp_probs`, so that
///   `log_prob` of a draw is finite.
///
/// Source: Johnson, Kotz & Balakrishnan, *Continuous Univariate Distributions* Vol. 2
/// (1995), ch. 25.
pub struct Beta<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `ln a` (torch's `concentration1`), shape `(batch, N)`.
    pub log_concentration1: Events<N, E, D, T>,
    /// `ln b` (torch's `concentration0`), shape `(batch, N)`.
    pub log_concentration0: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Beta<N, E, D, T> {
    /// A Beta from `ln a` and `ln b` (any real values), shape `(batch, N)` each.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the shapes differ.
    pub fn new(
        log_concentration1: Events<N, E, D, T>,
        log_concentration0: Events<N, E, D, T>,
    ) -> Result<Self> {
        check_shape(
            "Beta::new (log_concentration0)",
            log_concentration1.shape(),
            log_concentration0.shape(),
        )?;
        Ok(Self {
            log_concentration1,
            log_concentration0,
        })
    }
}

impl<N: Dim, E: Real, D: Device<E>> Beta<N, E, D> {
    /// A Beta from host concentrations (`batch · N` each, row-major), checked.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] for lengths that differ or are not multiples of
    /// `N`; [`crate::Error::InvalidSetting`] for a value that is not positive and finite.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::Beta;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// // Beta(2, 2) has density 6 x (1 − x): 1.5 at ½.
    /// let b = Beta::from_host(&dev, Const::<1>, &[2.0f64], &[2.0])?;
    /// let lp = b.log_prob(dev.tensor_from_vec(vec![0.5], (1, Const::<1>)))?;
    /// assert!((lp.as_vec()[0] - 1.5f64.ln()).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn from_host(dev: &D, dim: N, concentration1: &[E], concentration0: &[E]) -> Result<Self> {
        let a = super::host_positive(dev, "Beta::from_host (concentration1)", dim, concentration1)?;
        let b = super::host_positive(dev, "Beta::from_host (concentration0)", dim, concentration0)?;
        Self::new(a.ln(), b.ln())
    }
}

/// `g_a / (g_a + g_b)` kept within `[tiny, 1 − ε]`.
fn beta_from_gammas<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    a: Events<N, E, D, T>,
    b: Events<N, E, D, T>,
) -> Events<N, E, D, T> {
    let ga = standard_gamma(a);
    let gb = standard_gamma(b);
    let total = ga.with_empty_tape() + gb;
    let tiny = E::min_positive_value()
        .to_f64()
        .unwrap_or(f64::MIN_POSITIVE);
    let top = (E::one() - E::epsilon()).to_f64().unwrap_or(1.0);
    (ga / total).clamp(tiny, top)
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for Beta<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.log_concentration1.shape().0
    }

    fn device(&self) -> D {
        self.log_concentration1.device().clone()
    }

    /// # Errors
    /// [`crate::Error::ShapeMismatch`]; [`crate::Error::InvalidSetting`] for an event
    /// outside `(0, 1)` (naming its row and column).
    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("Beta::log_prob", self.log_concentration1.shape(), x.shape())?;
        check_support("Beta", &x, ValueSupport::UnitInterval)?;
        let a2 = self.log_concentration1.with_empty_tape().exp();
        let b2 = self.log_concentration0.with_empty_tape().exp();
        let a = self.log_concentration1.exp();
        let b = self.log_concentration0.exp();
        let log_x = x.with_empty_tape().ln();
        let log_1mx = (x.negate() + E::one()).ln();
        let lp = (a - E::one()) * log_x + (b - E::one()) * log_1mx - log_beta(a2, b2);
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        beta_from_gammas(
            self.log_concentration1.retaped::<NoneTape>().exp(),
            self.log_concentration0.retaped::<NoneTape>().exp(),
        )
    }

    fn mean(self) -> Events<N, E, D, T> {
        let total = self.log_concentration1.with_empty_tape().exp() + self.log_concentration0.exp();
        self.log_concentration1.exp() * total.recip()
    }

    fn fork(&self) -> Self {
        Self {
            log_concentration1: self.log_concentration1.with_empty_tape(),
            log_concentration0: self.log_concentration0.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            log_concentration1: repeat_rows(self.log_concentration1, n),
            log_concentration0: repeat_rows(self.log_concentration0, n),
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.log_concentration1.split_tape();
        let (_, b) = self.log_concentration0.split_tape();
        a.merge(b)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D> for Beta<N, E, D, T> {
    fn rsample(self) -> Events<N, E, D, T> {
        beta_from_gammas(self.log_concentration1.exp(), self.log_concentration0.exp())
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D> for Beta<N, E, D, T> {
    /// `ab / ((a+b)² (a+b+1))`.
    fn variance(self) -> Events<N, E, D, T> {
        let s1 = self.log_concentration1.with_empty_tape().exp()
            + self.log_concentration0.with_empty_tape().exp();
        let s2 = s1.with_empty_tape();
        let ab = self.log_concentration1.exp() * self.log_concentration0.exp();
        ab / (s1.square() * (s2 + E::one()))
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for Beta<N, E, D, T> {
    /// `(a − 1)/(a + b − 2)` where `a > 1` and `b > 1`; NaN elsewhere.
    fn mode(&self) -> Events<N, E, D> {
        let a = to_f64_vec(&self.log_concentration1.retaped::<NoneTape>().exp());
        let b = to_f64_vec(&self.log_concentration0.retaped::<NoneTape>().exp());
        let m: Vec<E> = a
            .iter()
            .zip(&b)
            .map(|(&a, &b)| {
                cst::<E>(if a > 1.0 && b > 1.0 {
                    (a - 1.0) / (a + b - 2.0)
                } else {
                    f64::NAN
                })
            })
            .collect();
        self.log_concentration1
            .device()
            .tensor_from_vec(m, *self.log_concentration1.shape())
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for Beta<N, E, D, T> {
    type Tape = T;
    /// `Σ_i ln B(a, b) − (a − 1) ψ(a) − (b − 1) ψ(b) + (a + b − 2) ψ(a + b)`.
    fn entropy(self) -> PerExample<E, D, T> {
        let la = self.log_concentration1;
        let lb = self.log_concentration0;
        let e = |t: &Events<N, E, D, T>| t.with_empty_tape().exp();
        let (a1, a2) = (e(&la), e(&la));
        let (b1, b2) = (e(&lb), e(&lb));
        let s1 = e(&la) + e(&lb);
        let s2 = s1.with_empty_tape();
        let h = log_beta(la.exp(), lb.exp())
            - (a1 - E::one()) * digamma(a2)
            - (b1 - E::one()) * digamma(b2)
            + (s1 - cst::<E>(2.0)) * digamma(s2);
        h.sum::<(usize,), Axis<1>>()
    }
}
