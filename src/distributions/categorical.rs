//! The categorical distribution on logits, over one-hot events.

use dfdx::prelude::*;

use super::{check_shape, Distribution, Entropy, Mode, Variance};
use crate::error::Result;
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real};

/// A batch of categorical distributions over `K` classes, parameterized by
/// unnormalized logits `ℓ` of shape `(batch, K)`; `π = softmax(ℓ)`.
///
/// Events are **one-hot** rows of shape `(batch, K)` (so that they are tensors like
/// every other event here): `log_prob(x) = Σ_k x_k log π_k` (`log π` by the
/// max-subtracted `log_softmax`). `mean() = π`, `entropy() = −Σ_k π_k log π_k`.
/// There is no pathwise sample; use [`super::RelaxedOneHotCategorical`] for a
/// reparameterizable relaxation.
pub struct Categorical<K: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// The logits `ℓ`, shape `(batch, K)`.
    pub logits: Events<K, E, D, T>,
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Categorical<K, E, D, T> {
    /// A categorical from its logits (any finite values), shape `(batch, K)`.
    pub fn new(logits: Events<K, E, D, T>) -> Self {
        Self { logits }
    }

    /// `log π`, shape `(batch, K)`.
    pub fn log_probs(self) -> Events<K, E, D, T> {
        self.logits.log_softmax::<Axis<1>>()
    }

    /// The most probable class of each distribution (the mode), on the host.
    pub fn mode(&self) -> Vec<usize> {
        argmax_rows(&to_f64_vec(&self.logits), self.logits.shape().1.size())
    }
}

impl<K: Dim, E: Real, D: Device<E>> Categorical<K, E, D, NoneTape> {
    /// A categorical over `classes` (`K`'s value) from host probabilities
    /// (`batch · K` values, rows summing to 1).
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the length is not a positive multiple of `K`;
    /// [`crate::Error::InvalidSetting`] if a probability is outside `[0, 1]` or a row does
    /// not sum to 1 within 1e-6.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::Categorical;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// let c = Categorical::from_probs(&dev, Const::<3>, &[0.2f64, 0.3, 0.5])?;
    /// // Events are one-hot: this is class 2.
    /// let lp = c.log_prob(dev.tensor_from_vec(vec![0.0, 0.0, 1.0], (1, Const::<3>)))?;
    /// assert!((lp.as_vec()[0] - 0.5f64.ln()).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn from_probs(dev: &D, classes: K, probs: &[E]) -> Result<Self> {
        let k = classes.size();
        if k == 0 || probs.is_empty() || !probs.len().is_multiple_of(k) {
            return Err(crate::Error::not_a_multiple(
                "Categorical::from_probs",
                k,
                probs.len(),
            ));
        }
        for row in probs.chunks(k) {
            if let Some(p) = row.iter().find(|p| !(**p >= E::zero() && **p <= E::one())) {
                return Err(crate::Error::invalid(
                    "probs",
                    format!("{p} is outside [0, 1]"),
                ));
            }
            let s: f64 = row.iter().map(|p| p.to_f64().unwrap_or(f64::NAN)).sum();
            if (s - 1.0).abs() > 1e-6 {
                return Err(crate::Error::invalid(
                    "probs",
                    format!("a row sums to {s}, not 1"),
                ));
            }
        }
        let logits = probs.iter().map(|p| p.ln()).collect();
        Ok(Self {
            logits: dev.tensor_from_vec(logits, (probs.len() / k, classes)),
        })
    }
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<K, E, D> for Categorical<K, E, D, T> {
    /// `π_k (1 − π_k)`, the variance of each indicator of the one-hot event.
    fn variance(self) -> Events<K, E, D, T> {
        let p = self.logits.softmax::<Axis<1>>();
        let q = -p.with_empty_tape() + cst::<E>(1.0);
        p * q
    }
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<K, E, D> for Categorical<K, E, D, T> {
    /// The one-hot row of the most probable class (the first one on ties).
    fn mode(&self) -> Events<K, E, D> {
        one_hot(
            self.logits.device(),
            self.logits.shape().1,
            &Categorical::mode(self),
        )
    }
}

/// Index of the largest value of each row of a row-major `(n, k)` array.
pub(crate) fn argmax_rows(values: &[f64], k: usize) -> Vec<usize> {
    values
        .chunks(k)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0
        })
        .collect()
}

/// One-hot rows `(n, K)` for the given class indices (each `< K`).
pub(crate) fn one_hot<K: Dim, E: Real, D: Device<E>>(
    dev: &D,
    width: K,
    classes: &[usize],
) -> Events<K, E, D> {
    let k = width.size();
    let mut v = vec![E::zero(); classes.len() * k];
    for (i, &c) in classes.iter().enumerate() {
        v[i * k + c] = E::one();
    }
    dev.tensor_from_vec(v, (classes.len(), width))
}

/// Gumbel(0, 1) noise `−log(−log u)` shaped like `shape`.
pub(crate) fn gumbel<K: Dim, E: Real, D: Device<E>>(
    dev: &D,
    shape: &(usize, K),
) -> Events<K, E, D> {
    let tiny = E::min_positive_value();
    let u = E::uniform01(dev, shape).maximum(dev.ones_like(shape) * tiny);
    -((-u.ln()).ln())
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<K, E, D>
    for Categorical<K, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.logits.shape().0
    }

    fn device(&self) -> D {
        self.logits.device().clone()
    }

    fn log_prob(self, x: Events<K, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("Categorical::log_prob", self.logits.shape(), x.shape())?;
        // One fused pass each way on the CPU (dfdx's log_softmax, product and sum
        // elsewhere).
        Ok(crate::kernels::categorical_log_prob(self.logits, x))
    }

    /// Gumbel-max sampling: `argmax_k ℓ_k + g_k`, `g ~ Gumbel(0, 1)`, as one-hot rows.
    fn sample(&self) -> Events<K, E, D> {
        let dev = self.logits.device();
        let noisy = self.logits.retaped::<NoneTape>() + gumbel(dev, self.logits.shape());
        one_hot(
            dev,
            self.logits.shape().1,
            &argmax_rows(&to_f64_vec(&noisy), self.logits.shape().1.size()),
        )
    }

    fn mean(self) -> Events<K, E, D, T> {
        self.logits.softmax::<Axis<1>>()
    }

    fn fork(&self) -> Self {
        Self {
            logits: self.logits.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            logits: repeat_rows(self.logits, n),
        }
    }

    fn into_tape(self) -> T {
        self.logits.split_tape().1
    }
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for Categorical<K, E, D, T> {
    type Tape = T;
    fn entropy(self) -> PerExample<E, D, T> {
        let p = self.logits.with_empty_tape().softmax::<Axis<1>>();
        -(self.logits.log_softmax::<Axis<1>>() * p).sum::<(usize,), Axis<1>>()
    }
}
