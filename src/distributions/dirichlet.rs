//! The Dirichlet distribution over the probability simplex.

use dfdx::prelude::*;

use super::gamma::standard_gamma;
use super::{check_shape, Distribution, Entropy, Mode, Reparameterizable, Variance};
use crate::error::{Error, Result};
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real};
use crate::special::{digamma, lgamma};

/// A batch of Dirichlet distributions over the simplex `{x ∈ (0, 1)^K : Σ_k x_k = 1}`,
/// `Dirichlet(α)` (`torch.distributions.Dirichlet(concentration)`), with the
/// concentrations on the log scale, `log_concentration = ln α`, shape `(batch, K)`.
/// One event is one row of `K` proportions.
///
/// # Formula
/// With `α₀ = Σ_k α_k`:
/// - `log_prob(x) = Σ_k (α_k − 1) ln x_k + ln Γ(α₀) − Σ_k ln Γ(α_k)`, nats;
/// - mean `α/α₀`, variance `α_k (α₀ − α_k) / (α₀² (α₀ + 1))`;
/// - mode `(α_k − 1)/(α₀ − K)` where every `α_k > 1`; otherwise as torch: the
///   normalized `max(α_k − 1, 0)`, or the corner of the largest `α_k` when all are
///   below 1;
/// - entropy `Σ_k ln Γ(α_k) − ln Γ(α₀) + (α₀ − K) ψ(α₀) − Σ_k (α_k − 1) ψ(α_k)`;
/// - `rsample()`: `x = g / Σ_k g_k`, `g_k ~ Gamma(α_k, 1)` reparameterized implicitly
///   (Figurnov, Mohamed & Mnih 2018, §3.3; as torch), kept at least the dtype's smallest
///   positive normal number.
///
/// Source: Kotz, Balakrishnan & Johnson, *Continuous Multivariate Distributions* Vol. 1
/// (2000), ch. 49.
pub struct Dirichlet<K: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `ln α`, shape `(batch, K)`.
    pub log_concentration: Events<K, E, D, T>,
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Dirichlet<K, E, D, T> {
    /// A Dirichlet from `ln α` (any real values), shape `(batch, K)`, `K ≥ 2`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `K < 2`.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::Dirichlet;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// // Dirichlet(1, 1, 1) is uniform on the simplex, with density Γ(3) = 2.
    /// let d = Dirichlet::new(dev.tensor_from_vec(vec![0.0f64; 3], (1, Const::<3>)))?;
    /// let lp = d.log_prob(dev.tensor_from_vec(vec![0.2, 0.3, 0.5], (1, Const::<3>)))?;
    /// assert!((lp.as_vec()[0] - 2f64.ln()).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(log_concentration: Events<K, E, D, T>) -> Result<Self> {
        if log_concentration.shape().1.size() < 2 {
            return Err(Error::invalid(
                "Dirichlet::new (K)",
                "a Dirichlet needs at least 2 categories",
            ));
        }
        Ok(Self { log_concentration })
    }

    /// The concentrations `α`, shape `(batch, K)`.
    pub fn concentration(self) -> Events<K, E, D, T> {
        self.log_concentration.exp()
    }
}

/// `α₀ = Σ_k α_k` broadcast back to `(batch, K)`.
fn total<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    a: Events<K, E, D, T>,
) -> Events<K, E, D, T> {
    let shape = *a.shape();
    a.sum::<(usize,), Axis<1>>().broadcast_like(&shape)
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<K, E, D> for Dirichlet<K, E, D, T> {
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.log_concentration.shape().0
    }

    fn device(&self) -> D {
        self.log_concentration.device().clone()
    }

    /// # Errors
    /// [`Error::ShapeMismatch`]; [`Error::InvalidSetting`] for a row that is not on the
    /// simplex (an entry outside `(0, 1)`, or a sum more than `1e-6 · K` (f64: `1e-12 · K`)
    /// from 1), naming the row.
    fn log_prob(self, x: Events<K, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape(
            "Dirichlet::log_prob",
            self.log_concentration.shape(),
            x.shape(),
        )?;
        check_simplex(&x)?;
        let a1 = self.log_concentration.with_empty_tape().exp();
        let a2 = self.log_concentration.with_empty_tape().exp();
        let a0 = self.log_concentration.exp().sum::<(usize,), Axis<1>>();
        let lp = ((a1 - E::one()) * x.ln() - lgamma(a2)).sum::<(usize,), Axis<1>>();
        Ok(lp + lgamma(a0))
    }

    fn sample(&self) -> Events<K, E, D> {
        let g = standard_gamma(self.log_concentration.retaped::<NoneTape>().exp());
        let t = total(g.clone());
        g / t
    }

    fn mean(self) -> Events<K, E, D, T> {
        let a = self.log_concentration.with_empty_tape().exp();
        self.log_concentration.exp() / total(a)
    }

    fn fork(&self) -> Self {
        Self {
            log_concentration: self.log_concentration.with_empty_tape(),
        }
    }

    fn repeat(self, n: usize) -> Self {
        Self {
            log_concentration: repeat_rows(self.log_concentration, n),
        }
    }

    fn into_tape(self) -> T {
        self.log_concentration.split_tape().1
    }
}

/// Checks that each row of `x` lies on the simplex.
fn check_simplex<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    x: &Events<K, E, D, T>,
) -> Result<()> {
    let k = x.shape().1.size();
    let v = to_f64_vec(x);
    let tol = E::epsilon()
        .to_f64()
        .unwrap_or(1e-7)
        .sqrt()
        .clamp(1e-12, 1e-6)
        * k as f64;
    for (r, row) in v.chunks(k.max(1)).enumerate() {
        let s: f64 = row.iter().sum();
        if row.iter().any(|p| !(*p > 0.0 && *p < 1.0)) || (s - 1.0).abs() > tol {
            return Err(Error::invalid(
                "Dirichlet::log_prob (x)",
                format!("row {r} is not on the simplex (entries in (0, 1) summing to 1): {row:?}"),
            ));
        }
    }
    Ok(())
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<K, E, D>
    for Dirichlet<K, E, D, T>
{
    fn rsample(self) -> Events<K, E, D, T> {
        let g = standard_gamma(self.log_concentration.exp());
        let t = total(g.with_empty_tape());
        g / t
    }
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<K, E, D> for Dirichlet<K, E, D, T> {
    /// `α_k (α₀ − α_k) / (α₀² (α₀ + 1))`.
    fn variance(self) -> Events<K, E, D, T> {
        let e = |t: &Events<K, E, D, T>| t.with_empty_tape().exp();
        let a0 = total(e(&self.log_concentration));
        let a0b = a0.with_empty_tape();
        let a0c = a0.with_empty_tape();
        let rest = a0 - e(&self.log_concentration);
        self.log_concentration.exp() * rest / (a0b.square() * (a0c + E::one()))
    }
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<K, E, D> for Dirichlet<K, E, D, T> {
    /// See the type's docs.
    fn mode(&self) -> Events<K, E, D> {
        let k = self.log_concentration.shape().1.size();
        let a = to_f64_vec(&self.log_concentration);
        let mut m = Vec::with_capacity(a.len());
        for row in a.chunks(k) {
            let am1: Vec<f64> = row.iter().map(|l| (l.exp() - 1.0).max(0.0)).collect();
            let s: f64 = am1.iter().sum();
            if row.iter().all(|l| l.exp() < 1.0) {
                let best = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
                m.extend((0..k).map(|j| cst::<E>(if j == best { 1.0 } else { 0.0 })));
            } else {
                m.extend(am1.iter().map(|v| cst::<E>(v / s)));
            }
        }
        self.log_concentration
            .device()
            .tensor_from_vec(m, *self.log_concentration.shape())
    }
}

impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D> for Dirichlet<K, E, D, T> {
    type Tape = T;
    /// `Σ_k ln Γ(α_k) − ln Γ(α₀) + (α₀ − K) ψ(α₀) − Σ_k (α_k − 1) ψ(α_k)`.
    fn entropy(self) -> PerExample<E, D, T> {
        let k = cst::<E>(self.log_concentration.shape().1.size() as f64);
        let e = |t: &Events<K, E, D, T>| t.with_empty_tape().exp();
        let (a1, a2, a3) = (
            e(&self.log_concentration),
            e(&self.log_concentration),
            e(&self.log_concentration),
        );
        let a0 = self.log_concentration.exp().sum::<(usize,), Axis<1>>();
        let a0b = a0.with_empty_tape();
        let a0c = a0.with_empty_tape();
        let per_k = (lgamma(a1) - (a2 - E::one()) * digamma(a3)).sum::<(usize,), Axis<1>>();
        per_k - lgamma(a0) + (a0b - k) * digamma(a0c)
    }
}
