//! Two dependent blocks of latents: `z_a ~ p(z_a)`, `z_b ~ p(z_b | z_a)`.

use dfdx::prelude::*;

use super::{check_shape, Distribution, Normal, Reparameterizable};
use crate::error::{Error, Result};
use crate::inference::guide::AmortizedGuide;
use crate::kernels::ops::{Events, PerExample, Real, Scored};

/// A batch of joint distributions over two blocks of latents, the second depending on
/// the first: `p(z_a, z_b) = p(z_a) · p(z_b | z_a)`, with `p(z_b | z_a)` a diagonal
/// Normal made by a network `C` from `z_a` (any [`AmortizedGuide`] whose posterior is a
/// [`Normal`], e.g. a [`crate::DiagonalNormalGuide`] on an MLP).
///
/// This is one stochastic layer of a hierarchical VAE (Sønderby et al. 2016; Tomczak &
/// Welling 2018, §3): the guide `q(z1|x) q(z2|z1)` and the prior `p(z2) p(z1|z2)` are
/// both chains. Events are rows `[z_a, z_b]` (`first_block_first`), or `[z_b, z_a]`, so
/// a guide and a prior that sample their blocks in opposite orders lay them out alike;
/// widths are run-time (`usize`).
///
/// - `log_prob(z) = log p(z_a) + log p(z_b | z_a)`, nats per example;
/// - `rsample`: `z_a` by `P`'s reparameterization, then `z_b = μ(z_a) + σ(z_a) ⊙ ε`, so
///   gradients flow through both blocks and the network;
/// - `mean` has no closed form (`E[z_b] = E[μ(z_a)]`): the average of
///   [`super::MEAN_DRAWS`] draws.
pub struct ConditionalChain<P, C> {
    /// `p(z_a)`, a batch over `R^{Z_a}`.
    pub first: P,
    /// The network `z_a ↦ p(z_b | z_a)` (a clone shares the weights).
    pub then: C,
    /// The width `Z_b` of the second block.
    pub second_width: usize,
    /// Whether rows are `[z_a, z_b]` (else `[z_b, z_a]`).
    pub first_block_first: bool,
}

impl<P, C> ConditionalChain<P, C> {
    /// The chain of `first` and the network `then` producing `Z_b = second_width`
    /// dimensions, laid out `[z_a, z_b]` if `first_block_first`.
    pub fn new(first: P, then: C, second_width: usize, first_block_first: bool) -> Self {
        Self {
            first,
            then,
            second_width,
            first_block_first,
        }
    }
}

/// The rows `[a, b]` if `a_first`, else `[b, a]`.
fn layout<E: Dtype, D: Device<E>, T: Tape<E, D>>(
    a_first: bool,
    a: Events<usize, E, D, T>,
    b: Events<usize, E, D, T>,
) -> Events<usize, E, D, T> {
    if a_first {
        (a, b).concat_along(Axis::<1>)
    } else {
        (b, a).concat_along(Axis::<1>)
    }
}

/// `(z_a, z_b)` of rows `z` (shape `(batch, Z_a + Z_b)`), with `z`'s tape split
/// between them.
#[allow(clippy::type_complexity)]
fn split<E: Dtype, D: Device<E>, T: Tape<E, D>>(
    second_width: usize,
    first_block_first: bool,
    z: Events<usize, E, D, T>,
) -> Result<(Events<usize, E, D, T>, Events<usize, E, D, T>)> {
    let (b, width) = *z.shape();
    let wb = second_width;
    if width <= wb {
        return Err(Error::shape(
            "ConditionalChain (event width)",
            &[wb + 1],
            &[width],
        ));
    }
    let wa = width - wb;
    let (ra, rb) = if first_block_first {
        (0..wa, wa..width)
    } else {
        (wb..width, 0..wb)
    };
    // Not dfdx's `slice`, whose backward overwrites the gradient of `z` (see
    // `ops::columns`): `z` also feeds the likelihood and the other log-density.
    let zb = crate::kernels::ops::columns(z.with_empty_tape(), rb);
    let za = crate::kernels::ops::columns(z, ra);
    match (za, zb) {
        (Ok(za), Ok(zb)) => Ok((za, zb)),
        _ => Err(Error::shape(
            "ConditionalChain (split)",
            &[b, width],
            &[b, width],
        )),
    }
}

impl<E, D, P, C> Distribution<usize, E, D> for ConditionalChain<P, C>
where
    E: Real,
    D: Device<E>,
    P: Reparameterizable<usize, E, D>,
    C: AmortizedGuide<
            Events<usize, E, D, P::Tape>,
            usize,
            E,
            D,
            Posterior = Normal<usize, E, D, P::Tape>,
        > + Clone,
{
    type Tape = P::Tape;

    fn batch_size(&self) -> usize {
        self.first.batch_size()
    }

    fn device(&self) -> D {
        self.first.device()
    }

    /// `log p(z_a) + log p(z_b | z_a)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for rows of the wrong width or batch.
    fn log_prob(self, z: Events<usize, E, D, Self::Tape>) -> Result<PerExample<E, D, Self::Tape>> {
        let (za, zb) = split(self.second_width, self.first_block_first, z)?;
        let cond = self.then.posterior(za.with_empty_tape())?;
        check_shape("ConditionalChain::log_prob", cond.loc.shape(), zb.shape())?;
        Ok(self.first.log_prob(za)? + cond.log_prob(zb)?)
    }

    fn sample(&self) -> Events<usize, E, D> {
        self.fork().rsample().retaped::<NoneTape>()
    }

    /// The average of [`super::MEAN_DRAWS`] draws (no closed form).
    fn mean(self) -> Events<usize, E, D, Self::Tape> {
        super::monte_carlo_mean(self)
    }

    fn fork(&self) -> Self {
        Self {
            first: self.first.fork(),
            then: self.then.clone(),
            ..*self
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            first: self.first.repeat(n),
            ..self
        }
    }

    fn into_tape(self) -> Self::Tape {
        self.first.into_tape()
    }
}

impl<E, D, P, C> Reparameterizable<usize, E, D> for ConditionalChain<P, C>
where
    E: Real,
    D: Device<E>,
    P: Reparameterizable<usize, E, D>,
    C: AmortizedGuide<
            Events<usize, E, D, P::Tape>,
            usize,
            E,
            D,
            Posterior = Normal<usize, E, D, P::Tape>,
        > + Clone,
{
    /// # Panics
    /// If the network fails on the device (an allocation failure), as dfdx's own ops.
    fn rsample(self) -> Events<usize, E, D, Self::Tape> {
        let za = self.first.rsample();
        let zb = match self.then.posterior(za.with_empty_tape()) {
            Ok(q) => q.rsample(),
            Err(e) => panic!("ConditionalChain::rsample: {e}"),
        };
        layout(self.first_block_first, za, zb)
    }

    fn rsample_with_log_prob(self) -> Result<Scored<usize, E, D, Self::Tape>> {
        let (za, lpa) = self.first.rsample_with_log_prob()?;
        let (zb, lpb) = self
            .then
            .posterior(za.with_empty_tape())?
            .rsample_with_log_prob()?;
        Ok((layout(self.first_block_first, za, zb), lpa + lpb))
    }
}

impl<E, D, P, C> super::GuideDistribution<usize, E, D> for ConditionalChain<P, C>
where
    E: Real,
    D: Device<E>,
    P: Reparameterizable<usize, E, D>,
    C: AmortizedGuide<
            Events<usize, E, D, P::Tape>,
            usize,
            E,
            D,
            Posterior = Normal<usize, E, D, P::Tape>,
        > + Clone,
{
    fn draw(self) -> Result<crate::distributions::Drawn<usize, E, D, Self::Tape>> {
        super::pathwise_draw(self)
    }

    fn draw_with_log_prob(self) -> Result<super::GuideDraw<usize, E, D, Self::Tape>> {
        super::pathwise_draw_with_log_prob(self)
    }
}
