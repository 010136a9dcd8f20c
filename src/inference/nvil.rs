//! NVIL: the score-function ELBO gradient with an input-dependent learned baseline and
//! running centring and scaling of the learning signal (Mnih & Gregor 2014).

use dfdx::prelude::*;

use crate::error::{Error, Result};
use crate::inference::elbo::{sampled_terms, KlEstimator, KlTerm, SampledTerms};
use crate::inference::model::LatentVariableModel;
use crate::inference::score::{score_term, weights_like};
use crate::inference::signal::SignalMoments;
use crate::kernels::ops::{cst, detach, mean_over_samples, to_f64_vec, Events, PerExample, Real};

/// Neural variational inference and learning (Mnih & Gregor 2014): the ELBO, whose
/// discrete guide learns through the score with a variance-reduced learning signal.
/// Their Algorithm 1, per sample `z_l ~ q(z | x)`:
///
/// 1. `l = log p(x, z_l) − log q(z_l | x)` (with a closed-form KL only the
///    reconstruction `log p(x | z_l)` is sampled, and `l` is that);
/// 2. centred by the input-dependent baseline `C_ψ(x)`
///    ([`LatentVariableModel::baseline`], a network of the model's) and the running
///    mean `c` of `l − C_ψ(x)`, and scaled by its running standard deviation:
///    `l' = (l − C_ψ(x) − c) / max(1, √v)` (§3.3);
/// 3. the guide's gradient `l' ∇_φ log q(z_l | x)`, the baseline's `l' ∇_ψ C_ψ(x)` (which
///    fits `C_ψ(x)` to `l − c` in squared error), the model's the pathwise gradient.
///
/// With a closed-form KL (the default where the pair has one) only the reconstruction
/// is sampled, and the KL's exact gradient is divided by the same `max(1, √v)` as the
/// score terms, so that the guide's whole gradient keeps its direction (in the paper
/// all of it passes through `l'`). A learned prior's gradient is divided likewise.
///
/// The running moments follow `c ← αc + (1 − α) c_b`, `v ← αv + (1 − α) v_b` with the
/// batch's mean `c_b` and variance `v_b` of `l − C_ψ(x)`, `α = 0.8` (their §5): the
/// step's signal is centred with the moments updated by its own batch, as in the
/// paper, and the first batch's moments are taken as they are. They are state: the
/// trainer saves them in every checkpoint and restores them on resume
/// ([`crate::Objective::state`]). With data-parallel replicas each replica centres with
/// its share's `c_b`; the stored moments are the whole batch's.
///
/// The value reported is the ELBO (`rec − β·KL`), per example, in nats; the score and
/// baseline terms add gradient, not value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "NvilSettings", into = "NvilSettings")]
pub struct Nvil {
    samples: usize,
    kl: KlEstimator,
    beta: f64,
    alpha: f64,
    input_baseline: bool,
    moments: Moments,
}

/// The running moments of the centred signal `l − C_ψ(x)`.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Moments {
    /// The running mean `c`, nats.
    pub mean: f64,
    /// The running variance `v`, nats².
    pub variance: f64,
    /// Whether a batch has been seen (before that, a batch's own moments are used).
    pub initialized: bool,
}

impl Moments {
    /// The moments, if the mean and variance are finite and the variance is not
    /// negative (what a restored checkpoint must hold).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] otherwise.
    pub fn checked(self) -> Result<Self> {
        if self.mean.is_finite() && self.variance.is_finite() && self.variance >= 0.0 {
            Ok(self)
        } else {
            Err(Error::invalid(
                "nvil state",
                format!("moments must be finite with a non-negative variance, got {self:?}"),
            ))
        }
    }
}

#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct NvilSettings {
    samples: usize,
    kl: KlEstimator,
    beta: f64,
    alpha: f64,
    input_baseline: bool,
}

impl TryFrom<NvilSettings> for Nvil {
    type Error = Error;
    fn try_from(s: NvilSettings) -> Result<Self> {
        Nvil {
            samples: s.samples,
            kl: s.kl,
            beta: s.beta,
            alpha: s.alpha,
            input_baseline: s.input_baseline,
            moments: Moments::default(),
        }
        .checked()
    }
}

impl From<Nvil> for NvilSettings {
    fn from(n: Nvil) -> Self {
        NvilSettings {
            samples: n.samples,
            kl: n.kl,
            beta: n.beta,
            alpha: n.alpha,
            input_baseline: n.input_baseline,
        }
    }
}

impl Default for Nvil {
    /// One sample, automatic KL, β = 1, `α = 0.8`, with the model's input-dependent
    /// baseline.
    fn default() -> Self {
        Self {
            samples: 1,
            kl: KlEstimator::Auto,
            beta: 1.0,
            alpha: 0.8,
            input_baseline: true,
            moments: Moments::default(),
        }
    }
}

impl Nvil {
    /// NVIL with `samples` draws per example and the paper's settings otherwise.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `samples == 0`.
    pub fn new(samples: usize) -> Result<Self> {
        Self {
            samples,
            ..Default::default()
        }
        .checked()
    }

    /// Sets the decay `α ∈ [0, 1)` of the running moments.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] outside `[0, 1)`.
    pub fn with_alpha(self, alpha: f64) -> Result<Self> {
        Self { alpha, ..self }.checked()
    }

    /// Sets β, the weight of the KL term.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a negative or non-finite β.
    pub fn with_beta(self, beta: f64) -> Result<Self> {
        Self { beta, ..self }.checked()
    }

    /// Sets the KL estimator.
    pub fn with_kl(self, kl: KlEstimator) -> Self {
        Self { kl, ..self }
    }

    /// Uses (`true`, the default) or leaves out the model's input-dependent baseline
    /// `C_ψ(x)`; without it the signal is only centred and scaled by the running moments.
    pub fn with_input_baseline(self, on: bool) -> Self {
        Self {
            input_baseline: on,
            ..self
        }
    }

    /// The samples per example.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// β.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The running moments of the centred signal.
    pub fn moments(&self) -> Moments {
        self.moments
    }

    /// Replaces the running moments (what [`crate::Objective::restore`] does).
    pub fn with_moments(self, moments: Moments) -> Self {
        Self { moments, ..self }
    }

    pub(crate) fn with_beta_unchecked(self, beta: f64) -> Self {
        Self { beta, ..self }
    }

    fn checked(self) -> Result<Self> {
        if self.samples == 0 {
            return Err(Error::invalid("samples", "NVIL needs at least 1 sample"));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(Error::invalid(
                "beta",
                format!("must be finite and non-negative, got {}", self.beta),
            ));
        }
        if !(0.0..1.0).contains(&self.alpha) {
            return Err(Error::invalid(
                "alpha",
                format!("the moments' decay must lie in [0, 1), got {}", self.alpha),
            ));
        }
        Ok(self)
    }

    /// Folds a whole batch's moments of `l − C_ψ(x)` into the running ones.
    pub fn update(&mut self, batch: &SignalMoments) {
        if batch.count <= 0.0 {
            return;
        }
        let (c_b, v_b) = batch.mean_variance();
        self.moments = self.blend(c_b, v_b);
    }

    fn blend(&self, c_b: f64, v_b: f64) -> Moments {
        let m = self.moments;
        if m.initialized {
            let a = self.alpha;
            Moments {
                mean: a * m.mean + (1.0 - a) * c_b,
                variance: a * m.variance + (1.0 - a) * v_b,
                initialized: true,
            }
        } else {
            Moments {
                mean: c_b,
                variance: v_b,
                initialized: true,
            }
        }
    }

    /// The ELBO per example, shape `(batch,)`, nats, carrying NVIL's gradient, and the
    /// moments of this batch's `l − C_ψ(x)` for [`Nvil::update`].
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if the input-dependent baseline is on and the model has
    /// none; the model's errors.
    pub fn estimate<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<(PerExample<E, D, T>, SignalMoments)>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        let (l, beta) = (self.samples, self.beta);
        let batch = x.shape().0;
        let baseline = if self.input_baseline {
            let c = model.baseline(x.retaped::<T>()).ok_or_else(|| {
                Error::invalid(
                    "nvil",
                    "NVIL's input-dependent baseline needs a model with a baseline network \
                     (LatentVariableModel::baseline); or turn it off with with_input_baseline(false)",
                )
            })??;
            Some(c)
        } else {
            None
        };
        let SampledTerms { rec, kl, score } = sampled_terms(model, x, l, self.kl)?;
        let mut signal = to_f64_vec(&rec);
        if let KlTerm::PerSample(kl) = &kl {
            for (s, k) in signal.iter_mut().zip(to_f64_vec(kl)) {
                *s -= beta * k;
            }
        }
        let c_x = baseline.as_ref().map(to_f64_vec);
        let centred: Vec<f64> = signal
            .iter()
            .enumerate()
            .map(|(i, s)| s - c_x.as_ref().map_or(0.0, |c| c[i % batch]))
            .collect();
        let observed = SignalMoments::of(&centred);
        let (c_b, v_b) = observed.mean_variance();
        let now = self.blend(c_b, v_b);
        let scale = now.variance.max(0.0).sqrt().max(1.0);
        let w: Vec<f64> = centred.iter().map(|c| (c - now.mean) / scale).collect();

        let rec = match score {
            Some(score) => {
                let weights = weights_like(&score, &w);
                rec + score_term(score, weights)
            }
            None => rec,
        };
        // The KL term's gradient is divided by the same scale as the score terms, so
        // that the guide's whole gradient is (1/scale) times an unbiased estimate: a
        // scaled score beside an unscaled analytic KL gradient would point elsewhere
        // (the guide collapsed onto the prior when it did).
        let inv = 1.0 / scale;
        let kl_weighted = |kl: PerExample<E, D, T>| {
            let value = detach(&kl);
            kl * cst::<E>(beta * inv) + value * cst::<E>(beta * (1.0 - inv))
        };
        let mut objective = match kl {
            KlTerm::Closed(kl) => mean_over_samples(rec, l) - kl_weighted(kl),
            KlTerm::PerSample(kl) => mean_over_samples(rec - kl_weighted(kl), l),
        };
        if let Some(c) = baseline {
            // ψ's gradient l' ∇ψ C_ψ(x), l' averaged over the example's samples.
            let w_mean: Vec<f64> = (0..batch)
                .map(|b| (0..l).map(|s| w[s * batch + b]).sum::<f64>() / l as f64)
                .collect();
            let weights = weights_like(&c, &w_mean);
            objective = objective + score_term(c, weights);
        }
        Ok((objective, observed))
    }
}
