//! The zero-inflated negative binomial of scVI, for over-dispersed counts with excess
//! zeros (single-cell RNA-seq).

use dfdx::prelude::*;

use super::negative_binomial::log_mass;
use super::poisson::poisson_draw;
use super::{check_shape, check_support, draw_host, Distribution, ValueSupport, Variance};
use crate::error::Result;
use crate::kernels::ops::{repeat_rows, to_f64_vec, Events, PerExample, Real};
use crate::special::softplus;

/// A batch of independent zero-inflated negative binomial distributions over
/// `{0, 1, 2, …}^N`, as in scVI (Lopez et al. 2018, "Deep generative modeling for
/// single-cell transcriptomics", Methods): with probability `σ(π)` a structural zero,
/// otherwise a negative binomial of mean `μ` and inverse dispersion `θ` (variance
/// `μ + μ²/θ`). Parameters on unconstrained scales, shapes `(batch, N)`:
/// `log_mean = ln μ`, `log_inverse_dispersion = ln θ`, `zi_logits = π`.
///
/// # Formula
/// With `NB(x)` the negative binomial log-mass (`r = θ`, logits `ℓ = ln μ − ln θ`,
/// [`super::NegativeBinomial`]) and `NB(0) = θ ln σ(−ℓ) = θ (ln θ − ln(θ + μ))`:
/// - `x = 0`: `ln(σ(π) + σ(−π) e^{NB(0)}) = softplus(−π + NB(0)) − softplus(−π)`;
/// - `x > 0`: `ln σ(−π) + NB(x) = −softplus(π) + NB(x)`;
/// - mean `σ(−π) μ`, variance `σ(−π) μ (1 + μ/θ + σ(π) μ)`.
///
/// This is scVI's `log_zinb_positive` (scvi-tools, `scvi/distributions/_negative_binomial.py`)
/// without its `eps = 1e-8` inside the logarithms, which the log-scale parameters make
/// unnecessary; `tests/torch_families.rs` checks it against that formula written out in
/// `scripts/torch_families.py`.
pub struct ZeroInflatedNegativeBinomial<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `ln μ`, the negative binomial's mean, shape `(batch, N)`.
    pub log_mean: Events<N, E, D, T>,
    /// `ln θ`, its inverse dispersion, shape `(batch, N)`.
    pub log_inverse_dispersion: Events<N, E, D, T>,
    /// `π`, the logit of the probability of a structural zero, shape `(batch, N)`.
    pub zi_logits: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> ZeroInflatedNegativeBinomial<N, E, D, T> {
    /// A ZINB from `ln μ`, `ln θ` and `π` (any real values), shapes `(batch, N)`.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the shapes differ.
    pub fn new(
        log_mean: Events<N, E, D, T>,
        log_inverse_dispersion: Events<N, E, D, T>,
        zi_logits: Events<N, E, D, T>,
    ) -> Result<Self> {
        let s = log_mean.shape();
        check_shape(
            "ZeroInflatedNegativeBinomial::new (dispersion)",
            s,
            log_inverse_dispersion.shape(),
        )?;
        check_shape(
            "ZeroInflatedNegativeBinomial::new (zi_logits)",
            s,
            zi_logits.shape(),
        )?;
        Ok(Self {
            log_mean,
            log_inverse_dispersion,
            zi_logits,
        })
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D>
    for ZeroInflatedNegativeBinomial<N, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.log_mean.shape().0
    }

    fn device(&self) -> D {
        self.log_mean.device().clone()
    }

    /// # Errors
    /// [`crate::Error::ShapeMismatch`]; [`crate::Error::InvalidSetting`] if an event is
    /// not a non-negative integer (naming its row and column).
    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape(
            "ZeroInflatedNegativeBinomial::log_prob",
            self.log_mean.shape(),
            x.shape(),
        )?;
        check_support("ZeroInflatedNegativeBinomial", &x, ValueSupport::Counts)?;
        let dev = x.device().clone();
        let shape = *x.shape();
        let zero: Vec<E> = to_f64_vec(&x)
            .iter()
            .map(|v| if *v == 0.0 { E::one() } else { E::zero() })
            .collect();
        let nonzero: Vec<E> = zero.iter().map(|z| E::one() - *z).collect();
        let zero = dev.tensor_from_vec(zero, shape);
        let nonzero = dev.tensor_from_vec(nonzero, shape);
        let lt = self.log_inverse_dispersion;
        let logits = self.log_mean - lt.with_empty_tape();
        // NB(0) = θ ln σ(−ℓ) = −θ softplus(ℓ)
        let nb0 = softplus(logits.with_empty_tape()).negate() * lt.with_empty_tape().exp();
        let nb = log_mass(lt, logits, x);
        let pi = self.zi_logits;
        let (pi2, pi3) = (pi.with_empty_tape(), pi.with_empty_tape());
        let case_zero = softplus(nb0 - pi) - softplus(pi2.negate());
        let case_nonzero = nb - softplus(pi3);
        let lp = case_zero * zero + case_nonzero * nonzero;
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        use rand::Rng;
        use rand_distr::Distribution as _;
        let mu = to_f64_vec(&self.log_mean.retaped::<NoneTape>().exp());
        let theta = to_f64_vec(&self.log_inverse_dispersion.retaped::<NoneTape>().exp());
        let zi = to_f64_vec(&self.zi_logits.retaped::<NoneTape>().sigmoid());
        draw_host(self.log_mean.device(), *self.log_mean.shape(), |rng, i| {
            if rng.gen::<f64>() < zi[i] {
                return 0.0;
            }
            match rand_distr::Gamma::new(theta[i], mu[i] / theta[i]) {
                Ok(g) => {
                    let rate = g.sample(rng);
                    poisson_draw(rng, rate)
                }
                Err(_) => f64::NAN,
            }
        })
    }

    fn mean(self) -> Events<N, E, D, T> {
        self.log_mean.exp() * self.zi_logits.negate().sigmoid()
    }

    fn fork(&self) -> Self {
        Self {
            log_mean: self.log_mean.with_empty_tape(),
            log_inverse_dispersion: self.log_inverse_dispersion.with_empty_tape(),
            zi_logits: self.zi_logits.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            log_mean: repeat_rows(self.log_mean, n),
            log_inverse_dispersion: repeat_rows(self.log_inverse_dispersion, n),
            zi_logits: repeat_rows(self.zi_logits, n),
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.log_mean.split_tape();
        let (_, b) = self.log_inverse_dispersion.split_tape();
        let (_, c) = self.zi_logits.split_tape();
        a.merge(b).merge(c)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D>
    for ZeroInflatedNegativeBinomial<N, E, D, T>
{
    /// `σ(−π) μ (1 + μ/θ + σ(π) μ)`.
    fn variance(self) -> Events<N, E, D, T> {
        let mu = self.log_mean.with_empty_tape().exp();
        let mu2 = self.log_mean.with_empty_tape().exp();
        let p = self.zi_logits.with_empty_tape().sigmoid();
        let over = (self.log_mean.with_empty_tape() - self.log_inverse_dispersion).exp();
        let keep = self.zi_logits.negate().sigmoid();
        let (_, mean_tape) = self.log_mean.split_tape();
        let v = keep * mu * (over + p * mu2 + E::one());
        let (v, tape) = v.split_tape();
        v.put_tape(tape.merge(mean_tape))
    }
}
