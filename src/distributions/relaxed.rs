//! The Gumbel-softmax / Concrete relaxation of the one-hot categorical.

use dfdx::prelude::*;

use super::categorical::{argmax_rows, gumbel, one_hot};
use super::{check_shape, Distribution, Reparameterizable};
use crate::error::{Error, Result};
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real};

/// A batch of relaxed one-hot categoricals (Gumbel-softmax, Jang et al. 2017; the
/// Concrete distribution, Maddison et al. 2017) over the simplex in `R^K`, with logits
/// `ℓ` of shape `(batch, K)` and temperature `τ > 0`.
///
/// - `rsample() = softmax((ℓ + g) / τ)`, `g ~ Gumbel(0, 1)`: pathwise in `ℓ`. As
///   `τ → 0` the samples approach one-hot categorical samples.
/// - `log_prob(y) = log (K−1)! + (K−1) log τ + Σ_k (ℓ_k − (τ+1) log y_k)
///   − K · logsumexp_k(ℓ_k − τ log y_k)` (Maddison et al. 2017, eq. 4, with
///   unnormalized logits), the density on the simplex with respect to the Lebesgue
///   measure on its first `K − 1` coordinates.
/// - `sample()` returns the relaxed sample (no gradient); `mean()` returns
///   `softmax(ℓ)`, the mean of the categorical it relaxes (the Concrete mean itself has
///   no closed form).
pub struct RelaxedOneHotCategorical<K: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// The logits `ℓ`, shape `(batch, K)`.
    pub logits: Events<K, E, D, T>,
    temperature: f64,
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> RelaxedOneHotCategorical<K, E, D, T> {
    /// A relaxed categorical with the given logits and temperature.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `temperature` is not positive and finite, or `K < 2`.
    pub fn new(logits: Events<K, E, D, T>, temperature: f64) -> Result<Self> {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::invalid(
                "temperature",
                format!("must be positive and finite, got {temperature}"),
            ));
        }
        if logits.shape().1.size() < 2 {
            return Err(Error::invalid(
                "K",
                "a relaxed categorical needs at least 2 classes",
            ));
        }
        Ok(Self {
            logits,
            temperature,
        })
    }

    /// The temperature `τ`.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// Hard one-hot samples `argmax` of a relaxed draw (no gradient), as for the
    /// straight-through Gumbel-softmax.
    pub fn sample_hard(&self) -> Events<K, E, D> {
        let soft = self.sample();
        let k = self.logits.shape().1;
        one_hot(
            self.logits.device(),
            k,
            &argmax_rows(&to_f64_vec(&soft), k.size()),
        )
    }
}

fn ln_factorial(n: usize) -> f64 {
    (2..=n).map(|k| (k as f64).ln()).sum()
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<K, E, D>
    for RelaxedOneHotCategorical<K, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.logits.shape().0
    }

    fn device(&self) -> D {
        self.logits.device().clone()
    }

    fn log_prob(self, y: Events<K, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape(
            "RelaxedOneHotCategorical::log_prob",
            self.logits.shape(),
            y.shape(),
        )?;
        let tau = self.temperature;
        let k = self.logits.shape().1.size() as f64;
        let log_y = y.ln();
        let log_y2 = log_y.with_empty_tape();
        let l2 = self.logits.with_empty_tape();
        let first = (self.logits - log_y * cst::<E>(tau + 1.0)).sum::<(usize,), Axis<1>>();
        let lse = (l2 - log_y2 * cst::<E>(tau)).logsumexp::<(usize,), Axis<1>>();
        let c = ln_factorial(k as usize - 1) + (k - 1.0) * tau.ln();
        Ok(first - lse * cst::<E>(k) + cst::<E>(c))
    }

    fn sample(&self) -> Events<K, E, D> {
        let dev = self.logits.device();
        ((self.logits.retaped::<NoneTape>() + gumbel(dev, self.logits.shape()))
            * cst::<E>(1.0 / self.temperature))
        .softmax::<Axis<1>>()
    }

    /// `softmax(ℓ)`: the mean of the categorical this distribution relaxes, which is
    /// the `τ → 0` limit of its mean. **Not** `E[y]` at `τ > 0`: the Concrete mean has
    /// no closed form (torch and TFP raise `NotImplementedError` for it); the
    /// conformance kit's sample-mean check found the gap (e.g. 0.138 vs 0.116 at
    /// `τ = ½`), so estimate `E[y]` from `sample()` where it matters.
    fn mean(self) -> Events<K, E, D, T> {
        self.logits.softmax::<Axis<1>>()
    }

    fn fork(&self) -> Self {
        Self {
            logits: self.logits.with_empty_tape(),
            temperature: self.temperature,
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            logits: repeat_rows(self.logits, n),
            temperature: self.temperature,
        }
    }

    fn into_tape(self) -> T {
        self.logits.split_tape().1
    }
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<K, E, D>
    for RelaxedOneHotCategorical<K, E, D, T>
{
    fn rsample(self) -> Events<K, E, D, T> {
        let g = gumbel(self.logits.device(), self.logits.shape());
        ((self.logits + g) * cst::<E>(1.0 / self.temperature)).softmax::<Axis<1>>()
    }
}
