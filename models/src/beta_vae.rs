//! The β-VAE objectives: a β-weighted KL (Higgins et al. 2017) and the
//! controlled-capacity objective (Burgess et al. 2018).
//!
//! A β-VAE is the same network as the VAE ([`crate::Vae`]) trained with another
//! objective, so this file holds the objective, usable with any
//! [`LatentVariableModel`].

use dfdx::prelude::*;
use latent::{
    Elbo, ElboParts, Error, Events, LatentVariableModel, Objective, PerExample, Real, Result,
};

/// The controlled-capacity schedule of Burgess et al. 2018, §4 ("Understanding
/// disentangling in β-VAE", eq. 8): the target KL `C` rises linearly from 0 to `c_max`
/// nats over `steps` optimizer steps, then stays at `c_max`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    /// `γ > 0`, the weight of `|KL − C|` (the paper uses 1000 for dSprites).
    pub gamma: f64,
    /// `C_max ≥ 0`, the final target KL in nats per example.
    pub c_max: f64,
    /// Optimizer steps over which `C` rises from 0 to `c_max` (0: `C = c_max` at once).
    pub steps: usize,
}

impl Capacity {
    /// `C(step) = c_max · min(1, step / steps)`, in nats.
    pub fn target(&self, step: usize) -> f64 {
        if self.steps == 0 {
            self.c_max
        } else {
            self.c_max * (step as f64 / self.steps as f64).min(1.0)
        }
    }
}

/// The β-VAE training objective, per example, in nats (to maximize):
///
/// - without capacity (Higgins et al. 2017, eq. 4): `E_q[log p(x|z)] − β · KL(q(z|x) ‖ p(z))`;
/// - with capacity (Burgess et al. 2018, eq. 8): `E_q[log p(x|z)] − γ · |KL(q(z|x) ‖ p(z)) − C|`
///   with `C` from the [`Capacity`] schedule at the current optimizer step.
///
/// Both terms come from [`Elbo::estimate_parts`] (the closed-form KL where the pair has
/// one). With `β = 1` and no capacity this is exactly the ELBO. The trainer's KL warm-up
/// multiplies β (or γ) by its weight; the capacity's step comes from the trainer through
/// [`Objective::scheduled`].
///
/// The settings are checked once, by the constructors; the fields are private so that
/// a `BetaVae` is always valid.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BetaVae {
    /// The estimator of the two terms (`samples`, KL estimator) and `β ≥ 0`.
    elbo: Elbo,
    /// The controlled-capacity schedule, replacing `β · KL` when set.
    capacity: Option<Capacity>,
    /// The optimizer step the capacity target is taken at (set by the trainer).
    step: usize,
    /// The KL warm-up weight (set by the trainer; 1 without warm-up).
    kl_weight: f64,
}

impl BetaVae {
    /// The β-weighted objective with one latent sample and the automatic KL estimator.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `beta` is negative or not finite.
    pub fn new(beta: f64) -> Result<Self> {
        Self {
            elbo: Elbo::default().with_beta(beta)?,
            capacity: None,
            step: 0,
            kl_weight: 1.0,
        }
        .checked()
    }

    /// The controlled-capacity objective `rec − γ·|KL − C|`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `γ` is not positive and finite or `C_max` is negative
    /// or not finite.
    pub fn with_capacity(capacity: Capacity) -> Result<Self> {
        Self {
            capacity: Some(capacity),
            ..Self::new(1.0)?
        }
        .checked()
    }

    /// The estimator of the two terms (`samples`, KL estimator) and `β ≥ 0`, the
    /// weight of the KL ([`Elbo::beta`]; 4 in the comparison example).
    pub fn elbo(&self) -> Elbo {
        self.elbo
    }

    /// The controlled-capacity schedule, if any.
    pub fn capacity(&self) -> Option<Capacity> {
        self.capacity
    }

    /// `γ > 0` and `C_max ≥ 0`, finite.
    fn checked(self) -> Result<Self> {
        if let Some(c) = self.capacity {
            if !(c.gamma.is_finite() && c.gamma > 0.0) {
                return Err(Error::invalid(
                    "gamma",
                    format!("must be positive and finite, got {}", c.gamma),
                ));
            }
            if !(c.c_max.is_finite() && c.c_max >= 0.0) {
                return Err(Error::invalid(
                    "c_max",
                    format!("must be finite and non-negative, got {}", c.c_max),
                ));
            }
        }
        Ok(self)
    }
}

impl Objective for BetaVae {
    fn objective<X: Dim, Z: Dim, E, D, T, M>(
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
        let s = self;
        let ElboParts { reconstruction, kl } = s.elbo.estimate_parts(model, x)?;
        let w = s.kl_weight;
        Ok(match s.capacity {
            None => reconstruction - kl * latent::ops::cst::<E>(s.elbo.beta() * w),
            Some(c) => {
                let gap = (kl - latent::ops::cst::<E>(c.target(s.step))).abs();
                reconstruction - gap * latent::ops::cst::<E>(c.gamma * w)
            }
        })
    }

    fn draws(&self) -> usize {
        self.elbo.samples()
    }

    fn describe(&self) -> String {
        match self.capacity {
            None => format!("beta-vae(β={})", self.elbo.beta()),
            Some(c) => format!(
                "beta-vae(γ={}, C→{} nats over {} steps)",
                c.gamma, c.c_max, c.steps
            ),
        }
    }

    fn scheduled(&self, step: usize, kl_weight: f64) -> Self {
        Self {
            step,
            kl_weight,
            ..*self
        }
    }
}
