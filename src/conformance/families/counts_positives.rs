//! [`Family`] for the count, positive and proportion families (Poisson, binomial,
//! negative binomial, exponential, Gamma, Beta), as the kit checks them.
//!
//! Parameter layouts (blocks of `N`): `Poisson`/`Exponential`: `[ln λ]`;
//! `Binomial`: `[ℓ]` with the number of trials a field of the family;
//! `NegativeBinomial`: `[ln r; ℓ]`; `Gamma`: `[ln α; ln β]`; `Beta`: `[ln a; ln b]`.
//!
//! The reference log-densities are the textbook scalar formulas in `f64`
//! ([`crate::special::scalar`] for `ln Γ`); the tests also compare with PyTorch.
//! The parameter ranges keep the 1-D normalization check well conditioned: the
//! Gamma's concentration is at least 3 and the Beta's at least 2 here (finite densities at the
//! ends of the support); `tests/torch_families.rs` covers concentrations from 0.01.
//! Gamma and Beta give no `rsample` to the kit: their implicit reparameterization
//! holds the CDF value fixed, not the rejection sampler's noise, so the kit's
//! finite-difference check does not apply; `tests/reparam.rs` checks their pathwise
//! gradients against the closed-form gradient of the mean instead.

use dfdx::prelude::*;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

use crate::conformance::{block, require_finite, Dev, Family, Support, Theta};
use crate::distributions::{
    Beta, Binomial, Entropy, Exponential, Gamma, Mode, NegativeBinomial, Poisson,
    Reparameterizable, Variance,
};
use crate::error::{Error, Result};
use crate::kernels::ops::{Events, PerExample};
use crate::special::scalar::{lgamma, log_beta};

pub(super) fn vector(n: usize, lo: f64, hi: f64) -> BoxedStrategy<Vec<f64>> {
    prop::collection::vec(lo..hi, n).boxed()
}

pub(super) fn width<T>(theta: &Theta<T>, width: usize, family: &str) -> Result<()> {
    require_finite(theta)?;
    if theta.shape().1 == width {
        Ok(())
    } else {
        Err(Error::shape(
            format!("{family} parameters (columns)"),
            &[width],
            &[theta.shape().1],
        ))
    }
}

pub(super) fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// [`Poisson`], θ = `[ln λ (N)]`, `λ ∈ (0.05, 20)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoissonFamily;

impl<const N: usize> Family<N> for PoissonFamily {
    type Dist<T: Tape<f64, Dev>> = Poisson<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("Poisson<{N}>")
    }
    fn num_params(&self) -> usize {
        N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        vector(N, -3.0, 3.0)
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, N, "Poisson")?;
        Ok(Poisson::new(block::<N, T>(theta, 0)?))
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![vec![f64::NAN; N], vec![0.0; N + 1]]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        Some(
            (0..N)
                .map(|j| x[j] * theta[j] - theta[j].exp() - lgamma(x[j] + 1.0))
                .sum(),
        )
    }
    fn support(&self, _theta: &[f64]) -> Support {
        if N == 1 {
            Support::Counts
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
    }
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        Some(vec![theta[j]])
    }
}

/// [`Binomial`] of `total_count` trials, θ = `[ℓ (N)]`.
#[derive(Debug, Clone, Copy)]
pub struct BinomialFamily {
    /// The number of trials.
    pub total_count: u32,
}

impl<const N: usize> Family<N> for BinomialFamily {
    type Dist<T: Tape<f64, Dev>> = Binomial<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("Binomial<{N}>({})", self.total_count)
    }
    fn num_params(&self) -> usize {
        N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        vector(N, -4.0, 4.0)
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, N, "Binomial")?;
        Binomial::new(self.total_count, block::<N, T>(theta, 0)?)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![vec![f64::INFINITY; N], vec![0.0; N + 1]]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let n = f64::from(self.total_count);
        Some(
            (0..N)
                .map(|j| {
                    lgamma(n + 1.0) - lgamma(x[j] + 1.0) - lgamma(n - x[j] + 1.0) + x[j] * theta[j]
                        - n * softplus(theta[j])
                })
                .sum(),
        )
    }
    fn support(&self, _theta: &[f64]) -> Support {
        if N == 1 {
            Support::Points((0..=self.total_count).map(|k| vec![f64::from(k)]).collect())
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
    }
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        Some(vec![theta[j]])
    }
}

/// [`NegativeBinomial`], θ = `[ln r (N); ℓ (N)]`, `r ∈ (0.14, 7.4)`, `ℓ ∈ (−3, 1)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NegativeBinomialFamily;

impl<const N: usize> Family<N> for NegativeBinomialFamily {
    type Dist<T: Tape<f64, Dev>> = NegativeBinomial<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("NegativeBinomial<{N}>")
    }
    fn num_params(&self) -> usize {
        2 * N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        (vector(N, -2.0, 2.0), vector(N, -3.0, 1.0))
            .prop_map(|(a, b)| [a, b].concat())
            .boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, 2 * N, "NegativeBinomial")?;
        let logits = block::<N, T>(theta.with_empty_tape(), 1)?;
        NegativeBinomial::new(block::<N, T>(theta, 0)?, logits)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![
            [vec![f64::NAN; N], vec![0.0; N]].concat(),
            vec![0.0; 2 * N + 1],
        ]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        Some(
            (0..N)
                .map(|j| {
                    let (r, l) = (theta[j].exp(), theta[N + j]);
                    -r * softplus(l) + x[j] * (l - softplus(l)) + lgamma(r + x[j])
                        - lgamma(x[j] + 1.0)
                        - lgamma(r)
                })
                .sum(),
        )
    }
    fn support(&self, _theta: &[f64]) -> Support {
        if N == 1 {
            Support::Counts
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
    }
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        Some(vec![theta[j], theta[N + j]])
    }
}

/// [`Exponential`], θ = `[ln λ (N)]`, `λ ∈ (0.22, 4.5)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExponentialFamily;

impl<const N: usize> Family<N> for ExponentialFamily {
    type Dist<T: Tape<f64, Dev>> = Exponential<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("Exponential<{N}>")
    }
    fn num_params(&self) -> usize {
        N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        vector(N, -1.5, 1.5)
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, N, "Exponential")?;
        Ok(Exponential::new(block::<N, T>(theta, 0)?))
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![vec![f64::NAN; N], vec![0.0; N + 1]]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        Some((0..N).map(|j| theta[j] - theta[j].exp() * x[j]).sum())
    }
    fn support(&self, theta: &[f64]) -> Support {
        if N == 1 {
            Support::Interval(0.0, 40.0 / theta[0].exp())
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
    }
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn entropy(&self, d: Self::Dist<NoneTape>) -> Option<PerExample<f64, Dev>> {
        Some(d.entropy())
    }
    fn rsample<T: Tape<f64, Dev>>(
        &self,
        d: Self::Dist<T>,
    ) -> Option<Events<Const<N>, f64, Dev, T>> {
        Some(d.rsample())
    }
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        Some(vec![theta[j]])
    }
}

/// [`Gamma`], θ = `[ln α (N); ln β (N)]`, `α ∈ (3, 12)`, `β ∈ (0.37, 2.7)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GammaFamily;

impl<const N: usize> Family<N> for GammaFamily {
    type Dist<T: Tape<f64, Dev>> = Gamma<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("Gamma<{N}>")
    }
    fn num_params(&self) -> usize {
        2 * N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        (vector(N, 1.1, 2.5), vector(N, -1.0, 1.0))
            .prop_map(|(a, b)| [a, b].concat())
            .boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, 2 * N, "Gamma")?;
        let log_rate = block::<N, T>(theta.with_empty_tape(), 1)?;
        Gamma::new(block::<N, T>(theta, 0)?, log_rate)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![
            [vec![0.0; N], vec![f64::INFINITY; N]].concat(),
            vec![0.0; 2 * N + 1],
        ]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        Some(
            (0..N)
                .map(|j| {
                    let (a, lb) = (theta[j].exp(), theta[N + j]);
                    a * lb + (a - 1.0) * x[j].ln() - lb.exp() * x[j] - lgamma(a)
                })
                .sum(),
        )
    }
    fn support(&self, theta: &[f64]) -> Support {
        if N == 1 {
            let (a, b) = (theta[0].exp(), theta[1].exp());
            Support::Interval(1e-12, (a + 12.0 * a.sqrt() + 30.0) / b)
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
    }
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn entropy(&self, d: Self::Dist<NoneTape>) -> Option<PerExample<f64, Dev>> {
        Some(d.entropy())
    }
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        Some(vec![theta[j], theta[N + j]])
    }
}

/// [`Beta`], θ = `[ln a (N); ln b (N)]`, `a, b ∈ (2, 10)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BetaFamily;

impl<const N: usize> Family<N> for BetaFamily {
    type Dist<T: Tape<f64, Dev>> = Beta<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("Beta<{N}>")
    }
    fn num_params(&self) -> usize {
        2 * N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        vector(2 * N, 0.7, 2.3)
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, 2 * N, "Beta")?;
        let b = block::<N, T>(theta.with_empty_tape(), 1)?;
        Beta::new(block::<N, T>(theta, 0)?, b)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![
            [vec![f64::NAN; N], vec![0.0; N]].concat(),
            vec![0.0; 2 * N + 1],
        ]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        Some(
            (0..N)
                .map(|j| {
                    let (a, b) = (theta[j].exp(), theta[N + j].exp());
                    (a - 1.0) * x[j].ln() + (b - 1.0) * (-x[j]).ln_1p() - log_beta(a, b)
                })
                .sum(),
        )
    }
    fn support(&self, _theta: &[f64]) -> Support {
        if N == 1 {
            Support::Interval(1e-12, 1.0 - 1e-12)
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
    }
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn entropy(&self, d: Self::Dist<NoneTape>) -> Option<PerExample<f64, Dev>> {
        Some(d.entropy())
    }
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        Some(vec![theta[j], theta[N + j]])
    }
}
