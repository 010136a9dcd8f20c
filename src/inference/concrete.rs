//! Training a discrete guide through its Concrete relaxation, with the temperature
//! annealed (Maddison et al. 2017; Jang et al. 2017).

use dfdx::prelude::*;

use crate::distributions::{Distribution, GuideDistribution};
use crate::error::{Error, Result};
use crate::inference::model::LatentVariableModel;
use crate::kernels::ops::{cst, Events, PerExample, Real};

/// The relaxed objective `E[log p(x | z̃)] − β · KL(q(z | x) ‖ p(z))` with `z̃` a
/// reparameterized draw of the guide's Concrete relaxation at temperature `τ`
/// ([`GuideDistribution::relaxed_rsample`]), and the KL between the discrete guide and
/// prior in closed form (the Gumbel-softmax estimator of Jang et al. 2017, §2-3). It is
/// biased for the discrete model (the decoder sees `z̃ ∈ (0, 1)`, not `z ∈ {0, 1}`),
/// less so as `τ → 0`, where its variance grows; evaluate the discrete model.
///
/// The temperature is annealed with the optimizer step `t` (Jang et al. 2017, §4.1):
/// `τ_t = max(τ_min, τ_0 · exp(−r t))`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "ConcreteSettings", into = "ConcreteSettings")]
pub struct Concrete {
    initial_temperature: f64,
    min_temperature: f64,
    anneal_rate: f64,
    beta: f64,
    /// The temperature of the current step (set by [`crate::Objective::scheduled`]).
    temperature: Option<f64>,
}

#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct ConcreteSettings {
    initial_temperature: f64,
    min_temperature: f64,
    anneal_rate: f64,
}

impl TryFrom<ConcreteSettings> for Concrete {
    type Error = Error;
    fn try_from(s: ConcreteSettings) -> Result<Self> {
        Concrete::new(s.initial_temperature, s.min_temperature, s.anneal_rate)
    }
}

impl From<Concrete> for ConcreteSettings {
    fn from(c: Concrete) -> Self {
        ConcreteSettings {
            initial_temperature: c.initial_temperature,
            min_temperature: c.min_temperature,
            anneal_rate: c.anneal_rate,
        }
    }
}

impl Concrete {
    /// The schedule `max(τ_min, τ_0 e^{−r t})`, β = 1.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] unless `0 < τ_min ≤ τ_0` (finite) and `r ≥ 0`.
    pub fn new(initial_temperature: f64, min_temperature: f64, anneal_rate: f64) -> Result<Self> {
        let ok = initial_temperature.is_finite()
            && min_temperature > 0.0
            && min_temperature <= initial_temperature
            && anneal_rate.is_finite()
            && anneal_rate >= 0.0;
        if !ok {
            return Err(Error::invalid(
                "temperature",
                format!(
                    "need 0 < τ_min ≤ τ_0 and r ≥ 0, got τ_0 = {initial_temperature}, \
                     τ_min = {min_temperature}, r = {anneal_rate}"
                ),
            ));
        }
        Ok(Self {
            initial_temperature,
            min_temperature,
            anneal_rate,
            beta: 1.0,
            temperature: None,
        })
    }

    /// `τ_0`.
    pub fn initial_temperature(&self) -> f64 {
        self.initial_temperature
    }

    /// `τ_min`.
    pub fn min_temperature(&self) -> f64 {
        self.min_temperature
    }

    /// `r`, per optimizer step.
    pub fn anneal_rate(&self) -> f64 {
        self.anneal_rate
    }

    /// `τ_t` at optimizer step `step`.
    pub fn temperature_at(&self, step: usize) -> f64 {
        (self.initial_temperature * (-self.anneal_rate * step as f64).exp())
            .max(self.min_temperature)
    }

    /// The temperature in use: the scheduled step's, or `τ_0` before training.
    pub fn temperature(&self) -> f64 {
        self.temperature.unwrap_or(self.initial_temperature)
    }

    pub(crate) fn at(self, step: usize, kl_weight: f64) -> Self {
        Self {
            temperature: Some(self.temperature_at(step)),
            beta: self.beta * kl_weight,
            ..self
        }
    }

    /// The relaxed objective per example, shape `(batch,)`, nats.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if the guide's family has no Concrete relaxation or the
    /// pair has no closed-form KL; the model's errors.
    pub fn estimate<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        let batch = x.shape().0;
        let device = x.device().clone();
        let target = x.retaped::<NoneTape>().retaped::<T>();
        let q = model.guide(x)?;
        let p = model.prior(batch, &device)?;
        let kl = model.closed_form_kl(&q, &p).ok_or_else(|| {
            Error::invalid(
                "concrete",
                "the Concrete objective needs a closed-form KL between the discrete guide and prior",
            )
        })??;
        let (kl, tape) = kl.split_tape();
        let kl = kl.put_tape(tape.merge(p.into_tape()));
        let z = q.relaxed_rsample(self.temperature()).ok_or_else(|| {
            Error::invalid(
                "concrete",
                "the guide's family has no Concrete relaxation (GuideDistribution::relaxed_rsample)",
            )
        })?;
        let rec = model.likelihood(z)?.log_prob(target)?;
        Ok(rec - kl * cst::<E>(self.beta))
    }
}
