//! # latent
//!
//! Probabilistic programming for latent-variable models, trained by amortized
//! variational inference on [dfdx](https://docs.rs/dfdx/0.13.0) (CPU, or CUDA with the
//! `cuda` feature).
//!
//! The modules, from the ground up:
//! - [`error`]: the crate's typed [`Error`] and [`Result`];
//! - [`kernels`] (with [`ops`], re-exported at the root): the tensor vocabulary
//!   (`Events`, `PerExample`, `Real`, [`ops::detach`], [`ops::columns`]) and the CPU
//!   kernels behind the fused operations;
//! - [`special`]: `lgamma`, `digamma`, `trigamma`, `log_beta`, `softplus` as tensor
//!   operations with gradients;
//! - [`distributions`]: families with `log_prob`, `sample`, `rsample`, `entropy`,
//!   `mean`, `variance`, `mode`;
//! - [`kl`]: closed-form KL divergences, a Monte Carlo fallback and the open registry;
//! - [`inference`]: the [`LatentVariableModel`] interface, conditional models, amortized
//!   guides and the estimators ([`Elbo`], [`ImportanceWeighted`],
//!   [`log_marginal_likelihood`], [`Objective`]);
//! - [`flows`]: normalizing flows (planar, inverse autoregressive), the transformed
//!   distributions and the flow guides they make;
//! - [`heads`] and [`nn`]: likelihood heads for tabular data and the layers they use;
//! - [`data`]: Fashion-MNIST, any IDX file, CSV/NPY/NPZ tables, support checks;
//! - [`train`]: the trainer ([`train::fit`]), its checked settings, the optimizer,
//!   checkpoints, resume and the metrics log;
//! - [`distributed`]: data-parallel training across threads, and across processes with
//!   MPI (feature `mpi`);
//! - [`eval`]: test NLL by importance sampling, KL per dimension, active units,
//!   exploring a trained model, and PNG pictures;
//! - `conformance` (feature `conformance`, off by default; the README's test command
//!   turns it on): property-based checks a user runs on their own families and KL
//!   pairs.
//!
//! Ready models (the VAE and its variants) live in the `latent-models` crate.
//!
//! # Units
//! Log-densities, ELBOs and KLs are in **nats per example**, summed over the event
//! dimensions (e.g. over the 784 pixels of an image).
//!
//! # Two dfdx traps this crate handles for you
//! - In dfdx 0.13 gradients are stored by tensor id; `retaped()` and `clone()` keep
//!   the id, so they are not a stop-gradient. Use [`ops::detach`].
//! - dfdx 0.13's `slice` **assigns** its gradient into the input's instead of adding
//!   it, so a sliced tensor that also feeds another operation loses that operation's
//!   gradient. Take columns with [`ops::columns`].

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

#[doc(hidden)]
pub use dfdx as __dfdx;

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod data;
pub mod distributed;
pub mod distributions;
pub mod error;
pub mod eval;
pub mod flows;
pub mod heads;
pub mod inference;
pub mod kernels;
pub mod kl;
pub mod nn;
pub mod special;
pub mod train;

pub use kernels::ops;

pub use distributions::{
    Bernoulli, Distribution, Entropy, GuideDistribution, GuideDraw, Mode, Normal,
    Reparameterizable, StandardNormal, Variance,
};
pub use error::{Error, Result};
pub use inference::concrete::Concrete;
pub use inference::conditional::{ConditionalModel, Conditioned};
pub use inference::elbo::{Elbo, ElboParts, ElboTerms, KlEstimator};
pub use inference::guide::{AmortizedGuide, DiagonalNormalGuide, FullCovarianceGuide, LatentWidth};
pub use inference::iwae::{
    log_marginal_likelihood, log_weights, ImportanceWeighted, LogLikelihood,
};
pub use inference::model::LatentVariableModel;
pub use inference::nvil::Nvil;
pub use inference::objective::{AnyObjective, Objective, SignalMoments};
pub use inference::vimco::Vimco;
pub use kl::{
    monte_carlo_kl, registered_kl, registered_kl_per_dimension, KlDivergence, KlPerDimension,
};
pub use ops::{detach, observed, Events, PerExample, Real};

/// The names most programs need: `use latent::prelude::*;`.
pub mod prelude {
    pub use crate::distributions::{
        Bernoulli, Categorical, ContinuousBernoulli, Distribution, Entropy, GuideDistribution,
        Laplace, MixtureOfDiagNormals, Mode, Normal, RelaxedOneHotCategorical, Reparameterizable,
        StandardNormal, Variance,
    };
    pub use crate::error::{Error, Result};
    pub use crate::inference::conditional::{ConditionalModel, Conditioned};
    pub use crate::inference::elbo::{Elbo, ElboTerms, KlEstimator};
    pub use crate::inference::guide::{AmortizedGuide, DiagonalNormalGuide};
    pub use crate::inference::iwae::{log_marginal_likelihood, ImportanceWeighted};
    pub use crate::inference::model::LatentVariableModel;
    pub use crate::inference::objective::{AnyObjective, Objective};
    pub use crate::kernels::ops::{detach, Events, PerExample, Real};
    pub use crate::kl::{monte_carlo_kl, KlDivergence};
}

/// The README's code examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The discrete-latent guide's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/discrete.md")]
pub struct DiscreteDoctests;

/// The guides in `docs/guide/`, compiled and run as doctests so that their templates
/// cannot rot.
#[cfg(all(doctest, feature = "conformance"))]
mod extending_guides {
    #[doc = include_str!("../docs/guide/family.md")]
    struct Family;
    #[doc = include_str!("../docs/guide/likelihood-head.md")]
    struct LikelihoodHead;
    #[doc = include_str!("../docs/guide/kl-pair.md")]
    struct KlPair;
    #[doc = include_str!("../docs/guide/model.md")]
    struct Model;
}
