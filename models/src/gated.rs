//! The gated fully connected layer and the MLP VAE built from it, the architecture of
//! the VampPrior paper (Tomczak & Welling 2018) and its successors' likelihood tables.

use dfdx::prelude::*;
use latent::heads::{BernoulliHead, StandardNormalPrior};
use latent::nn::Linear;
use latent::{Real, Result};

use crate::vae::Vae;

/// `y = (W x + b) ⊙ sigmoid(V x + c)`, `(batch, I) → (batch, O)`: a gated linear unit
/// (Dauphin et al. 2017, "Language Modeling with Gated Convolutional Networks", eq. 1),
/// the `GatedDense` layer of Tomczak & Welling 2018 (VampPrior, §4 and their code).
/// Both maps are initialized as PyTorch's `nn.Linear`.
#[derive(Debug, Clone)]
pub struct GatedLinear<I: Dim, O: Dim, E: Dtype, D: Storage<E>> {
    /// `W, b`: the values.
    pub value: Linear<I, O, E, D>,
    /// `V, c`: the gate's pre-activation.
    pub gate: Linear<I, O, E, D>,
}

impl<I: Dim, O: Dim, E: Real, D: Device<E>> GatedLinear<I, O, E, D> {
    /// A layer from `inputs` to `outputs` features.
    ///
    /// # Errors
    /// Allocation errors.
    pub fn new(device: &D, inputs: I, outputs: O) -> Result<Self> {
        Ok(Self {
            value: Linear::new(device, inputs, outputs)?,
            gate: Linear::new(device, inputs, outputs)?,
        })
    }

    /// The input width `I`.
    pub fn inputs(&self) -> I {
        self.value.inputs()
    }

    /// The output width `O`.
    pub fn outputs(&self) -> O {
        self.value.outputs()
    }
}

impl<I: Dim, O: Dim, E: Dtype, D: Storage<E>> NonMutableModule for GatedLinear<I, O, E, D> {}

impl<I: Dim + Default, O: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D>
    for GatedLinear<I, O, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = GatedLinear<I, O, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("value", |s| &s.value, |s| &mut s.value),
                Self::module("gate", |s| &s.gate, |s| &mut s.gate),
            ),
            |(value, gate)| GatedLinear { value, gate },
        )
    }
}

impl<B: Dim, I: Dim, O: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Module<Tensor<(B, I), E, D, T>>
    for GatedLinear<I, O, E, D>
{
    type Output = Tensor<(B, O), E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, x: Tensor<(B, I), E, D, T>) -> std::result::Result<Self::Output, D::Err> {
        // One fused pass for `value ⊙ σ(gate)` and one for its gradient on the CPU.
        let g = self.gate.try_forward(x.with_empty_tape())?;
        latent::kernels::try_gated_linear_unit(self.value.try_forward(x)?, g)
    }
}

/// The encoder body `X → H → H` of two gated layers.
pub type GatedEncoder<X, H, E, D> = (GatedLinear<X, H, E, D>, GatedLinear<H, H, E, D>);

/// The decoder `Z → H → H → X` (logits): two gated layers and a linear map.
pub type GatedDecoder<X, H, Z, E, D> = (
    GatedLinear<Z, H, E, D>,
    GatedLinear<H, H, E, D>,
    Linear<H, X, E, D>,
);

/// The VAE of the published Fashion-MNIST likelihood tables (Tomczak & Welling 2018;
/// Norouzi et al. 2020): encoder and decoder of two gated layers of `H` units
/// (`H = 300`, `Z = 40` there), Bernoulli likelihood, standard-Normal prior.
pub type GatedVae<X, H, Z, E, D, Lik = BernoulliHead, Pri = StandardNormalPrior> =
    Vae<GatedEncoder<X, H, E, D>, GatedDecoder<X, H, Z, E, D>, X, H, Z, E, D, Lik, Pri>;

/// The encoder and decoder of a [`GatedVae`].
pub type GatedNetworks<X, H, Z, E, D> = (GatedEncoder<X, H, E, D>, GatedDecoder<X, H, Z, E, D>);

/// The encoder and decoder of a [`GatedVae`] with sizes `(X, H, Z)`.
///
/// # Errors
/// Allocation errors.
pub fn gated_networks<X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>>(
    device: &D,
    (x, h, z): (X, H, Z),
) -> Result<GatedNetworks<X, H, Z, E, D>> {
    Ok((
        (
            GatedLinear::new(device, x, h)?,
            GatedLinear::new(device, h, h)?,
        ),
        (
            GatedLinear::new(device, z, h)?,
            GatedLinear::new(device, h, h)?,
            Linear::new(device, h, x)?,
        ),
    ))
}

/// Builds a [`GatedVae`] with sizes `(X, H, Z)`.
///
/// ```
/// use dfdx::prelude::*;
/// use latent_models::{gated_vae, GatedVae};
///
/// let dev = Cpu::default();
/// let m: GatedVae<usize, usize, usize, f32, Cpu> = gated_vae(&dev, (784, 300, 40)).unwrap();
/// assert_eq!(m.guide.latent_dim(), 40);
/// ```
///
/// # Errors
/// Allocation errors.
pub fn gated_vae<X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>>(
    device: &D,
    dims: (X, H, Z),
) -> Result<GatedVae<X, H, Z, E, D>> {
    let (encoder, decoder) = gated_networks(device, dims)?;
    Vae::with_heads(
        encoder,
        decoder,
        BernoulliHead,
        StandardNormalPrior,
        (dims.1, dims.2),
        device,
    )
}
