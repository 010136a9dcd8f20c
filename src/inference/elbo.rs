//! The evidence lower bound (ELBO), estimated with `L` reparameterized samples.

use dfdx::prelude::*;

use crate::distributions::{Distribution, GuideDistribution};
use crate::error::{Error, Result};
use crate::inference::model::LatentVariableModel;
use crate::inference::score::score_term;
use crate::kernels::ops::{cst, detach, mean_over_samples, repeat_rows, Events, PerExample, Real};

/// How [`Elbo`] computes the `KL(q(z|x) ‖ p(z))` term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlEstimator {
    /// The closed form when the model provides one
    /// ([`LatentVariableModel::closed_form_kl`]), else Monte Carlo.
    #[default]
    Auto,
    /// The closed form; an error if the model has none for its pair.
    Analytic,
    /// `(1/L) Σ_l log q(z_l|x) − log p(z_l)` on the same `L` samples as the
    /// reconstruction term.
    MonteCarlo,
}

/// The ELBO estimator (Kingma & Welling 2014, eq. 7; β as in Higgins et al. 2017):
///
/// `ELBO(x) = E_{q(z|x)}[log p(x|z)] − KL(q(z|x) ‖ p(z))`
///
/// estimated with `samples = L` reparameterized draws `z_l = μ + σ ⊙ ε_l`, drawn as one
/// batched tensor of `L · batch` latents (no loop of separate passes):
///
/// `reconstruction(x) = (1/L) Σ_l log p(x | z_l)`, and the training objective is
/// `reconstruction − β · KL`.
///
/// A discrete guide (a [`Bernoulli`](crate::Bernoulli) or
/// [`Categorical`](crate::distributions::Categorical) posterior) has no pathwise draw:
/// its parameters get the score-function (REINFORCE) gradient
/// `(1/L) Σ_l f(z_l) ∇_φ log q(z_l | x)` of each sampled term `f` (Williams 1992;
/// Pyro's `Trace_ELBO` for a non-reparameterized site), without a baseline. With a
/// closed-form KL only the reconstruction is sampled, so only it enters the score
/// (Rao-Blackwellization). The value is unchanged: the score terms are added as
/// `f · (s − stop_gradient(s))`. Lower-variance estimators of the same gradient:
/// [`crate::Nvil`], [`crate::Vimco`].
///
/// The settings are checked once, when the estimator is made ([`Elbo::new`],
/// [`Elbo::with_beta`], deserialization), so an `Elbo` is always valid and estimating
/// re-checks nothing (linfa's checked-parameters pattern).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "ElboSettings", into = "ElboSettings")]
pub struct Elbo {
    samples: usize,
    kl: KlEstimator,
    beta: f64,
}

/// The serialized form of [`Elbo`], checked on the way in.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct ElboSettings {
    samples: usize,
    kl: KlEstimator,
    beta: f64,
}

impl TryFrom<ElboSettings> for Elbo {
    type Error = Error;
    fn try_from(s: ElboSettings) -> Result<Self> {
        Elbo {
            samples: s.samples,
            kl: s.kl,
            beta: s.beta,
        }
        .checked()
    }
}

impl From<Elbo> for ElboSettings {
    fn from(e: Elbo) -> Self {
        ElboSettings {
            samples: e.samples,
            kl: e.kl,
            beta: e.beta,
        }
    }
}

impl Default for Elbo {
    fn default() -> Self {
        Self {
            samples: 1,
            kl: KlEstimator::Auto,
            beta: 1.0,
        }
    }
}

/// The result of [`Elbo::estimate`], per example, in nats.
pub struct ElboTerms<E: Dtype, D: Device<E>, T> {
    /// `reconstruction − β · KL`, shape `(batch,)`, carrying the tape: maximize it.
    pub objective: PerExample<E, D, T>,
    /// `reconstruction − KL` (β = 1), shape `(batch,)`, no gradient. A lower bound on
    /// `log p(x)`, so usually negative.
    pub elbo: PerExample<E, D>,
    /// `(1/L) Σ_l log p(x | z_l)`, shape `(batch,)`, no gradient.
    pub reconstruction: PerExample<E, D>,
    /// `KL(q(z|x) ‖ p(z))` (closed form or its estimate), shape `(batch,)`, no gradient.
    pub kl: PerExample<E, D>,
}

/// The two taped terms of the ELBO before they are combined ([`Elbo::estimate_parts`]),
/// per example, in nats. Combine them into **one** loss (e.g. `rec − γ·|kl − C|`) so
/// that the tapes they carry meet again.
pub struct ElboParts<E: Dtype, D: Device<E>, T> {
    /// `(1/L) Σ_l log p(x | z_l)`, shape `(batch,)`, carrying the guide's and the
    /// likelihood's tape.
    pub reconstruction: PerExample<E, D, T>,
    /// `KL(q(z|x) ‖ p(z))`, closed form or its Monte Carlo estimate, shape `(batch,)`.
    pub kl: PerExample<E, D, T>,
}

impl<E: Real, D: Device<E>, T: Tape<E, D>> ElboTerms<E, D, T> {
    /// The loss to minimize: `−mean_batch(objective)`, a scalar in nats per example.
    pub fn loss(self) -> Tensor<(), E, D, T> {
        -self.objective.mean::<(), Axis<0>>()
    }
}

impl Elbo {
    /// An ELBO with `samples` latent draws per example, automatic KL and β = 1.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `samples == 0`.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::{Elbo, KlEstimator};
    /// use latent_models::LinearGaussian;
    ///
    /// let dev = Cpu::default();
    /// // Probabilistic PCA, x = W z + b + σ ε with 2 pixels and 1 latent: log p(x) is exact.
    /// let mut model: LinearGaussian<Const<2>, Const<1>, f64, Cpu> =
    ///     LinearGaussian::new(&dev, (Const, Const), &[1.0, 0.5], &[0.0, 0.0], 0.5)?;
    /// let x = [0.8, -0.3];
    /// let log_px = model.exact_log_marginal(&x)?;
    /// let elbo = Elbo::new(1000)?.with_kl(KlEstimator::MonteCarlo);
    /// let batch = || dev.tensor_from_vec(x.to_vec(), (1, Const::<2>));
    /// // The guide starts as the prior: a valid, loose bound.
    /// assert!(elbo.estimate(&model, batch())?.elbo.as_vec()[0] < log_px);
    /// // With the exact posterior as the guide, every sample's log p(x, z) − log q(z | x) is log p(x).
    /// model.set_guide_to_posterior()?;
    /// assert!((elbo.estimate(&model, batch())?.elbo.as_vec()[0] - log_px).abs() < 1e-9);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(samples: usize) -> Result<Self> {
        Self {
            samples,
            ..Default::default()
        }
        .checked()
    }

    /// `L ≥ 1`, the number of latent samples per example.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// How the KL term is computed.
    pub fn kl(&self) -> KlEstimator {
        self.kl
    }

    /// The weight of the KL term in the objective (1 for the ELBO; β-VAE uses β > 1).
    /// The reported [`ElboTerms::elbo`] always uses β = 1.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// Sets β (the KL weight of the objective).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `beta` is negative or not finite.
    pub fn with_beta(self, beta: f64) -> Result<Self> {
        Self { beta, ..self }.checked()
    }

    /// `β` replaced by `beta`, for a `beta` known to be valid (the warm-up's
    /// `β · w`, `w ∈ [0, 1]`).
    pub(crate) fn with_beta_unchecked(self, beta: f64) -> Self {
        Self { beta, ..self }
    }

    /// Sets the KL estimator.
    pub fn with_kl(self, kl: KlEstimator) -> Self {
        Self { kl, ..self }
    }

    /// Checks the settings: [`Error::InvalidSetting`] for `samples == 0` or a negative
    /// or non-finite `beta`.
    fn checked(self) -> Result<Self> {
        if self.samples == 0 {
            return Err(Error::invalid(
                "samples",
                "the ELBO needs at least 1 sample",
            ));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(Error::invalid(
                "beta",
                format!("must be finite and non-negative, got {}", self.beta),
            ));
        }
        Ok(self)
    }

    /// Estimates the ELBO of `model` on a batch `x` of shape `(batch, X)`.
    ///
    /// To train, pass `x.traced(grads)` (so `T = OwnedTape`) and call
    /// `terms.loss().backward()`; to evaluate, pass `x` as is (`T = NoneTape`).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for invalid settings, or for `KlEstimator::Analytic`
    /// with a model that has no closed-form KL; whatever the model's networks report.
    pub fn estimate<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<ElboTerms<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        let ElboParts { reconstruction, kl } = self.estimate_parts(model, x)?;
        let rec_value = detach(&reconstruction);
        let kl_value = detach(&kl);
        let objective = reconstruction - kl * cst::<E>(self.beta);
        Ok(ElboTerms {
            objective,
            elbo: rec_value.clone() - kl_value.clone(),
            reconstruction: rec_value,
            kl: kl_value,
        })
    }

    /// The reconstruction and KL terms of [`Elbo::estimate`], each still carrying its
    /// tape, for objectives that combine them otherwise than `rec − β·KL` (the
    /// controlled-capacity β-VAE of Burgess et al. 2018, say). `self.beta` is not used.
    ///
    /// # Errors
    /// As [`Elbo::estimate`].
    pub fn estimate_parts<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<ElboParts<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        let l = self.samples;
        let terms = sampled_terms(model, x, l, self.kl)?;
        // REINFORCE without a baseline for a discrete guide: each term carries its own
        // score term, so that any combination of the two (rec − β·KL, a capacity
        // objective) weights the score by the same combination of per-sample signals.
        let (rec, score) = match terms.score {
            Some(score) => {
                let fork = score.with_empty_tape();
                let signal = detach(&terms.rec);
                (terms.rec + score_term(score, signal), Some(fork))
            }
            None => (terms.rec, None),
        };
        let kl = match (terms.kl, score) {
            (KlTerm::Closed(kl), _) => kl,
            (KlTerm::PerSample(kl), Some(score)) => {
                let signal = detach(&kl);
                mean_over_samples(kl + score_term(score, signal), l)
            }
            (KlTerm::PerSample(kl), None) => mean_over_samples(kl, l),
        };
        let reconstruction = mean_over_samples(rec, l);
        Ok(ElboParts { reconstruction, kl })
    }
}

/// The KL term of [`sampled_terms`]: closed form per example, or per sample.
pub(crate) enum KlTerm<E: Dtype, D: Storage<E>, T> {
    /// `KL(q ‖ p)`, shape `(batch,)`.
    Closed(PerExample<E, D, T>),
    /// `log q(z_l) − log p(z_l)`, shape `(L·batch,)`, sample-major.
    PerSample(PerExample<E, D, T>),
}

/// The per-sample pieces of the ELBO before any estimator combines them, nats.
pub(crate) struct SampledTerms<E: Dtype, D: Storage<E>, T> {
    /// `log p(x | z_l)`, shape `(L·batch,)`, sample-major, carrying the pathwise tape.
    pub rec: PerExample<E, D, T>,
    /// The KL term.
    pub kl: KlTerm<E, D, T>,
    /// `log q(z_l)` of the discretely drawn coordinates, shape `(L·batch,)`, on its own
    /// tape (see [`crate::GuideDraw::score`]); `None` for a reparameterized guide.
    pub score: Option<PerExample<E, D, T>>,
}

/// Draws `l` latents per example from the guide and scores them: the pieces every
/// sampled ELBO estimator ([`Elbo`], [`crate::Nvil`]) combines.
///
/// # Errors
/// [`Error::InvalidSetting`] for `KlEstimator::Analytic` with a model that has no
/// closed-form KL; the model's errors.
pub(crate) fn sampled_terms<X: Dim, Z: Dim, E, D, T, M>(
    model: &M,
    x: Events<X, E, D, T>,
    l: usize,
    kl: KlEstimator,
) -> Result<SampledTerms<E, D, T>>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    M: LatentVariableModel<E, D, T, X = X, Z = Z>,
{
    let batch = x.shape().0;
    let device = x.device().clone();
    // The target of the likelihood: the same data, without the input's tape.
    let x_rep = repeat_rows(x.retaped::<NoneTape>(), l).retaped::<T>();

    let q = model.guide(x)?;
    let p = model.prior(batch, &device)?;
    let closed = match kl {
        KlEstimator::MonteCarlo => None,
        KlEstimator::Auto | KlEstimator::Analytic => model.closed_form_kl(&q, &p),
    };
    if closed.is_none() && kl == KlEstimator::Analytic {
        return Err(Error::invalid(
            "kl",
            "this model has no closed-form KL for its guide and prior; use Auto or MonteCarlo",
        ));
    }

    let (z, kl, score) = match closed {
        Some(kl) => {
            // The KL was computed on forks: merge the prior's own tape back in, or
            // a learned prior (e.g. a CVAE's p(z|y) network) gets no gradient. The
            // guide's tape travels with the sample.
            let (kl, tape) = kl?.split_tape();
            let (z, score) = q.repeat(l).draw()?;
            (
                z,
                KlTerm::Closed(kl.put_tape(tape.merge(p.into_tape()))),
                score,
            )
        }
        None => {
            let d = crate::distributions::draws::draw(q, p, l)?;
            (d.z, KlTerm::PerSample(d.log_q - d.log_p), d.score)
        }
    };
    let rec = model.likelihood(z)?.log_prob(x_rep)?;
    Ok(SampledTerms { rec, kl, score })
}
