//! Probabilistic PCA (a linear-Gaussian latent-variable model) with its exact
//! marginal likelihood and posterior: the reference against which the estimators
//! are checked.

use dfdx::prelude::*;
use latent::distributions::{Distribution, Normal, StandardNormal};
use latent::nn::Linear;
use latent::ops::{cst, to_f64_vec, LN_2PI};
use latent::{Error, Events, KlDivergence, LatentVariableModel, PerExample, Real, Result};

/// Probabilistic PCA (Tipping & Bishop 1999) with an amortized linear guide:
///
/// - prior `z ~ N(0, I_Z)`;
/// - likelihood `x | z ~ N(W z + b, σ² I_X)` (`decoder` holds `W` (X×Z) and `b`);
/// - guide `q(z | x) = N(A x + c, diag exp(2 s))` (`encoder` holds `A` (Z×X) and `c`;
///   `guide_log_scale` is `s`).
///
/// Everything is known exactly (Bishop 2006, §12.2): with `M = WᵀW + σ² I_Z`,
/// `p(x) = N(x; b, W Wᵀ + σ² I_X)`, and `p(z | x) = N(M⁻¹ Wᵀ (x − b), σ² M⁻¹)`. When the
/// columns of `W` are orthogonal, `M` is diagonal and the guide can represent the exact
/// posterior ([`LinearGaussian::set_guide_to_posterior`]), which makes the ELBO equal
/// `log p(x)` for every draw.
#[derive(Debug, Clone)]
pub struct LinearGaussian<X: Dim, Z: Dim, E: Dtype, D: Storage<E>> {
    /// `W` (weight, shape `(X, Z)`) and `b` (bias, shape `(X,)`).
    pub decoder: Linear<Z, X, E, D>,
    /// `log σ`, the shared observation noise.
    pub log_sigma: Tensor<Rank0, E, D>,
    /// The guide's `A` (weight, shape `(Z, X)`) and `c` (bias, shape `(Z,)`).
    pub encoder: Linear<X, Z, E, D>,
    /// The guide's `s = log σ_q`, shape `(Z,)`.
    pub guide_log_scale: Tensor<(Z,), E, D>,
}

impl<X: Dim + Default, Z: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D>
    for LinearGaussian<X, Z, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = LinearGaussian<X, Z, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
                Self::tensor(
                    "log_sigma",
                    |s| &s.log_sigma,
                    |s| &mut s.log_sigma,
                    latent::nn::zeros_options(),
                ),
                Self::module("encoder", |s| &s.encoder, |s| &mut s.encoder),
                Self::tensor(
                    "guide_log_scale",
                    |s| &s.guide_log_scale,
                    |s| &mut s.guide_log_scale,
                    latent::nn::zeros_options(),
                ),
            ),
            |(decoder, log_sigma, encoder, guide_log_scale)| LinearGaussian {
                decoder,
                log_sigma,
                encoder,
                guide_log_scale,
            },
        )
    }
}

/// `M = WᵀW + σ² I` (row-major `Z×Z`) from `W` stored row-major as `(X, Z)`.
fn m_matrix(w: &[f64], x: usize, z: usize, sigma2: f64) -> Vec<f64> {
    let mut m = vec![0.0; z * z];
    for a in 0..z {
        for b in 0..z {
            m[a * z + b] = (0..x).map(|i| w[i * z + a] * w[i * z + b]).sum::<f64>();
        }
        m[a * z + a] += sigma2;
    }
    m
}

/// Cholesky factor `L` (row-major, lower) of a symmetric positive-definite `n×n` matrix.
fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(Error::invalid("W", "WᵀW + σ²I is not positive definite"));
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// Solves `L Lᵀ y = v` for `y`.
fn cholesky_solve(l: &[f64], n: usize, v: &[f64]) -> Vec<f64> {
    let mut y = v.to_vec();
    for i in 0..n {
        y[i] = (y[i] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
    }
    for i in (0..n).rev() {
        y[i] = (y[i] - (i + 1..n).map(|k| l[k * n + i] * y[k]).sum::<f64>()) / l[i * n + i];
    }
    y
}

impl<X: Dim, Z: Dim, E: Real, D: Device<E>> LinearGaussian<X, Z, E, D> {
    /// A model with the given `W` (row-major `X×Z`), `b`, `σ`, and the guide
    /// `A = 0, c = 0, s = 0` (the prior, a poor guide).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for slices of the wrong length; [`Error::InvalidSetting`]
    /// for a non-positive or non-finite `sigma`.
    pub fn new(device: &D, (x, z): (X, Z), w: &[f64], b: &[f64], sigma: f64) -> Result<Self> {
        let (xn, zn) = (x.size(), z.size());
        if w.len() != xn * zn || b.len() != xn {
            return Err(Error::shape(
                "LinearGaussian::new (values of W, of b)",
                &[xn * zn, xn],
                &[w.len(), b.len()],
            ));
        }
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(Error::invalid(
                "sigma",
                format!("must be positive, got {sigma}"),
            ));
        }
        let mut model = Self {
            decoder: Linear::new(device, z, x)?,
            log_sigma: device.try_zeros().map_err(Error::device)?,
            encoder: Linear::new(device, x, z)?,
            guide_log_scale: device.try_zeros_like(&(z,)).map_err(Error::device)?,
        };
        let to_e = |v: &[f64]| v.iter().map(|&x| cst::<E>(x)).collect::<Vec<E>>();
        model.decoder.weight.copy_from(&to_e(w));
        model.decoder.bias.copy_from(&to_e(b));
        model.log_sigma.copy_from(&[cst::<E>(sigma.ln())]);
        model.encoder.weight.copy_from(&vec![E::zero(); xn * zn]);
        model.encoder.bias.copy_from(&vec![E::zero(); zn]);
        Ok(model)
    }

    /// The sizes `(X, Z)` as numbers.
    fn dims(&self) -> (usize, usize) {
        let (x, z) = *self.decoder.weight.shape();
        (x.size(), z.size())
    }

    fn host(&self) -> (Vec<f64>, Vec<f64>, f64) {
        let sigma = to_f64_vec(&self.log_sigma)[0].exp();
        (
            to_f64_vec(&self.decoder.weight),
            to_f64_vec(&self.decoder.bias),
            sigma,
        )
    }

    /// The exact `log p(x) = log N(x; b, WWᵀ + σ²I)` of one observation (`X` values),
    /// nats, via the Woodbury identity and the matrix determinant lemma on the `Z×Z`
    /// matrix `M`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x.len() != X`; [`Error::InvalidSetting`] if `M` is
    /// not positive definite.
    pub fn exact_log_marginal(&self, x: &[f64]) -> Result<f64> {
        #[allow(non_snake_case)]
        let (X, Z) = self.dims();
        if x.len() != X {
            return Err(Error::shape("exact_log_marginal", &[X], &[x.len()]));
        }
        let (w, b, sigma) = self.host();
        let s2 = sigma * sigma;
        let m = m_matrix(&w, X, Z, s2);
        let l = cholesky(&m, Z)?;
        let r: Vec<f64> = (0..X).map(|i| x[i] - b[i]).collect();
        let wtr: Vec<f64> = (0..Z)
            .map(|a| (0..X).map(|i| w[i * Z + a] * r[i]).sum())
            .collect();
        let minv_wtr = cholesky_solve(&l, Z, &wtr);
        // rᵀ C⁻¹ r = (rᵀr − (Wᵀr)ᵀ M⁻¹ (Wᵀr)) / σ²
        let quad = (r.iter().map(|v| v * v).sum::<f64>()
            - wtr.iter().zip(&minv_wtr).map(|(a, b)| a * b).sum::<f64>())
            / s2;
        // log|C| = (X − Z) log σ² + log|M|
        let logdet_m: f64 = (0..Z).map(|i| 2.0 * l[i * Z + i].ln()).sum();
        let logdet = (X - Z) as f64 * s2.ln() + logdet_m;
        Ok(-0.5 * (X as f64 * LN_2PI + logdet + quad))
    }

    /// The exact posterior `p(z | x) = N(mean, cov)` of one observation: the mean (`Z`
    /// values) and the covariance (row-major `Z×Z`).
    ///
    /// # Errors
    /// As [`Self::exact_log_marginal`].
    pub fn exact_posterior(&self, x: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
        #[allow(non_snake_case)]
        let (X, Z) = self.dims();
        if x.len() != X {
            return Err(Error::shape("exact_posterior", &[X], &[x.len()]));
        }
        let (w, b, sigma) = self.host();
        let s2 = sigma * sigma;
        let l = cholesky(&m_matrix(&w, X, Z, s2), Z)?;
        let wtr: Vec<f64> = (0..Z)
            .map(|a| (0..X).map(|i| w[i * Z + a] * (x[i] - b[i])).sum())
            .collect();
        let mean = cholesky_solve(&l, Z, &wtr);
        let mut cov = vec![0.0; Z * Z];
        for j in 0..Z {
            let mut e = vec![0.0; Z];
            e[j] = s2;
            let col = cholesky_solve(&l, Z, &e);
            for i in 0..Z {
                cov[i * Z + j] = col[i];
            }
        }
        Ok((mean, cov))
    }

    /// Sets the guide to the exact posterior: `A = M⁻¹Wᵀ`, `c = −A b`,
    /// `s_j = ½ log(σ² / M_jj)`. Possible only when `M = WᵀW + σ²I` is diagonal
    /// (orthogonal columns of `W`), since the guide is a diagonal Normal.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `M` has an off-diagonal entry larger than
    /// `1e-9 · max |M_jj|`.
    pub fn set_guide_to_posterior(&mut self) -> Result<()> {
        #[allow(non_snake_case)]
        let (X, Z) = self.dims();
        let (w, b, sigma) = self.host();
        let s2 = sigma * sigma;
        let m = m_matrix(&w, X, Z, s2);
        let scale = (0..Z).map(|j| m[j * Z + j].abs()).fold(0.0, f64::max);
        for i in 0..Z {
            for j in 0..Z {
                if i != j && m[i * Z + j].abs() > 1e-9 * scale {
                    return Err(Error::invalid(
                        "W",
                        "the exact posterior is not diagonal: the columns of W are not orthogonal",
                    ));
                }
            }
        }
        let mut a = vec![0.0; Z * X];
        for j in 0..Z {
            for i in 0..X {
                a[j * X + i] = w[i * Z + j] / m[j * Z + j];
            }
        }
        let c: Vec<f64> = (0..Z)
            .map(|j| -(0..X).map(|i| a[j * X + i] * b[i]).sum::<f64>())
            .collect();
        let s: Vec<f64> = (0..Z).map(|j| 0.5 * (s2 / m[j * Z + j]).ln()).collect();
        let to_e = |v: &[f64]| v.iter().map(|&x| cst::<E>(x)).collect::<Vec<E>>();
        self.encoder.weight.copy_from(&to_e(&a));
        self.encoder.bias.copy_from(&to_e(&c));
        self.guide_log_scale.copy_from(&to_e(&s));
        Ok(())
    }

    /// The exact ELBO of the current guide, per example, as a differentiable function
    /// of all parameters (shape `(batch,)`, nats):
    ///
    /// `E_q[log p(x|z)] = −X(½ log 2π + log σ) − (‖x − Wμ − b‖² + Σ_ij W_ij² σ_qj²) / (2σ²)`
    /// plus `−KL(q ‖ N(0, I))` in closed form, where `μ = A x + c`, `σ_q = exp(s)`.
    pub fn exact_elbo<T: Tape<E, D>>(&self, x: Events<X, E, D, T>) -> Result<PerExample<E, D, T>> {
        let batch = x.shape().0;
        let device = x.device().clone();
        let target = x.with_empty_tape();
        let q = self.posterior(x);
        let kl = q.fork().kl_divergence(StandardNormal::<Z, E, D, T>::new(
            batch,
            self.guide_log_scale.shape().0,
            &device,
        ))?;
        let pred = self.decoder.try_forward(q.loc).map_err(Error::device)?;
        let resid_sq = (target - pred).square().sum::<(usize,), Axis<1>>();
        let w = self.decoder.weight.retaped::<T>();
        let var_q = (self.guide_log_scale.retaped::<T>() * cst::<E>(2.0)).exp();
        let shape = *self.decoder.weight.shape();
        let trace = (w.square() * var_q.broadcast_like::<_, Axis<0>>(&shape)).sum::<Rank0, _>();
        let log_sigma = self.log_sigma.retaped::<T>();
        let inv_two_var = (log_sigma.with_empty_tape() * cst::<E>(-2.0)).exp() * cst::<E>(0.5);
        let rec = (resid_sq + trace.broadcast_like(&(batch,)))
            * (-inv_two_var).broadcast_like(&(batch,))
            - (log_sigma + cst::<E>(0.5 * LN_2PI)).broadcast_like(&(batch,))
                * cst::<E>(self.dims().0 as f64);
        Ok(rec - kl)
    }

    fn posterior<T: Tape<E, D>>(&self, x: Events<X, E, D, T>) -> Normal<Z, E, D, T> {
        let batch = x.shape().0;
        let loc = self.encoder.forward(x);
        let log_scale = self
            .guide_log_scale
            .retaped::<T>()
            .broadcast_like(&(batch, self.guide_log_scale.shape().0));
        Normal { loc, log_scale }
    }
}

impl<X: Dim, Z: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
    LatentVariableModel<E, D, T> for LinearGaussian<X, Z, E, D>
{
    type X = X;
    type Z = Z;
    type Posterior = Normal<Z, E, D, T>;
    type Prior = StandardNormal<Z, E, D, T>;
    type Likelihood = Normal<X, E, D, T>;

    fn guide(&self, x: Events<X, E, D, T>) -> Result<Normal<Z, E, D, T>> {
        Ok(self.posterior(x))
    }

    fn prior(&self, batch: usize, device: &D) -> Result<StandardNormal<Z, E, D, T>> {
        Ok(StandardNormal::new(
            batch,
            self.guide_log_scale.shape().0,
            device,
        ))
    }

    fn likelihood(&self, z: Events<Z, E, D, T>) -> Result<Normal<X, E, D, T>> {
        let batch = z.shape().0;
        let loc = self.decoder.try_forward(z).map_err(Error::device)?;
        let log_scale = self
            .log_sigma
            .retaped::<T>()
            .broadcast_like(&(batch, self.decoder.weight.shape().0));
        Ok(Normal { loc, log_scale })
    }
}
