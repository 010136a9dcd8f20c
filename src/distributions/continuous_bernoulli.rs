//! The continuous Bernoulli distribution on `[0, 1]` (Loaiza-Ganem & Cunningham 2019).

use dfdx::prelude::*;

use super::{check_shape, Distribution, Mode, Reparameterizable, Variance};
use crate::error::Result;
use crate::kernels::ops::{cst, repeat_rows, Events, PerExample, Real};

/// A boolean mask of shape `(batch, N)`.
type Mask<N, D> = Tensor<(usize, N), bool, D>;

/// Below this `|ℓ|` the log-normalizer and the mean use their Taylor series.
const TAYLOR_BELOW: f64 = 0.1;

/// A batch of independent continuous Bernoulli distributions over `[0, 1]^N`
/// (Loaiza-Ganem & Cunningham 2019), parameterized by logits `ℓ = log(λ / (1 − λ))`,
/// shape `(batch, N)`: the properly normalized likelihood for pixel intensities in
/// `[0, 1]`, where the Bernoulli cross-entropy is not a density.
///
/// `p(x | λ) = C(λ) λ^x (1 − λ)^{1−x}` with `C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ)`, i.e.
/// in logits `log p(x) = x ℓ − softplus(ℓ) + log C`, `log C = log(ℓ / tanh(ℓ/2))`.
/// Near `λ = ½` (`|ℓ| < 0.1`) `log C` is the Taylor series
/// `log 2 + ℓ²/12 − 7ℓ⁴/1440 + 31ℓ⁶/90720` (the paper, §3; torch switches to a series
/// there too), and the exact branch never sees `ℓ = 0`, so neither values nor
/// gradients are NaN.
///
/// - mean `σ(ℓ)/tanh(ℓ/2) − 1/ℓ` (`½ + ℓ/12 − ℓ³/720` near 0);
/// - `rsample() = log1p(u · expm1(ℓ)) / ℓ`, `u ~ U(0, 1)` (the inverse CDF), pathwise.
pub struct ContinuousBernoulli<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// The logits `ℓ`, shape `(batch, N)`.
    pub logits: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> ContinuousBernoulli<N, E, D, T> {
    /// A continuous Bernoulli from its logits (any real value), shape `(batch, N)`.
    pub fn new(logits: Events<N, E, D, T>) -> Self {
        Self { logits }
    }

    /// `log C(λ)` per element, shape `(batch, N)`.
    pub fn log_normalizer(self) -> Events<N, E, D, T> {
        let (small, safe) = self.split_small(TAYLOR_BELOW);
        // ℓ / tanh(ℓ/2) > 0 for every ℓ ≠ 0, so take the log of the ratio.
        let exact = (safe.with_empty_tape() / (safe * cst::<E>(0.5)).tanh()).ln();
        let l2 = self.logits.square();
        let l4 = l2.with_empty_tape().square();
        let l6 = l4.with_empty_tape() * l2.with_empty_tape();
        let taylor = l2 * cst::<E>(1.0 / 12.0) - l4 * cst::<E>(7.0 / 1440.0)
            + l6 * cst::<E>(31.0 / 90720.0)
            + cst::<E>(2f64.ln());
        small.choose(taylor, exact)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D>
    for ContinuousBernoulli<N, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.logits.shape().0
    }

    fn device(&self) -> D {
        self.logits.device().clone()
    }

    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape(
            "ContinuousBernoulli::log_prob",
            self.logits.shape(),
            x.shape(),
        )?;
        let log_c = self.fork().log_normalizer();
        // x ℓ − softplus(ℓ) = −BCEWithLogits(ℓ, x)
        Ok((log_c - self.logits.bce_with_logits(x)).sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        self.fork_untaped().rsample()
    }

    fn mean(self) -> Events<N, E, D, T> {
        let (small, safe) = self.split_small(TAYLOR_BELOW);
        let s2 = safe.with_empty_tape();
        let s3 = safe.with_empty_tape();
        let exact = s2.sigmoid() / (s3 * cst::<E>(0.5)).tanh() - safe.recip();
        let l3 = self.logits.with_empty_tape().square() * self.logits.with_empty_tape();
        let taylor =
            self.logits * cst::<E>(1.0 / 12.0) - l3 * cst::<E>(1.0 / 720.0) + cst::<E>(0.5);
        small.choose(taylor, exact)
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

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D>
    for ContinuousBernoulli<N, E, D, T>
{
    /// `λ(λ − 1)/(1 − 2λ)² + 1/ℓ²` (Loaiza-Ganem & Cunningham 2019, Appendix; as torch),
    /// and near `λ = ½` (`|ℓ| < 0.1`), where the two terms cancel, the series
    /// `1/12 − (1/15 − 128/945·d)·d` with `d = (λ − ½)²` (torch's `variance`).
    fn variance(self) -> Events<N, E, D, T> {
        let (small, safe) = self.split_small(TAYLOR_BELOW);
        let p = safe.with_empty_tape().sigmoid();
        let q = (-safe.with_empty_tape()).sigmoid();
        // 1 − 2λ = σ(−ℓ) − σ(ℓ), without cancellation in λ.
        let gap = q.with_empty_tape() - p.with_empty_tape();
        let exact = -(p * q) / gap.square() + safe.square().recip();
        let d = (self.logits.sigmoid() - cst::<E>(0.5)).square();
        let taylor = -((-d.with_empty_tape() * cst::<E>(128.0 / 945.0) + cst::<E>(1.0 / 15.0)) * d)
            + cst::<E>(1.0 / 12.0);
        small.choose(taylor, exact)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D>
    for ContinuousBernoulli<N, E, D, T>
{
    /// 1 for `λ > ½`, 0 for `λ < ½` (the density `∝ λ^x (1 − λ)^{1−x}` is monotone);
    /// at `λ = ½` the density is flat and ½ is returned.
    fn mode(&self) -> Events<N, E, D> {
        let l = self.logits.retaped::<NoneTape>();
        let dev = l.device().clone();
        let shape = *l.shape();
        let half = dev.ones_like(&shape) * cst::<E>(0.5);
        let side = l
            .gt(E::zero())
            .choose(dev.ones_like(&shape), dev.zeros_like(&shape));
        l.eq(E::zero()).choose(half, side)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> ContinuousBernoulli<N, E, D, T> {
    /// The mask `|ℓ| < threshold` and ℓ with those entries replaced by 1, so that an
    /// exact formula singular at ℓ = 0 can be evaluated (and differentiated) everywhere
    /// and then discarded there by `choose` (the "double where" trick).
    fn split_small(&self, threshold: f64) -> (Mask<N, D>, Events<N, E, D, T>) {
        let dev = self.logits.device().clone();
        let shape = *self.logits.shape();
        let small = self
            .logits
            .retaped::<NoneTape>()
            .abs()
            .lt(&(dev.ones_like(&shape) * cst::<E>(threshold)));
        let safe = small.clone().choose(
            dev.ones_like(&shape).put_tape(T::default()),
            self.logits.with_empty_tape(),
        );
        (small, safe)
    }

    fn fork_untaped(&self) -> ContinuousBernoulli<N, E, D, NoneTape> {
        ContinuousBernoulli {
            logits: self.logits.retaped::<NoneTape>(),
        }
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D>
    for ContinuousBernoulli<N, E, D, T>
{
    /// The inverse CDF `log1p(u · expm1(ℓ)) / ℓ`, with `u` where `|ℓ| < 1e-4` (the
    /// limit; the error there is below `|ℓ|/8`).
    fn rsample(self) -> Events<N, E, D, T> {
        let dev = self.logits.device().clone();
        let shape = *self.logits.shape();
        let u = E::uniform01(&dev, &shape);
        let (tiny, safe) = self.split_small(1e-4);
        // log1p(u (e^ℓ − 1)) computed as log(1 − u + u e^ℓ); for ℓ > 0 factor out e^ℓ
        // to avoid overflow: ℓ + log(u + (1 − u) e^{−ℓ}).
        let s2 = safe.with_empty_tape();
        let pos = safe.retaped::<NoneTape>().gt(&dev.zeros_like(&shape));
        let one_minus_u = dev.ones_like(&shape) - u.clone();
        let neg_branch = ((s2.with_empty_tape().exp() * u.clone()) + one_minus_u.clone()).ln();
        let pos_branch =
            s2.with_empty_tape() + ((-s2.with_empty_tape()).exp() * one_minus_u + u.clone()).ln();
        let num = pos.choose(pos_branch, neg_branch);
        // `safe` itself (not a fork) must end up in the result: its tape holds the
        // `choose` that routes the gradient back to the logits.
        drop(s2);
        let exact = num / safe;
        let small_val = self.logits * cst::<E>(0.0) + u;
        tiny.choose(small_val, exact)
    }
}
