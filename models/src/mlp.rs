//! The classic MLP VAE for flattened images (Kingma & Welling 2014, Appendix C.2;
//! the `pytorch/examples` VAE): `X-H-Z` with ReLU.

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::nn::Linear;
use latent::Real;

use crate::vae::Vae;

/// The encoder body `x ↦ relu(W x + b)`, `(batch, X) → (batch, H)`.
pub type MlpEncoder<const X: usize, const H: usize, E, D> = (Linear<X, H, E, D>, ReLU);

/// The decoder `z ↦ W₂ relu(W₁ z + b₁) + b₂` (logits), `(batch, Z) → (batch, X)`.
pub type MlpDecoder<const X: usize, const H: usize, const Z: usize, E, D> =
    (Linear<Z, H, E, D>, ReLU, Linear<H, X, E, D>);

/// The MLP VAE: `X → H → (μ, log σ) ∈ R^Z`, and `Z → H → X` Bernoulli logits.
/// The reference model is `MlpVae<784, 400, 20, f32, _>`.
pub type MlpVae<const X: usize, const H: usize, const Z: usize, E, D> =
    Vae<MlpEncoder<X, H, E, D>, MlpDecoder<X, H, Z, E, D>, H, Z, E, D>;

/// Builds an [`MlpVae`] on `device`, initialized as PyTorch's `nn.Linear` is
/// (`U(−1/√fan_in, 1/√fan_in)` for weights and biases).
pub fn mlp_vae<const X: usize, const H: usize, const Z: usize, E: Real, D: Device<E>>(
    device: &D,
) -> MlpVae<X, H, Z, E, D> {
    Vae::new(
        BuildModule::build(device),
        BuildModule::build(device),
        device,
    )
}
