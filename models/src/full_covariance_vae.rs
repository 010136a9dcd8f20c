//! The VAE with a full-covariance Gaussian guide.

use std::marker::PhantomData;

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::distributions::{MultivariateNormal, StandardNormal};
use latent::heads::{BernoulliHead, LikelihoodHead};
use latent::nn::Linear;
use latent::ops::check_width;
use latent::train::{Describe, ModelSpec, Named};
use latent::{
    AmortizedGuide, Error, Events, FullCovarianceGuide, LatentVariableModel, LatentWidth, Real,
    Result,
};

use crate::mlp::{MlpDecoder, MlpEncoder};

/// A VAE whose guide has a full covariance, `q(z|x) = N(μ(x), L(x)L(x)ᵀ)`
/// ([`FullCovarianceGuide`]), with the standard Normal prior and any likelihood head
/// (Bernoulli logits by default). The ELBO's KL is in closed form,
/// `½(‖L‖²_F + ‖μ‖² − Z) − Σ_i ln L_ii`, and `log q(z|x)` of a draw needs no solve.
#[derive(Debug, Clone)]
pub struct FullCovarianceVae<
    Enc,
    Dec,
    X: Dim,
    H: Dim,
    Z: Dim,
    E: Dtype,
    D: Storage<E>,
    Lik = BernoulliHead,
> {
    /// The amortized guide `q(z|x)`.
    pub guide: FullCovarianceGuide<Enc, H, Z, E, D>,
    /// The decoder network, producing the likelihood's parameters.
    pub decoder: Dec,
    /// Turns the decoder output into `p(x|z)`.
    pub likelihood: Lik,
    /// The observation size `X`.
    pub observations: PhantomData<X>,
}

/// The MLP VAE's networks (`X → H → Z`, `Z → H → X`, ReLU) around a full-covariance guide.
pub type MlpFullCovarianceVae<X, H, Z, E, D, Lik = BernoulliHead> =
    FullCovarianceVae<MlpEncoder<X, H, E, D>, MlpDecoder<X, H, Z, E, D>, X, H, Z, E, D, Lik>;

/// Builds an [`MlpFullCovarianceVae`] with sizes `(X, H, Z)` and a Bernoulli likelihood,
/// initialized as PyTorch's `nn.Linear`.
///
/// ```
/// use dfdx::prelude::*;
/// use latent::Elbo;
/// use latent_models::{mlp_full_covariance_vae, MlpFullCovarianceVae};
///
/// let dev = Cpu::default();
/// let m: MlpFullCovarianceVae<usize, usize, usize, f32, Cpu> =
///     mlp_full_covariance_vae(&dev, (784, 64, 8)).unwrap();
/// let x: Tensor<(usize, usize), f32, Cpu> = dev.zeros_like(&(2, 784));
/// let terms = Elbo::default().estimate(&m, x).unwrap(); // closed-form KL
/// assert!(terms.kl.as_vec().iter().all(|k| *k >= 0.0));
/// ```
///
/// # Errors
/// The device's allocation errors.
pub fn mlp_full_covariance_vae<X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>>(
    device: &D,
    (x, h, z): (X, H, Z),
) -> Result<MlpFullCovarianceVae<X, H, Z, E, D>> {
    let encoder = (Linear::new(device, x, h)?, ReLU);
    let decoder = (Linear::new(device, z, h)?, ReLU, Linear::new(device, h, x)?);
    Ok(FullCovarianceVae {
        guide: FullCovarianceGuide::new(encoder, h, z, device)?,
        decoder,
        likelihood: BernoulliHead,
        observations: PhantomData,
    })
}

impl<Enc, Dec, X: Dim, H, Z, E: Real, D: Device<E>, Lik> TensorCollection<E, D>
    for FullCovarianceVae<Enc, Dec, X, H, Z, E, D, Lik>
where
    H: Dim + Default,
    Z: Dim + Default,
    Enc: TensorCollection<E, D>,
    Dec: TensorCollection<E, D>,
    Lik: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> =
        FullCovarianceVae<Enc::To<E2, D2>, Dec::To<E2, D2>, X, H, Z, E2, D2, Lik::To<E2, D2>>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("guide", |s| &s.guide, |s| &mut s.guide),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
                Self::module("likelihood", |s| &s.likelihood, |s| &mut s.likelihood),
            ),
            |(guide, decoder, likelihood)| FullCovarianceVae {
                guide,
                decoder,
                likelihood,
                observations: PhantomData,
            },
        )
    }
}

impl<Enc, Dec, X: Dim, H: Dim, Z: Dim, E, D, T, Lik> LatentVariableModel<E, D, T>
    for FullCovarianceVae<Enc, Dec, X, H, Z, E, D, Lik>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Enc: Module<Events<X, E, D, T>, Output = Tensor<(usize, H), E, D, T>>,
    Dec: Module<Events<Z, E, D, T>, Output = Events<X, E, D, T>>,
    Lik: LikelihoodHead<X, E, D, T>,
{
    type X = X;
    type Z = Z;
    type Posterior = MultivariateNormal<Z, E, D, T>;
    type Prior = StandardNormal<Z, E, D, T>;
    type Likelihood = Lik::Dist;

    fn guide(&self, x: Events<X, E, D, T>) -> Result<Self::Posterior> {
        self.guide.posterior(x)
    }

    fn prior(&self, batch: usize, device: &D) -> Result<Self::Prior> {
        Ok(StandardNormal::new(batch, self.guide.latent_dim(), device))
    }

    fn likelihood(&self, z: Events<Z, E, D, T>) -> Result<Lik::Dist> {
        check_width(
            "FullCovarianceVae::likelihood",
            self.guide.latent_dim(),
            z.shape().1,
        )?;
        let out = self.decoder.try_forward(z).map_err(Error::device)?;
        self.likelihood.distribution(out)
    }
}

/// `kind = "vae"`, sizes `x`, `h`, `z`, parts `encoder = "mlp"`,
/// `guide = "full-covariance"`, `likelihood`, `prior = "standard-normal"`.
impl<X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>, Lik: Named> Describe
    for MlpFullCovarianceVae<X, H, Z, E, D, Lik>
{
    fn spec(&self) -> ModelSpec {
        let first: &Linear<X, H, E, D> = &self.guide.encoder.0;
        ModelSpec::new("vae")
            .size("x", first.inputs().size())
            .size("h", first.outputs().size())
            .size("z", self.guide.loc.outputs().size())
            .part("encoder", "mlp")
            .part("guide", "full-covariance")
            .part("likelihood", self.likelihood.name())
            .part("prior", "standard-normal")
    }
}
