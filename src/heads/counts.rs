//! Likelihood heads for counts: Poisson, binomial, negative binomial and the
//! zero-inflated negative binomial. The decoder's output is the log-rate (Poisson), the
//! logits (binomial) or the log-mean (negative binomial, ZINB); the dispersions and
//! zero-inflation logits are learned per column, as scVI's `dispersion = "gene"`.

use dfdx::prelude::*;

use super::{parameterless, per_column, LikelihoodHead};
use crate::distributions::{Binomial, NegativeBinomial, Poisson, ZeroInflatedNegativeBinomial};
use crate::error::{Error, Result};
use crate::kernels::ops::{Events, Real};
use crate::nn::options::options;

/// `p(x|z) = Poisson(rate = exp(decoder output))`, counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoissonHead;
parameterless!(PoissonHead);

impl<X: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static> LikelihoodHead<X, E, D, T>
    for PoissonHead
{
    type Dist = Poisson<X, E, D, T>;
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        Ok(Poisson::new(out))
    }
}

/// `p(x|z) = Binomial(n, logits = decoder output)`: counts out of `n` trials (grey
/// levels `0..=16`, say). A head without tensors: rebuilding it through dfdx's
/// `TensorCollection` (not cloning) gives `n = 1`; set `n` again with
/// [`BinomialHead::new`].
#[derive(Debug, Clone, Copy)]
pub struct BinomialHead {
    /// The number of trials `n`.
    pub total_count: u32,
}

impl BinomialHead {
    /// A binomial likelihood of `total_count` trials.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `total_count` is 0.
    pub fn new(total_count: u32) -> Result<Self> {
        if total_count == 0 {
            return Err(Error::invalid(
                "total_count",
                "a binomial needs at least 1 trial",
            ));
        }
        Ok(Self { total_count })
    }
}

impl<E: Real, D: Device<E>> TensorCollection<E, D> for BinomialHead {
    type To<E2: Dtype, D2: Device<E2>> = BinomialHead;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields((), |_| BinomialHead { total_count: 1 })
    }
}

impl<X: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static> LikelihoodHead<X, E, D, T>
    for BinomialHead
{
    type Dist = Binomial<X, E, D, T>;
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        Binomial::new(self.total_count, out)
    }
}

/// `p(x|z) = NegativeBinomial(mean = exp(decoder output), inverse dispersion θ)` with
/// `ln θ` learned per column (`P = X`) or shared (`P = 1`), initialized to 0 (`θ = 1`).
#[derive(Debug, Clone)]
pub struct NegativeBinomialHead<P: Dim, E: Dtype, D: Storage<E>> {
    /// `ln θ`, shape `(P,)`.
    pub log_inverse_dispersion: Tensor<(P,), E, D>,
}

one_learned_vector!(
    NegativeBinomialHead,
    log_inverse_dispersion,
    "A head with `columns` learned `ln θ` (1 shared, or one per column), all 0."
);

impl<X: Dim, P: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
    LikelihoodHead<X, E, D, T> for NegativeBinomialHead<P, E, D>
{
    type Dist = NegativeBinomial<X, E, D, T>;
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `P` is 1 or `X`.
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        let theta = per_column(
            "NegativeBinomialHead",
            &self.log_inverse_dispersion,
            *out.shape(),
        )?;
        NegativeBinomial::from_mean_dispersion(out, theta)
    }
}

/// `p(x|z) = ZINB(mean = exp(decoder output), θ, π)` (scVI's likelihood, Lopez et al.
/// 2018) with `ln θ` and the zero-inflation logits `π` learned per column (`P = X`) or
/// shared (`P = 1`), initialized to `θ = 1` and `π = −2` (a 12% chance of a structural
/// zero).
#[derive(Debug, Clone)]
pub struct ZinbHead<P: Dim, E: Dtype, D: Storage<E>> {
    /// `ln θ`, shape `(P,)`.
    pub log_inverse_dispersion: Tensor<(P,), E, D>,
    /// `π`, shape `(P,)`.
    pub zi_logits: Tensor<(P,), E, D>,
}

impl<P: Dim, E: Real, D: Device<E>> ZinbHead<P, E, D> {
    /// A head with `columns` learned `ln θ` and `π` (1 shared, or one per column).
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn new(device: &D, columns: P) -> Result<Self> {
        let zeros = device.try_zeros_like(&(columns,)).map_err(Error::device)?;
        Ok(Self {
            zi_logits: zeros.clone() - crate::kernels::ops::cst::<E>(2.0),
            log_inverse_dispersion: zeros,
        })
    }
}

impl<P: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D> for ZinbHead<P, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = ZinbHead<P, E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "log_inverse_dispersion",
                    |s| &s.log_inverse_dispersion,
                    |s| &mut s.log_inverse_dispersion,
                    options(Default::default(), |t| t.try_fill_with_zeros()),
                ),
                Self::tensor(
                    "zi_logits",
                    |s| &s.zi_logits,
                    |s| &mut s.zi_logits,
                    options(Default::default(), |t| t.try_fill_with_zeros()),
                ),
            ),
            |(log_inverse_dispersion, zi_logits)| ZinbHead {
                log_inverse_dispersion,
                zi_logits,
            },
        )
    }
}

impl<X: Dim, P: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
    LikelihoodHead<X, E, D, T> for ZinbHead<P, E, D>
{
    type Dist = ZeroInflatedNegativeBinomial<X, E, D, T>;
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `P` is 1 or `X`.
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        let shape = *out.shape();
        let theta = per_column("ZinbHead", &self.log_inverse_dispersion, shape)?;
        let pi = per_column("ZinbHead", &self.zi_logits, shape)?;
        ZeroInflatedNegativeBinomial::new(out, theta, pi)
    }
}

impl crate::train::Named for PoissonHead {
    fn name(&self) -> String {
        "poisson".into()
    }
}

impl crate::train::Named for BinomialHead {
    fn name(&self) -> String {
        format!("binomial(n={})", self.total_count)
    }
}

impl<P: Dim, E: Dtype, D: Storage<E>> crate::train::Named for NegativeBinomialHead<P, E, D> {
    fn name(&self) -> String {
        "negative-binomial".into()
    }
}

impl<P: Dim, E: Dtype, D: Storage<E>> crate::train::Named for ZinbHead<P, E, D> {
    fn name(&self) -> String {
        "zinb".into()
    }
}
