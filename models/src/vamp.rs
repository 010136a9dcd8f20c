//! The VAE with a VampPrior (Tomczak & Welling 2018): the prior is the guide's own
//! posterior averaged over learned pseudo-inputs, for any guide with a Gaussian part
//! (a diagonal Normal, or the base Normal of a planar or IAF flow).

use std::marker::PhantomData;

use dfdx::prelude::*;
use latent::distributions::{Normal, SharedMixtureOfDiagNormals};
use latent::flows::{IafGuide, PlanarGuide};
use latent::heads::{BernoulliHead, LikelihoodHead};
use latent::ops::{check_width, cst};
use latent::train::{Describe, ModelSpec, Named};
use latent::{
    AmortizedGuide, DiagonalNormalGuide, Error, Events, LatentVariableModel, LatentWidth, Real,
    Result,
};

use crate::flow_vae::DecoderWidth;

/// A guide's Gaussian part `N(μ(x), diag σ(x)²)`, the components of a VampPrior: the
/// whole posterior of a [`DiagonalNormalGuide`], the base Normal (before the flow
/// steps) of a [`PlanarGuide`] or an [`IafGuide`].
///
/// For a flow guide the VampPrior's components are the base Normals rather than the
/// flows' densities: a planar step has no inverse, so `q_K(z | u)` cannot be evaluated
/// at a `z` drawn for another input, and an IAF inverse costs `Z` network passes per
/// component.
pub trait GaussianPart<X, Z: Dim, E: Real, D: Device<E>, T: Tape<E, D>> {
    /// `N(μ(x), diag σ(x)²)` for `x` of shape `(batch, X)`: `(batch, Z)` parameters.
    ///
    /// # Errors
    /// The encoder's errors.
    fn gaussian_part(&self, x: X) -> Result<Normal<Z, E, D, T>>;
}

impl<X, Enc, H: Dim, Z: Dim, E: Real, D: Device<E>, T: Tape<E, D>> GaussianPart<X, Z, E, D, T>
    for DiagonalNormalGuide<Enc, H, Z, E, D>
where
    Enc: Module<X, Output = Tensor<(usize, H), E, D, T>>,
{
    fn gaussian_part(&self, x: X) -> Result<Normal<Z, E, D, T>> {
        self.posterior(x)
    }
}

impl<X, Enc, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>, T: Tape<E, D>>
    GaussianPart<X, Z, E, D, T> for PlanarGuide<Enc, H, Z, K, E, D>
where
    Enc: Module<X, Output = Tensor<(usize, H), E, D, T>>,
{
    fn gaussian_part(&self, x: X) -> Result<Normal<Z, E, D, T>> {
        self.base.posterior(x)
    }
}

impl<X, Enc, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>, T: Tape<E, D>>
    GaussianPart<X, Z, E, D, T> for IafGuide<Enc, H, Z, K, E, D>
where
    Enc: Module<X, Output = Tensor<(usize, H), E, D, T>>,
{
    fn gaussian_part(&self, x: X) -> Result<Normal<Z, E, D, T>> {
        self.base.posterior(x)
    }
}

/// How the pseudo-inputs start.
#[derive(Debug, Clone, PartialEq)]
pub enum PseudoInit {
    /// Every pixel drawn from `N(mean, std²)`, as the paper's code (`mean = 0.05`,
    /// `std = 0.01` on binarized images: [`PseudoInit::PAPER`]).
    Random {
        /// The pixels' mean.
        mean: f64,
        /// Their standard deviation (≥ 0).
        std: f64,
    },
    /// Given images, `U` rows of `X` values in `[0, 1]` (e.g. random training images:
    /// the paper's `use_training_data_init`).
    Data(Vec<f64>),
}

impl PseudoInit {
    /// The paper's initialization: pixels from `N(0.05, 0.01²)`.
    pub const PAPER: PseudoInit = PseudoInit::Random {
        mean: 0.05,
        std: 0.01,
    };
}

/// The VAE with a VampPrior (Tomczak & Welling 2018, §3):
///
/// `p_λ(z) = (1/U) Σ_{u=1}^{U} q(z | x_u)`,
///
/// where the `U` pseudo-inputs `x_u ∈ [0, 1]^X` are learned with the model and
/// `q(z | x_u)` is the guide's Gaussian part ([`GaussianPart`]). The pseudo-inputs are
/// stored as a raw `(U, X)` tensor and clamped to `[0, 1]` where used, the paper's
/// `hardtanh(0, 1)` (a clamped pixel gets no gradient, as there).
///
/// Objective: `ELBO(x) = E_q[log p(x|z) + log p_λ(z) − log q(z|x)]`; the KL has no
/// closed form, so [`latent::Elbo`] estimates it by Monte Carlo on the same draws. Each
/// step runs the guide's encoder on the `U` pseudo-inputs as well as on the batch (the
/// price of the prior: with `U = 500` and batches of 100, six encoder passes instead of
/// one).
///
/// Shapes: `x` `(batch, X)`, `z` `(batch, Z)`; the prior's components `(U, Z)`,
/// shared by the batch ([`SharedMixtureOfDiagNormals`], whose density is two matrix
/// products).
#[derive(Debug, Clone)]
pub struct VampVae<G, Dec, X: Dim, Z: Dim, E: Dtype, D: Storage<E>, Lik = BernoulliHead> {
    /// The guide `q(z|x)`, whose Gaussian part also makes the prior.
    pub guide: G,
    /// The decoder network, producing the likelihood's parameters (e.g. logits).
    pub decoder: Dec,
    /// Turns the decoder output into `p(x|z)`.
    pub likelihood: Lik,
    /// The pseudo-inputs, `(U, X)`, before the clamp to `[0, 1]`.
    pub pseudo_inputs: Tensor<(usize, X), E, D>,
    /// The latent size comes from the guide.
    pub sizes: PhantomData<fn() -> Z>,
}

impl<G, Dec, X: Dim, Z: Dim, E: Real, D: Device<E>, Lik> VampVae<G, Dec, X, Z, E, D, Lik> {
    /// A VampPrior VAE of `guide`, `decoder` and `likelihood` with `u` pseudo-inputs of
    /// width `x`, started as `init` says.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for `u = 0`, a negative or non-finite `std` or `mean`,
    /// or data that are not `u · x` values in `[0, 1]`; allocation errors.
    pub fn new(
        guide: G,
        decoder: Dec,
        likelihood: Lik,
        (u, x): (usize, X),
        init: &PseudoInit,
        device: &D,
    ) -> Result<Self> {
        Ok(Self {
            guide,
            decoder,
            likelihood,
            pseudo_inputs: pseudo_inputs(device, (u, x), init)?,
            sizes: PhantomData,
        })
    }

    /// The number of pseudo-inputs `U`.
    pub fn pseudo_count(&self) -> usize {
        self.pseudo_inputs.shape().0
    }
}

/// The `(U, X)` pseudo-inputs started as `init` says, drawn from `device`'s generator.
///
/// # Errors
/// [`Error::InvalidSetting`] for `u = 0`, a negative or non-finite `std` or `mean`,
/// or data that are not `u · x` values in `[0, 1]`.
pub(crate) fn pseudo_inputs<X: Dim, E: Real, D: Device<E>>(
    device: &D,
    (u, x): (usize, X),
    init: &PseudoInit,
) -> Result<Tensor<(usize, X), E, D>> {
    if u == 0 {
        return Err(Error::invalid("pseudo-inputs", "need at least one"));
    }
    let values: Vec<E> = match init {
        PseudoInit::Random { mean, std } => {
            if !(mean.is_finite() && std.is_finite() && *std >= 0.0) {
                return Err(Error::invalid(
                    "pseudo-input initialization",
                    format!("mean {mean} and std {std}: need finite values, std ≥ 0"),
                ));
            }
            // The device's generator draws them, so the device's seed fixes them.
            let eps = E::standard_normal(device, &(u, x));
            (eps * cst::<E>(*std) + cst::<E>(*mean)).as_vec()
        }
        PseudoInit::Data(v) => {
            if v.len() != u * x.size() || v.iter().any(|p| !(0.0..=1.0).contains(p)) {
                return Err(Error::invalid(
                    "pseudo-input initialization",
                    format!(
                        "{} values given for {u} pseudo-inputs of {} pixels, each in [0, 1]",
                        v.len(),
                        x.size()
                    ),
                ));
            }
            v.iter().copied().map(cst).collect()
        }
    };
    Ok(device.tensor_from_vec(values, (u, x)))
}

/// `(1/U) Σ_u q(z | u)`: the equal-weight mixture of the `(U, Z)` components `q`,
/// shared by `batch` examples.
///
/// # Errors
/// Shape errors.
pub(crate) fn vamp_mixture<Z: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    q: Normal<Z, E, D, T>,
    batch: usize,
) -> Result<SharedMixtureOfDiagNormals<usize, Z, E, D, T>> {
    let count = q.loc.shape().0;
    let logits = q.loc.device().zeros_like(&(count,)).retaped::<T>();
    SharedMixtureOfDiagNormals::new(batch, logits, q.loc, q.log_scale)
}

/// Draws the paper's initialization (`N(0.05, 0.01²)` per pixel) into the pseudo-inputs
/// `t`: their `reset_params`.
///
/// # Errors
/// None on the device's side beyond dfdx's copy.
pub(crate) fn paper_reset<X: Dim, E: Real, D: Device<E>>(
    t: &mut Tensor<(usize, X), E, D>,
) -> std::result::Result<(), D::Err> {
    let n = E::standard_normal(&t.device().clone(), t.shape());
    let v: Vec<E> = n
        .as_vec()
        .into_iter()
        .map(|e| e * cst(0.01) + cst(0.05))
        .collect();
    t.copy_from(&v);
    Ok(())
}

impl<G, Dec, X: Dim + Default, Z: Dim, E: Real, D: Device<E>, Lik> TensorCollection<E, D>
    for VampVae<G, Dec, X, Z, E, D, Lik>
where
    G: TensorCollection<E, D>,
    Dec: TensorCollection<E, D>,
    Lik: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> =
        VampVae<G::To<E2, D2>, Dec::To<E2, D2>, X, Z, E2, D2, Lik::To<E2, D2>>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("guide", |s| &s.guide, |s| &mut s.guide),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
                Self::module("likelihood", |s| &s.likelihood, |s| &mut s.likelihood),
                Self::tensor(
                    "pseudo_inputs",
                    |s| &s.pseudo_inputs,
                    |s| &mut s.pseudo_inputs,
                    // `reset_params` draws the paper's initialization again.
                    latent::nn::tensor_options(Default::default(), paper_reset::<X, E, D>),
                ),
            ),
            |(guide, decoder, likelihood, pseudo_inputs)| VampVae {
                guide,
                decoder,
                likelihood,
                pseudo_inputs,
                sizes: PhantomData,
            },
        )
    }
}

impl<G, Dec, X: Dim, Z: Dim, E, D, T, Lik> LatentVariableModel<E, D, T>
    for VampVae<G, Dec, X, Z, E, D, Lik>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    G: AmortizedGuide<Events<X, E, D, T>, Z, E, D>
        + GaussianPart<Events<X, E, D, T>, Z, E, D, T>
        + LatentWidth<Z>,
    G::Posterior: latent::Distribution<Z, E, D, Tape = T> + 'static,
    Dec: Module<Events<Z, E, D, T>, Output = Events<X, E, D, T>>,
    Lik: LikelihoodHead<X, E, D, T>,
{
    type X = X;
    type Z = Z;
    type Posterior = G::Posterior;
    type Prior = SharedMixtureOfDiagNormals<usize, Z, E, D, T>;
    type Likelihood = Lik::Dist;

    fn guide(&self, x: Events<X, E, D, T>) -> Result<G::Posterior> {
        self.guide.posterior(x)
    }

    /// `p_λ(z) = (1/U) Σ_u q(z | clamp(x_u, 0, 1))`: the pseudo-inputs enter with a
    /// fresh tape of the computation's type, so gradients reach them and, a second
    /// time, the guide.
    fn prior(&self, batch: usize, _device: &D) -> Result<Self::Prior> {
        let u = self
            .pseudo_inputs
            .retaped::<T>()
            .try_clamp(0.0, 1.0)
            .map_err(Error::device)?;
        vamp_mixture(self.guide.gaussian_part(u)?, batch)
    }

    fn likelihood(&self, z: Events<Z, E, D, T>) -> Result<Lik::Dist> {
        check_width("VampVae::likelihood", self.guide.latent_dim(), z.shape().1)?;
        let out = self.decoder.try_forward(z).map_err(Error::device)?;
        self.likelihood.distribution(out)
    }
}

/// `kind = "vamp-vae"`, sizes `x`, `z`, `u` (pseudo-inputs), parts `guide`,
/// `likelihood`, `prior = "vampprior(u=U)"`.
impl<G, Dec, X: Dim, Z: Dim, E: Dtype, D: Storage<E>, Lik: Named> Describe
    for VampVae<G, Dec, X, Z, E, D, Lik>
where
    G: Named + LatentWidth<Z>,
    Dec: DecoderWidth,
{
    fn spec(&self) -> ModelSpec {
        let u = self.pseudo_inputs.shape().0;
        ModelSpec::new("vamp-vae")
            .size("x", self.decoder.output_width())
            .size("z", self.guide.latent_dim().size())
            .size("u", u)
            .part("guide", self.guide.name())
            .part("likelihood", self.likelihood.name())
            .part("prior", format!("vampprior(u={u})"))
    }
}
