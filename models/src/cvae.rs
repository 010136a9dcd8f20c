//! The conditional VAE (Sohn, Lee & Yan 2015, "Learning Structured Output
//! Representation using Deep Conditional Generative Models").

use dfdx::nn::modules::{ReLU, UnbiasedLinear};
use dfdx::prelude::*;
use latent::distributions::{Normal, StandardNormal};
use latent::heads::{BernoulliHead, LikelihoodHead, StandardNormalPrior};
use latent::nn::Linear;
use latent::{AmortizedGuide, ConditionalModel, DiagonalNormalGuide, Error, Events, Real, Result};

/// The first layer of a network with two inputs: `(a, b) ↦ relu(W_a a + W_b b + c)`,
/// shapes `(batch, A)` and `(batch, B)` → `(batch, H)`. The same map as a `Linear` layer
/// on the concatenation `[a; b]` followed by a ReLU, without building the concatenation.
#[derive(Debug, Clone)]
pub struct Joint<const A: usize, const B: usize, const H: usize, E: Dtype, D: Storage<E>> {
    /// `W_a a + c`.
    pub a: Linear<Const<A>, Const<H>, E, D>,
    /// `W_b b` (no bias: `a` has it).
    pub b: UnbiasedLinear<B, H, E, D>,
}

impl<const A: usize, const B: usize, const H: usize, E: Real, D: Device<E>> TensorCollection<E, D>
    for Joint<A, B, H, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Joint<A, B, H, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("a", |s| &s.a, |s| &mut s.a),
                Self::module("b", |s| &s.b, |s| &mut s.b),
            ),
            |(a, b)| Joint { a, b },
        )
    }
}

impl<const A: usize, const B: usize, const H: usize, E: Real, D: Device<E>, T: Tape<E, D>>
    Module<(Events<Const<A>, E, D, T>, Events<Const<B>, E, D, T>)> for Joint<A, B, H, E, D>
{
    type Output = Events<Const<H>, E, D, T>;
    type Error = D::Err;

    fn try_forward(
        &self,
        (a, b): (Events<Const<A>, E, D, T>, Events<Const<B>, E, D, T>),
    ) -> std::result::Result<Self::Output, D::Err> {
        let ha = self.a.try_forward(a)?;
        let hb = self.b.try_forward(b)?;
        ReLU.try_forward(ha.try_add(hb)?)
    }
}

/// A conditional prior `p(z | y)`: makes a batch of distributions over `R^Z` from
/// conditions `y` of shape `(batch, Y)`.
pub trait ConditionalPriorHead<const Y: usize, const Z: usize, E: Real, D: Device<E>, T: Tape<E, D>>
{
    /// The family of `p(z | y)`.
    type Dist: latent::Distribution<Const<Z>, E, D, Tape = T> + 'static;
    /// `p(z | y)`.
    ///
    /// # Errors
    /// The network's errors.
    fn prior(&self, y: Events<Const<Y>, E, D, T>) -> Result<Self::Dist>;
}

/// `p(z | y) = N(0, I)`, ignoring `y` (Sohn et al. 2015 relax the prior this way in
/// their MNIST experiments; the default).
impl<const Y: usize, const Z: usize, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
    ConditionalPriorHead<Y, Z, E, D, T> for StandardNormalPrior
{
    type Dist = StandardNormal<Const<Z>, E, D, T>;
    fn prior(&self, y: Events<Const<Y>, E, D, T>) -> Result<Self::Dist> {
        Ok(StandardNormal::new(y.shape().0, Const, &y.device().clone()))
    }
}

/// A learned conditional prior network `p(z | y) = N(μ(y), diag σ²(y))` (the "prior
/// network" of Sohn et al. 2015, §4): `y → relu(W y + b) ∈ R^H → (μ, log σ)`.
pub type LearnedConditionalPrior<const Y: usize, const H: usize, const Z: usize, E, D> =
    DiagonalNormalGuide<(Linear<Const<Y>, Const<H>, E, D>, ReLU), Const<H>, Const<Z>, E, D>;

impl<const Y: usize, const H: usize, const Z: usize, E, D, T> ConditionalPriorHead<Y, Z, E, D, T>
    for LearnedConditionalPrior<Y, H, Z, E, D>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
{
    type Dist = Normal<Const<Z>, E, D, T>;
    fn prior(&self, y: Events<Const<Y>, E, D, T>) -> Result<Self::Dist> {
        self.posterior(y)
    }
}

/// The conditional VAE with MLP networks (Sohn et al. 2015, §4, "CVAE" with the
/// baseline-free recognition network), for observations `x ∈ R^X` given `y ∈ R^Y`:
///
/// - guide `q(z | x, y) = N(μ, diag σ²)`, `h = relu(W_x x + W_y y + b) ∈ R^H`,
///   `(μ, log σ) = heads(h)`;
/// - prior `p(z | y)`: `N(0, I)` ([`StandardNormalPrior`], default) or a learned
///   [`LearnedConditionalPrior`] network;
/// - likelihood `p(x | z, y)`: `ℓ = W_o relu(W_z z + W_y' y + b) + b_o`, then the
///   likelihood head on `ℓ` (Bernoulli logits by default).
///
/// Objective (Sohn et al. 2015, eq. 4), per example, in nats:
/// `log p(x | y) ≥ E_{q(z|x,y)}[log p(x | z, y)] − KL(q(z | x, y) ‖ p(z | y))`,
/// with the closed-form KL for both priors. Train it with
/// [`latent::train::ConditionalTask`]; evaluate or sample through
/// [`latent::Conditioned`].
///
/// Two uses on 28×28 images: `y` = one-hot label (`X = 784`, `Y = 10`,
/// [`latent::data::LabelCondition`]) and image completion (`y` = top half, `x` = bottom
/// half, `X = Y = 392`, [`latent::data::TopRowsCondition`]).
#[derive(Debug, Clone)]
pub struct Cvae<
    const X: usize,
    const Y: usize,
    const H: usize,
    const Z: usize,
    E: Dtype,
    D: Storage<E>,
    Pri = StandardNormalPrior,
    Lik = BernoulliHead,
> {
    /// `q(z | x, y)`.
    pub guide: DiagonalNormalGuide<Joint<X, Y, H, E, D>, Const<H>, Const<Z>, E, D>,
    /// `(z, y) ↦ ℓ`, the likelihood's parameters.
    pub decoder: (Joint<Z, Y, H, E, D>, Linear<Const<H>, Const<X>, E, D>),
    /// `p(z | y)`.
    pub prior: Pri,
    /// Turns `ℓ` into `p(x | z, y)`.
    pub likelihood: Lik,
}

impl<const X: usize, const Y: usize, const H: usize, const Z: usize, E: Real, D: Device<E>>
    Cvae<X, Y, H, Z, E, D>
{
    /// A CVAE with the standard-Normal prior and a Bernoulli likelihood, initialized as
    /// PyTorch's `nn.Linear` is.
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn new(device: &D) -> Result<Self> {
        Self::with_heads(StandardNormalPrior, BernoulliHead, device)
    }
}

impl<
        const X: usize,
        const Y: usize,
        const H: usize,
        const Z: usize,
        E: Real,
        D: Device<E>,
        Pri,
        Lik,
    > Cvae<X, Y, H, Z, E, D, Pri, Lik>
{
    /// A CVAE with the given prior and likelihood heads.
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn with_heads(prior: Pri, likelihood: Lik, device: &D) -> Result<Self> {
        Ok(Self {
            guide: DiagonalNormalGuide::new(
                Joint {
                    a: BuildModule::build(device),
                    b: BuildModule::build(device),
                },
                Const,
                Const,
                device,
            )?,
            decoder: (
                Joint {
                    a: BuildModule::build(device),
                    b: BuildModule::build(device),
                },
                BuildModule::build(device),
            ),
            prior,
            likelihood,
        })
    }
}

impl<const X: usize, const Y: usize, const H: usize, const Z: usize, E, D, Pri, Lik>
    TensorCollection<E, D> for Cvae<X, Y, H, Z, E, D, Pri, Lik>
where
    E: Real,
    D: Device<E>,
    Pri: TensorCollection<E, D>,
    Lik: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> = Cvae<X, Y, H, Z, E2, D2, Pri::To<E2, D2>, Lik::To<E2, D2>>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("guide", |s| &s.guide, |s| &mut s.guide),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
                Self::module("prior", |s| &s.prior, |s| &mut s.prior),
                Self::module("likelihood", |s| &s.likelihood, |s| &mut s.likelihood),
            ),
            |(guide, decoder, prior, likelihood)| Cvae {
                guide,
                decoder,
                prior,
                likelihood,
            },
        )
    }
}

impl<const X: usize, const Y: usize, const H: usize, const Z: usize, E, D, T, Pri, Lik>
    ConditionalModel<E, D, T> for Cvae<X, Y, H, Z, E, D, Pri, Lik>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Pri: ConditionalPriorHead<Y, Z, E, D, T>,
    Lik: LikelihoodHead<Const<X>, E, D, T>,
{
    type X = Const<X>;
    type Y = Const<Y>;
    type Z = Const<Z>;
    type Posterior = Normal<Const<Z>, E, D, T>;
    type Prior = Pri::Dist;
    type Likelihood = Lik::Dist;

    fn guide(
        &self,
        x: Events<Const<X>, E, D, T>,
        y: Events<Const<Y>, E, D, T>,
    ) -> Result<Normal<Const<Z>, E, D, T>> {
        self.guide.posterior((x, y))
    }

    fn prior(&self, y: Events<Const<Y>, E, D, T>) -> Result<Pri::Dist> {
        self.prior.prior(y)
    }

    fn likelihood(
        &self,
        z: Events<Const<Z>, E, D, T>,
        y: Events<Const<Y>, E, D, T>,
    ) -> Result<Lik::Dist> {
        let logits = self.decoder.try_forward((z, y)).map_err(Error::device)?;
        self.likelihood.distribution(logits)
    }
}
