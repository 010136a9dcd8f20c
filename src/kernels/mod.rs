//! CPU kernels behind `latent`'s fused operations: matrix products at the machine's
//! SIMD level, the fused Bernoulli and categorical log-likelihoods, and the gated
//! activation of the PixelCNN.
//!
//! dfdx 0.13 sends every f32 matrix product to `gemm` 0.15 with rayon parallelism and
//! without its AVX-512 kernels (those need nightly Rust there). The operations of this
//! crate that do most of a model's arithmetic ([`crate::nn::Linear`],
//! [`Bernoulli`](crate::distributions::Bernoulli)'s `log_prob`) instead call `gemm` 0.19
//! single-threaded, which picks its AVX-512 (x86-64-v4), AVX2+FMA (x86-64-v3) or scalar
//! kernels **at run time** from what the processor reports, so one binary is correct
//! and fast on machines with and without AVX-512. Parallelism comes from the trainer's
//! data-parallel replicas ([`crate::train::TrainConfig::threads`]) instead.
//!
//! The fast paths run for `f32` and `f64` tensors on dfdx's `Cpu` device when the
//! operands are contiguous; every other case (CUDA, strided views) takes dfdx's own
//! operations, with the same values and gradients.

mod bernoulli;
mod categorical;
pub(crate) mod cpu;
mod flush;
mod fused;
mod gate;
mod gather;
pub(crate) mod gemm;
mod im2col;
mod linear;
mod math;
pub mod ops;
mod shift_add;
pub(crate) mod simd;
mod transpose;
pub(crate) mod xoshiro_lanes;

pub use bernoulli::bernoulli_log_prob;
pub use categorical::categorical_log_prob;
pub(crate) use flush::flush_subnormals_forever;
pub use flush::FlushSubnormals;
pub use gate::{gated_activation, gated_linear_unit, try_gated_linear_unit};
pub use gather::gather_rows;
pub use gemm::{matmul_naive, simd_level, SimdLevel};
pub use im2col::im2col_conv;
pub use linear::{affine_rows, linear};
pub use shift_add::shift_add_conv;
