//! The classic MLP VAE for flattened images (Kingma & Welling 2014, Appendix C.2;
//! the `pytorch/examples` VAE): `X-H-Z` with ReLU.

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::heads::{BernoulliHead, StandardNormalPrior};
use latent::nn::Linear;
use latent::{Real, Result};

use crate::vae::Vae;

/// The encoder body `x ↦ relu(W x + b)`, `(batch, X) → (batch, H)`.
pub type MlpEncoder<X, H, E, D> = (Linear<X, H, E, D>, ReLU);

/// The decoder `z ↦ W₂ relu(W₁ z + b₁) + b₂` (logits), `(batch, Z) → (batch, X)`.
pub type MlpDecoder<X, H, Z, E, D> = (Linear<Z, H, E, D>, ReLU, Linear<H, X, E, D>);

/// The MLP VAE: `X → H → (μ, log σ) ∈ R^Z`, and `Z → H → X` Bernoulli logits.
/// The sizes are dfdx `Dim`s: the reference model is
/// `MlpVae<Const<784>, Const<400>, Const<20>, f32, _>` (sizes checked at compile time),
/// and `MlpVae<usize, usize, usize, f32, _>` takes sizes chosen at run time.
/// `Lik` and `Pri` are the likelihood and prior heads (Bernoulli and standard Normal by
/// default; see [`mlp_vae_with_heads`]).
pub type MlpVae<X, H, Z, E, D, Lik = BernoulliHead, Pri = StandardNormalPrior> =
    Vae<MlpEncoder<X, H, E, D>, MlpDecoder<X, H, Z, E, D>, X, H, Z, E, D, Lik, Pri>;

/// Builds an [`MlpVae`] with sizes `(X, H, Z)` on `device`, initialized as PyTorch's
/// `nn.Linear` is (`U(−1/√fan_in, 1/√fan_in)` for weights and biases).
///
/// ```
/// use dfdx::prelude::*;
/// use latent_models::{mlp_vae, MlpVae};
///
/// let dev = Cpu::default();
/// // Sizes fixed at compile time …
/// let a: MlpVae<Const<784>, Const<400>, Const<20>, f32, Cpu> =
///     mlp_vae(&dev, (Const, Const, Const)).unwrap();
/// // … or chosen at run time (e.g. from `--hidden 300 --latent-dim 7`).
/// let b: MlpVae<usize, usize, usize, f32, Cpu> = mlp_vae(&dev, (784, 300, 7)).unwrap();
/// assert_eq!(b.guide.latent_dim(), 7);
/// # let _ = a;
/// ```
///
/// # Errors
/// The device's allocation errors.
pub fn mlp_vae<X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>>(
    device: &D,
    dims: (X, H, Z),
) -> Result<MlpVae<X, H, Z, E, D>> {
    mlp_vae_with_heads(device, dims, BernoulliHead, StandardNormalPrior)
}

/// [`mlp_vae`] with the given likelihood and prior heads (e.g. a `LearnedGaussianHead`
/// and a `MixturePrior`, see [`latent::heads`]).
///
/// # Errors
/// The device's allocation errors.
pub fn mlp_vae_with_heads<X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>, Lik, Pri>(
    device: &D,
    (x, h, z): (X, H, Z),
    likelihood: Lik,
    prior: Pri,
) -> Result<MlpVae<X, H, Z, E, D, Lik, Pri>> {
    let encoder = (Linear::new(device, x, h)?, ReLU);
    let decoder = (Linear::new(device, z, h)?, ReLU, Linear::new(device, h, x)?);
    Vae::with_heads(encoder, decoder, likelihood, prior, (h, z), device)
}
