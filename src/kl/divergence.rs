//! The closed-form KL traits, apart from the registry and the pairs that use them.

use crate::error::Result;

/// `KL(self ‖ p)` in closed form.
///
/// Both arguments are consumed (use [`Distribution::fork`](crate::Distribution::fork) to keep one).
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::{KlDivergence, Normal};
///
/// let dev = Cpu::default();
/// let normal = |mu: f64, log_sigma: f64| {
///     Normal::new(
///         dev.tensor_from_vec(vec![mu], (1, Const::<1>)),
///         dev.tensor_from_vec(vec![log_sigma], (1, Const::<1>)),
///     )
/// };
/// // KL(N(1, 1) ‖ N(0, e²)) = ln(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²) / (2σ_p²) − ½.
/// let kl = normal(1.0, 0.0)?.kl_divergence(normal(0.0, 1.0)?)?;
/// let expected = 1.0 + 2.0 / (2.0 * (2.0f64).exp()) - 0.5;
/// assert!((kl.as_vec()[0] - expected).abs() < 1e-12);
/// # Ok::<(), latent::Error>(())
/// ```
pub trait KlDivergence<P> {
    /// Per-example KL, shape `(batch,)`, in nats.
    type Output;
    /// `KL(self ‖ p)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the batch sizes differ.
    fn kl_divergence(self, p: P) -> Result<Self::Output>;
}

/// `KL(q ‖ p)` of factorized distributions, one value per event dimension: shape
/// `(batch, N)`, nats. Summing over the dimensions gives [`KlDivergence`]. Used for
/// the KL-per-latent-dimension diagnostic.
pub trait KlPerDimension<P> {
    /// Per-dimension KL, shape `(batch, N)`.
    type Output;
    /// `KL(q_i ‖ p_i)` for each dimension `i`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the batch sizes differ.
    fn kl_per_dimension(self, p: P) -> Result<Self::Output>;
}
