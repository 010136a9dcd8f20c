//! The planar flow of Rezende & Mohamed 2015.

use dfdx::prelude::*;

use super::Bijector;
use crate::distributions::check_shape;
use crate::error::Result;
use crate::kernels::ops::{cst, Events, PerExample, Real, Scored};

/// One planar step per row (Rezende & Mohamed 2015, "Variational Inference with
/// Normalizing Flows", §4.1, eq. 10–12, and Appendix A.1):
///
/// `f(z) = z + û · tanh(wᵀz + b)`, `log |det ∂f/∂z| = log |1 + ûᵀψ(z)|`,
/// `ψ(z) = (1 − tanh²(wᵀz + b)) · w`,
///
/// with `u` made into `û = u + (m(wᵀu) − wᵀu) · w / ‖w‖²`, `m(a) = −1 + softplus(a)`,
/// so that `wᵀû > −1` and `f` is invertible (their Appendix A.1). Then
/// `1 + ûᵀψ = 1 + (1 − tanh²) · m(wᵀu) > 0`.
///
/// Parameters per row: `u`, `w` of shape `(batch, N)` and `b` of shape `(batch,)`,
/// typically output by the encoder ([`super::PlanarGuide`]). The inverse has no closed
/// form: [`Bijector::inverse`] is [`crate::Error::Unsupported`], so a
/// [`super::TransformedDistribution`] of planar steps scores only its own draws (which
/// is all the ELBO and the IWAE need).
pub struct Planar<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `u`, shape `(batch, N)` (before the invertibility correction).
    pub u: Events<N, E, D, T>,
    /// `w`, shape `(batch, N)`.
    pub w: Events<N, E, D, T>,
    /// `b`, shape `(batch,)`.
    pub b: PerExample<E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Planar<N, E, D, T> {
    /// A planar step from its parameters.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if `u` and `w` differ in shape or `b` has
    /// another batch size.
    pub fn new(
        u: Events<N, E, D, T>,
        w: Events<N, E, D, T>,
        b: PerExample<E, D, T>,
    ) -> Result<Self> {
        check_shape("Planar::new (w)", u.shape(), w.shape())?;
        super::super::distributions::check_batch("Planar::new (b)", u.shape().0, b.shape().0)?;
        Ok(Self { u, w, b })
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Bijector<N, E, D> for Planar<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.u.shape().0
    }

    fn forward(self, z: Events<N, E, D, T>) -> Scored<N, E, D, T> {
        let shape = *z.shape();
        let Self { u, w, b } = self;
        let we = || w.with_empty_tape();
        // a = wᵀz + b, h = tanh(a)
        let a = (we() * z.with_empty_tape()).sum::<(usize,), Axis<1>>() + b;
        let h = a.tanh();
        // wᵀu, m(wᵀu) = softplus(wᵀu) − 1 (softplus(x) = BCEWithLogits(x, 0))
        let wu = (we() * u.with_empty_tape()).sum::<(usize,), Axis<1>>();
        let zeros = wu.device().zeros_like(wu.shape()).put_tape(T::default());
        let m = wu.with_empty_tape().bce_with_logits(zeros) - cst::<E>(1.0);
        let norm2 = we().square().sum::<(usize,), Axis<1>>();
        let coef = (m.with_empty_tape() - wu) / norm2;
        let u_hat = u + coef.broadcast_like::<_, Axis<1>>(&shape) * w;
        let y = z + u_hat * h.with_empty_tape().broadcast_like::<_, Axis<1>>(&shape);
        // 1 + ûᵀψ = 1 + (1 − h²) wᵀû, and wᵀû = m.
        let det = (-h.square() + cst::<E>(1.0)) * m + cst::<E>(1.0);
        (y, det.ln())
    }

    fn fork(&self) -> Self {
        Self {
            u: self.u.with_empty_tape(),
            w: self.w.with_empty_tape(),
            b: self.b.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        let b = self.b.shape().0;
        Self {
            u: crate::kernels::ops::repeat_rows(self.u, n),
            w: crate::kernels::ops::repeat_rows(self.w, n),
            b: if n == 1 {
                self.b
            } else {
                self.b
                    .broadcast_like::<_, Axis<0>>(&(n, b))
                    .reshape_like(&(n * b,))
            },
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.u.split_tape();
        let (_, b) = self.w.split_tape();
        let (_, c) = self.b.split_tape();
        a.merge(b).merge(c)
    }
}
