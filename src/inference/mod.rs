//! The inference tier: what a model is to the estimators, the guides that amortize
//! the posterior, and the estimators themselves.
//!
//! - [`model`]: the [`LatentVariableModel`](model::LatentVariableModel) interface
//!   (prior, likelihood, guide);
//! - [`conditional`]: conditional models `p(x, z | y)` (CVAE) and the adapter that
//!   binds `y` so every estimator works on them;
//! - [`guide`]: amortized guides `q(z | x)`, diagonal and full-covariance Normal;
//! - [`elbo`]: the ELBO with `L` samples, β and a choice of KL estimator;
//! - [`iwae`]: the IWAE bound and importance-sampled `log p(x)`;
//! - [`nvil`], [`vimco`], [`concrete`]: training discrete guides (score-function
//!   gradients with learned and leave-one-out baselines; the Concrete relaxation);
//! - [`enumerate`]: a discrete latent summed out exactly;
//! - [`objective`]: what a trainer maximizes, and [`signal`]: the moments of a
//!   learning signal that objectives with running state observe.
//!
//! Every estimator returns **nats per example**, summed over the event dimensions.

pub mod concrete;
pub mod conditional;
pub mod elbo;
pub mod enumerate;
pub mod guide;
pub mod iwae;
pub mod model;
pub mod nvil;
pub mod objective;
pub(crate) mod score;
pub mod signal;
pub mod vimco;
