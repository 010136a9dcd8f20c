//! The VAE with a normalizing-flow guide (Rezende & Mohamed 2015; Kingma et al. 2016).

use std::marker::PhantomData;

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::flows::{IafGuide, PlanarGuide};
use latent::heads::{BernoulliHead, LikelihoodHead, PriorHead, StandardNormalPrior};
use latent::nn::Linear;
use latent::ops::check_width;
use latent::train::{Describe, ModelSpec, Named};
use latent::{AmortizedGuide, Error, Events, LatentVariableModel, LatentWidth, Real, Result};

use crate::mlp::{MlpDecoder, MlpEncoder};

/// A VAE whose guide `q(z|x)` is any amortized guide `G` (typically a flow guide:
/// [`PlanarGuide`], [`IafGuide`]), with a decoder `Dec: (batch, Z) → (batch, X)` and
/// the swappable likelihood and prior heads of [`crate::Vae`] (Bernoulli and standard
/// Normal by default).
///
/// Objective: `ELBO(x) = E_q[log p(x|z) + log p(z) − log q(z|x)]`; with a flow guide
/// the KL has no closed form, so [`latent::Elbo`] estimates it by Monte Carlo on the
/// same draws (Rezende & Mohamed 2015, eq. 15), with `log q(z|x)` from the flow's
/// forward pass.
#[derive(Debug, Clone)]
pub struct FlowVae<G, Dec, X: Dim, Z: Dim, Lik = BernoulliHead, Pri = StandardNormalPrior> {
    /// The guide `q(z|x)`.
    pub guide: G,
    /// The decoder network, producing the likelihood's parameters (e.g. logits).
    pub decoder: Dec,
    /// Turns the decoder output into `p(x|z)`.
    pub likelihood: Lik,
    /// Makes `p(z)`.
    pub prior: Pri,
    /// The sizes `X` and `Z` are the guide's input and output.
    pub sizes: PhantomData<fn() -> (X, Z)>,
}

impl<G, Dec, X: Dim, Z: Dim, Lik, Pri> FlowVae<G, Dec, X, Z, Lik, Pri> {
    /// A VAE of the given guide, decoder and heads.
    pub fn new(guide: G, decoder: Dec, likelihood: Lik, prior: Pri) -> Self {
        Self {
            guide,
            decoder,
            likelihood,
            prior,
            sizes: PhantomData,
        }
    }
}

/// The MLP VAE `X-H-Z` (as [`crate::MlpVae`]) with a guide of `K` planar steps.
pub type PlanarVae<X, H, Z, const K: usize, E, D> =
    FlowVae<PlanarGuide<MlpEncoder<X, H, E, D>, H, Z, K, E, D>, MlpDecoder<X, H, Z, E, D>, X, Z>;

/// The MLP VAE `X-H-Z` (as [`crate::MlpVae`]) with a guide of `K` IAF steps.
pub type IafVae<X, H, Z, const K: usize, E, D> =
    FlowVae<IafGuide<MlpEncoder<X, H, E, D>, H, Z, K, E, D>, MlpDecoder<X, H, Z, E, D>, X, Z>;

/// Builds a [`PlanarVae`] with sizes `(X, H, Z)`, layers initialized as PyTorch's
/// `nn.Linear`.
///
/// # Errors
/// Allocation errors.
pub fn planar_vae<X: Dim, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>>(
    device: &D,
    (x, h, z): (X, H, Z),
) -> Result<PlanarVae<X, H, Z, K, E, D>> {
    let encoder = (Linear::new(device, x, h)?, ReLU);
    let decoder = (Linear::new(device, z, h)?, ReLU, Linear::new(device, h, x)?);
    Ok(FlowVae::new(
        PlanarGuide::new(encoder, h, z, device)?,
        decoder,
        BernoulliHead,
        StandardNormalPrior,
    ))
}

/// Builds an [`IafVae`] with sizes `(X, H, Z)`, a context of `context` features and
/// MADEs of `made_hidden` units (Kingma et al. 2016 use the encoder's last hidden layer
/// as the context), layers initialized as PyTorch's `nn.Linear`.
///
/// # Errors
/// [`Error::InvalidSetting`] for zero widths; allocation errors.
pub fn iaf_vae<X: Dim, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>>(
    device: &D,
    (x, h, z): (X, H, Z),
    context: usize,
    made_hidden: usize,
) -> Result<IafVae<X, H, Z, K, E, D>> {
    let encoder = (Linear::new(device, x, h)?, ReLU);
    let decoder = (Linear::new(device, z, h)?, ReLU, Linear::new(device, h, x)?);
    Ok(FlowVae::new(
        IafGuide::new(encoder, (h, z), context, made_hidden, device)?,
        decoder,
        BernoulliHead,
        StandardNormalPrior,
    ))
}

impl<G, Dec, X: Dim, Z: Dim, E: Real, D: Device<E>, Lik, Pri> TensorCollection<E, D>
    for FlowVae<G, Dec, X, Z, Lik, Pri>
where
    G: TensorCollection<E, D>,
    Dec: TensorCollection<E, D>,
    Lik: TensorCollection<E, D>,
    Pri: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> =
        FlowVae<G::To<E2, D2>, Dec::To<E2, D2>, X, Z, Lik::To<E2, D2>, Pri::To<E2, D2>>;

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
            |(guide, decoder, likelihood, prior)| FlowVae::new(guide, decoder, likelihood, prior),
        )
    }
}

impl<G, Dec, X: Dim, Z: Dim, E, D, T, Lik, Pri> LatentVariableModel<E, D, T>
    for FlowVae<G, Dec, X, Z, Lik, Pri>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    G: AmortizedGuide<Events<X, E, D, T>, Z, E, D> + LatentWidth<Z>,
    G::Posterior: latent::Distribution<Z, E, D, Tape = T> + 'static,
    Dec: Module<Events<Z, E, D, T>, Output = Events<X, E, D, T>>,
    Lik: LikelihoodHead<X, E, D, T>,
    Pri: PriorHead<Z, E, D, T>,
{
    type X = X;
    type Z = Z;
    type Posterior = G::Posterior;
    type Prior = Pri::Dist;
    type Likelihood = Lik::Dist;

    fn guide(&self, x: Events<X, E, D, T>) -> Result<G::Posterior> {
        self.guide.posterior(x)
    }

    fn prior(&self, batch: usize, device: &D) -> Result<Pri::Dist> {
        self.prior.prior(batch, self.guide.latent_dim(), device)
    }

    fn likelihood(&self, z: Events<Z, E, D, T>) -> Result<Lik::Dist> {
        check_width("FlowVae::likelihood", self.guide.latent_dim(), z.shape().1)?;
        let out = self.decoder.try_forward(z).map_err(Error::device)?;
        self.likelihood.distribution(out)
    }
}

/// `kind = "flow-vae"`, sizes `x`, `z`, parts `guide` (the flow, e.g.
/// `"planar(k=4)"`), `likelihood`, `prior`, `encoder = "mlp"`.
impl<G, Dec, X: Dim, Z: Dim, Lik: Named, Pri: Named> Describe for FlowVae<G, Dec, X, Z, Lik, Pri>
where
    G: Named + LatentWidth<Z>,
    Dec: DecoderWidth,
{
    fn spec(&self) -> ModelSpec {
        ModelSpec::new("flow-vae")
            .size("x", self.decoder.output_width())
            .size("z", self.guide.latent_dim().size())
            .part("guide", self.guide.name())
            .part("likelihood", self.likelihood.name())
            .part("prior", self.prior.name())
    }
}

/// The width of a decoder's output, for [`Describe`].
pub trait DecoderWidth {
    /// `X`.
    fn output_width(&self) -> usize;
}

impl<X: Dim, H: Dim, Z: Dim, E: Dtype, D: Storage<E>> DecoderWidth for MlpDecoder<X, H, Z, E, D> {
    fn output_width(&self) -> usize {
        self.2.weight.shape().0.size()
    }
}
