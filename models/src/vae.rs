//! The variational autoencoder (Kingma & Welling 2014), composed from `latent`'s parts.

use dfdx::prelude::*;
use latent::distributions::Normal;
use latent::heads::{BernoulliHead, LikelihoodHead, PriorHead, StandardNormalPrior};
use latent::{
    AmortizedGuide, DiagonalNormalGuide, Error, Events, LatentVariableModel, Real, Result,
};

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
///
/// The likelihood and the prior are swappable heads (`Lik`, `Pri`, see
/// [`latent::heads`]): the defaults are the Bernoulli likelihood and the standard
/// Normal prior; [`Vae::with_heads`] takes e.g. a `ContinuousBernoulliHead`, a
/// `LearnedGaussianHead` or a `MixturePrior` (whose KL `Elbo` then estimates by Monte
/// Carlo, since the pair has no closed form).
#[derive(Debug, Clone)]
pub struct Vae<
    Enc,
    Dec,
    const H: usize,
    const Z: usize,
    E: Dtype,
    D: Storage<E>,
    Lik = BernoulliHead,
    Pri = StandardNormalPrior,
> {
    /// The amortized guide `q(z|x)`.
    pub guide: DiagonalNormalGuide<Enc, H, Z, E, D>,
    /// The decoder network, producing the likelihood's parameters (e.g. logits).
    pub decoder: Dec,
    /// Turns the decoder output into `p(x|z)`.
    pub likelihood: Lik,
    /// Makes `p(z)`.
    pub prior: Pri,
}

impl<Enc, Dec, const H: usize, const Z: usize, E: Real, D: Device<E>> Vae<Enc, Dec, H, Z, E, D> {
    /// A VAE from an encoder and a decoder, with a Bernoulli likelihood and a standard
    /// Normal prior; the guide's heads are created on `device`.
    pub fn new(encoder: Enc, decoder: Dec, device: &D) -> Self {
        Self::with_heads(encoder, decoder, BernoulliHead, StandardNormalPrior, device)
    }
}

impl<Enc, Dec, const H: usize, const Z: usize, E: Real, D: Device<E>, Lik, Pri>
    Vae<Enc, Dec, H, Z, E, D, Lik, Pri>
{
    /// A VAE with the given likelihood and prior heads.
    pub fn with_heads(encoder: Enc, decoder: Dec, likelihood: Lik, prior: Pri, device: &D) -> Self {
        Self {
            guide: DiagonalNormalGuide::new(encoder, device),
            decoder,
            likelihood,
            prior,
        }
    }
}

impl<Enc, Dec, const H: usize, const Z: usize, E: Real, D: Device<E>, Lik, Pri>
    TensorCollection<E, D> for Vae<Enc, Dec, H, Z, E, D, Lik, Pri>
where
    Enc: TensorCollection<E, D>,
    Dec: TensorCollection<E, D>,
    Lik: TensorCollection<E, D>,
    Pri: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> =
        Vae<Enc::To<E2, D2>, Dec::To<E2, D2>, H, Z, E2, D2, Lik::To<E2, D2>, Pri::To<E2, D2>>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("guide", |s| &s.guide, |s| &mut s.guide),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
                Self::module("likelihood", |s| &s.likelihood, |s| &mut s.likelihood),
                Self::module("prior", |s| &s.prior, |s| &mut s.prior),
            ),
            |(guide, decoder, likelihood, prior)| Vae {
                guide,
                decoder,
                likelihood,
                prior,
            },
        )
    }
}

impl<Enc, Dec, const X: usize, const H: usize, const Z: usize, E, D, T, Lik, Pri>
    LatentVariableModel<X, Z, E, D, T> for Vae<Enc, Dec, H, Z, E, D, Lik, Pri>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Enc: Module<Events<Const<X>, E, D, T>, Output = Tensor<(usize, Const<H>), E, D, T>>,
    Dec: Module<Events<Const<Z>, E, D, T>, Output = Events<Const<X>, E, D, T>>,
    Lik: LikelihoodHead<X, E, D, T>,
    Pri: PriorHead<Z, E, D, T>,
{
    type Posterior = Normal<Const<Z>, E, D, T>;
    type Prior = Pri::Dist;
    type Likelihood = Lik::Dist;

    fn guide(&self, x: Events<Const<X>, E, D, T>) -> Result<Normal<Const<Z>, E, D, T>> {
        self.guide.posterior(x)
    }

    fn prior(&self, batch: usize, device: &D) -> Result<Pri::Dist> {
        self.prior.prior(batch, device)
    }

    fn likelihood(&self, z: Events<Const<Z>, E, D, T>) -> Result<Lik::Dist> {
        let out = self.decoder.try_forward(z).map_err(Error::device)?;
        self.likelihood.distribution(out)
    }
}
