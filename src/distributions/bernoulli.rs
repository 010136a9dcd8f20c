//! The Bernoulli distribution on logits.

use dfdx::prelude::*;

use super::{check_shape, Distribution, Entropy, Mode, Variance};
use crate::error::Result;
use crate::kernels::ops::{repeat_rows, Events, PerExample, Real};

/// A batch of independent Bernoulli distributions over `{0, 1}^N`, parameterized by
/// logits `ℓ = log(p / (1 − p))` of shape `(batch, N)`.
///
/// `log_prob(x) = Σ_i x_i ℓ_i − log(1 + e^{ℓ_i}) = −Σ_i BCEWithLogits(ℓ_i, x_i)`,
/// computed as `−(max(ℓ, 0) − ℓx + log(1 + e^{−|ℓ|}))`, which is exact for any logit:
/// never a sigmoid followed by a log. For `x ∈ [0, 1]` that are not binary this is the
/// cross-entropy of the classic VAE, which is **not** a normalized density over `[0, 1]`
/// (see `ContinuousBernoulli` in Loaiza-Ganem & Cunningham 2019 for one that is).
///
/// `mean() = σ(ℓ)`; `entropy() = Σ_i log(1 + e^{ℓ_i}) − σ(ℓ_i) ℓ_i`.
pub struct Bernoulli<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// The logits `ℓ`, shape `(batch, N)`.
    pub logits: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Bernoulli<N, E, D, T> {
    /// A Bernoulli from its logits (any real value is valid), shape `(batch, N)`.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::{Bernoulli, Distribution};
    ///
    /// let dev = Cpu::default();
    /// // logits ln 3 (p = ¾) in the first pixel, 0 (p = ½) in the second; x = (1, 0).
    /// let b = Bernoulli::new(dev.tensor_from_vec(vec![3f64.ln(), 0.0], (1, Const::<2>)));
    /// let lp = b.log_prob(dev.tensor_from_vec(vec![1.0, 0.0], (1, Const::<2>)))?;
    /// assert!((lp.as_vec()[0] - (0.75f64.ln() + 0.5f64.ln())).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(logits: Events<N, E, D, T>) -> Self {
        Self { logits }
    }

    /// The success probabilities `σ(ℓ)`, shape `(batch, N)`.
    pub fn probs(self) -> Events<N, E, D, T> {
        self.logits.sigmoid()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for Bernoulli<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.logits.shape().0
    }

    fn device(&self) -> D {
        self.logits.device().clone()
    }

    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("Bernoulli::log_prob", self.logits.shape(), x.shape())?;
        Ok(crate::kernels::bernoulli_log_prob(self.logits, x))
    }

    fn sample(&self) -> Events<N, E, D> {
        let dev = self.logits.device();
        let p = self.logits.retaped::<NoneTape>().sigmoid();
        let u = E::uniform01(dev, p.shape());
        let shape = *p.shape();
        u.lt(&p)
            .choose(dev.ones_like(&shape), dev.zeros_like(&shape))
    }

    fn mean(self) -> Events<N, E, D, T> {
        self.logits.sigmoid()
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

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D> for Bernoulli<N, E, D, T> {
    /// `p(1 − p)`, computed as `σ(ℓ)·σ(−ℓ)` (no cancellation for large `|ℓ|`).
    fn variance(self) -> Events<N, E, D, T> {
        let neg = (-self.logits.with_empty_tape()).sigmoid();
        self.logits.sigmoid() * neg
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for Bernoulli<N, E, D, T> {
    /// `1[ℓ > 0]` (0 at `p = ½`, where both outcomes are modes).
    fn mode(&self) -> Events<N, E, D> {
        let l = self.logits.retaped::<NoneTape>();
        let dev = l.device().clone();
        let shape = *l.shape();
        l.gt(E::zero())
            .choose(dev.ones_like(&shape), dev.zeros_like(&shape))
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for Bernoulli<N, E, D, T> {
    type Tape = T;
    fn entropy(self) -> PerExample<E, D, T> {
        // H = softplus(ℓ) − σ(ℓ)ℓ = BCEWithLogits(ℓ, σ(ℓ)), with σ(ℓ) as the target.
        let p = self.logits.with_empty_tape().sigmoid();
        self.logits.bce_with_logits(p).sum::<(usize,), Axis<1>>()
    }
}
