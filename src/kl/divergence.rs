//! The closed-form KL traits, apart from the registry and the pairs that use them.

use crate::error::Result;

/// `KL(self ‖ p)` in closed form.
///
/// Both arguments are consumed (use [`Distribution::fork`](crate::Distribution::fork) to keep one).
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
