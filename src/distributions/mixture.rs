//! Mixtures of diagonal Normals, e.g. as a learned prior.

use dfdx::prelude::*;

use super::categorical::{argmax_rows, gumbel};
use super::{check_shape, Distribution, Variance};
use crate::error::Result;
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real, LN_2PI};

/// A batch of mixtures of `K` diagonal Normals over `R^N`:
/// `p(x) = Σ_k π_k N(x; μ_k, diag σ_k²)`, `π = softmax(logits)`.
///
/// Parameters: `logits` `(batch, K)`, `loc` and `log_scale` `(batch, K, N)`.
/// `log_prob(x) = logsumexp_k [log π_k + log N(x; μ_k, σ_k²)]` with the maximum
/// subtracted. There is no closed-form KL against it: [`crate::monte_carlo_kl`] (and
/// `Elbo`'s automatic choice) estimates it. Used as the learned prior of the VAE with
/// `--prior mixture:K` (a "mixture of Gaussians prior", e.g. Dilokthanakul et al. 2016;
/// Tomczak & Welling 2018 use mixtures of posteriors).
pub struct MixtureOfDiagNormals<K: Dim, N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// Component logits, shape `(batch, K)`.
    pub logits: Tensor<(usize, K), E, D, T>,
    /// Component means, shape `(batch, K, N)`.
    pub loc: Tensor<(usize, K, N), E, D, T>,
    /// Component `log σ`, shape `(batch, K, N)`.
    pub log_scale: Tensor<(usize, K, N), E, D, T>,
}

impl<K: Dim, N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> MixtureOfDiagNormals<K, N, E, D, T> {
    /// A mixture from its parameters.
    ///
    /// # Errors
    /// [`crate::Error::InvalidSetting`] if `K == 0` (an empty mixture);
    /// [`crate::Error::ShapeMismatch`] if the shapes disagree.
    pub fn new(
        logits: Tensor<(usize, K), E, D, T>,
        loc: Tensor<(usize, K, N), E, D, T>,
        log_scale: Tensor<(usize, K, N), E, D, T>,
    ) -> Result<Self> {
        if logits.shape().1.size() == 0 {
            return Err(crate::Error::invalid(
                "K",
                "a mixture needs at least one component",
            ));
        }
        let (b, k, n) = *loc.shape();
        check_shape("MixtureOfDiagNormals::new (loc)", logits.shape(), &(b, k))?;
        check_shape(
            "MixtureOfDiagNormals::new (log_scale)",
            &(b, n),
            &(log_scale.shape().0, log_scale.shape().2),
        )?;
        check_shape(
            "MixtureOfDiagNormals::new (log_scale)",
            &(b, k),
            &(log_scale.shape().0, log_scale.shape().1),
        )?;
        Ok(Self {
            logits,
            loc,
            log_scale,
        })
    }

    /// The same `K` components for every one of `batch` examples, from shared
    /// parameters `logits (K,)`, `loc (K, N)`, `log_scale (K, N)`: the form of a learned
    /// prior. Gradients reach the shared parameters.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn shared(
        batch: usize,
        logits: Tensor<(K,), E, D, T>,
        loc: Tensor<(K, N), E, D, T>,
        log_scale: Tensor<(K, N), E, D, T>,
    ) -> Result<Self> {
        let (k, n) = *loc.shape();
        check_shape(
            "MixtureOfDiagNormals::shared (logits)",
            &(k.size(), n),
            &(logits.shape().0.size(), n),
        )?;
        check_shape(
            "MixtureOfDiagNormals::shared (log_scale)",
            &(k.size(), n),
            &(log_scale.shape().0.size(), log_scale.shape().1),
        )?;
        // `contiguous()` materializes the broadcasts: dfdx 0.13's log-sum-exp (and so
        // log_softmax) reuses its input's tensor id for a contiguous temporary, which
        // corrupts the backward pass when the input is a stride-0 broadcast.
        Self::new(
            logits.broadcast_like(&(batch, k)).contiguous(),
            loc.broadcast_like(&(batch, k, n)).contiguous(),
            log_scale.broadcast_like(&(batch, k, n)).contiguous(),
        )
    }

    /// The mixture weights `π`, shape `(batch, K)`.
    pub fn weights(self) -> Tensor<(usize, K), E, D, T> {
        self.logits.softmax::<Axis<1>>()
    }
}

impl<K: Dim, N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D>
    for MixtureOfDiagNormals<K, N, E, D, T>
{
    /// `Σ_k π_k (σ_k² + μ_k²) − (Σ_k π_k μ_k)²` per coordinate (law of total variance).
    fn variance(self) -> Events<N, E, D, T> {
        let shape = *self.loc.shape();
        let w = self
            .logits
            .softmax::<Axis<1>>()
            .broadcast_like::<_, Axis<2>>(&shape);
        let w2 = w.with_empty_tape();
        let second = (self.log_scale * cst::<E>(2.0)).exp() + self.loc.with_empty_tape().square();
        let mean = (w2 * self.loc).sum::<(usize, N), Axis<1>>();
        (w * second).sum::<(usize, N), Axis<1>>() - mean.square()
    }
}

fn repeat3<K: Dim, N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    t: Tensor<(usize, K, N), E, D, T>,
    n: usize,
) -> Tensor<(usize, K, N), E, D, T> {
    if n == 1 {
        return t;
    }
    let (b, k, d) = *t.shape();
    t.broadcast_like::<_, Axis<0>>(&(n, b, k, d))
        .reshape_like(&(n * b, k, d))
}

impl<K: Dim, N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D>
    for MixtureOfDiagNormals<K, N, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.logits.shape().0
    }

    fn device(&self) -> D {
        self.logits.device().clone()
    }

    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        let shape = *self.loc.shape();
        check_shape(
            "MixtureOfDiagNormals::log_prob",
            &(shape.0, shape.2),
            x.shape(),
        )?;
        let xk = x.broadcast_like::<_, Axis<1>>(&shape);
        let ls = self.log_scale.with_empty_tape();
        let z = (xk - self.loc) * (-self.log_scale).exp();
        let comp = (z.square() * cst::<E>(-0.5) - ls - cst::<E>(0.5 * LN_2PI))
            .sum::<(usize, K), Axis<2>>();
        Ok((comp + self.logits.log_softmax::<Axis<1>>()).logsumexp::<(usize,), Axis<1>>())
    }

    /// Picks a component per example by Gumbel-max, then draws from it.
    fn sample(&self) -> Events<N, E, D> {
        let dev = self.logits.device();
        let (b, k, n) = *self.loc.shape();
        let (kk, nn) = (k.size(), n.size());
        let noisy = self.logits.retaped::<NoneTape>() + gumbel(dev, self.logits.shape());
        let ks = argmax_rows(&to_f64_vec(&noisy), kk);
        let loc = self.loc.as_vec();
        let ls = self.log_scale.as_vec();
        let pick = |v: &[E]| -> Vec<E> {
            ks.iter()
                .enumerate()
                .flat_map(|(i, &c)| v[(i * kk + c) * nn..(i * kk + c + 1) * nn].to_vec())
                .collect()
        };
        let loc = dev.tensor_from_vec(pick(&loc), (b, n));
        let scale = dev.tensor_from_vec(pick(&ls), (b, n)).exp();
        loc + scale * E::standard_normal(dev, &(b, n))
    }

    /// `Σ_k π_k μ_k`, shape `(batch, N)`.
    fn mean(self) -> Events<N, E, D, T> {
        let shape = *self.loc.shape();
        let w = self
            .logits
            .softmax::<Axis<1>>()
            .broadcast_like::<_, Axis<2>>(&shape);
        (w * self.loc).sum::<(usize, N), Axis<1>>()
    }

    fn fork(&self) -> Self {
        Self {
            logits: self.logits.with_empty_tape(),
            loc: self.loc.with_empty_tape(),
            log_scale: self.log_scale.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            logits: repeat_rows(self.logits, n),
            loc: repeat3(self.loc, n),
            log_scale: repeat3(self.log_scale, n),
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.logits.split_tape();
        let (_, b) = self.loc.split_tape();
        let (_, c) = self.log_scale.split_tape();
        a.merge(b).merge(c)
    }
}
