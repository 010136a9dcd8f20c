//! Likelihood heads for positive values (Gamma, log-normal) and proportions (Beta). The
//! decoder's output is the log-mean (Gamma), the mean of `ln x` (log-normal) or the
//! logit of the mean (Beta); the shape parameter is learned per column.

use dfdx::prelude::*;

use super::{per_column, LikelihoodHead};
use crate::distributions::{Beta, Gamma, LogNormal};
use crate::error::Result;
use crate::kernels::ops::{Events, Real};
use crate::special::log_sigmoid;

/// `p(x|z) = Gamma(α, α / m)` with mean `m = exp(decoder output)` and the
/// concentration `ln α` learned per column (`P = X`) or shared (`P = 1`), initialized
/// to 0 (`α = 1`, an exponential).
#[derive(Debug, Clone)]
pub struct GammaHead<P: Dim, E: Dtype, D: Storage<E>> {
    /// `ln α`, shape `(P,)`.
    pub log_concentration: Tensor<(P,), E, D>,
}
one_learned_vector!(
    GammaHead,
    log_concentration,
    "A head with `columns` learned `ln α` (1 shared, or one per column), all 0."
);

impl<X: Dim, P: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
    LikelihoodHead<X, E, D, T> for GammaHead<P, E, D>
{
    type Dist = Gamma<X, E, D, T>;
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) unless `P` is 1 or `X`.
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        let la = per_column("GammaHead", &self.log_concentration, *out.shape())?;
        // ln β = ln α − ln m
        let log_rate = la.with_empty_tape() - out;
        Gamma::new(la, log_rate)
    }
}

/// `p(x|z) = LogNormal(μ = decoder output, σ)` with `ln σ` learned per column
/// (`P = X`) or shared (`P = 1`), initialized to 0.
#[derive(Debug, Clone)]
pub struct LogNormalHead<P: Dim, E: Dtype, D: Storage<E>> {
    /// `ln σ`, shape `(P,)`.
    pub log_scale: Tensor<(P,), E, D>,
}
one_learned_vector!(
    LogNormalHead,
    log_scale,
    "A head with `columns` learned `ln σ` (1 shared, or one per column), all 0."
);

impl<X: Dim, P: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
    LikelihoodHead<X, E, D, T> for LogNormalHead<P, E, D>
{
    type Dist = LogNormal<X, E, D, T>;
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) unless `P` is 1 or `X`.
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        let log_scale = per_column("LogNormalHead", &self.log_scale, *out.shape())?;
        LogNormal::new(out, log_scale)
    }
}

/// `p(x|z) = Beta(κ σ(o), κ σ(−o))`: mean `σ(o)` from the decoder output `o` and the
/// precision `ln κ` learned per column (`P = X`) or shared (`P = 1`), initialized to
/// 0 (`κ = 1`) — the mean–precision form of Ferrari & Cribari-Neto 2004.
#[derive(Debug, Clone)]
pub struct BetaHead<P: Dim, E: Dtype, D: Storage<E>> {
    /// `ln κ`, shape `(P,)`.
    pub log_precision: Tensor<(P,), E, D>,
}
one_learned_vector!(
    BetaHead,
    log_precision,
    "A head with `columns` learned `ln κ` (1 shared, or one per column), all 0."
);

impl<X: Dim, P: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
    LikelihoodHead<X, E, D, T> for BetaHead<P, E, D>
{
    type Dist = Beta<X, E, D, T>;
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) unless `P` is 1 or `X`.
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        let lk = per_column("BetaHead", &self.log_precision, *out.shape())?;
        let o2 = out.with_empty_tape();
        let log_a = lk.with_empty_tape() + log_sigmoid(out);
        let log_b = lk + log_sigmoid(o2.negate());
        Beta::new(log_a, log_b)
    }
}

impl<P: Dim, E: Dtype, D: Storage<E>> crate::train::Named for GammaHead<P, E, D> {
    fn name(&self) -> String {
        "gamma".into()
    }
}

impl<P: Dim, E: Dtype, D: Storage<E>> crate::train::Named for LogNormalHead<P, E, D> {
    fn name(&self) -> String {
        "log-normal".into()
    }
}

impl<P: Dim, E: Dtype, D: Storage<E>> crate::train::Named for BetaHead<P, E, D> {
    fn name(&self) -> String {
        "beta".into()
    }
}
