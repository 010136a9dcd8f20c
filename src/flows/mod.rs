//! Normalizing flows: invertible maps with a tractable Jacobian that turn a simple
//! reparameterizable distribution into a richer one (Rezende & Mohamed 2015,
//! "Variational Inference with Normalizing Flows").
//!
//! If `z₀ ~ q₀` and `z_K = f_K ∘ … ∘ f_1(z₀)` with invertible, differentiable `f_k`,
//! then (their eq. 6–7)
//!
//! `log q_K(z_K) = log q₀(z₀) − Σ_k log |det ∂f_k/∂z_{k−1}|`.
//!
//! - [`Bijector`]: one such map, applied row by row to a batch `(batch, N)`, with its
//!   per-example `log |det J|`; its parameters may differ per example (amortized flows,
//!   whose parameters the encoder outputs), so like a distribution it is forked,
//!   repeated for `L` samples, and owns the tape of its parameters. A `Vec` of bijectors
//!   is the bijector of their composition (applied first to last).
//! - [`TransformedDistribution`]: a [`Reparameterizable`](crate::Reparameterizable)
//!   base pushed through a bijector, itself `Reparameterizable`: its
//!   [`rsample_with_log_prob`](crate::Reparameterizable::rsample_with_log_prob) returns
//!   `z_K` and `log q_K(z_K)` from one forward pass, so [`crate::Elbo`] (with the Monte
//!   Carlo KL) and [`crate::ImportanceWeighted`] work with it unchanged.
//! - [`Planar`]: `f(z) = z + û · tanh(wᵀz + b)` (Rezende & Mohamed 2015, §4.1 and
//!   Appendix A.1), forward only.
//! - [`IafStep`] and [`Made`]: the inverse autoregressive flow (Kingma et al. 2016,
//!   "Improved Variational Inference with Inverse Autoregressive Flow", eq. 11–14) on a
//!   MADE network (Germain et al. 2015) conditioned on a context from the encoder;
//!   its inverse is computed in `N` passes.
//! - [`PlanarGuide`] and [`IafGuide`]: amortized guides `q(z|x)` made of a diagonal
//!   Normal and `K` flow steps, drop-in guides for a VAE.
//!
//! The conformance kit checks any bijector's `log |det J|` against a numerical Jacobian
//! and `f⁻¹ ∘ f = id` where the inverse exists (`conformance::check_bijector`).

use dfdx::prelude::*;

use crate::error::Result;
use crate::kernels::ops::{Events, PerExample, Scored};

mod iaf;
mod iaf_guide;
mod planar;
mod planar_guide;
mod transformed;

pub use crate::distributions::MEAN_DRAWS;
pub use iaf::{IafStep, Made, MadeMasks, IAF_GATE_BIAS};
pub use iaf_guide::{IafGuide, IafPosterior};
pub use planar::Planar;
pub use planar_guide::{PlanarGuide, PlanarPosterior};
pub use transformed::TransformedDistribution;

/// An invertible, differentiable map `f: R^N → R^N` applied to each row of a batch,
/// with the log absolute determinant of its Jacobian per row.
///
/// Like a [`Distribution`](crate::Distribution), a bijector holds a batch of parameter
/// rows (one per example, e.g. output by an encoder) or shares global ones, owns the
/// tape of its per-example parameters, and is consumed by [`Bijector::forward`].
pub trait Bijector<N: Dim, E: Dtype, D: Device<E>>: Sized {
    /// The tape its parameters carry (`OwnedTape<E, D>` or `NoneTape`).
    type Tape: Tape<E, D>;

    /// The number of rows (examples) its parameters are for.
    fn batch_size(&self) -> usize;

    /// `y = f(z)` and `log |det ∂f/∂z|` per row, shapes `(batch, N)` and `(batch,)`,
    /// nats. Both outputs carry tapes: combine both into the loss.
    ///
    /// # Panics
    /// If `z` is not `(batch, N)` for this bijector's batch and `N`
    /// ([`TransformedDistribution::new`] checks this once).
    fn forward(self, z: Events<N, E, D, Self::Tape>) -> Scored<N, E, D, Self::Tape>;

    /// `z = f⁻¹(y)` and `log |det ∂f/∂z|` at that `z` (the same quantity as
    /// [`Bijector::forward`] returns, so `log p_Y(y) = log p_Z(z) − log|det|`).
    ///
    /// # Errors
    /// [`crate::Error::Unsupported`] for a bijector without a computable inverse (the
    /// default); [`crate::Error::ShapeMismatch`] for a `y` of the wrong shape.
    fn inverse(self, y: Events<N, E, D, Self::Tape>) -> Result<Scored<N, E, D, Self::Tape>> {
        let _ = y;
        Err(crate::Error::unsupported(
            "the inverse of this bijector",
            "it has no closed-form or iterative inverse",
        ))
    }

    /// A copy sharing the parameters (same tensor ids) with an empty tape.
    fn fork(&self) -> Self;

    /// Repeats each row's parameters `n` times, sample-major (row `s·batch + b` is row
    /// `b`), as [`Distribution::repeat`](crate::Distribution::repeat).
    fn repeat(self, n: usize) -> Self;

    /// Consumes the bijector and returns the tape its parameters carry.
    fn into_tape(self) -> Self::Tape;
}

/// The composition `f_K ∘ … ∘ f_1` of the bijectors in order (`self[0]` first):
/// `log |det J| = Σ_k log |det J_k|`. An empty `Vec` is the identity (its batch size
/// is taken from the input).
impl<N: Dim, E: Dtype, D: Device<E>, B: Bijector<N, E, D>> Bijector<N, E, D> for Vec<B> {
    type Tape = B::Tape;

    fn batch_size(&self) -> usize {
        self.first().map_or(0, B::batch_size)
    }

    fn forward(self, z: Events<N, E, D, Self::Tape>) -> Scored<N, E, D, Self::Tape> {
        let b = z.shape().0;
        let mut total: PerExample<E, D, Self::Tape> =
            z.device().zeros_like(&(b,)).put_tape(Default::default());
        let mut y = z;
        for f in self {
            let (next, ld) = f.forward(y);
            y = next;
            total = total + ld;
        }
        (y, total)
    }

    fn inverse(self, y: Events<N, E, D, Self::Tape>) -> Result<Scored<N, E, D, Self::Tape>> {
        let b = y.shape().0;
        let mut total: PerExample<E, D, Self::Tape> =
            y.device().zeros_like(&(b,)).put_tape(Default::default());
        let mut z = y;
        for f in self.into_iter().rev() {
            let (prev, ld) = f.inverse(z)?;
            z = prev;
            total = total + ld;
        }
        Ok((z, total))
    }

    fn fork(&self) -> Self {
        self.iter().map(B::fork).collect()
    }

    fn repeat(self, n: usize) -> Self {
        self.into_iter().map(|f| f.repeat(n)).collect()
    }

    fn into_tape(self) -> Self::Tape {
        self.into_iter()
            .fold(Default::default(), |t: Self::Tape, f| {
                t.merge(f.into_tape())
            })
    }
}
