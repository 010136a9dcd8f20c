//! The evaluation tier: what papers report about a trained model, the ways to look
//! into it, and the pictures.
//!
//! - [`report`](mod@report) (its items re-exported here): test NLL by importance sampling, the
//!   ELBO and its parts, KL per latent dimension and active units;
//! - [`clusters`]: unsupervised cluster accuracy and normalized mutual information;
//! - [`explore`]: encode, decode, reconstruct, interpolate and traverse;
//! - [`viz`]: PNG grids of grey-level images;
//! - `charts` (feature `charts`, on by default): training curves, the comparison chart
//!   and latent scatter plots.

#[cfg(feature = "charts")]
pub mod charts;
pub mod clusters;
pub mod explore;
pub mod report;
pub mod viz;

pub use report::{
    active_units, batches, evaluate, evaluate_batches, kl_per_dimension, posterior_mean_variance,
    report, test_nll, test_nll_conditional, test_nll_enumerated, EvalOptions, EvalReport,
    EvaluationReport, NllReport, ACTIVE_UNIT_THRESHOLD,
};
