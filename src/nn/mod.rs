//! Network layers whose arithmetic runs through `latent`'s own kernels
//! ([`crate::kernels`]) on the CPU and through dfdx elsewhere.

mod linear;
pub(crate) mod options;
mod unbiased_linear;

pub use linear::Linear;
pub use options::{options as tensor_options, zeros_options, Reset};
pub use unbiased_linear::UnbiasedLinear;
