//! The conditional VAE (Sohn, Lee & Yan 2015, "Learning Structured Output
//! Representation using Deep Conditional Generative Models").

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::distributions::{Normal, StandardNormal};
use latent::heads::{BernoulliHead, LikelihoodHead, StandardNormalPrior};
use latent::nn::{Linear, UnbiasedLinear};

use latent::ops::check_width;
use latent::{AmortizedGuide, ConditionalModel, DiagonalNormalGuide, Error, Events, Real, Result};

/// The first layer of a network with two inputs: `(a, b) ↦ relu(W_a a + W_b b + c)`,
/// shapes `(batch, A)` and `(batch, B)` → `(batch, H)`. The same map as a `Linear` layer
/// on the concatenation `[a; b]` followed by a ReLU, without building the concatenation.
#[derive(Debug, Clone)]
pub struct Joint<A: Dim, B: Dim, H: Dim, E: Dtype, D: Storage<E>> {
    /// `W_a a + c`.
    pub a: Linear<A, H, E, D>,
    /// `W_b b` (no bias: `a` has it).
    pub b: UnbiasedLinear<B, H, E, D>,
}

impl<A: Dim, B: Dim, H: Dim, E: Real, D: Device<E>> Joint<A, B, H, E, D> {
    /// A layer from inputs of `a` and `b` features to `h`, initialized as PyTorch's
    /// `nn.Linear` on each part.
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn new(device: &D, a: A, b: B, h: H) -> Result<Self> {
        Ok(Self {
            a: Linear::new(device, a, h)?,
            b: UnbiasedLinear::new(device, b, h)?,
        })
    }
}

impl<A: Dim + Default, B: Dim + Default, H: Dim + Default, E: Real, D: Device<E>>
    TensorCollection<E, D> for Joint<A, B, H, E, D>
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

impl<A: Dim, B: Dim, H: Dim, E: Real, D: Device<E>, T: Tape<E, D>>
    Module<(Events<A, E, D, T>, Events<B, E, D, T>)> for Joint<A, B, H, E, D>
{
    type Output = Events<H, E, D, T>;
    type Error = D::Err;

    fn try_forward(
        &self,
        (a, b): (Events<A, E, D, T>, Events<B, E, D, T>),
    ) -> std::result::Result<Self::Output, D::Err> {
        let ha = self.a.try_forward(a)?;
        let hb = self.b.try_forward(b)?;
        ReLU.try_forward(ha.try_add(hb)?)
    }
}

/// A conditional prior `p(z | y)`: makes a batch of distributions over `R^Z` from
/// conditions `y` of shape `(batch, Y)`.
pub trait ConditionalPriorHead<Y: Dim, Z: Dim, E: Real, D: Device<E>, T: Tape<E, D>> {
    /// The family of `p(z | y)`.
    type Dist: latent::Distribution<Z, E, D, Tape = T> + 'static;
    /// `p(z | y)`.
    ///
    /// # Errors
    /// The network's errors.
    fn prior(&self, y: Events<Y, E, D, T>, dim: Z) -> Result<Self::Dist>;
}

/// `p(z | y) = N(0, I)`, ignoring `y` (Sohn et al. 2015 relax the prior this way in
/// their MNIST experiments; the default).
impl<Y: Dim, Z: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
    ConditionalPriorHead<Y, Z, E, D, T> for StandardNormalPrior
{
    type Dist = StandardNormal<Z, E, D, T>;
    fn prior(&self, y: Events<Y, E, D, T>, dim: Z) -> Result<Self::Dist> {
        Ok(StandardNormal::new(y.shape().0, dim, &y.device().clone()))
    }
}

/// A learned conditional prior network `p(z | y) = N(μ(y), diag σ²(y))` (the "prior
/// network" of Sohn et al. 2015, §4): `y → relu(W y + b) ∈ R^H → (μ, log σ)`.
pub type LearnedConditionalPrior<Y, H, Z, E, D> =
    DiagonalNormalGuide<(Linear<Y, H, E, D>, ReLU), H, Z, E, D>;

impl<Y: Dim, H: Dim, Z: Dim, E, D, T> ConditionalPriorHead<Y, Z, E, D, T>
    for LearnedConditionalPrior<Y, H, Z, E, D>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
{
    type Dist = Normal<Z, E, D, T>;
    fn prior(&self, y: Events<Y, E, D, T>, _dim: Z) -> Result<Self::Dist> {
        self.posterior(y)
    }
}

/// The CVAE's guide: `(x, y) → relu(W_x x + W_y y + b) ∈ R^H → (μ, log σ) ∈ R^Z`.
pub type CvaeGuide<X, Y, H, Z, E, D> = DiagonalNormalGuide<Joint<X, Y, H, E, D>, H, Z, E, D>;

/// The CVAE's decoder: `(z, y) → relu(W_z z + W_y y + b) ∈ R^H → ℓ ∈ R^X`.
pub type CvaeDecoder<X, Y, H, Z, E, D> = (Joint<Z, Y, H, E, D>, Linear<H, X, E, D>);

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
    X: Dim,
    Y: Dim,
    H: Dim,
    Z: Dim,
    E: Dtype,
    D: Storage<E>,
    Pri = StandardNormalPrior,
    Lik = BernoulliHead,
> {
    /// `q(z | x, y)`.
    pub guide: CvaeGuide<X, Y, H, Z, E, D>,
    /// `(z, y) ↦ ℓ`, the likelihood's parameters.
    pub decoder: CvaeDecoder<X, Y, H, Z, E, D>,
    /// `p(z | y)`.
    pub prior: Pri,
    /// Turns `ℓ` into `p(x | z, y)`.
    pub likelihood: Lik,
}

impl<X: Dim, Y: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>> Cvae<X, Y, H, Z, E, D> {
    /// A CVAE with sizes `(X, Y, H, Z)` (`Const` for sizes fixed at compile time), the
    /// standard-Normal prior and a Bernoulli likelihood, initialized as PyTorch's
    /// `nn.Linear` is.
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn new(device: &D, dims: (X, Y, H, Z)) -> Result<Self> {
        Self::with_heads(StandardNormalPrior, BernoulliHead, dims, device)
    }
}

impl<X: Dim, Y: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>, Pri, Lik>
    Cvae<X, Y, H, Z, E, D, Pri, Lik>
{
    /// A CVAE with sizes `(X, Y, H, Z)` and the given prior and likelihood heads.
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn with_heads(
        prior: Pri,
        likelihood: Lik,
        (x, y, h, z): (X, Y, H, Z),
        device: &D,
    ) -> Result<Self> {
        Ok(Self {
            guide: DiagonalNormalGuide::new(Joint::new(device, x, y, h)?, h, z, device)?,
            decoder: (Joint::new(device, z, y, h)?, Linear::new(device, h, x)?),
            prior,
            likelihood,
        })
    }
}

impl<X, Y, H, Z, E, D, Pri, Lik> TensorCollection<E, D> for Cvae<X, Y, H, Z, E, D, Pri, Lik>
where
    X: Dim + Default,
    Y: Dim + Default,
    H: Dim + Default,
    Z: Dim + Default,
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

impl<X: Dim, Y: Dim, H: Dim, Z: Dim, E, D, T, Pri, Lik> ConditionalModel<E, D, T>
    for Cvae<X, Y, H, Z, E, D, Pri, Lik>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    Pri: ConditionalPriorHead<Y, Z, E, D, T>,
    Lik: LikelihoodHead<X, E, D, T>,
{
    type X = X;
    type Y = Y;
    type Z = Z;
    type Posterior = Normal<Z, E, D, T>;
    type Prior = Pri::Dist;
    type Likelihood = Lik::Dist;

    fn guide(&self, x: Events<X, E, D, T>, y: Events<Y, E, D, T>) -> Result<Normal<Z, E, D, T>> {
        let joint = &self.guide.encoder;
        check_width("Cvae::guide (x)", joint.a.inputs(), x.shape().1)?;
        check_width("Cvae::guide (y)", joint.b.inputs(), y.shape().1)?;
        self.guide.posterior((x, y))
    }

    fn prior(&self, y: Events<Y, E, D, T>) -> Result<Pri::Dist> {
        self.prior.prior(y, self.guide.latent_dim())
    }

    fn likelihood(&self, z: Events<Z, E, D, T>, y: Events<Y, E, D, T>) -> Result<Lik::Dist> {
        let joint = &self.decoder.0;
        check_width("Cvae::likelihood (z)", joint.a.inputs(), z.shape().1)?;
        check_width("Cvae::likelihood (y)", joint.b.inputs(), y.shape().1)?;
        let logits = self.decoder.try_forward((z, y)).map_err(Error::device)?;
        self.likelihood.distribution(logits)
    }
}
