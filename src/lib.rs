//! # latent
//!
//! Probabilistic programming for latent-variable models, trained by amortized
//! variational inference on [dfdx](https://docs.rs/dfdx/0.13.0) (CPU, or CUDA with the
//! `cuda` feature).
//!
//! The parts:
//! - [`distributions`]: families with `log_prob`, `sample`, `rsample`, `entropy`;
//! - [`flows`]: normalizing flows (planar, inverse autoregressive) and the
//!   transformed distributions and flow guides they make;
//! - [`kl`]: closed-form KL divergences and a Monte Carlo fallback;
//! - [`guide`]: amortized guides `q(z | x)`;
//! - [`model`]: the [`LatentVariableModel`] interface (prior, likelihood, guide);
//! - [`conditional`]: conditional models `p(x, z | y)` (CVAE) and the adapter that
//!   binds `y` so every estimator works on them;
//! - [`elbo`]: the ELBO estimator with `L` samples, β and a choice of KL estimator;
//! - [`iwae`]: the IWAE bound and importance-sampled `log p(x)`;
//! - [`objective`]: what the trainer maximizes;
//! - [`eval`]: test NLL by importance sampling, KL per dimension, active units;
//! - `conformance` (feature `conformance`, on by default): property-based checks a
//!   user runs on their own families and KL pairs;
//! - [`data`], [`train`], [`viz`]: Fashion-MNIST (and any IDX data), a trainer with
//!   checkpoints and metrics, and PNG image grids.
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

#[doc(hidden)]
pub use dfdx as __dfdx;

pub mod conditional;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod data;
pub mod distributed;
pub mod distributions;
mod draws;
pub mod elbo;
pub mod error;
pub mod eval;
pub mod explore;
pub mod flows;
pub mod guide;
pub mod heads;
pub mod iwae;
pub mod kernels;
pub mod kl;
pub mod model;
pub mod nn;
pub mod objective;
pub mod ops;
pub mod optim;
pub mod special;
pub mod train;
pub mod viz;

pub use conditional::{ConditionalModel, Conditioned};
pub use distributions::{
    Bernoulli, Distribution, Entropy, Mode, Normal, Reparameterizable, StandardNormal, Variance,
};
pub use elbo::{Elbo, ElboParts, ElboTerms, KlEstimator};
pub use error::{Error, Result};
pub use guide::{AmortizedGuide, DiagonalNormalGuide, FullCovarianceGuide, LatentWidth};
pub use iwae::{log_marginal_likelihood, log_weights, ImportanceWeighted, LogLikelihood};
pub use kl::{
    monte_carlo_kl, registered_kl, registered_kl_per_dimension, KlDivergence, KlPerDimension,
};
pub use model::LatentVariableModel;
pub use objective::{AnyObjective, Objective};
pub use ops::{detach, observed, Events, PerExample, Real};

/// The names most programs need: `use latent::prelude::*;`.
pub mod prelude {
    pub use crate::conditional::{ConditionalModel, Conditioned};
    pub use crate::distributions::{
        Bernoulli, Categorical, ContinuousBernoulli, Distribution, Entropy, Laplace,
        MixtureOfDiagNormals, Mode, Normal, RelaxedOneHotCategorical, Reparameterizable,
        StandardNormal, Variance,
    };
    pub use crate::elbo::{Elbo, ElboTerms, KlEstimator};
    pub use crate::error::{Error, Result};
    pub use crate::guide::{AmortizedGuide, DiagonalNormalGuide};
    pub use crate::iwae::{log_marginal_likelihood, ImportanceWeighted};
    pub use crate::kl::{monte_carlo_kl, KlDivergence};
    pub use crate::model::LatentVariableModel;
    pub use crate::objective::{AnyObjective, Objective};
    pub use crate::ops::{detach, Events, PerExample, Real};
}

/// The README's code examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

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
