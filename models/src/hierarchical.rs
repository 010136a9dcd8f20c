//! A VAE with two stochastic layers (Sønderby et al. 2016; Tomczak & Welling 2018, §3).

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::data::Dataset;
use latent::distributions::{Bernoulli, ConditionalChain, Distribution, Normal, StandardNormal};
use latent::eval::{active_units, batches, posterior_mean_variance};
use latent::nn::Linear;
use latent::ops::to_f64_vec;
use latent::train::{Describe, ModelSpec};
use latent::{
    AmortizedGuide, DiagonalNormalGuide, Error, Events, LatentVariableModel, Real, Result,
};

use crate::mlp::{MlpDecoder, MlpEncoder};

/// A diagonal-Normal network `R^I → N(μ, diag σ²)` over `R^O` with one ReLU hidden
/// layer: the conditional layers of [`HierarchicalVae`].
pub type NormalNet<E, D> = DiagonalNormalGuide<MlpEncoder<usize, usize, E, D>, usize, usize, E, D>;

/// The hierarchical VAE with two stochastic layers and a top-down generative path
/// (Sønderby et al. 2016, "Ladder Variational Autoencoders", eq. 1–2, in its bottom-up
/// inference form; Tomczak & Welling 2018, §3):
///
/// - generative: `p(z2) = N(0, I)`, `p(z1 | z2) = N(μ_p(z2), σ_p²(z2))`,
///   `p(x | z1) = Bernoulli(σ(Dec(z1)))`;
/// - inference: `q(z1 | x) = N(μ_1(x), σ_1²(x))`, `q(z2 | z1) = N(μ_2(z1), σ_2²(z1))`;
///
/// every conditional an MLP of one ReLU hidden layer of `H` units. The latent of the
/// [`LatentVariableModel`] is the row `[z1, z2]` (`Z = Z1 + Z2`), the guide and the
/// prior are [`ConditionalChain`]s, and the KL has no closed form: [`latent::Elbo`]
/// estimates `E_q[log q(z1|x) + log q(z2|z1) − log p(z2) − log p(z1|z2)]` by Monte
/// Carlo. Train it with KL warm-up (`TrainConfig::kl_warmup_steps`, Sønderby et al.
/// 2016, §2.4). [`HierarchicalVae::layer_report`] gives the KL and active units of
/// each layer.
#[derive(Debug, Clone)]
pub struct HierarchicalVae<E: Dtype, D: Storage<E>> {
    /// `q(z1 | x)`.
    pub q_z1: NormalNet<E, D>,
    /// `q(z2 | z1)`.
    pub q_z2: NormalNet<E, D>,
    /// `p(z1 | z2)`.
    pub p_z1: NormalNet<E, D>,
    /// `z1 ↦` Bernoulli logits of `x`.
    pub decoder: MlpDecoder<usize, usize, usize, E, D>,
}

/// What [`HierarchicalVae::layer_report`] measures, per layer (`[z1, z2]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerReport {
    /// Mean Monte Carlo KL terms, nats per example: `E_q[log q(z1|x) − log p(z1|z2)]`
    /// and `E_q[log q(z2|z1) − log p(z2)]` (they sum to the ELBO's KL).
    pub kl: [f64; 2],
    /// Active units of each layer (`Cov_x(E_q[z_j|x]) > 0.01`, Burda et al. 2015).
    pub active_units: [usize; 2],
    /// The widths `Z1`, `Z2`.
    pub widths: [usize; 2],
}

fn normal_net<E: Real, D: Device<E>>(
    device: &D,
    i: usize,
    h: usize,
    o: usize,
) -> Result<NormalNet<E, D>> {
    DiagonalNormalGuide::new((Linear::new(device, i, h)?, ReLU), h, o, device)
}

impl<E: Real, D: Device<E>> HierarchicalVae<E, D> {
    /// A model with `x` observed dimensions, hidden layers of `h` units and latent
    /// blocks of `z1` and `z2` dimensions, initialized as PyTorch's `nn.Linear`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a zero size; allocation errors.
    pub fn new(device: &D, (x, h, z1, z2): (usize, usize, usize, usize)) -> Result<Self> {
        if [x, h, z1, z2].contains(&0) {
            return Err(Error::invalid(
                "sizes",
                "x, h, z1 and z2 must be at least 1",
            ));
        }
        Ok(Self {
            q_z1: normal_net(device, x, h, z1)?,
            q_z2: normal_net(device, z1, h, z2)?,
            p_z1: normal_net(device, z2, h, z1)?,
            decoder: (
                Linear::new(device, z1, h)?,
                ReLU,
                Linear::new(device, h, x)?,
            ),
        })
    }

    /// `(Z1, Z2)`.
    pub fn widths(&self) -> (usize, usize) {
        (self.q_z1.latent_dim(), self.q_z2.latent_dim())
    }

    /// The KL of each layer (Monte Carlo, one draw per image) and the active units of
    /// each layer over `data` (used as given: binarize it first), in batches of `batch`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for an empty `data` or `batch == 0`; shape errors.
    pub fn layer_report(&self, data: &Dataset, device: &D, batch: usize) -> Result<LayerReport>
    where
        D: 'static,
    {
        let (w1, w2) = self.widths();
        let mut kl = [0.0; 2];
        for idx in batches(data.len(), batch)? {
            let x: Events<usize, E, D> = data.batch(device, &idx, None)?;
            let q1 = self.q_z1.posterior(x)?;
            let z1 = q1.sample();
            let lq1 = q1.log_prob(z1.clone())?;
            let q2 = self.q_z2.posterior(z1.clone())?;
            let z2 = q2.sample();
            let lq2 = q2.log_prob(z2.clone())?;
            let lp2 = StandardNormal::new(idx.len(), w2, device).log_prob(z2.clone())?;
            let lp1 = self.p_z1.posterior(z2)?.log_prob(z1)?;
            kl[0] += to_f64_vec(&(lq1 - lp1)).iter().sum::<f64>();
            kl[1] += to_f64_vec(&(lq2 - lp2)).iter().sum::<f64>();
        }
        let n = data.len().max(1) as f64;
        let var = posterior_mean_variance(self, data, device, batch)?;
        Ok(LayerReport {
            kl: [kl[0] / n, kl[1] / n],
            active_units: [active_units(&var[..w1]), active_units(&var[w1..])],
            widths: [w1, w2],
        })
    }
}

impl<E: Real, D: Device<E>> TensorCollection<E, D> for HierarchicalVae<E, D> {
    type To<E2: Dtype, D2: Device<E2>> = HierarchicalVae<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("q_z1", |s| &s.q_z1, |s| &mut s.q_z1),
                Self::module("q_z2", |s| &s.q_z2, |s| &mut s.q_z2),
                Self::module("p_z1", |s| &s.p_z1, |s| &mut s.p_z1),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
            ),
            |(q_z1, q_z2, p_z1, decoder)| HierarchicalVae {
                q_z1,
                q_z2,
                p_z1,
                decoder,
            },
        )
    }
}

impl<E, D, T> LatentVariableModel<E, D, T> for HierarchicalVae<E, D>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
{
    type X = usize;
    type Z = usize;
    type Posterior = ConditionalChain<Normal<usize, E, D, T>, NormalNet<E, D>>;
    type Prior = ConditionalChain<StandardNormal<usize, E, D, T>, NormalNet<E, D>>;
    type Likelihood = Bernoulli<usize, E, D, T>;

    /// `q(z1|x) q(z2|z1)`, rows `[z1, z2]`.
    fn guide(&self, x: Events<usize, E, D, T>) -> Result<Self::Posterior> {
        let (_, w2) = self.widths();
        Ok(ConditionalChain::new(
            self.q_z1.posterior(x)?,
            self.q_z2.clone(),
            w2,
            true,
        ))
    }

    /// `p(z2) p(z1|z2)`, rows `[z1, z2]`.
    fn prior(&self, batch: usize, device: &D) -> Result<Self::Prior> {
        let (w1, w2) = self.widths();
        Ok(ConditionalChain::new(
            StandardNormal::new(batch, w2, device),
            self.p_z1.clone(),
            w1,
            false,
        ))
    }

    /// `p(x | z1)`: only the first `Z1` columns of `z` enter the decoder.
    fn likelihood(&self, z: Events<usize, E, D, T>) -> Result<Self::Likelihood> {
        let (w1, w2) = self.widths();
        let (b, w) = *z.shape();
        if w != w1 + w2 {
            return Err(Error::shape(
                "HierarchicalVae::likelihood",
                &[b, w1 + w2],
                &[b, w],
            ));
        }
        // `ops::columns`, not dfdx's `slice` (whose backward overwrites z's gradient).
        let z1 = latent::ops::columns(z, 0..w1)?;
        Ok(Bernoulli::new(
            self.decoder.try_forward(z1).map_err(Error::device)?,
        ))
    }
}

/// `kind = "hierarchical-vae"`, sizes `x`, `h`, `z1`, `z2`, parts `likelihood =
/// "bernoulli"`, `prior = "standard-normal"`.
impl<E: Real, D: Device<E>> Describe for HierarchicalVae<E, D> {
    fn spec(&self) -> ModelSpec {
        let (w1, w2) = self.widths();
        ModelSpec::new("hierarchical-vae")
            .size("x", self.q_z1.encoder.0.inputs())
            .size("h", self.q_z1.encoder.0.outputs())
            .size("z1", w1)
            .size("z2", w2)
            .part("likelihood", "bernoulli")
            .part("prior", "standard-normal")
    }
}
