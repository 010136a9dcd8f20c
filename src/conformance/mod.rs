//! A conformance kit for distribution families and closed-form KL pairs: the identity
//! checks this crate runs on its own families, packaged so that a user who writes a
//! new family (or a new closed-form KL) runs them on it with one call from a test.
//!
//! ```text
//! #[test]
//! fn my_family_conforms() {
//!     latent::conformance::check_family::<1, _>(&MyFamily, &Config::default()).unwrap();
//!     latent::conformance::check_kl::<1, _>(&MyPair, &Config::default()).unwrap();
//! }
//! ```
//!
//! A family is described by a [`Family`]: how to build a batch from a parameter matrix
//! θ (one row per distribution), a proptest strategy of valid θ, and what is known about
//! it in closed form (reference log-density, support, variance, entropy, pathwise
//! sampler, affine map, marginals). [`check_family`] then checks, over random θ drawn by
//! proptest (in `f64`, on the CPU):
//!
//! - invalid parameters give a typed [`Error`], never a panic;
//! - `log_prob` equals the reference log-density (e.g. statrs) to 1e-9 relative;
//! - the density integrates to 1 (Simpson's rule on a 1-D interval) or sums to 1 over
//!   a finite support;
//! - sample means and variances match `mean()` and the variance within 5 standard
//!   errors; no sample is more probable than the mode; the entropy matches `−E[log p]` by Monte Carlo within 5 standard errors;
//! - the gradients of `log_prob` and of `rsample` (with the noise held fixed) with
//!   respect to θ agree with central finite differences.
//!
//! A closed-form KL is described by a [`KlPair`]; [`check_kl`] checks `KL ≥ 0`,
//! `KL(p‖p) = 0` for pairs within one family, the closed form against the Monte Carlo
//! estimate within 5 standard errors, its gradients against central differences,
//! additivity over independent dimensions (when the families give marginals),
//! invariance under one affine map applied to both (location-scale families) and
//! Pinsker's inequality `TV ≤ √(KL/2)` (finite supports).
//!
//! A bijector (a step of a normalizing flow, [`crate::flows`]) is described by a
//! [`BijectorFamily`]; [`check_bijector`] checks its `log |det J|` against the
//! Jacobian computed by central differences, `f⁻¹ ∘ f = id` where the inverse exists,
//! and the gradients of `f(z)` and `log |det J|` with respect to its parameters and
//! `z` against central differences.
//!
//! [`families`] implements [`Family`] for this crate's families and [`KlPair`] for its
//! closed forms; `tests/conformance.rs` runs them, and checks a user-defined Logistic
//! family and a user-defined `KL(Laplace ‖ Normal)` the same way.

use dfdx::prelude::*;
use proptest::strategy::BoxedStrategy;

use crate::distributions::Distribution;
use crate::error::{Error, Result};
use crate::kernels::ops::{Events, PerExample};

mod bijector;
mod checks;
pub mod families;
pub mod flows;
mod kl;

pub use bijector::{check_bijector, log_abs_det, BijectorFamily};
pub use checks::check_family;
pub use kl::{check_kl, check_kl_additivity};

/// The device the kit runs on.
pub type Dev = Cpu;

/// A parameter matrix θ: one row of [`Family::num_params`] values per distribution.
pub type Theta<T = NoneTape> = Tensor<(usize, usize), f64, Dev, T>;

/// Where a 1-D family's mass is, for the normalization check.
#[derive(Debug, Clone, PartialEq)]
pub enum Support {
    /// No normalization check.
    Unchecked,
    /// A 1-D continuous density whose mass outside `[lo, hi]` is negligible (< 1e-9):
    /// `∫_lo^hi p(x) dx` is computed by Simpson's rule.
    Interval(f64, f64),
    /// A finite support: every event (each of length `N`); `Σ p(x)` must be 1.
    Points(Vec<Vec<f64>>),
    /// The non-negative integers (1-D): `Σ_k p(k)` must be 1, summed in blocks until a
    /// block adds less than 1e-16 of the total (the kit chooses the truncation).
    Counts,
    /// The probability simplex of `N` = 2 or 3 coordinates: `∫ p(x) dx = 1` over its
    /// first `N − 1` coordinates (the density of a Dirichlet, say), by Simpson's rule.
    /// The density must vanish at the boundary (e.g. every concentration ≥ 2).
    Simplex,
}

/// A distribution family as the kit sees it, over `N`-dimensional events.
///
/// Implement it for a unit struct (or one holding fixed settings, e.g. a temperature).
/// Only the first four methods are required; every optional one that returns something
/// adds checks.
pub trait Family<const N: usize> {
    /// The distribution type, for every tape.
    type Dist<T: Tape<f64, Dev>>: Distribution<Const<N>, f64, Dev, Tape = T>;

    /// A name for failure messages.
    fn name(&self) -> String;

    /// Parameters per distribution (the width of θ).
    fn num_params(&self) -> usize;

    /// A proptest strategy of valid parameter vectors of length [`Family::num_params`].
    fn parameters(&self) -> BoxedStrategy<Vec<f64>>;

    /// The batch of distributions with parameters θ, shape `(batch, num_params)`.
    /// Gradients must reach θ when it carries a tape ([`block`] cuts θ into `(batch, N)`
    /// pieces that do). Validate θ here and return a typed error for invalid values.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] or [`Error::ShapeMismatch`] for invalid θ.
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>>;

    /// Parameter vectors [`Family::build`] must reject with a typed error.
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        Vec::new()
    }

    /// The reference `log p(x)` (e.g. from statrs) for one θ row and one event `x`.
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let _ = (theta, x);
        None
    }

    /// The support, for the normalization check (1-D intervals or finite supports).
    fn support(&self, theta: &[f64]) -> Support {
        let _ = theta;
        Support::Unchecked
    }

    /// The mean `E[x]` in closed form; the default is [`Distribution::mean`]. Return
    /// `None` for a family whose `mean()` is not the exact mean (see
    /// [`crate::distributions::RelaxedOneHotCategorical`]).
    fn mean(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.mean())
    }

    /// The per-coordinate variance, if the family has it in closed form.
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        let _ = d;
        None
    }

    /// The mode, if the family has it in closed form: checked by `log p(mode) ≥ log p(x)`
    /// for every sampled `x`.
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        let _ = d;
        None
    }

    /// The entropy per example, if the family has it in closed form.
    fn entropy(&self, d: Self::Dist<NoneTape>) -> Option<PerExample<f64, Dev>> {
        let _ = d;
        None
    }

    /// A pathwise sample, if the family is reparameterizable.
    fn rsample<T: Tape<f64, Dev>>(
        &self,
        d: Self::Dist<T>,
    ) -> Option<Events<Const<N>, f64, Dev, T>> {
        let _ = d;
        None
    }

    /// θ of the distribution of `a·x + b` (coordinate-wise) for location-scale
    /// families (`a ≠ 0`), for the affine-invariance check of KL.
    fn affine(&self, theta: &[f64], a: f64, b: f64) -> Option<Vec<f64>> {
        let _ = (theta, a, b);
        None
    }

    /// θ of the 1-D marginal of coordinate `j` for factorized families, for the
    /// additivity check of KL. The family must then also implement `Family<1>`.
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        let _ = (theta, j);
        None
    }
}

/// A closed-form `KL(q ‖ p)` between a distribution of family `Q` and one of family
/// `P`, for [`check_kl`].
pub trait KlPair<const N: usize> {
    /// The family of `q`.
    type Q: Family<N>;
    /// The family of `p`.
    type P: Family<N>;
    /// The family of `q`.
    fn q(&self) -> &Self::Q;
    /// The family of `p`.
    fn p(&self) -> &Self::P;
    /// Whether `Q` and `P` are the same family (then `KL(q ‖ q) = 0` is checked by
    /// building `p` with `q`'s parameters).
    fn same_family(&self) -> bool;
    /// The closed form, per example, nats.
    ///
    /// # Errors
    /// Shape mismatches.
    fn kl<T: Tape<f64, Dev>>(
        &self,
        q: <Self::Q as Family<N>>::Dist<T>,
        p: <Self::P as Family<N>>::Dist<T>,
    ) -> Result<PerExample<f64, Dev, T>>;
}

/// How hard the kit checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Random parameter vectors per property.
    pub cases: u32,
    /// Draws per Monte Carlo estimate (sample moments, entropy, KL).
    pub samples: usize,
    /// Standard errors a Monte Carlo estimate may be off by.
    pub z: f64,
    /// Relative tolerance of exact identities (reference log-density, additivity).
    pub rel: f64,
    /// Tolerance of the finite-difference gradient checks, relative to
    /// `max(1, |gradient|)`; the step is `1e-5`.
    pub grad_tol: f64,
    /// Simpson intervals for 1-D normalization.
    pub quadrature_intervals: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cases: 16,
            samples: 20_000,
            z: 5.0,
            rel: 1e-9,
            grad_tol: 1e-5,
            quadrature_intervals: 4000,
        }
    }
}

/// A failed check: which family or pair, which property, the parameters that failed
/// (proptest's shrunk case) and why.
#[derive(Debug, thiserror::Error)]
#[error("{subject}: {property} failed: {reason}")]
pub struct Failure {
    /// The family or pair.
    pub subject: String,
    /// The property.
    pub property: String,
    /// The failing case and the numbers.
    pub reason: String,
}

/// The columns `i·N .. (i+1)·N` of θ as a `(batch, N)` tensor that keeps θ's tape,
/// so that gradients reach θ. Take the tape-carrying θ for the first block and
/// `theta.with_empty_tape()` for the others (the same tensor id: gradients add up).
///
/// # Errors
/// [`Error::ShapeMismatch`] if θ has fewer than `(i+1)·N` columns.
pub fn block<const N: usize, T: Tape<f64, Dev>>(
    theta: Theta<T>,
    i: usize,
) -> Result<Events<Const<N>, f64, Dev, T>> {
    let (b, width) = *theta.shape();
    if width < (i + 1) * N {
        // At least this many parameter columns are needed.
        return Err(Error::shape(
            "conformance::block (parameter columns)",
            &[(i + 1) * N],
            &[width],
        ));
    }
    theta
        .slice((.., i * N..(i + 1) * N))
        .try_realize::<(usize, Const<N>)>()
        .map_err(|_| Error::shape("conformance::block", &[b, N], &[b, width]))
}

/// Rejects θ with non-finite values (the common validation of [`Family::build`]).
///
/// # Errors
/// [`Error::InvalidSetting`] naming the first non-finite value.
pub fn require_finite<T>(theta: &Theta<T>) -> Result<()> {
    match theta.as_vec().into_iter().find(|v| !v.is_finite()) {
        Some(v) => Err(Error::invalid(
            "theta",
            format!("parameters must be finite, got {v}"),
        )),
        None => Ok(()),
    }
}

/// θ rows as a matrix on `dev`.
pub(crate) fn theta_matrix(dev: &Dev, rows: &[Vec<f64>]) -> Theta {
    let width = rows.first().map_or(0, Vec::len);
    dev.tensor_from_vec(rows.concat(), (rows.len(), width))
}
