//! The one place the examples turn a likelihood and a prior into the MLP VAE's heads:
//! `vae` trains the model it picks, `generate` reopens the model a run describes.

use dfdx::prelude::*;
use latent::heads::{
    BernoulliHead, ContinuousBernoulliHead, LearnedGaussianHead, MixturePrior, StandardNormalPrior,
};
use latent::train::{Describe, ModelSpec, ThreadSafe};
use latent::{Error, LatentVariableModel, Normal, Result};
use latent_models::MlpVae;

use super::{LikelihoodArg, PriorArg};

type Dev = AutoDevice;

/// The MLP VAE at run-time sizes with likelihood head `L` and prior head `P`.
pub type Model<L, P> = MlpVae<usize, usize, usize, f32, Dev, L, P>;

/// What every head pair's MLP VAE is: trainable and evaluable on both tapes, with a
/// diagonal Normal guide, checkpointable, described, and shareable across threads.
pub trait MlpVaeBounds:
    TensorCollection<f32, Dev>
    + LatentVariableModel<f32, Dev, OwnedTape<f32, Dev>, X = usize, Z = usize>
    + LatentVariableModel<
        f32,
        Dev,
        NoneTape,
        X = usize,
        Z = usize,
        Posterior = Normal<usize, f32, Dev, NoneTape>,
    > + Describe
    + ThreadSafe
{
}

impl<M> MlpVaeBounds for M where
    M: TensorCollection<f32, Dev>
        + LatentVariableModel<f32, Dev, OwnedTape<f32, Dev>, X = usize, Z = usize>
        + LatentVariableModel<
            f32,
            Dev,
            NoneTape,
            X = usize,
            Z = usize,
            Posterior = Normal<usize, f32, Dev, NoneTape>,
        > + Describe
        + ThreadSafe
{
}

/// What an example does with the MLP VAE once its heads are known.
pub trait WithHeads {
    /// Runs with the heads `heads` builds on the device.
    ///
    /// # Errors
    /// The example's own.
    fn run<L, P>(self, heads: impl FnOnce(&Dev) -> Result<(L, P)>) -> Result<()>
    where
        Model<L, P>: MlpVaeBounds;
}

/// Calls `with` with the heads of `likelihood` and `prior` for `z` latent dimensions:
/// the likelihood × prior matrix of the command line, written once.
///
/// # Errors
/// A head's construction error; `with`'s.
pub fn with_heads<W: WithHeads>(
    likelihood: LikelihoodArg,
    prior: PriorArg,
    z: usize,
    with: W,
) -> Result<()> {
    use {LikelihoodArg as L, PriorArg as P};
    let gauss = |d: &Dev| LearnedGaussianHead::new(d, 1);
    match (likelihood, prior) {
        (L::Bernoulli, P::StandardNormal) => with.run(|_| Ok((BernoulliHead, StandardNormalPrior))),
        (L::ContinuousBernoulli, P::StandardNormal) => {
            with.run(|_| Ok((ContinuousBernoulliHead, StandardNormalPrior)))
        }
        (L::Gaussian, P::StandardNormal) => with.run(|d| Ok((gauss(d)?, StandardNormalPrior))),
        (L::Bernoulli, P::Mixture(k)) => {
            with.run(|d| Ok((BernoulliHead, MixturePrior::new(d, k, z)?)))
        }
        (L::ContinuousBernoulli, P::Mixture(k)) => {
            with.run(|d| Ok((ContinuousBernoulliHead, MixturePrior::new(d, k, z)?)))
        }
        (L::Gaussian, P::Mixture(k)) => with.run(|d| Ok((gauss(d)?, MixturePrior::new(d, k, z)?))),
    }
}

/// The likelihood and prior a checkpoint's model description names (the heads' own
/// names, `bernoulli`, `learned-gaussian`, `mixture(k=5)`, …).
///
/// # Errors
/// [`Error::InvalidSetting`] for a part this matrix does not know.
pub fn from_spec(spec: &ModelSpec) -> Result<(LikelihoodArg, PriorArg)> {
    let part = |role: &str| spec.parts.get(role).map(String::as_str).unwrap_or("");
    let likelihood = match part("likelihood") {
        "bernoulli" => LikelihoodArg::Bernoulli,
        "continuous-bernoulli" => LikelihoodArg::ContinuousBernoulli,
        "learned-gaussian" => LikelihoodArg::Gaussian,
        other => {
            return Err(Error::invalid(
                "likelihood",
                format!("unknown likelihood `{other}`"),
            ))
        }
    };
    let prior = match part("prior") {
        "standard-normal" => PriorArg::StandardNormal,
        other => other
            .strip_prefix("mixture(k=")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|k| k.parse().ok())
            .map(PriorArg::Mixture)
            .ok_or_else(|| Error::invalid("prior", format!("unknown prior `{other}`")))?,
    };
    Ok((likelihood, prior))
}
