//! Network layers whose arithmetic runs through `latent`'s own kernels
//! ([`crate::kernels`]) on the CPU and through dfdx elsewhere.

mod linear;

pub use linear::Linear;
