//! The two-level hierarchical VAE with a VampPrior on its top layer, the best
//! configuration of Tomczak & Welling 2018 ("VAE with a VampPrior", §3.2, their
//! `HVAE_2level` with gated layers).

use dfdx::prelude::*;
use latent::distributions::{ConditionalChain, Distribution, Normal, SharedMixtureOfDiagNormals};
use latent::nn::Linear;
use latent::ops::{columns, repeat_rows};
use latent::train::{Describe, ModelSpec};
use latent::{
    AmortizedGuide, DiagonalNormalGuide, Error, Events, LatentVariableModel, PerExample, Real,
    Result,
};

use crate::gated::{GatedEncoder, GatedLinear};
use crate::vamp::{paper_reset, pseudo_inputs, vamp_mixture, PseudoInit};

/// A diagonal Normal over gated features: `q(z2 | x)` and `p(z1 | z2)` (two gated
/// layers) and the joint head of `q(z1 | x, z2)` (one).
pub type GatedNormal<Enc, E, D> = DiagonalNormalGuide<Enc, usize, usize, E, D>;

/// Two gated layers side by side: the first layers of `q(z1 | x, z2)` (`X → H` and
/// `Z2 → H`).
pub type GatedPair<E, D> = (
    GatedLinear<usize, usize, E, D>,
    GatedLinear<usize, usize, E, D>,
);

/// `(z1, z2)`: the two blocks of rows `[z1, z2]`.
type Blocks<E, D, T> = (Events<usize, E, D, T>, Events<usize, E, D, T>);

/// The decoder `p(x | z1, z2)`: gated layers `z1 → H` and `z2 → H`, a gated layer on
/// their concatenation `2H → H`, and the logits `H → X`.
pub type JointDecoder<E, D> = (
    GatedLinear<usize, usize, E, D>,
    GatedLinear<usize, usize, E, D>,
    GatedLinear<usize, usize, E, D>,
    Linear<usize, usize, E, D>,
);

/// The hierarchical VAE of Tomczak & Welling 2018 (§3.2, eq. 15–16) with gated layers
/// of `H` units (their `GatedDense`):
///
/// - generative: `p(z2) = (1/U) Σ_u q(z2 | u)` (a VampPrior over `U` pseudo-inputs in
///   `[0, 1]^X`), `p(z1 | z2) = N(μ(z2), σ²(z2))`, `p(x | z1, z2) = Bernoulli`;
/// - inference: `q(z2 | x) = N(μ(x), σ²(x))`, `q(z1 | x, z2) = N(μ(x, z2), σ²(x, z2))`.
///
/// The latent of the [`LatentVariableModel`] is the row `[z1, z2]` (`Z = Z1 + Z2`); the
/// guide is a [`ConditionalChain`] (`z2` first), and the KL has no closed form:
/// [`latent::Elbo`] estimates `E_q[log q(z2|x) + log q(z1|x,z2) − log p(z2) −
/// log p(z1|z2)]` on its own draws. Every step runs `q(z2 | ·)` on the `U`
/// pseudo-inputs as well (the VampPrior's cost).
///
/// Differences from the paper's code: the Normal heads clamp `log σ` to ±20 (theirs
/// clamp `log σ²` to [−6, 2]); layers are initialized as PyTorch's `nn.Linear` (theirs
/// with He's initialization).
#[derive(Debug, Clone)]
pub struct HierarchicalVampVae<E: Dtype, D: Storage<E>> {
    /// `q(z2 | x)`: gated `X → H → H`, heads to `Z2`; also the VampPrior's components.
    pub q_z2: GatedNormal<GatedEncoder<usize, usize, E, D>, E, D>,
    /// The first layers of `q(z1 | x, z2)`: gated `X → H` and `Z2 → H`.
    pub q_z1_inputs: GatedPair<E, D>,
    /// The joint layer of `q(z1 | x, z2)`: gated `2H → H`, heads to `Z1`.
    pub q_z1: GatedNormal<GatedLinear<usize, usize, E, D>, E, D>,
    /// `p(z1 | z2)`: gated `Z2 → H → H`, heads to `Z1`.
    pub p_z1: GatedNormal<GatedEncoder<usize, usize, E, D>, E, D>,
    /// `p(x | z1, z2)`.
    pub decoder: JointDecoder<E, D>,
    /// The pseudo-inputs, `(U, X)`, clamped to `[0, 1]` where used.
    pub pseudo_inputs: Tensor<(usize, usize), E, D>,
}

impl<E: Real, D: Device<E>> HierarchicalVampVae<E, D> {
    /// A model with `x` observed dimensions, gated layers of `h` units, latent blocks of
    /// `z1` and `z2` dimensions and `u` pseudo-inputs started as `init` says.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a zero size or a bad initialization; allocation
    /// errors.
    pub fn new(
        device: &D,
        (x, h, z1, z2): (usize, usize, usize, usize),
        u: usize,
        init: &PseudoInit,
    ) -> Result<Self> {
        if [x, h, z1, z2].contains(&0) {
            return Err(Error::invalid(
                "sizes",
                "x, h, z1 and z2 must be at least 1",
            ));
        }
        let gated = |i, o| GatedLinear::new(device, i, o);
        Ok(Self {
            q_z2: DiagonalNormalGuide::new((gated(x, h)?, gated(h, h)?), h, z2, device)?,
            q_z1_inputs: (gated(x, h)?, gated(z2, h)?),
            q_z1: DiagonalNormalGuide::new(gated(2 * h, h)?, h, z1, device)?,
            p_z1: DiagonalNormalGuide::new((gated(z2, h)?, gated(h, h)?), h, z1, device)?,
            decoder: (
                gated(z1, h)?,
                gated(z2, h)?,
                gated(2 * h, h)?,
                Linear::new(device, h, x)?,
            ),
            pseudo_inputs: pseudo_inputs(device, (u, x), init)?,
        })
    }

    /// `(Z1, Z2)`.
    pub fn widths(&self) -> (usize, usize) {
        (self.q_z1.latent_dim(), self.q_z2.latent_dim())
    }

    /// `(X, H, U)`.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let first = &self.q_z2.encoder.0;
        (
            first.inputs(),
            first.outputs(),
            self.pseudo_inputs.shape().0,
        )
    }
}

impl<E: Real, D: Device<E>> TensorCollection<E, D> for HierarchicalVampVae<E, D> {
    type To<E2: Dtype, D2: Device<E2>> = HierarchicalVampVae<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("q_z2", |s| &s.q_z2, |s| &mut s.q_z2),
                Self::module("q_z1_inputs", |s| &s.q_z1_inputs, |s| &mut s.q_z1_inputs),
                Self::module("q_z1", |s| &s.q_z1, |s| &mut s.q_z1),
                Self::module("p_z1", |s| &s.p_z1, |s| &mut s.p_z1),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
                Self::tensor(
                    "pseudo_inputs",
                    |s| &s.pseudo_inputs,
                    |s| &mut s.pseudo_inputs,
                    // `reset_params` draws the paper's initialization again.
                    latent::nn::tensor_options(Default::default(), paper_reset::<usize, E, D>),
                ),
            ),
            |(q_z2, q_z1_inputs, q_z1, p_z1, decoder, pseudo_inputs)| HierarchicalVampVae {
                q_z2,
                q_z1_inputs,
                q_z1,
                p_z1,
                decoder,
                pseudo_inputs,
            },
        )
    }
}

/// `q(z1 | x, z2)` for a batch of `x` whose features (the gated `X → H` layer) are
/// already computed: the second block of the guide's [`ConditionalChain`]. Given `z2`
/// of `n · batch` rows (`n` draws, sample-major), the features are repeated `n` times.
///
/// The features are held without a tape: the operations that made them are on the tape
/// of the chain's first block (see [`HierarchicalVampVae`]'s guide), and their gradient
/// reaches them by their tensor's id, as the IAF guide's context does.
#[derive(Debug, Clone)]
pub struct GivenX<E: Dtype, D: Storage<E>> {
    /// The `x` features, `(batch, H)`.
    pub features: Tensor<(usize, usize), E, D>,
    /// The gated `Z2 → H` layer.
    pub z2_layer: GatedLinear<usize, usize, E, D>,
    /// The joint layer and heads.
    pub joint: GatedNormal<GatedLinear<usize, usize, E, D>, E, D>,
}

impl<E: Real, D: Device<E>, T: Tape<E, D>> AmortizedGuide<Events<usize, E, D, T>, usize, E, D>
    for GivenX<E, D>
{
    type Posterior = Normal<usize, E, D, T>;

    fn posterior(&self, z2: Events<usize, E, D, T>) -> Result<Normal<usize, E, D, T>> {
        let (rows, batch) = (z2.shape().0, self.features.shape().0);
        if batch == 0 || rows % batch != 0 {
            return Err(Error::shape(
                "q(z1 | x, z2): rows of z2 (a multiple of the batch)",
                &[batch],
                &[rows],
            ));
        }
        let xf = repeat_rows(self.features.clone().put_tape(T::default()), rows / batch);
        let zf = self.z2_layer.try_forward(z2).map_err(Error::device)?;
        self.joint.posterior((xf, zf).concat_along(Axis::<1>))
    }
}

/// The prior `p(z2) p(z1 | z2)` over rows `[z1, z2]`, `p(z2)` a VampPrior.
pub struct VampChain<E: Dtype, D: Device<E>, T> {
    /// `p(z2)`.
    pub top: SharedMixtureOfDiagNormals<usize, usize, E, D, T>,
    /// `z2 ↦ p(z1 | z2)`.
    pub then: GatedNormal<GatedEncoder<usize, usize, E, D>, E, D>,
    /// `Z1`.
    pub z1: usize,
}

impl<E: Real, D: Device<E>, T: Tape<E, D>> VampChain<E, D, T> {
    /// `(z1, z2)` of rows `[z1, z2]`, the tape on `z1`.
    fn split(&self, z: Events<usize, E, D, T>) -> Result<Blocks<E, D, T>> {
        let w = z.shape().1;
        if w <= self.z1 {
            return Err(Error::shape(
                "VampChain rows [z1, z2]",
                &[self.z1 + 1],
                &[w],
            ));
        }
        let z2 = columns(z.with_empty_tape(), self.z1..w)?;
        Ok((columns(z, 0..self.z1)?, z2))
    }
}

impl<E: Real, D: Device<E>, T: Tape<E, D>> Distribution<usize, E, D> for VampChain<E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.top.batch_size()
    }

    fn device(&self) -> D {
        self.top.device()
    }

    /// `log p(z2) + log p(z1 | z2)` for rows `[z1, z2]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for rows of the wrong width or batch.
    fn log_prob(self, z: Events<usize, E, D, T>) -> Result<PerExample<E, D, T>> {
        let (z1, z2) = self.split(z)?;
        let cond = self.then.posterior(z2.with_empty_tape())?;
        Ok(self.top.log_prob(z2)? + cond.log_prob(z1)?)
    }

    /// `z2 ~ p(z2)`, then `z1 ~ p(z1 | z2)`.
    ///
    /// # Panics
    /// If the network fails on the device (an allocation failure), as dfdx's own ops.
    fn sample(&self) -> Events<usize, E, D> {
        let z2 = self.top.sample();
        let z1 = match self.then.posterior(z2.clone()) {
            Ok(p) => p.sample(),
            Err(e) => panic!("VampChain::sample: {e}"),
        };
        (z1, z2).concat_along(Axis::<1>)
    }

    /// The average of [`latent::distributions::MEAN_DRAWS`] draws (no closed form; no
    /// gradient).
    fn mean(self) -> Events<usize, E, D, T> {
        let draws = latent::distributions::MEAN_DRAWS;
        let mut sum = self.sample();
        for _ in 1..draws {
            sum = sum + self.sample();
        }
        (sum / latent::ops::cst::<E>(draws as f64)).put_tape(T::default())
    }

    fn fork(&self) -> Self {
        Self {
            top: self.top.fork(),
            then: self.then.clone(),
            z1: self.z1,
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            top: self.top.repeat(n),
            ..self
        }
    }

    fn into_tape(self) -> T {
        self.top.into_tape()
    }
}

impl<E, D, T> LatentVariableModel<E, D, T> for HierarchicalVampVae<E, D>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
{
    type X = usize;
    type Z = usize;
    type Posterior = ConditionalChain<Normal<usize, E, D, T>, GivenX<E, D>>;
    type Prior = VampChain<E, D, T>;
    type Likelihood = latent::Bernoulli<usize, E, D, T>;

    /// `q(z2 | x) q(z1 | x, z2)`, rows `[z1, z2]`.
    fn guide(&self, x: Events<usize, E, D, T>) -> Result<Self::Posterior> {
        let (w1, _) = self.widths();
        let xf = self
            .q_z1_inputs
            .0
            .try_forward(x.with_empty_tape())
            .map_err(Error::device)?;
        let (features, xf_tape) = xf.split_tape();
        let top = self.q_z2.posterior(x)?;
        // The x branch's operations join the first block's tape.
        let (loc, loc_tape) = top.loc.split_tape();
        let top = Normal::new(loc.put_tape(loc_tape.merge(xf_tape)), top.log_scale)?;
        let then = GivenX {
            features,
            z2_layer: self.q_z1_inputs.1.clone(),
            joint: self.q_z1.clone(),
        };
        Ok(ConditionalChain::new(top, then, w1, false))
    }

    /// `p(z2) p(z1 | z2)` with `p(z2) = (1/U) Σ_u q(z2 | clamp(u, 0, 1))`.
    fn prior(&self, batch: usize, _device: &D) -> Result<Self::Prior> {
        let u = self
            .pseudo_inputs
            .retaped::<T>()
            .try_clamp(0.0, 1.0)
            .map_err(Error::device)?;
        Ok(VampChain {
            top: vamp_mixture(self.q_z2.posterior(u)?, batch)?,
            then: self.p_z1.clone(),
            z1: self.widths().0,
        })
    }

    /// `p(x | z1, z2)` for rows `[z1, z2]`.
    fn likelihood(&self, z: Events<usize, E, D, T>) -> Result<Self::Likelihood> {
        let (w1, w2) = self.widths();
        let (b, w) = *z.shape();
        if w != w1 + w2 {
            return Err(Error::shape(
                "HierarchicalVampVae::likelihood",
                &[b, w1 + w2],
                &[b, w],
            ));
        }
        let (l1, l2, joint, out) = &self.decoder;
        let z2 = columns(z.with_empty_tape(), w1..w)?;
        let h1 = l1.try_forward(columns(z, 0..w1)?).map_err(Error::device)?;
        let h2 = l2.try_forward(z2).map_err(Error::device)?;
        let h = joint
            .try_forward((h1, h2).concat_along(Axis::<1>))
            .map_err(Error::device)?;
        Ok(latent::Bernoulli::new(
            out.try_forward(h).map_err(Error::device)?,
        ))
    }
}

/// `kind = "hierarchical-vamp-vae"`, sizes `x`, `h`, `z1`, `z2`, `u`, parts
/// `encoder = "gated"`, `likelihood = "bernoulli"`, `prior = "vampprior(u=U)"`.
impl<E: Real, D: Device<E>> Describe for HierarchicalVampVae<E, D> {
    fn spec(&self) -> ModelSpec {
        let (w1, w2) = self.widths();
        let (x, h, u) = self.sizes();
        ModelSpec::new("hierarchical-vamp-vae")
            .size("x", x)
            .size("h", h)
            .size("z1", w1)
            .size("z2", w2)
            .size("u", u)
            .part("encoder", "gated")
            .part("likelihood", "bernoulli")
            .part("prior", format!("vampprior(u={u})"))
    }
}
