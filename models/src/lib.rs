//! # latent-models
//!
//! Ready latent-variable models built only from the public parts of
//! [`latent`]: one model per file.
//!
//! - [`Vae`]: the variational autoencoder with any encoder and decoder networks;
//! - [`MlpVae`] / [`mlp_vae`]: the classic MLP VAE for flattened images
//!   (the reference model is 784-400-20);
//! - [`FullCovarianceVae`] / [`mlp_full_covariance_vae`]: the VAE with a full-covariance
//!   Gaussian guide `N(μ(x), L(x)L(x)ᵀ)`;
//! - [`FlowVae`] / [`planar_vae`] / [`iaf_vae`]: the VAE with a normalizing-flow guide
//!   (planar or inverse autoregressive steps);
//! - [`GatedVae`] / [`gated_vae`]: the VAE of two gated layers of the published
//!   likelihood tables (300-300-40);
//! - [`VampVae`]: the VAE with a VampPrior of learned pseudo-inputs, for a Gaussian,
//!   planar or IAF guide;
//! - [`GmVae`]: the Gaussian-mixture VAE, its cluster latent summed out exactly, and
//!   its initialization from a pretrained VAE and a [`DiagonalGmm`] fitted by EM;
//! - [`SbnVae`]: 200 binary latents (a sigmoid belief network), trained with NVIL,
//!   VIMCO, the plain score function or the Concrete relaxation;
//! - [`HierarchicalVae`]: two stochastic layers with a top-down generative path;
//! - [`HierarchicalVampVae`]: two stochastic layers with a VampPrior on the top one,
//!   gated layers (Tomczak & Welling 2018's best configuration);
//! - [`BetaVae`]: the β-VAE objective, with the controlled-capacity schedule;
//! - [`Cvae`]: the conditional VAE, for class-conditioned generation and image completion;
//! - [`VqVae`]: the VQ-VAE with a straight-through quantizer ([`VectorQuantizer`]), the
//!   EMA codebook update and dead-code restarts;
//! - [`GatedPixelCnn`]: the autoregressive prior over the VQ-VAE's grid of codes;
//! - [`LinearGaussian`]: probabilistic PCA with its exact `log p(x)` and posterior,
//!   the reference for checking estimators.

#![warn(missing_docs)]

pub mod beta_vae;
pub mod cvae;
mod describe;
pub mod flow_vae;
pub mod full_covariance_vae;
pub mod gated;
pub mod gmm;
pub mod gmvae;
pub mod hierarchical;
pub mod hierarchical_vamp;
pub mod layers;
pub mod linear_gaussian;
pub mod mlp;
pub mod pixelcnn;
pub mod quantizer;
pub mod sbn;
pub mod vae;
pub mod vamp;
pub mod vq_networks;
pub mod vq_vae;

pub use beta_vae::{BetaVae, Capacity};
pub use cvae::{
    ConditionalPriorHead, Cvae, CvaeDecoder, CvaeGuide, Joint, LearnedConditionalPrior,
};
pub use flow_vae::{iaf_vae, planar_vae, DecoderWidth, FlowVae, IafVae, PlanarVae};
pub use full_covariance_vae::{mlp_full_covariance_vae, FullCovarianceVae, MlpFullCovarianceVae};
pub use gated::{gated_networks, gated_vae, GatedDecoder, GatedEncoder, GatedLinear, GatedVae};
pub use gmm::{DiagonalGmm, GmmFit, GmmSettings};
pub use gmvae::{ClusterFit, ClusterNet, ClusterPrior, GmVae};
pub use hierarchical::{HierarchicalVae, LayerReport, NormalNet};
pub use hierarchical_vamp::{GatedPair, GivenX, HierarchicalVampVae, JointDecoder, VampChain};
pub use linear_gaussian::LinearGaussian;
pub use mlp::{mlp_vae, mlp_vae_with_heads, MlpDecoder, MlpEncoder, MlpVae};
pub use pixelcnn::{GatedLayer, GatedPixelCnn};
pub use quantizer::{CodeUsage, CodebookEma, DeadCodeRestart, Quantized, VectorQuantizer};
pub use sbn::{BaselineNet, SbnVae};
pub use vae::{InputTransform, Vae};
pub use vamp::{GaussianPart, PseudoInit, VampVae};
pub use vq_networks::{conv_vq_vae, mlp_vq_vae, ConvVqVae, MlpVqVae};
pub use vq_vae::{code_usage, CodePrior, CodebookUpdate, VqTerms, VqVae, VqVaeTask};
