//! Student's t distribution, reparameterized through a Gamma.

use dfdx::prelude::*;

use super::gamma::standard_gamma;
use super::{check_shape, Distribution, Entropy, Mode, Reparameterizable, Variance};
use crate::error::Result;
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real};
use crate::special::{digamma, lgamma};

/// A batch of independent Student's t distributions over `R^N`, `StudentT(ν, μ, σ)`
/// (`torch.distributions.StudentT(df, loc, scale)`), with the degrees of freedom and
/// the scale on the log scale: `log_df = ln ν`, `loc = μ`, `log_scale = ln σ`, shapes
/// `(batch, N)` each.
///
/// # Formula
/// - `log_prob(x) = Σ_i ln Γ((ν+1)/2) − ln Γ(ν/2) − ½ ln(νπ) − ln σ − (ν+1)/2 · ln(1 + t²/ν)`,
///   `t = (x − μ)/σ`, nats;
/// - `rsample() = μ + σ ε / √(g / ν)` with `ε ~ N(0, 1)` and `g ~ χ²_ν = 2 Gamma(ν/2, 1)`,
///   pathwise in all three parameters (the Gamma by implicit reparameterization,
///   Figurnov, Mohamed & Mnih 2018), as torch;
/// - mean `μ` (for `ν > 1`; NaN otherwise), variance `σ² ν/(ν − 2)` for `ν > 2`, `+∞`
///   for `1 < ν ≤ 2`, NaN for `ν ≤ 1` (as torch), mode `μ`;
/// - entropy `Σ_i ln σ + (ν+1)/2 (ψ((ν+1)/2) − ψ(ν/2)) + ½ ln ν + ln B(ν/2, ½)`.
///
/// Source: Johnson, Kotz & Balakrishnan, *Continuous Univariate Distributions* Vol. 2
/// (1995), ch. 28.
pub struct StudentT<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `ln ν`, shape `(batch, N)`.
    pub log_df: Events<N, E, D, T>,
    /// `μ`, shape `(batch, N)`.
    pub loc: Events<N, E, D, T>,
    /// `ln σ`, shape `(batch, N)`.
    pub log_scale: Events<N, E, D, T>,
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> StudentT<N, E, D, T> {
    /// A Student's t from `ln ν`, `μ` and `ln σ` (any real values), shapes `(batch, N)`.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if the shapes differ.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::StudentT;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// let zero = || dev.tensor_from_vec(vec![0.0f64], (1, Const::<1>));
    /// // ν = 1 is the Cauchy distribution: p(0) = 1/π.
    /// let t = StudentT::new(zero(), zero(), zero())?;
    /// let lp = t.log_prob(zero())?;
    /// assert!((lp.as_vec()[0] + std::f64::consts::PI.ln()).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(
        log_df: Events<N, E, D, T>,
        loc: Events<N, E, D, T>,
        log_scale: Events<N, E, D, T>,
    ) -> Result<Self> {
        check_shape("StudentT::new (loc)", log_df.shape(), loc.shape())?;
        check_shape(
            "StudentT::new (log_scale)",
            log_df.shape(),
            log_scale.shape(),
        )?;
        Ok(Self {
            log_df,
            loc,
            log_scale,
        })
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for StudentT<N, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.loc.shape().0
    }

    fn device(&self) -> D {
        self.loc.device().clone()
    }

    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("StudentT::log_prob", self.loc.shape(), x.shape())?;
        let df = |s: &Self| s.log_df.with_empty_tape().exp();
        let half = cst::<E>(0.5);
        let (nu1, nu2, nu3, nu4) = (df(&self), df(&self), df(&self), df(&self));
        let ls = self.log_scale.with_empty_tape();
        let t = (x - self.loc) * (-self.log_scale).exp();
        let log_df2 = self.log_df.with_empty_tape();
        let lp = lgamma((nu1 + E::one()) * half)
            - lgamma(nu2 * half)
            - log_df2 * half
            - cst::<E>(0.5 * std::f64::consts::PI.ln())
            - ls
            - (nu3 + E::one()) * half * (t.square() / nu4 + E::one()).ln();
        let (lp, tape) = lp.split_tape();
        let lp = lp.put_tape(tape.merge(self.log_df.split_tape().1));
        Ok(lp.sum::<(usize,), Axis<1>>())
    }

    fn sample(&self) -> Events<N, E, D> {
        let f = self.fork();
        let d = StudentT::<N, E, D, NoneTape> {
            log_df: f.log_df.retaped(),
            loc: f.loc.retaped(),
            log_scale: f.log_scale.retaped(),
        };
        d.rsample()
    }

    fn mean(self) -> Events<N, E, D, T> {
        let nu = to_f64_vec(&self.log_df);
        let mask: Vec<E> = nu
            .iter()
            .map(|l| if l.exp() > 1.0 { E::zero() } else { E::nan() })
            .collect();
        let mask = self.loc.device().tensor_from_vec(mask, *self.loc.shape());
        self.loc + mask
    }

    fn fork(&self) -> Self {
        Self {
            log_df: self.log_df.with_empty_tape(),
            loc: self.loc.with_empty_tape(),
            log_scale: self.log_scale.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            log_df: repeat_rows(self.log_df, n),
            loc: repeat_rows(self.loc, n),
            log_scale: repeat_rows(self.log_scale, n),
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.log_df.split_tape();
        let (_, b) = self.loc.split_tape();
        let (_, c) = self.log_scale.split_tape();
        a.merge(b).merge(c)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D>
    for StudentT<N, E, D, T>
{
    fn rsample(self) -> Events<N, E, D, T> {
        let half = cst::<E>(0.5);
        let nu = self.log_df.with_empty_tape().exp();
        // g/ν with g = 2 Gamma(ν/2, 1): 2 Gamma(ν/2) / ν
        let g = standard_gamma(self.log_df.exp() * half) * cst::<E>(2.0) / nu;
        let eps = E::standard_normal(self.loc.device(), self.loc.shape());
        let spread = g.sqrt().recip() * eps;
        self.loc + self.log_scale.exp() * spread
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D> for StudentT<N, E, D, T> {
    /// `σ² ν/(ν − 2)` for `ν > 2`, `+∞` for `1 < ν ≤ 2`, NaN for `ν ≤ 1`.
    fn variance(self) -> Events<N, E, D, T> {
        let nu = to_f64_vec(&self.log_df);
        let fix: Vec<E> = nu
            .iter()
            .map(|l| {
                let v = l.exp();
                if v > 2.0 {
                    E::zero()
                } else if v > 1.0 {
                    E::infinity()
                } else {
                    E::nan()
                }
            })
            .collect();
        let fix = self.loc.device().tensor_from_vec(fix, *self.loc.shape());
        let nu2 = self.log_df.with_empty_tape().exp();
        let s2 = (self.log_scale * cst::<E>(2.0)).exp();
        let ratio = self.log_df.exp() / (nu2 - cst::<E>(2.0));
        let (_, loc_tape) = self.loc.split_tape();
        let v = s2 * ratio.abs() + fix;
        let (v, tape) = v.split_tape();
        v.put_tape(tape.merge(loc_tape))
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D> for StudentT<N, E, D, T> {
    /// `μ`.
    fn mode(&self) -> Events<N, E, D> {
        self.loc.retaped::<NoneTape>()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for StudentT<N, E, D, T> {
    type Tape = T;
    /// `Σ_i ln σ + (ν+1)/2 (ψ((ν+1)/2) − ψ(ν/2)) + ½ ln ν + ln B(ν/2, ½)`.
    fn entropy(self) -> PerExample<E, D, T> {
        let half = cst::<E>(0.5);
        let e = |t: &Events<N, E, D, T>| t.with_empty_tape().exp();
        let (n1, n2, n3, n4, n5) = (
            e(&self.log_df),
            e(&self.log_df),
            e(&self.log_df),
            e(&self.log_df),
            e(&self.log_df),
        );
        // ln B(ν/2, ½) = ln Γ(ν/2) + ln Γ(½) − ln Γ((ν+1)/2)
        let lbeta = lgamma(n1 * half) - lgamma((n2 + E::one()) * half)
            + cst::<E>(0.5 * std::f64::consts::PI.ln());
        let psi = digamma((n3 + E::one()) * half) - digamma(n4 * half);
        let log_df2 = self.log_df.with_empty_tape();
        let (_, loc_tape) = self.loc.split_tape();
        let h = self.log_scale + (n5 + E::one()) * half * psi + log_df2 * half + lbeta;
        let (h, tape) = h.split_tape();
        let h = h.put_tape(tape.merge(loc_tape).merge(self.log_df.split_tape().1));
        h.sum::<(usize,), Axis<1>>()
    }
}
