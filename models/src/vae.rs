//! The variational autoencoder (Kingma & Welling 2014), composed from `latent`'s parts.

use dfdx::prelude::*;
use latent::distributions::{Bernoulli, Normal, StandardNormal};
use latent::{DiagonalNormalGuide, Error, Events, LatentVariableModel, Real, Result};

/// A VAE with a diagonal-Normal guide, a standard-Normal prior and a Bernoulli
/// likelihood on decoder logits:
///
/// - guide `q(z|x) = N(μ(x), diag σ²(x))` from any encoder `Enc: (batch, X) → (batch, H)`
///   and two linear heads ([`DiagonalNormalGuide`]);
/// - prior `p(z) = N(0, I_Z)`;
/// - likelihood `p(x|z) = Π_i Bernoulli(x_i; σ(ℓ_i))`, `ℓ = Dec(z)` with any decoder
///   `Dec: (batch, Z) → (batch, X)` producing logits.
///
/// Objective (Kingma & Welling 2014, eq. 10): `ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))`,
/// with the KL in closed form (their Appendix B). Train it with [`latent::Elbo`] and
/// [`latent::train::fit`].
///
/// The sizes are compile-time constants, so a guide and decoder that do not fit
/// together do not compile.
#[derive(Debug, Clone)]
pub struct Vae<Enc, Dec, const H: usize, const Z: usize, E: Dtype, D: Storage<E>> {
    /// The amortized guide `q(z|x)`.
    pub guide: DiagonalNormalGuide<Enc, H, Z, E, D>,
    /// The decoder network, producing the likelihood's logits.
    pub decoder: Dec,
}

impl<Enc, Dec, const H: usize, const Z: usize, E: Real, D: Device<E>> Vae<Enc, Dec, H, Z, E, D> {
    /// A VAE from an encoder and a decoder; the guide's heads are created on `device`.
    pub fn new(encoder: Enc, decoder: Dec, device: &D) -> Self {
        Self {
            guide: DiagonalNormalGuide::new(encoder, device),
            decoder,
        }
    }
}

impl<Enc, Dec, const H: usize, const Z: usize, E: Real, D: Device<E>> TensorCollection<E, D>
    for Vae<Enc, Dec, H, Z, E, D>
where
    Enc: TensorCollection<E, D>,
    Dec: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> = Vae<Enc::To<E2, D2>, Dec::To<E2, D2>, H, Z, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("guide", |s| &s.guide, |s| &mut s.guide),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
            ),
            |(guide, decoder)| Vae { guide, decoder },
        )
    }
}

impl<Enc, Dec, const X: usize, const H: usize, const Z: usize, E, D, T>
    LatentVariableModel<X, Z, E, D, T> for Vae<Enc, Dec, H, Z, E, D>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Enc: Module<Events<X, E, D, T>, Output = Tensor<(usize, Const<H>), E, D, T>>,
    Dec: Module<Events<Z, E, D, T>, Output = Events<X, E, D, T>>,
{
    type Posterior = Normal<Z, E, D, T>;
    type Prior = StandardNormal<Z, E, D, T>;
    type Likelihood = Bernoulli<X, E, D, T>;

    fn guide(&self, x: Events<X, E, D, T>) -> Result<Normal<Z, E, D, T>> {
        latent::AmortizedGuide::<_, Z, E, D>::posterior(&self.guide, x)
    }

    fn prior(&self, batch: usize, device: &D) -> Result<StandardNormal<Z, E, D, T>> {
        Ok(StandardNormal::new(batch, device))
    }

    fn likelihood(&self, z: Events<Z, E, D, T>) -> Result<Bernoulli<X, E, D, T>> {
        let logits = self.decoder.try_forward(z).map_err(Error::device)?;
        Ok(Bernoulli::new(logits))
    }
}
