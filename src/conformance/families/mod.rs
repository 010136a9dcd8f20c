//! [`Family`] and [`KlPair`] for this crate's own families and closed forms, as the
//! kit checks them (and as building blocks for users' pairs, e.g. a new
//! `KL(MyFamily ‖ Normal)`).
//!
//! Parameter layouts (per distribution, row-major blocks of `N` unless noted):
//! `Normal`/`Laplace`: `[loc; log_scale]`; `Bernoulli`/`ContinuousBernoulli`: `[logits]`;
//! `Categorical`/`Relaxed`: `[logits (K)]`; `Mixture`: `[logits (K); loc (K·N);
//! log_scale (K·N)]`; `StandardNormal`: none.
//!
//! The reference log-densities are the textbook scalar formulas in plain `f64`, a code
//! path independent of the tensor implementations (the tests also compare with statrs).

use std::f64::consts::PI;

use dfdx::prelude::*;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

use crate::conformance::{block, require_finite, Dev, Family, KlPair, Support, Theta};

mod counts_positives;
mod more;
use crate::distributions::{
    Bernoulli, Categorical, ContinuousBernoulli, Entropy, Laplace, MixtureOfDiagNormals, Mode,
    Normal, RelaxedOneHotCategorical, Reparameterizable, StandardNormal, Variance,
};
use crate::error::{Error, Result};
use crate::kernels::ops::{Events, PerExample};
use crate::kl::KlDivergence;
pub use counts_positives::{
    BetaFamily, BinomialFamily, ExponentialFamily, GammaFamily, NegativeBinomialFamily,
    PoissonFamily,
};
pub use more::{
    DirichletFamily, LogNormalFamily, MultivariateNormalFamily, StudentTFamily, ZinbFamily,
};

fn vector(n: usize, lo: f64, hi: f64) -> BoxedStrategy<Vec<f64>> {
    prop::collection::vec(lo..hi, n).boxed()
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn check_width<T>(theta: &Theta<T>, width: usize, family: &str) -> Result<()> {
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

/// The diagonal [`Normal`], θ = `[μ (N); log σ (N)]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NormalFamily;

/// The [`Laplace`] family, θ = `[μ (N); log b (N)]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LaplaceFamily;

macro_rules! loc_scale_family {
    ($fam:ident, $dist:ident, $name:literal, $lp:expr) => {
        impl<const N: usize> Family<N> for $fam {
            type Dist<T: Tape<f64, Dev>> = $dist<Const<N>, f64, Dev, T>;
            fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
                Some(Mode::mode(&d))
            }
            fn name(&self) -> String {
                format!("{}<{N}>", $name)
            }
            fn num_params(&self) -> usize {
                2 * N
            }
            fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
                (vector(N, -3.0, 3.0), vector(N, -1.5, 1.5))
                    .prop_map(|(a, b)| [a, b].concat())
                    .boxed()
            }
            fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
                check_width(&theta, 2 * N, $name)?;
                require_finite(&theta)?;
                let log_scale = block::<N, T>(theta.with_empty_tape(), 1)?;
                $dist::new(block::<N, T>(theta, 0)?, log_scale)
            }
            fn invalid_parameters(&self) -> Vec<Vec<f64>> {
                vec![
                    [vec![f64::NAN; N], vec![0.0; N]].concat(),
                    [vec![0.0; N], vec![f64::INFINITY; N]].concat(),
                    vec![0.0; 2 * N + 1],
                ]
            }
            fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
                let lp: fn(f64, f64, f64) -> f64 = $lp;
                Some((0..N).map(|j| lp(theta[j], theta[N + j].exp(), x[j])).sum())
            }
            fn support(&self, theta: &[f64]) -> Support {
                if N != 1 {
                    return Support::Unchecked;
                }
                let s = theta[N].exp();
                Support::Interval(theta[0] - 40.0 * s, theta[0] + 40.0 * s)
            }
            fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
                Some(Variance::variance(d))
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
                let loc = theta[..N].iter().map(|m| a * m + b);
                let log_scale = theta[N..].iter().map(|l| l + a.abs().ln());
                Some(loc.chain(log_scale).collect())
            }
            fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
                Some(vec![theta[j], theta[N + j]])
            }
        }
    };
}

loc_scale_family!(NormalFamily, Normal, "Normal", |m, s, x| -0.5
    * ((x - m) / s).powi(2)
    - s.ln()
    - 0.5 * (2.0 * PI).ln());
loc_scale_family!(LaplaceFamily, Laplace, "Laplace", |m, b, x| -(x - m).abs()
    / b
    - (2.0 * b).ln());

/// The [`StandardNormal`] prior (no parameters).
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardNormalFamily;

impl<const N: usize> Family<N> for StandardNormalFamily {
    type Dist<T: Tape<f64, Dev>> = StandardNormal<Const<N>, f64, Dev, T>;
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn name(&self) -> String {
        format!("StandardNormal<Const<{N}>>")
    }
    fn num_params(&self) -> usize {
        0
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        Just(Vec::new()).boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        check_width(&theta, 0, "StandardNormal")?;
        Ok(StandardNormal::new(theta.shape().0, Const, theta.device()))
    }
    fn reference_log_prob(&self, _theta: &[f64], x: &[f64]) -> Option<f64> {
        Some(x.iter().map(|x| -0.5 * x * x - 0.5 * (2.0 * PI).ln()).sum())
    }
    fn support(&self, _theta: &[f64]) -> Support {
        if N == 1 {
            Support::Interval(-40.0, 40.0)
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
    }
    fn entropy(&self, d: Self::Dist<NoneTape>) -> Option<PerExample<f64, Dev>> {
        Some(d.entropy())
    }
    fn affine(&self, _theta: &[f64], a: f64, b: f64) -> Option<Vec<f64>> {
        // N(b, a²) is not a standard Normal: no parameters can express it.
        let _ = (a, b);
        None
    }
    fn marginal(&self, _theta: &[f64], _j: usize) -> Option<Vec<f64>> {
        Some(Vec::new())
    }
}

/// [`Bernoulli`] on logits, θ = `[ℓ (N)]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BernoulliFamily;

impl<const N: usize> Family<N> for BernoulliFamily {
    type Dist<T: Tape<f64, Dev>> = Bernoulli<Const<N>, f64, Dev, T>;
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn name(&self) -> String {
        format!("Bernoulli<Const<{N}>>")
    }
    fn num_params(&self) -> usize {
        N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        vector(N, -4.0, 4.0)
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        check_width(&theta, N, "Bernoulli")?;
        require_finite(&theta)?;
        Ok(Bernoulli::new(block::<N, T>(theta, 0)?))
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![vec![f64::NAN; N], vec![0.0; N + 1]]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        Some((0..N).map(|j| x[j] * theta[j] - softplus(theta[j])).sum())
    }
    fn support(&self, _theta: &[f64]) -> Support {
        if N > 10 {
            return Support::Unchecked;
        }
        Support::Points(
            (0..1usize << N)
                .map(|m| (0..N).map(|j| ((m >> j) & 1) as f64).collect())
                .collect(),
        )
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
    }
    fn entropy(&self, d: Self::Dist<NoneTape>) -> Option<PerExample<f64, Dev>> {
        Some(d.entropy())
    }
    fn marginal(&self, theta: &[f64], j: usize) -> Option<Vec<f64>> {
        Some(vec![theta[j]])
    }
}

/// [`ContinuousBernoulli`] on logits, θ = `[ℓ (N)]`; half of the cases put `ℓ` in the
/// Taylor region `|ℓ| < 0.1` or near its edge.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContinuousBernoulliFamily;

impl<const N: usize> Family<N> for ContinuousBernoulliFamily {
    type Dist<T: Tape<f64, Dev>> = ContinuousBernoulli<Const<N>, f64, Dev, T>;
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn name(&self) -> String {
        format!("ContinuousBernoulli<Const<{N}>>")
    }
    fn num_params(&self) -> usize {
        N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        prop_oneof![vector(N, -4.0, 4.0), vector(N, -0.2, 0.2)].boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        check_width(&theta, N, "ContinuousBernoulli")?;
        require_finite(&theta)?;
        Ok(ContinuousBernoulli::new(block::<N, T>(theta, 0)?))
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![vec![f64::NEG_INFINITY; N]]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        // log C(λ) = log(2 artanh(1 − 2λ) / (1 − 2λ)), λ = σ(ℓ); at λ = ½, log 2.
        Some(
            (0..N)
                .map(|j| {
                    let l = theta[j];
                    let lam = 1.0 / (1.0 + (-l).exp());
                    let c = if l.abs() < 1e-6 {
                        2f64.ln() + l * l / 12.0
                    } else {
                        (2.0 * (1.0 - 2.0 * lam).atanh() / (1.0 - 2.0 * lam)).ln()
                    };
                    x[j] * l - softplus(l) + c
                })
                .sum(),
        )
    }
    fn support(&self, _theta: &[f64]) -> Support {
        if N == 1 {
            Support::Interval(0.0, 1.0)
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
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

/// [`Categorical`] over `K` classes on logits, θ = `[ℓ (K)]`, one-hot events.
#[derive(Debug, Clone, Copy, Default)]
pub struct CategoricalFamily;

fn one_hots(k: usize) -> Vec<Vec<f64>> {
    (0..k)
        .map(|i| (0..k).map(|j| f64::from(u8::from(i == j))).collect())
        .collect()
}

fn log_softmax(l: &[f64]) -> Vec<f64> {
    let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z = m + l.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    l.iter().map(|v| v - z).collect()
}

impl<const K: usize> Family<K> for CategoricalFamily {
    type Dist<T: Tape<f64, Dev>> = Categorical<Const<K>, f64, Dev, T>;
    fn mode(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<K>, f64, Dev>> {
        Some(Mode::mode(&d))
    }
    fn name(&self) -> String {
        format!("Categorical<Const<{K}>>")
    }
    fn num_params(&self) -> usize {
        K
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        vector(K, -3.0, 3.0)
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        check_width(&theta, K, "Categorical")?;
        require_finite(&theta)?;
        Ok(Categorical::new(block::<K, T>(theta, 0)?))
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![vec![f64::NAN; K], vec![0.0; K + 2]]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let lp = log_softmax(theta);
        Some(x.iter().zip(&lp).map(|(a, b)| a * b).sum())
    }
    fn support(&self, _theta: &[f64]) -> Support {
        Support::Points(one_hots(K))
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<K>, f64, Dev>> {
        Some(Variance::variance(d))
    }
    fn entropy(&self, d: Self::Dist<NoneTape>) -> Option<PerExample<f64, Dev>> {
        Some(d.entropy())
    }
}

/// [`RelaxedOneHotCategorical`] (Concrete / Gumbel-softmax) at a fixed temperature,
/// θ = `[ℓ (K)]`.
#[derive(Debug, Clone, Copy)]
pub struct RelaxedFamily {
    /// τ > 0.
    pub temperature: f64,
}

impl<const K: usize> Family<K> for RelaxedFamily {
    type Dist<T: Tape<f64, Dev>> = RelaxedOneHotCategorical<Const<K>, f64, Dev, T>;
    fn name(&self) -> String {
        format!(
            "RelaxedOneHotCategorical<Const<{K}>>(τ = {})",
            self.temperature
        )
    }
    fn num_params(&self) -> usize {
        K
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        vector(K, -2.0, 2.0)
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        check_width(&theta, K, "RelaxedOneHotCategorical")?;
        require_finite(&theta)?;
        RelaxedOneHotCategorical::new(block::<K, T>(theta, 0)?, self.temperature)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![vec![f64::INFINITY; K]]
    }
    fn reference_log_prob(&self, theta: &[f64], y: &[f64]) -> Option<f64> {
        // Maddison et al. 2017, eq. (12).
        let t = self.temperature;
        let k = K as f64;
        let log_fact: f64 = (1..K).map(|i| (i as f64).ln()).sum();
        let terms: Vec<f64> = theta
            .iter()
            .zip(y)
            .map(|(l, y)| l - (t + 1.0) * y.ln())
            .collect();
        let inner: Vec<f64> = theta.iter().zip(y).map(|(l, y)| l - t * y.ln()).collect();
        let m = inner.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + inner.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        Some(log_fact + (k - 1.0) * t.ln() + terms.iter().sum::<f64>() - k * lse)
    }
    fn mean(&self, _d: Self::Dist<NoneTape>) -> Option<Events<Const<K>, f64, Dev>> {
        // `mean()` is softmax(ℓ), the τ → 0 limit; the Concrete mean has no closed form.
        None
    }
    fn rsample<T: Tape<f64, Dev>>(
        &self,
        d: Self::Dist<T>,
    ) -> Option<Events<Const<K>, f64, Dev, T>> {
        Some(d.rsample())
    }
}

/// [`MixtureOfDiagNormals`] with `K` components, θ = `[ℓ (K); μ (K·N); log σ (K·N)]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MixtureFamily<const K: usize>;

impl<const K: usize, const N: usize> Family<N> for MixtureFamily<K> {
    type Dist<T: Tape<f64, Dev>> = MixtureOfDiagNormals<Const<K>, Const<N>, f64, Dev, T>;
    fn name(&self) -> String {
        format!("MixtureOfDiagNormals<Const<{K}>, Const<{N}>>")
    }
    fn num_params(&self) -> usize {
        K + 2 * K * N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        (
            vector(K, -2.0, 2.0),
            vector(K * N, -3.0, 3.0),
            vector(K * N, -1.0, 1.0),
        )
            .prop_map(|(a, b, c)| [a, b, c].concat())
            .boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        check_width(&theta, K + 2 * K * N, "MixtureOfDiagNormals")?;
        require_finite(&theta)?;
        let b = theta.shape().0;
        let part = |t: Theta<T>, from: usize| {
            t.slice((.., from..from + K * N))
                .reshape_like(&(b, Const::<K>, Const::<N>))
        };
        let loc = part(theta.with_empty_tape(), K);
        let log_scale = part(theta.with_empty_tape(), K + K * N);
        let logits = block::<K, T>(theta, 0)?;
        MixtureOfDiagNormals::new(logits, loc, log_scale)
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![vec![f64::NAN; K + 2 * K * N], vec![0.0; K]]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        let w = log_softmax(&theta[..K]);
        let comps: Vec<f64> = (0..K)
            .map(|k| {
                w[k] + (0..N)
                    .map(|j| {
                        let (m, s) = (theta[K + k * N + j], theta[K + K * N + k * N + j].exp());
                        -0.5 * ((x[j] - m) / s).powi(2) - s.ln() - 0.5 * (2.0 * PI).ln()
                    })
                    .sum::<f64>()
            })
            .collect();
        let m = comps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(m + comps.iter().map(|c| (c - m).exp()).sum::<f64>().ln())
    }
    fn support(&self, _theta: &[f64]) -> Support {
        if N == 1 {
            Support::Interval(-30.0, 30.0)
        } else {
            Support::Unchecked
        }
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some(d.variance())
    }
}

/// A closed form from [`KlDivergence`] between two of the families above.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinKl<Q, P> {
    /// The family of `q`.
    pub q: Q,
    /// The family of `p`.
    pub p: P,
}

macro_rules! builtin_pair {
    ($q:ident, $p:ident, $same:expr, $n:ident) => {
        impl<const $n: usize> KlPair<$n> for BuiltinKl<$q, $p> {
            type Q = $q;
            type P = $p;
            fn q(&self) -> &$q {
                &self.q
            }
            fn p(&self) -> &$p {
                &self.p
            }
            fn same_family(&self) -> bool {
                $same
            }
            fn kl<T: Tape<f64, Dev>>(
                &self,
                q: <$q as Family<$n>>::Dist<T>,
                p: <$p as Family<$n>>::Dist<T>,
            ) -> Result<PerExample<f64, Dev, T>> {
                q.kl_divergence(p)
            }
        }
    };
}
builtin_pair!(NormalFamily, NormalFamily, true, N);
builtin_pair!(NormalFamily, StandardNormalFamily, false, N);
builtin_pair!(LaplaceFamily, LaplaceFamily, true, N);
builtin_pair!(BernoulliFamily, BernoulliFamily, true, N);
builtin_pair!(CategoricalFamily, CategoricalFamily, true, K);
builtin_pair!(PoissonFamily, PoissonFamily, true, N);
builtin_pair!(ExponentialFamily, ExponentialFamily, true, N);
builtin_pair!(GammaFamily, GammaFamily, true, N);
builtin_pair!(BetaFamily, BetaFamily, true, N);
builtin_pair!(LogNormalFamily, LogNormalFamily, true, N);
builtin_pair!(DirichletFamily, DirichletFamily, true, N);
builtin_pair!(MultivariateNormalFamily, MultivariateNormalFamily, true, N);
builtin_pair!(MultivariateNormalFamily, StandardNormalFamily, false, N);
