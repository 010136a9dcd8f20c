//! Ready encoder/decoder pairs for the [`VqVae`] on 28×28 images: an MLP
//! with a flat grid of code vectors, and a convolutional pair with a 7×7 grid of codes
//! (the architecture of van den Oord et al. 2017, §4.1, scaled to 28×28: two stride-2
//! convolutions down, two sub-pixel convolutions back up).

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::nn::Linear;
use latent::Real;
use latent::Result;

use crate::layers::{Conv2d, DepthToSpace, JoinRows, SplitRows};
use crate::vq_vae::VqVae;

/// MLP encoder `X → H → G·DM`, cut into `G = N / DM` code vectors.
pub type MlpVqEncoder<const X: usize, const H: usize, const N: usize, const DM: usize, E, D> = (
    Linear<Const<X>, Const<H>, E, D>,
    ReLU,
    Linear<Const<H>, Const<N>, E, D>,
    SplitRows<DM>,
);

/// MLP decoder `G·DM → H → X` (logits), from `G` code vectors.
pub type MlpVqDecoder<const X: usize, const H: usize, const N: usize, E, D> = (
    JoinRows<N>,
    Linear<Const<N>, Const<H>, E, D>,
    ReLU,
    Linear<Const<H>, Const<X>, E, D>,
);

/// The MLP VQ-VAE: `784 → H → G` code vectors of `DM` dimensions (`N = G·DM`), a
/// codebook of `K` (a dfdx `Dim`: `Const` or a `usize` chosen at run time), and back.
pub type MlpVqVae<const H: usize, const N: usize, const DM: usize, K, E, D> =
    VqVae<MlpVqEncoder<784, H, N, DM, E, D>, MlpVqDecoder<784, H, N, E, D>, K, Const<DM>, E, D>;

/// Convolutional encoder for 28×28×1 images: `conv 4×4/2 (32) → ReLU → conv 4×4/2 (64)
/// → ReLU → conv 1×1 (DM)`, giving a 7×7 grid of `DM`-dimensional vectors (49 rows per
/// image, row-major over the grid).
pub type ConvVqEncoder<const DM: usize, E, D> = (
    SplitRows<1>,
    Conv2d<1, 32, 4, 2, 1, 28, 28, E, D>,
    ReLU,
    Conv2d<32, 64, 4, 2, 1, 14, 14, E, D>,
    ReLU,
    Linear<Const<64>, Const<DM>, E, D>,
);

/// Convolutional decoder from a 7×7 grid of `DM`-dimensional codes: `conv 3×3 (64) →
/// ReLU → conv 3×3 (4·32) → depth-to-space → ReLU → conv 3×3 (4·1) → depth-to-space`,
/// the 28×28 logits as a flat `(batch, 784)` row. The two upsamplings are sub-pixel
/// convolutions (Shi et al. 2016), which on a CPU cost a quarter of a transposed or
/// upsample-then-convolve layer.
pub type ConvVqDecoder<const DM: usize, E, D> = (
    (Conv2d<DM, 64, 3, 1, 1, 7, 7, E, D>, ReLU),
    (
        Conv2d<64, 128, 3, 1, 1, 7, 7, E, D>,
        DepthToSpace<32, 7, 7>,
        ReLU,
    ),
    (
        Conv2d<32, 4, 3, 1, 1, 14, 14, E, D>,
        DepthToSpace<1, 14, 14>,
        JoinRows<784>,
    ),
);

/// The convolutional VQ-VAE for 28×28 images with a 7×7 grid of codes from a codebook
/// of `K` vectors in `R^DM`. `K` is a dfdx `Dim` (`Const`, or a `usize` chosen at run
/// time); `DM` is the channel count of the convolutions around it, fixed with them.
pub type ConvVqVae<const DM: usize, K, E, D> =
    VqVae<ConvVqEncoder<DM, E, D>, ConvVqDecoder<DM, E, D>, K, Const<DM>, E, D>;

/// Builds a [`ConvVqVae`] with a codebook of `codes` vectors on `device`.
///
/// # Errors
/// The device's allocation errors.
pub fn conv_vq_vae<const DM: usize, K: Dim, E: Real, D: Device<E>>(
    device: &D,
    codes: K,
) -> Result<ConvVqVae<DM, K, E, D>> {
    VqVae::new(
        BuildModule::build(device),
        BuildModule::build(device),
        (codes, Const),
        device,
    )
}

/// Builds an [`MlpVqVae`] on `device`.
///
/// # Errors
/// The device's allocation errors.
pub fn mlp_vq_vae<
    const H: usize,
    const N: usize,
    const DM: usize,
    K: Dim,
    E: Real,
    D: Device<E>,
>(
    device: &D,
    codes: K,
) -> Result<MlpVqVae<H, N, DM, K, E, D>> {
    VqVae::new(
        BuildModule::build(device),
        BuildModule::build(device),
        (codes, Const),
        device,
    )
}
