//! The negative binomial distribution over counts (torch's convention).

use dfdx::prelude::*;

use super::poisson::poisson_draw;
use super::{check_shape, check_support, draw_host, Distribution, Mode, ValueSupport, Variance};
use crate::error::Result;
use crate::kernels::ops::{repeat_rows, to_f64_vec, Events, PerExample, Real};
use crate::special::{lgamma, log_sigmoid};

/// A batch of independent negative binomial distributions over `{0, 1, 2, …}^N`,
/// `NegativeBinomial(r, ℓ)` as `torch.distributions.NegativeBinomial(total_count,
/// logits)`: the number of successes before the `r`-th failure of Bernoulli trials with
/// success probability `p = σ(ℓ)`. `r > 0` need not be an integer; it is kept on the
/// log scale, `log_total_count = ln r`. Shapes `(batch, N)` each.
///
/// # Formula
/// - `log_prob(x) = Σ_i r_i ln σ(−ℓ_i) + x_i ln σ(ℓ_i) + ln Γ(r_i + x_i) − ln Γ(x_i + 1)
///   − ln Γ(r_i)`, nats;
/// - mean `μ = r e^ℓ`, variance `μ / σ(−ℓ) = μ + μ²/r`, mode `⌊(r − 1) e^ℓ⌋` (0 for
///   `r ≤ 1`), as torch;
/// - `sample()`: `Poisson(λ)` with `λ ~ Gamma(r, rate e^{−ℓ})` (the Gamma–Poisson
///   mixture, as torch), on the host from a generator seeded by the device's.
///
/// In the mean/inverse-dispersion form of scVI (Lopez et al. 2018) with mean `μ` and
/// inverse dispersion `θ`: `r = θ`, `ℓ = ln μ − ln θ`
/// ([`NegativeBinomial::from_mean_dispersion`]).
///
/// Source: Johnson, Kemp & Kotz, *Univariate Discrete Distributions* (2005), ch. 5.
pub struct NegativeBinomial<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `ln r`, shape `(batch, N)`.
    pub log_total_count: Events<N, E, D, T>,
    /// `ℓ = ln(p / (1 − p))`, shape `(batch, N)`.
    pub logits: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> NegativeBinomial<N, E, D, T> {
    /// A negative binomial from `ln r` and the logits (any real values), shape
    /// `(batch, N)` each.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the shapes differ.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::NegativeBinomial;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// // r = 1, p = σ(0) = ½ (torch's convention): P(k) = C(k + r − 1, k) (1 − p)^r p^k = ½^(k+1).
    /// let nb = NegativeBinomial::new(
    ///     dev.tensor_from_vec(vec![0.0f64], (1, Const::<1>)),
    ///     dev.tensor_from_vec(vec![0.0], (1, Const::<1>)),
    /// )?;
    /// let lp = nb.log_prob(dev.tensor_from_vec(vec![2.0], (1, Const::<1>)))?;
    /// assert!((lp.as_vec()[0] - 0.125f64.ln()).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(log_total_count: Events<N, E, D, T>, logits: Events<N, E, D, T>) -> Result<Self> {
        check_shape(
            "NegativeBinomial::new (logits)",
            log_total_count.shape(),
            logits.shape(),
        )?;
        Ok(Self {
            log_total_count,
            logits,
        })
    }

    /// scVI's parameterization: `ln μ` (the mean) and `ln θ` (the inverse dispersion,
    /// variance `μ + μ²/θ`), i.e. `r = θ`, `ℓ = ln μ − ln θ`.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the shapes differ.
    pub fn from_mean_dispersion(
        log_mean: Events<N, E, D, T>,
        log_inverse_dispersion: Events<N, E, D, T>,
    ) -> Result<Self> {
        check_shape(
            "NegativeBinomial::from_mean_dispersion",
            log_mean.shape(),
            log_inverse_dispersion.shape(),
        )?;
        let logits = log_mean - log_inverse_dispersion.with_empty_tape();
        Self::new(log_inverse_dispersion, logits)
    }
}

/// The element-wise log-mass `r ln σ(−ℓ) + x ln σ(ℓ) + ln Γ(r + x) − ln Γ(x + 1) − ln Γ(r)`
/// with `r = e^{log_r}`, shape `(batch, N)`; the events are not checked here.
pub(crate) fn log_mass<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    log_r: Events<N, E, D, T>,
    logits: Events<N, E, D, T>,
    x: Events<N, E, D, T>,
) -> Events<N, E, D, T> {
    let r1 = log_r.with_empty_tape().exp();
    let r2 = log_r.with_empty_tape().exp();
    let r = log_r.exp();
    let l2 = logits.with_empty_tape();
    let x1 = x.with_empty_tape();
    // ln x! of counts: data, so no gradient is recorded (a discrete event has none).
    let log_factorial = lgamma(x.retaped::<NoneTape>() + E::one());
    r * log_sigmoid(logits.negate()) + log_sigmoid(l2) * x + lgamma(r1 + x1)
        - log_factorial
        - lgamma(r2)
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D>
    for NegativeBinomial<N, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.logits.shape().0
    }

    fn device(&self) -> D {
        self.logits.device().clone()
    }

    /// # Errors
    /// [`crate::Error::ShapeMismatch`]; [`crate::Error::InvalidSetting`] if an event is
    /// not a non-negative integer (naming its row and column).
    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("NegativeBinomial::log_prob", self.logits.shape(), x.shape())?;
        check_support("NegativeBinomial", &x, ValueSupport::Counts)?;
        let lp = log_mass(self.log_total_count, self.logits, x);
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        use rand_distr::Distribution as _;
        let r = to_f64_vec(&self.log_total_count.retaped::<NoneTape>().exp());
        let scale = to_f64_vec(&self.logits.retaped::<NoneTape>().exp());
        draw_host(
            self.logits.device(),
            *self.logits.shape(),
            |rng, i| match rand_distr::Gamma::new(r[i], scale[i]) {
                Ok(g) => {
                    let rate = g.sample(rng);
                    poisson_draw(rng, rate)
                }
                Err(_) => f64::NAN,
            },
        )
    }

    fn mean(self) -> Events<N, E, D, T> {
        (self.log_total_count + self.logits).exp()
    }

    fn fork(&self) -> Self {
        Self {
            log_total_count: self.log_total_count.with_empty_tape(),
            logits: self.logits.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            log_total_count: repeat_rows(self.log_total_count, n),
            logits: repeat_rows(self.logits, n),
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.log_total_count.split_tape();
        let (_, b) = self.logits.split_tape();
        a.merge(b)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D>
    for NegativeBinomial<N, E, D, T>
{
    /// `r e^ℓ / σ(−ℓ)`.
    fn variance(self) -> Events<N, E, D, T> {
        let l2 = self.logits.with_empty_tape();
        (self.log_total_count + self.logits - log_sigmoid(l2.negate())).exp()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for NegativeBinomial<N, E, D, T> {
    /// `⌊(r − 1) e^ℓ⌋`, at least 0.
    fn mode(&self) -> Events<N, E, D> {
        let r = to_f64_vec(&self.log_total_count);
        let l = to_f64_vec(&self.logits);
        let m: Vec<E> = r
            .iter()
            .zip(&l)
            .map(|(r, l)| {
                crate::kernels::ops::cst::<E>(((r.exp() - 1.0) * l.exp()).floor().max(0.0))
            })
            .collect();
        self.logits
            .device()
            .tensor_from_vec(m, *self.logits.shape())
    }
}
