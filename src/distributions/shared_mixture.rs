//! A mixture of diagonal Normals whose components every example shares: a learned
//! prior such as the VampPrior, with its density from two matrix products.

use dfdx::prelude::*;

use super::categorical::{argmax_rows, gumbel};
use super::{check_shape, Distribution};
use crate::error::{Error, Result};
use crate::kernels::ops::{cst, to_f64_vec, Events, PerExample, Real, LN_2PI};

/// `p(x) = Σ_k π_k N(x; μ_k, diag σ_k²)`, `π = softmax(logits)`, the same `K`
/// components over `R^N` for each of `batch` examples: the form of a learned prior
/// (a VampPrior's `(1/U) Σ_u q(z | u)`, Tomczak & Welling 2018, eq. 9; a mixture prior).
/// [`super::MixtureOfDiagNormals::shared`] is the same distribution with the parameters
/// copied for every example.
///
/// Parameters: `logits` `(K,)`, `loc` and `log_scale` `(K, N)`.
///
/// # Formula
/// With the precisions `λ_k = σ_k^{−2}`, expanded as scikit-learn's diagonal
/// `GaussianMixture` does (`_estimate_log_gaussian_prob`):
///
/// `log N(x; μ_k, σ_k²) = −½ [ (x²)·λ_k − 2 x·(μ_k λ_k) + Σ_n μ_kn² λ_kn ] − Σ_n log σ_kn − (N/2) log 2π`,
///
/// so that the `(batch, K)` matrix of component log-densities is two `(batch, N) ×
/// (N, K)` products plus a row of constants, and `log p(x)` is its log-sum-exp with
/// `log π` (the maximum subtracted). Nothing of shape `(batch, K, N)` is made: at
/// `K = 500`, `N = 40`, batch 100, that is 2 million elements per operation. The
/// expansion cancels where `x` is near a component whose precision is large: the
/// rounding error is about `ε Σ_n λ_kn (x_n² + μ_kn²)` (`ε` the dtype's epsilon), 1e-4
/// nats for `f32` at `λ ≈ 100`, `|x| ≈ 3`, `N = 40`.
///
/// There is no closed-form KL against it: [`crate::monte_carlo_kl`] (and `Elbo`'s
/// automatic choice) estimates it.
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::distributions::SharedMixtureOfDiagNormals;
/// use latent::Distribution;
/// let dev = Cpu::default();
/// // Two components at ±1 with unit variance, equal weights, over R^1.
/// let p = SharedMixtureOfDiagNormals::new(
///     1,
///     dev.tensor([0.0f64, 0.0]),
///     dev.tensor([[1.0], [-1.0]]),
///     dev.tensor([[0.0], [0.0]]),
/// )?;
/// let lp = p.log_prob(dev.tensor_from_vec(vec![0.0f64], (1, Const::<1>)))?;
/// // log N(0; ±1, 1) = −½ − ½ log 2π.
/// assert!((lp.as_vec()[0] - (-0.5 - 0.5 * (2.0 * std::f64::consts::PI).ln())).abs() < 1e-12);
/// # Ok::<(), latent::Error>(())
/// ```
pub struct SharedMixtureOfDiagNormals<K: Dim, N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// Examples in the batch.
    pub batch: usize,
    /// Component logits, shape `(K,)`.
    pub logits: Tensor<(K,), E, D, T>,
    /// Component means, shape `(K, N)`.
    pub loc: Tensor<(K, N), E, D, T>,
    /// Component `log σ`, shape `(K, N)`.
    pub log_scale: Tensor<(K, N), E, D, T>,
}

impl<K: Dim, N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>
    SharedMixtureOfDiagNormals<K, N, E, D, T>
{
    /// The mixture for `batch` examples from its shared parameters.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `K == 0` (an empty mixture);
    /// [`Error::ShapeMismatch`] if the shapes disagree.
    pub fn new(
        batch: usize,
        logits: Tensor<(K,), E, D, T>,
        loc: Tensor<(K, N), E, D, T>,
        log_scale: Tensor<(K, N), E, D, T>,
    ) -> Result<Self> {
        let (k, n) = *loc.shape();
        if k.size() == 0 {
            return Err(Error::invalid(
                "K",
                "a mixture needs at least one component",
            ));
        }
        check_shape(
            "SharedMixtureOfDiagNormals::new (logits)",
            &(k.size(), 1),
            &(logits.shape().0.size(), 1),
        )?;
        check_shape(
            "SharedMixtureOfDiagNormals::new (log_scale)",
            &(k.size(), n.size()),
            &(log_scale.shape().0.size(), log_scale.shape().1.size()),
        )?;
        Ok(Self {
            batch,
            logits,
            loc,
            log_scale,
        })
    }
}

impl<K: Dim, N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D>
    for SharedMixtureOfDiagNormals<K, N, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn device(&self) -> D {
        self.logits.device().clone()
    }

    /// `log p(x)` for `x` of shape `(batch, N)`, nats per example (see the formula).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x` is not `(batch, N)`.
    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        let (k, n) = *self.loc.shape();
        check_shape(
            "SharedMixtureOfDiagNormals::log_prob",
            &(self.batch, n),
            x.shape(),
        )?;
        let rows = (self.batch, k);
        // λ = e^{−2 log σ}; the parameters enter once with their tape, the other uses
        // are empty-tape copies (their gradients meet by the tensors' ids).
        let precision = (self.log_scale.with_empty_tape() * cst::<E>(-2.0)).exp();
        let weighted = self.loc.with_empty_tape() * precision.with_empty_tape();
        let constant = (self.loc * weighted.with_empty_tape()).sum::<(K,), Axis<1>>()
            * cst::<E>(-0.5)
            - self.log_scale.sum::<(K,), Axis<1>>()
            - cst::<E>(0.5 * LN_2PI * n.size() as f64)
            + self.logits.log_softmax::<Axis<0>>();
        let quadratic = x.with_empty_tape().square().matmul(precision.permute());
        let cross = x.matmul(weighted.permute());
        let comp = quadratic * cst::<E>(-0.5) + cross + constant.broadcast_like(&rows);
        Ok(comp.logsumexp::<(usize,), Axis<1>>())
    }

    /// Picks a component per example by Gumbel-max, then draws from it.
    fn sample(&self) -> Events<N, E, D> {
        let dev = self.logits.device();
        let (k, n) = *self.loc.shape();
        let (kk, nn, b) = (k.size(), n.size(), self.batch);
        let logits = self
            .logits
            .retaped::<NoneTape>()
            .broadcast_like::<_, Axis<0>>(&(b, k));
        let noisy = logits + gumbel(dev, &(b, k));
        let ks = argmax_rows(&to_f64_vec(&noisy), kk);
        let (loc, ls) = (self.loc.as_vec(), self.log_scale.as_vec());
        let pick = |v: &[E]| -> Vec<E> {
            ks.iter()
                .flat_map(|&c| v[c * nn..(c + 1) * nn].to_vec())
                .collect()
        };
        let loc = dev.tensor_from_vec(pick(&loc), (b, n));
        let scale = dev.tensor_from_vec(pick(&ls), (b, n)).exp();
        loc + scale * E::standard_normal(dev, &(b, n))
    }

    /// `Σ_k π_k μ_k` for every example, shape `(batch, N)`.
    fn mean(self) -> Events<N, E, D, T> {
        let (_, n) = *self.loc.shape();
        let w = self.logits.softmax::<Axis<0>>();
        w.matmul(self.loc)
            .broadcast_like::<_, Axis<0>>(&(self.batch, n))
            .contiguous()
    }

    fn fork(&self) -> Self {
        Self {
            batch: self.batch,
            logits: self.logits.with_empty_tape(),
            loc: self.loc.with_empty_tape(),
            log_scale: self.log_scale.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            batch: self.batch * n,
            ..self
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.logits.split_tape();
        let (_, b) = self.loc.split_tape();
        let (_, c) = self.log_scale.split_tape();
        a.merge(b).merge(c)
    }
}
