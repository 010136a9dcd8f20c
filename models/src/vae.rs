//! The variational autoencoder (Kingma & Welling 2014), composed from `latent`'s parts.

use std::marker::PhantomData;

use dfdx::prelude::*;
use latent::distributions::Normal;
use latent::heads::{BernoulliHead, LikelihoodHead, PriorHead, StandardNormalPrior};
use latent::ops::check_width;
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
/// The sizes `X` (observations), `H` (encoder features) and `Z` (latents) are dfdx
/// `Dim`s: with `Const` sizes a guide and decoder that do not fit together do not
/// compile; with `usize` sizes (chosen at run time) they are checked when the model is
/// run and a mismatch is an [`Error::ShapeMismatch`].
///
/// With `Const` sizes, this model estimates its ELBO:
///
/// ```
/// use dfdx::nn::modules::ReLU;
/// use dfdx::prelude::*;
/// use latent::nn::Linear;
/// use latent::Elbo;
/// use latent_models::Vae;
///
/// let dev = Cpu::default();
/// let encoder = (Linear::<Const<784>, Const<64>, f32, Cpu>::new(&dev, Const, Const).unwrap(), ReLU);
/// let decoder = Linear::<Const<8>, Const<784>, f32, Cpu>::new(&dev, Const, Const).unwrap();
/// let model: Vae<_, _, Const<784>, Const<64>, Const<8>, f32, Cpu> =
///     Vae::new(encoder, decoder, Const, Const, &dev).unwrap();
/// let x: Tensor<(usize, Const<784>), f32, Cpu> = dev.zeros_like(&(2, Const));
/// let terms = Elbo::default().estimate(&model, x).unwrap();
/// assert_eq!(terms.elbo.shape(), &(2,));
/// ```
///
/// and the same model whose decoder ends at 700 pixels instead of 784 does not compile
/// (it is no `LatentVariableModel`):
///
/// ```compile_fail
/// use dfdx::nn::modules::ReLU;
/// use dfdx::prelude::*;
/// use latent::nn::Linear;
/// use latent::Elbo;
/// use latent_models::Vae;
///
/// let dev = Cpu::default();
/// let encoder = (Linear::<Const<784>, Const<64>, f32, Cpu>::new(&dev, Const, Const).unwrap(), ReLU);
/// let decoder = Linear::<Const<8>, Const<700>, f32, Cpu>::new(&dev, Const, Const).unwrap();
/// let model: Vae<_, _, Const<784>, Const<64>, Const<8>, f32, Cpu> =
///     Vae::new(encoder, decoder, Const, Const, &dev).unwrap();
/// let x: Tensor<(usize, Const<784>), f32, Cpu> = dev.zeros_like(&(2, Const));
/// let terms = Elbo::default().estimate(&model, x).unwrap();
/// ```
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
    X: Dim,
    H: Dim,
    Z: Dim,
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
    /// What the encoder sees of `x` ([`InputTransform::Identity`] unless set with
    /// [`Vae::with_input`]). The likelihood always scores the untransformed `x`.
    pub input: InputTransform,
    /// The observation size `X` is the encoder's input and the decoder's output width.
    pub observations: PhantomData<X>,
}

/// A fixed transform of the observations before the encoder: `log1p` for counts, whose
/// raw values span orders of magnitude (scVI encodes `ln(1 + x)` of its counts, Lopez
/// et al. 2018, Methods). The likelihood still scores the raw `x`, so the ELBO and the
/// NLL are those of the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputTransform {
    /// `x` as it is.
    #[default]
    Identity,
    /// `ln(1 + x)`, element-wise.
    Log1p,
}

impl InputTransform {
    /// The transform's name in a model description (`"identity"`, `"log1p"`).
    pub fn name(&self) -> &'static str {
        match self {
            InputTransform::Identity => "identity",
            InputTransform::Log1p => "log1p",
        }
    }

    /// Applies the transform, shape `(batch, X)` → `(batch, X)`.
    pub fn apply<X: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
        &self,
        x: Events<X, E, D, T>,
    ) -> Events<X, E, D, T> {
        match self {
            InputTransform::Identity => x,
            InputTransform::Log1p => (x + E::one()).ln(),
        }
    }
}

impl<Enc, Dec, X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>> Vae<Enc, Dec, X, H, Z, E, D> {
    /// A VAE from an encoder `(batch, X) → (batch, H)` and a decoder
    /// `(batch, Z) → (batch, X)`, with a Bernoulli likelihood and a standard Normal
    /// prior; the guide's heads `H → Z` (`hidden`, `latent`: `Const` for sizes fixed at
    /// compile time) are created on `device`.
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn new(encoder: Enc, decoder: Dec, hidden: H, latent: Z, device: &D) -> Result<Self> {
        Self::with_heads(
            encoder,
            decoder,
            BernoulliHead,
            StandardNormalPrior,
            (hidden, latent),
            device,
        )
    }
}

impl<Enc, Dec, X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>, Lik, Pri>
    Vae<Enc, Dec, X, H, Z, E, D, Lik, Pri>
{
    /// A VAE with the given likelihood and prior heads (see [`Vae::new`]).
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn with_heads(
        encoder: Enc,
        decoder: Dec,
        likelihood: Lik,
        prior: Pri,
        (hidden, latent): (H, Z),
        device: &D,
    ) -> Result<Self> {
        Ok(Self {
            guide: DiagonalNormalGuide::new(encoder, hidden, latent, device)?,
            decoder,
            likelihood,
            prior,
            input: InputTransform::Identity,
            observations: PhantomData,
        })
    }

    /// The same model with the encoder reading `input(x)` (e.g.
    /// [`InputTransform::Log1p`] for counts).
    pub fn with_input(self, input: InputTransform) -> Self {
        Self { input, ..self }
    }
}

impl<Enc, Dec, X, H, Z, E: Real, D: Device<E>, Lik, Pri> TensorCollection<E, D>
    for Vae<Enc, Dec, X, H, Z, E, D, Lik, Pri>
where
    X: Dim,
    H: Dim + Default,
    Z: Dim + Default,
    Enc: TensorCollection<E, D>,
    Dec: TensorCollection<E, D>,
    Lik: TensorCollection<E, D>,
    Pri: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> =
        Vae<Enc::To<E2, D2>, Dec::To<E2, D2>, X, H, Z, E2, D2, Lik::To<E2, D2>, Pri::To<E2, D2>>;

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
                // Not a tensor: a rebuilt model reads x as it is; describe() records
                // the transform, so loading a checkpoint into the wrong model is refused.
                input: InputTransform::Identity,
                observations: PhantomData,
            },
        )
    }
}

impl<Enc, Dec, X: Dim, H: Dim, Z: Dim, E, D, T, Lik, Pri> LatentVariableModel<E, D, T>
    for Vae<Enc, Dec, X, H, Z, E, D, Lik, Pri>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Enc: Module<Events<X, E, D, T>, Output = Tensor<(usize, H), E, D, T>>,
    Dec: Module<Events<Z, E, D, T>, Output = Events<X, E, D, T>>,
    Lik: LikelihoodHead<X, E, D, T>,
    Pri: PriorHead<Z, E, D, T>,
{
    type X = X;
    type Z = Z;
    type Posterior = Normal<Z, E, D, T>;
    type Prior = Pri::Dist;
    type Likelihood = Lik::Dist;

    fn guide(&self, x: Events<X, E, D, T>) -> Result<Normal<Z, E, D, T>> {
        self.guide.posterior(self.input.apply(x))
    }

    fn prior(&self, batch: usize, device: &D) -> Result<Pri::Dist> {
        self.prior.prior(batch, self.guide.latent_dim(), device)
    }

    fn likelihood(&self, z: Events<Z, E, D, T>) -> Result<Lik::Dist> {
        check_width("Vae::likelihood", self.guide.latent_dim(), z.shape().1)?;
        let out = self.decoder.try_forward(z).map_err(Error::device)?;
        self.likelihood.distribution(out)
    }
}
