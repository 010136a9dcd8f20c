//! [`Family`] for the log-normal, Student's t, Dirichlet and zero-inflated negative
//! binomial families.
//!
//! Parameter layouts (blocks of `N`): `LogNormal`: `[μ; ln σ]`; `StudentT`:
//! `[ln ν; μ; ln σ]`; `Dirichlet`: `[ln α (K)]` (one event is the whole row of `K`);
//! `Zinb`: `[ln μ; ln θ; π]`.

use dfdx::prelude::*;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

use super::counts_positives::{softplus, vector, width};
use crate::conformance::{block, Dev, Family, Support, Theta};
use crate::distributions::{
    Dirichlet, Entropy, LogNormal, Mode, MultivariateNormal, Reparameterizable, StudentT, Variance,
    ZeroInflatedNegativeBinomial,
};
use crate::error::Result;
use crate::kernels::ops::{columns, Events, PerExample, LN_2PI};
use crate::special::scalar::{lgamma, log_beta};

/// [`LogNormal`], θ = `[μ (N); ln σ (N)]`, `μ ∈ (−1, 1)`, `σ ∈ (0.3, 1)`. Its
/// normalization interval, `(0, e^{μ + 7σ})`, is long beside the bulk of the density:
/// check it with `quadrature_intervals` of 10⁵ or more.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNormalFamily;

impl<const N: usize> Family<N> for LogNormalFamily {
    type Dist<T: Tape<f64, Dev>> = LogNormal<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("LogNormal<{N}>")
    }
    fn num_params(&self) -> usize {
        2 * N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        (vector(N, -1.0, 1.0), vector(N, -1.2, 0.0))
            .prop_map(|(a, b)| [a, b].concat())
            .boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, 2 * N, "LogNormal")?;
        let log_scale = block::<N, T>(theta.with_empty_tape(), 1)?;
        LogNormal::new(block::<N, T>(theta, 0)?, log_scale)
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
                    let (m, ls) = (theta[j], theta[N + j]);
                    let z = (x[j].ln() - m) / ls.exp();
                    -0.5 * z * z - ls - 0.5 * LN_2PI - x[j].ln()
                })
                .sum(),
        )
    }
    fn support(&self, theta: &[f64]) -> Support {
        if N == 1 {
            Support::Interval(1e-12, (theta[0] + 7.0 * theta[1].exp()).exp())
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
        Some(vec![theta[j], theta[N + j]])
    }
}

/// [`StudentT`], θ = `[ln ν (N); μ (N); ln σ (N)]`, `ν ∈ (8, 30)` (finite moments for
/// the kit's sample variance, and tails beyond 60 scales below 1e-11 for the
/// normalization check), `μ ∈ (−2, 2)`, `σ ∈ (0.5, 2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StudentTFamily;

impl<const N: usize> Family<N> for StudentTFamily {
    type Dist<T: Tape<f64, Dev>> = StudentT<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("StudentT<{N}>")
    }
    fn num_params(&self) -> usize {
        3 * N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        (
            vector(N, 1.6, 3.4),
            vector(N, -2.0, 2.0),
            vector(N, -0.7, 0.7),
        )
            .prop_map(|(a, b, c)| [a, b, c].concat())
            .boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, 3 * N, "StudentT")?;
        let loc = block::<N, T>(theta.with_empty_tape(), 1)?;
        let log_scale = block::<N, T>(theta.with_empty_tape(), 2)?;
        StudentT::new(block::<N, T>(theta, 0)?, loc, log_scale)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![
            [vec![f64::INFINITY; N], vec![0.0; 2 * N]].concat(),
            vec![0.0; 3 * N + 1],
        ]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        Some(
            (0..N)
                .map(|j| {
                    let (nu, m, ls) = (theta[j].exp(), theta[N + j], theta[2 * N + j]);
                    let t = (x[j] - m) / ls.exp();
                    -log_beta(0.5 * nu, 0.5)
                        - 0.5 * nu.ln()
                        - ls
                        - 0.5 * (nu + 1.0) * (t * t / nu).ln_1p()
                })
                .sum(),
        )
    }
    fn support(&self, theta: &[f64]) -> Support {
        if N == 1 {
            // For ν ≥ 8 the mass beyond 60 scales is below 7e-12.
            let s = theta[2].exp();
            Support::Interval(theta[1] - 60.0 * s, theta[1] + 60.0 * s)
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
    fn affine(&self, theta: &[f64], a: f64, b: f64) -> Option<Vec<f64>> {
        let df = theta[..N].iter().copied();
        let loc = theta[N..2 * N].iter().map(|m| a * m + b);
        let log_scale = theta[2 * N..].iter().map(|l| l + a.abs().ln());
        Some(df.chain(loc).chain(log_scale).collect())
    }
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        Some(vec![theta[j], theta[N + j], theta[2 * N + j]])
    }
}

/// [`Dirichlet`] over `K` categories, θ = `[ln α (K)]`, `α ∈ (3, 12)` (a density that
/// vanishes smoothly at the simplex's boundary, for the normalization check).
#[derive(Debug, Clone, Copy, Default)]
pub struct DirichletFamily;

impl<const K: usize> Family<K> for DirichletFamily {
    type Dist<T: Tape<f64, Dev>> = Dirichlet<Const<K>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("Dirichlet<{K}>")
    }
    fn num_params(&self) -> usize {
        K
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        vector(K, 1.1, 2.5)
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, K, "Dirichlet")?;
        Dirichlet::new(block::<K, T>(theta, 0)?)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![vec![f64::NAN; K], vec![0.0; K + 1]]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let a: Vec<f64> = theta.iter().map(|l| l.exp()).collect();
        let a0: f64 = a.iter().sum();
        let lp: f64 = (0..K)
            .map(|k| (a[k] - 1.0) * x[k].ln() - lgamma(a[k]))
            .sum();
        Some(lp + lgamma(a0))
    }
    fn support(&self, _theta: &[f64]) -> Support {
        if K <= 3 {
            Support::Simplex
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<K>, f64, Dev>> {
        Some(d.variance())
    }
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<K>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn entropy(&self, d: Self::Dist<NoneTape>) -> Option<PerExample<f64, Dev>> {
        Some(d.entropy())
    }
}

/// [`ZeroInflatedNegativeBinomial`], θ = `[ln μ (N); ln θ (N); π (N)]`, `μ ∈ (0.14, 7.4)`,
/// `θ ∈ (0.37, 7.4)`, `π ∈ (−3, 3)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZinbFamily;

impl<const N: usize> Family<N> for ZinbFamily {
    type Dist<T: Tape<f64, Dev>> = ZeroInflatedNegativeBinomial<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("ZeroInflatedNegativeBinomial<{N}>")
    }
    fn num_params(&self) -> usize {
        3 * N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        (
            vector(N, -2.0, 2.0),
            vector(N, -1.0, 2.0),
            vector(N, -3.0, 3.0),
        )
            .prop_map(|(a, b, c)| [a, b, c].concat())
            .boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        width(&theta, 3 * N, "ZeroInflatedNegativeBinomial")?;
        let dispersion = block::<N, T>(theta.with_empty_tape(), 1)?;
        let zi = block::<N, T>(theta.with_empty_tape(), 2)?;
        ZeroInflatedNegativeBinomial::new(block::<N, T>(theta, 0)?, dispersion, zi)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![
            [vec![f64::NAN; N], vec![0.0; 2 * N]].concat(),
            vec![0.0; 3 * N + 1],
        ]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        // log(σ(π) + σ(−π) NB(0)) at 0, log σ(−π) + log NB(x) elsewhere, NB of mean μ and
        // inverse dispersion θ: NB(x) = Γ(x+θ)/(Γ(θ) x!) (θ/(θ+μ))^θ (μ/(θ+μ))^x.
        Some(
            (0..N)
                .map(|j| {
                    let (mu, th, pi) = (theta[j].exp(), theta[N + j].exp(), theta[2 * N + j]);
                    let lnb = lgamma(x[j] + th) - lgamma(th) - lgamma(x[j] + 1.0)
                        + th * (th / (th + mu)).ln()
                        + x[j] * (mu / (th + mu)).ln();
                    let (lp_zero, lp_keep) = (-softplus(-pi), -softplus(pi));
                    if x[j] == 0.0 {
                        let (a, b) = (lp_zero, lp_keep + lnb);
                        a.max(b) + (-(a - b).abs()).exp().ln_1p()
                    } else {
                        lp_keep + lnb
                    }
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
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        Some(vec![theta[j], theta[N + j], theta[2 * N + j]])
    }
}

/// [`MultivariateNormal`], θ = `[μ (N); ln L_ii (N); B_ij below the diagonal, row by row
/// (N(N−1)/2)]` with `L_ij = L_ii B_ij`, built through
/// [`MultivariateNormal::from_unconstrained`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MultivariateNormalFamily;

impl<const N: usize> Family<N> for MultivariateNormalFamily {
    type Dist<T: Tape<f64, Dev>> = MultivariateNormal<Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("MultivariateNormal<{N}>")
    }
    fn num_params(&self) -> usize {
        2 * N + N * (N - 1) / 2
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        let m = N * (N - 1) / 2;
        (
            vector(N, -2.0, 2.0),
            vector(N, -1.0, 0.7),
            vector(m, -1.0, 1.0),
        )
            .prop_map(|(a, b, c)| [a, b, c].concat())
            .boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        let width_all = <Self as Family<N>>::num_params(self);
        width(&theta, width_all, "MultivariateNormal")?;
        let below = columns(theta.with_empty_tape(), 2 * N..width_all)?;
        let log_diag = block::<N, T>(theta.with_empty_tape(), 1)?;
        MultivariateNormal::from_unconstrained(block::<N, T>(theta, 0)?, log_diag, below)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        let m = N * (N - 1) / 2;
        vec![[vec![0.0; N], vec![f64::INFINITY; N], vec![0.0; m]].concat()]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        // ln N(x; μ, LLᵀ) by forward substitution on the textbook formula.
        let mut l = vec![0.0; N * N];
        let mut k = 2 * N;
        for i in 0..N {
            l[i * N + i] = theta[N + i].exp();
            for j in 0..i {
                l[i * N + j] = theta[N + i].exp() * theta[k];
                k += 1;
            }
        }
        let mut y = vec![0.0; N];
        for i in 0..N {
            let s: f64 = (0..i).map(|j| l[i * N + j] * y[j]).sum();
            y[i] = (x[i] - theta[i] - s) / l[i * N + i];
        }
        let log_det: f64 = (0..N).map(|i| theta[N + i]).sum();
        Some(-0.5 * y.iter().map(|v| v * v).sum::<f64>() - log_det - 0.5 * N as f64 * LN_2PI)
    }
    fn support(&self, theta: &[f64]) -> Support {
        if N == 1 {
            let s = theta[1].exp();
            Support::Interval(theta[0] - 40.0 * s, theta[0] + 40.0 * s)
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
    fn affine(&self, theta: &[f64], a: f64, b: f64) -> Option<Vec<f64>> {
        // a x + b: μ ↦ aμ + b, L ↦ |a| L (a Cholesky factor of a²LLᵀ): the diagonal's
        // logs move by ln|a|, the unit factor B is unchanged.
        let loc = theta[..N].iter().map(|m| a * m + b);
        let diag = theta[N..2 * N].iter().map(|l| l + a.abs().ln());
        let below = theta[2 * N..].iter().copied();
        Some(loc.chain(diag).chain(below).collect())
    }
}
