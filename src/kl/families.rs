//! Closed-form KL divergences of the count, positive and proportion families
//! (Poisson, exponential, Gamma, Beta, log-normal, Dirichlet), as torch.distributions'
//! `kl.py` has them.
//! Registered with [`crate::kl::registered_kl`], so [`crate::Elbo`] uses them.

use dfdx::prelude::*;

use super::divergence::KlDivergence;
use crate::distributions::{
    back_solve_transposed, check_shape, forward_solve, Beta, Dirichlet, Distribution, Exponential,
    Gamma, LogNormal, MultivariateNormal, Normal, Poisson, StandardNormal,
};
use crate::error::Result;
use crate::kernels::ops::Real;
use crate::kernels::ops::{cst, to_f64_vec, PerExample};
use crate::special::{digamma, lgamma, linear_term, log_beta};

/// `KL(Poisson(λ₁) ‖ Poisson(λ₂)) = Σ_i λ₁ (ln λ₁ − ln λ₂) − λ₁ + λ₂`
/// (torch `_kl_poisson_poisson`).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<Poisson<N, E, D, T>>
    for Poisson<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: Poisson<N, E, D, T>) -> Result<Self::Output> {
        check_shape(
            "KL(Poisson‖Poisson)",
            self.log_rate.shape(),
            p.log_rate.shape(),
        )?;
        let q_rate = self.log_rate.with_empty_tape().exp();
        let q_rate2 = self.log_rate.with_empty_tape().exp();
        let p_rate = p.log_rate.with_empty_tape().exp();
        let kl = (self.log_rate - p.log_rate) * q_rate - q_rate2 + p_rate;
        Ok(kl.sum::<(usize,), Axis<1>>())
    }
}

/// `KL(Exp(λ₁) ‖ Exp(λ₂)) = Σ_i ln λ₁ − ln λ₂ + λ₂/λ₁ − 1`
/// (torch `_kl_exponential_exponential`).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<Exponential<N, E, D, T>>
    for Exponential<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: Exponential<N, E, D, T>) -> Result<Self::Output> {
        check_shape(
            "KL(Exponential‖Exponential)",
            self.log_rate.shape(),
            p.log_rate.shape(),
        )?;
        let d = self.log_rate - p.log_rate; // ln(λ₁/λ₂)
        let ratio = d.with_empty_tape().negate().exp(); // λ₂/λ₁
        Ok((d + ratio - E::one()).sum::<(usize,), Axis<1>>())
    }
}

/// `KL(Gamma(α₁, β₁) ‖ Gamma(α₂, β₂)) = Σ_i α₂ ln(β₁/β₂) + ln Γ(α₂) − ln Γ(α₁)
/// + (α₁ − α₂) ψ(α₁) + (β₂ − β₁) α₁/β₁` (torch `_kl_gamma_gamma`; Penny 2001, eq. 3).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<Gamma<N, E, D, T>>
    for Gamma<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: Gamma<N, E, D, T>) -> Result<Self::Output> {
        check_shape("KL(Gamma‖Gamma)", self.log_rate.shape(), p.log_rate.shape())?;
        let e = |t: &Tensor<(usize, N), E, D, T>| t.with_empty_tape().exp();
        let w = |t: &Tensor<(usize, N), E, D, T>| t.with_empty_tape();
        let (qc, pc) = (&self.log_concentration, &p.log_concentration);
        let t3 = (e(qc) - e(pc)) * digamma(e(qc));
        // (β₂ − β₁) α₁/β₁ = α₁ (e^{ln β₂ − ln β₁} − 1)
        let t4 = e(qc) * ((w(&p.log_rate) - w(&self.log_rate)).exp() - E::one());
        let t1 = (self.log_rate - p.log_rate) * e(&p.log_concentration);
        let t2 = lgamma(p.log_concentration.exp()) - lgamma(self.log_concentration.exp());
        Ok((t1 + t2 + t3 + t4).sum::<(usize,), Axis<1>>())
    }
}

/// `KL(Beta(a₁, b₁) ‖ Beta(a₂, b₂)) = Σ_i ln B(a₂, b₂) − ln B(a₁, b₁) + (a₁ − a₂) ψ(a₁)
/// + (b₁ − b₂) ψ(b₁) + (a₂ − a₁ + b₂ − b₁) ψ(a₁ + b₁)` (torch `_kl_beta_beta`).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<Beta<N, E, D, T>>
    for Beta<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: Beta<N, E, D, T>) -> Result<Self::Output> {
        check_shape(
            "KL(Beta‖Beta)",
            self.log_concentration1.shape(),
            p.log_concentration1.shape(),
        )?;
        let e = |t: &Tensor<(usize, N), E, D, T>| t.with_empty_tape().exp();
        let (qa, qb) = (&self.log_concentration1, &self.log_concentration0);
        let (pa, pb) = (&p.log_concentration1, &p.log_concentration0);
        let t_a = (e(qa) - e(pa)) * digamma(e(qa));
        let t_b = (e(qb) - e(pb)) * digamma(e(qb));
        let q_sum = e(qa) + e(qb);
        let t_s = (e(pa) + e(pb) - q_sum.with_empty_tape()) * digamma(q_sum);
        let kl = log_beta(p.log_concentration1.exp(), p.log_concentration0.exp())
            - log_beta(self.log_concentration1.exp(), self.log_concentration0.exp())
            + t_a
            + t_b
            + t_s;
        Ok(kl.sum::<(usize,), Axis<1>>())
    }
}

/// `KL(LogNormal(μ₁, σ₁) ‖ LogNormal(μ₂, σ₂))` is the KL of the underlying Normals
/// (KL is invariant under the bijection `exp`): `Σ_i ln σ₂ − ln σ₁ + (σ₁² + (μ₁ − μ₂)²) /
/// (2σ₂²) − ½` (torch `_kl_transformed_transformed`).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<LogNormal<N, E, D, T>>
    for LogNormal<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: LogNormal<N, E, D, T>) -> Result<Self::Output> {
        let q = Normal::new(self.loc, self.log_scale)?;
        q.kl_divergence(Normal::new(p.loc, p.log_scale)?)
    }
}

/// `KL(Dir(α) ‖ Dir(β)) = ln Γ(α₀) − Σ_k ln Γ(α_k) − ln Γ(β₀) + Σ_k ln Γ(β_k)
/// + Σ_k (α_k − β_k)(ψ(α_k) − ψ(α₀))` (torch `_kl_dirichlet_dirichlet`).
impl<K: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<Dirichlet<K, E, D, T>>
    for Dirichlet<K, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: Dirichlet<K, E, D, T>) -> Result<Self::Output> {
        check_shape(
            "KL(Dirichlet‖Dirichlet)",
            self.log_concentration.shape(),
            p.log_concentration.shape(),
        )?;
        let shape = *self.log_concentration.shape();
        let e = |t: &Tensor<(usize, K), E, D, T>| t.with_empty_tape().exp();
        let (qa, pa) = (&self.log_concentration, &p.log_concentration);
        let q0 = e(qa).sum::<(usize,), Axis<1>>();
        let q0b = q0.with_empty_tape();
        let p0 = e(pa).sum::<(usize,), Axis<1>>();
        let psi = digamma(e(qa)) - digamma(q0b).broadcast_like(&shape);
        let cross = ((e(qa) - e(pa)) * psi).sum::<(usize,), Axis<1>>();
        let lq = lgamma(self.log_concentration.exp()).sum::<(usize,), Axis<1>>();
        let lp = lgamma(p.log_concentration.exp()).sum::<(usize,), Axis<1>>();
        Ok(lgamma(q0) - lq - lgamma(p0) + lp + cross)
    }
}

/// `KL(N(μ, LLᵀ) ‖ N(0, I)) = ½ (Σ_ij L_ij² + Σ_i μ_i² − N) − Σ_i ln L_ii`: the
/// full-covariance guide's KL against the standard Normal prior (dfdx operations).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<StandardNormal<N, E, D, T>>
    for MultivariateNormal<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: StandardNormal<N, E, D, T>) -> Result<Self::Output> {
        check_shape(
            "KL(MultivariateNormal‖StandardNormal)",
            self.loc.shape(),
            &(p.batch_size(), p.dim()),
        )?;
        let n = self.loc.shape().1.size() as f64;
        let log_diag = self.fork().log_diag().sum::<(usize,), Axis<1>>();
        let trace = self.scale_tril.square().sum::<(usize,), Axes2<1, 2>>();
        let mu2 = self.loc.square().sum::<(usize,), Axis<1>>();
        let (kl, tape) = ((trace + mu2 - cst::<E>(n)) * cst::<E>(0.5) - log_diag).split_tape();
        Ok(kl.put_tape(tape.merge(p.into_tape())))
    }
}

/// `KL(N(μ₁, L₁L₁ᵀ) ‖ N(μ₂, L₂L₂ᵀ)) = ½ (‖L₂⁻¹L₁‖²_F + ‖L₂⁻¹(μ₂ − μ₁)‖² − N)
/// + Σ_i ln L₂,ii − Σ_i ln L₁,ii` (torch `_kl_multivariatenormal_multivariatenormal`),
/// with the triangular solves on the host and the gradients
/// `∂/∂L₁ = tril(L₂⁻ᵀM) − diag(1/L₁,ii)`, `∂/∂L₂ = −tril(L₂⁻ᵀ(MMᵀ + mmᵀ)) + diag(1/L₂,ii)`,
/// `∂/∂μ₁ = −L₂⁻ᵀm`, `∂/∂μ₂ = L₂⁻ᵀm` (`M = L₂⁻¹L₁`, `m = L₂⁻¹(μ₂ − μ₁)`).
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> KlDivergence<MultivariateNormal<N, E, D, T>>
    for MultivariateNormal<N, E, D, T>
{
    type Output = PerExample<E, D, T>;

    fn kl_divergence(self, p: MultivariateNormal<N, E, D, T>) -> Result<Self::Output> {
        check_shape(
            "KL(MultivariateNormal‖MultivariateNormal)",
            self.loc.shape(),
            p.loc.shape(),
        )?;
        let (b, dim) = *self.loc.shape();
        let n = dim.size();
        let (m1, l1) = (to_f64_vec(&self.loc), to_f64_vec(&self.scale_tril));
        let (m2, l2) = (to_f64_vec(&p.loc), to_f64_vec(&p.scale_tril));
        let mut value = Vec::with_capacity(b);
        let (mut g_m1, mut g_l1, mut g_l2) = (Vec::new(), Vec::new(), Vec::new());
        for e in 0..b {
            let (a, c) = (
                &l1[e * n * n..(e + 1) * n * n],
                &l2[e * n * n..(e + 1) * n * n],
            );
            // M = L₂⁻¹ L₁, column by column (row-major storage).
            let mut mm = vec![0.0; n * n];
            for j in 0..n {
                let col: Vec<f64> = (0..n).map(|i| a[i * n + j]).collect();
                for (i, v) in forward_solve(c, &col, n).into_iter().enumerate() {
                    mm[i * n + j] = v;
                }
            }
            let d: Vec<f64> = (0..n).map(|i| m2[e * n + i] - m1[e * n + i]).collect();
            let m = forward_solve(c, &d, n);
            let logs = |l: &[f64]| (0..n).map(|i| l[i * n + i].ln()).sum::<f64>();
            let frob: f64 = mm.iter().map(|v| v * v).sum();
            let maha: f64 = m.iter().map(|v| v * v).sum();
            value.push(0.5 * (frob + maha - n as f64) + logs(c) - logs(a));
            // L₂⁻ᵀ applied to the columns of M, and to m.
            let mut w = vec![0.0; n * n];
            for j in 0..n {
                let col: Vec<f64> = (0..n).map(|i| mm[i * n + j]).collect();
                for (i, v) in back_solve_transposed(c, &col, n).into_iter().enumerate() {
                    w[i * n + j] = v;
                }
            }
            let wm = back_solve_transposed(c, &m, n);
            g_m1.extend(wm.iter().map(|v| -v));
            for i in 0..n {
                for j in 0..n {
                    let below = j <= i;
                    let diag = if i == j { 1.0 } else { 0.0 };
                    g_l1.push(if below {
                        w[i * n + j] - diag / a[i * n + i]
                    } else {
                        0.0
                    });
                    // −L₂⁻ᵀ (M Mᵀ + m mᵀ): row i of L₂⁻ᵀM times row j of M, plus the m term.
                    let mmt: f64 =
                        (0..n).map(|k| w[i * n + k] * mm[j * n + k]).sum::<f64>() + wm[i] * m[j];
                    g_l2.push(if below {
                        -mmt + diag / c[i * n + i]
                    } else {
                        0.0
                    });
                }
            }
        }
        let g_m2: Vec<f64> = g_m1.iter().map(|v| -v).collect();
        let value = self
            .loc
            .device()
            .tensor_from_vec(value.into_iter().map(cst::<E>).collect(), (b,));
        let t = linear_term(self.loc, g_m1).sum::<(usize,), Axis<1>>()
            + linear_term(self.scale_tril, g_l1).sum::<(usize,), Axes2<1, 2>>()
            + linear_term(p.loc, g_m2).sum::<(usize,), Axis<1>>()
            + linear_term(p.scale_tril, g_l2).sum::<(usize,), Axes2<1, 2>>();
        Ok(t + value)
    }
}
