//! The binomial distribution over counts out of a fixed number of trials.

use dfdx::prelude::*;

use super::{check_shape, check_support, draw_host, Distribution, Mode, ValueSupport, Variance};
use crate::error::{Error, Result};
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real};
use crate::special::{lgamma, scalar, softplus};

/// A batch of independent binomial distributions over `{0, …, n}^N`,
/// `Binomial(n, ℓ)` as `torch.distributions.Binomial(total_count, logits)`: successes in
/// `n` Bernoulli trials of success probability `σ(ℓ)`. The number of trials `n` is one
/// fixed integer for every coordinate (a pixel's 16 grey levels, say); the logits have
/// shape `(batch, N)`.
///
/// # Formula
/// - `log_prob(x) = Σ_i ln C(n, x_i) + x_i ℓ_i − n softplus(ℓ_i)`, with
///   `ln C(n, x) = ln Γ(n+1) − ln Γ(x+1) − ln Γ(n−x+1)`, nats;
/// - mean `n σ(ℓ)`, variance `n σ(ℓ) σ(−ℓ)`, mode `min(⌊(n + 1) σ(ℓ)⌋, n)` (as torch);
/// - `sample()`: rand_distr's BTPE / inversion sampler on the host, from a generator
///   seeded by the device's.
///
/// Source: Johnson, Kemp & Kotz, *Univariate Discrete Distributions* (2005), ch. 3.
pub struct Binomial<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// The number of trials `n`.
    pub total_count: u32,
    /// `ℓ = ln(p / (1 − p))`, shape `(batch, N)`.
    pub logits: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Binomial<N, E, D, T> {
    /// A binomial of `total_count` trials with the given logits (any real values).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `total_count` is 0.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::Binomial;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// // Binomial(4, p = ½): P(2) = C(4, 2) / 2⁴ = 0.375.
    /// let b = Binomial::new(4, dev.tensor_from_vec(vec![0.0f64], (1, Const::<1>)))?;
    /// let lp = b.log_prob(dev.tensor_from_vec(vec![2.0], (1, Const::<1>)))?;
    /// assert!((lp.as_vec()[0] - 0.375f64.ln()).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(total_count: u32, logits: Events<N, E, D, T>) -> Result<Self> {
        if total_count == 0 {
            return Err(Error::invalid(
                "total_count",
                "a binomial needs at least 1 trial",
            ));
        }
        Ok(Self {
            total_count,
            logits,
        })
    }

    /// The success probabilities `σ(ℓ)`, shape `(batch, N)`.
    pub fn probs(self) -> Events<N, E, D, T> {
        self.logits.sigmoid()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for Binomial<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.logits.shape().0
    }

    fn device(&self) -> D {
        self.logits.device().clone()
    }

    /// # Errors
    /// [`Error::ShapeMismatch`]; [`Error::InvalidSetting`] if an event is not an integer
    /// in `0..=n` (naming its row and column).
    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("Binomial::log_prob", self.logits.shape(), x.shape())?;
        let n = f64::from(self.total_count);
        check_support("Binomial", &x, ValueSupport::CountsUpTo(self.total_count))?;
        // ln C(n, x) of counts: data, so no gradient is recorded (a discrete event has none).
        let counts = x.retaped::<NoneTape>();
        let log_choose =
            lgamma(counts.clone().negate() + cst::<E>(n + 1.0)) + lgamma(counts + E::one());
        let l2 = self.logits.with_empty_tape();
        let lp = self.logits * x - softplus(l2) * cst::<E>(n) - log_choose
            + cst::<E>(scalar::lgamma(n + 1.0));
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        use rand_distr::Distribution as _;
        let p = to_f64_vec(&self.logits.retaped::<NoneTape>().sigmoid());
        let n = u64::from(self.total_count);
        draw_host(self.logits.device(), *self.logits.shape(), |rng, i| {
            match rand_distr::Binomial::new(n, p[i]) {
                Ok(b) => b.sample(rng) as f64,
                Err(_) => f64::NAN,
            }
        })
    }

    fn mean(self) -> Events<N, E, D, T> {
        self.logits.sigmoid() * cst::<E>(f64::from(self.total_count))
    }

    fn fork(&self) -> Self {
        Self {
            total_count: self.total_count,
            logits: self.logits.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            total_count: self.total_count,
            logits: repeat_rows(self.logits, n),
        }
    }

    fn into_tape(self) -> T {
        self.logits.split_tape().1
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D> for Binomial<N, E, D, T> {
    /// `n σ(ℓ) σ(−ℓ)`.
    fn variance(self) -> Events<N, E, D, T> {
        let l2 = self.logits.with_empty_tape();
        self.logits.sigmoid() * l2.negate().sigmoid() * cst::<E>(f64::from(self.total_count))
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for Binomial<N, E, D, T> {
    /// `min(⌊(n + 1) σ(ℓ)⌋, n)`.
    fn mode(&self) -> Events<N, E, D> {
        let n = f64::from(self.total_count);
        super::map_host(&self.logits, |l| {
            ((n + 1.0) / (1.0 + (-l).exp())).floor().min(n)
        })
    }
}
