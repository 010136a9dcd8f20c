//! The multivariate Normal with a full covariance, through its Cholesky factor.

use dfdx::prelude::*;

use super::{check_batch, check_shape, Distribution, Entropy, Mode, Reparameterizable, Variance};
use crate::error::{Error, Result};
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real, Scored, LN_2PI};
use crate::special::linear_term;

/// A batch of `(batch, N, N)` matrices.
pub type Matrices<N, E, D, T = NoneTape> = Tensor<(usize, N, N), E, D, T>;

/// A batch of multivariate Normal distributions over `R^N`, `N(μ, L Lᵀ)`
/// (`torch.distributions.MultivariateNormal(loc, scale_tril=L)`): `loc` of shape
/// `(batch, N)` and the lower-triangular Cholesky factor `L` of the covariance, with a
/// positive diagonal, of shape `(batch, N, N)`.
///
/// # Formula
/// With `y = L⁻¹(x − μ)` (forward substitution):
/// - `log_prob(x) = −½ ‖y‖² − Σ_i ln L_ii − (N/2) ln 2π`, nats;
/// - `rsample() = μ + L ε`, `ε ~ N(0, I)`, and the draw's log-density from the same
///   `ε`: `ln q(z) = ln N(ε; 0, I) − Σ_i ln L_ii` (no solve; Kingma & Welling 2014, and
///   the full-covariance Gaussian posterior of Kingma, Salimans et al. 2016, §2);
/// - mean and mode `μ`, variance `Σ_j L_ij²`, entropy `(N/2)(1 + ln 2π) + Σ_i ln L_ii`.
///
/// `log_prob` and the KL against another full-covariance Normal solve triangular systems
/// per example on the host (`f64`), with their gradients (`∂/∂x = −L⁻ᵀy`,
/// `∂/∂L = tril(L⁻ᵀy yᵀ) − diag(1/L_ii)`, …) recorded on the tape as in
/// [`crate::special`]: exact values and first derivatives on every device, at the cost
/// of a host round trip on CUDA. `rsample`, its log-density and the KL against
/// `N(0, I)` are dfdx operations throughout.
pub struct MultivariateNormal<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    /// `μ`, shape `(batch, N)`.
    pub loc: Events<N, E, D, T>,
    /// `L`, lower triangular with a positive diagonal, shape `(batch, N, N)`.
    pub scale_tril: Matrices<N, E, D, T>,
}

/// The 0/1 matrix `(n, n²)` that places a row of `n` values on the diagonal of a
/// row-major `n × n` matrix (and, transposed, reads the diagonal back).
fn diagonal_placement<E: Real>(n: usize) -> Vec<E> {
    let mut diag = vec![E::zero(); n * n * n];
    for i in 0..n {
        diag[i * n * n + i * n + i] = E::one();
    }
    diag
}

/// The 0/1 matrices that place a row of `n(n−1)/2` values below the diagonal, row by
/// row, `(m, n²)`, and a row of `n` values each across its whole matrix row, `(n, n²)`.
fn below_and_row_placement<E: Real>(n: usize) -> (Vec<E>, Vec<E>) {
    let m = n * n.saturating_sub(1) / 2;
    let (mut off, mut rows) = (vec![E::zero(); m * n * n], vec![E::zero(); n * n * n]);
    let mut k = 0;
    for i in 0..n {
        for j in 0..n {
            rows[i * n * n + i * n + j] = E::one();
        }
        for j in 0..i {
            off[k * n * n + i * n + j] = E::one();
            k += 1;
        }
    }
    (off, rows)
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> MultivariateNormal<N, E, D, T> {
    /// A multivariate Normal from `μ` `(batch, N)` and `L` `(batch, N, N)`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for shapes that disagree; [`Error::InvalidSetting`] for
    /// an `L` with a non-zero entry above the diagonal, or a diagonal entry that is not
    /// positive and finite (naming the example and the entry).
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::distributions::MultivariateNormal;
    /// use latent::Distribution;
    ///
    /// let dev = Cpu::default();
    /// // N(0, Σ) with Σ = L Lᵀ, L = [[2, 0], [1, 1]]: ln p(0) = −ln 2π − ln |det L|.
    /// let mvn = MultivariateNormal::new(
    ///     dev.tensor_from_vec(vec![0.0f64, 0.0], (1, Const::<2>)),
    ///     dev.tensor_from_vec(vec![2.0, 0.0, 1.0, 1.0], (1, Const::<2>, Const::<2>)),
    /// )?;
    /// let lp = mvn.log_prob(dev.tensor_from_vec(vec![0.0, 0.0], (1, Const::<2>)))?;
    /// let expected = -(2.0 * std::f64::consts::PI).ln() - 2f64.ln();
    /// assert!((lp.as_vec()[0] - expected).abs() < 1e-12);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(loc: Events<N, E, D, T>, scale_tril: Matrices<N, E, D, T>) -> Result<Self> {
        let (b, n) = *loc.shape();
        let s = scale_tril.shape();
        if s.0 != b || s.1.size() != n.size() || s.2.size() != n.size() {
            return Err(Error::shape(
                "MultivariateNormal::new (scale_tril)",
                &[b, n.size(), n.size()],
                &[s.0, s.1.size(), s.2.size()],
            ));
        }
        let n = n.size();
        let l = to_f64_vec(&scale_tril);
        for (e, m) in l.chunks(n * n).enumerate() {
            for i in 0..n {
                for j in 0..n {
                    let v = m[i * n + j];
                    let ok = if j > i {
                        v == 0.0
                    } else if j == i {
                        v > 0.0 && v.is_finite()
                    } else {
                        v.is_finite()
                    };
                    if !ok {
                        return Err(Error::invalid(
                            "scale_tril",
                            format!("example {e}: L[{i}][{j}] = {v}; L must be lower triangular with a positive diagonal"),
                        ));
                    }
                }
            }
        }
        Ok(Self { loc, scale_tril })
    }

    /// A multivariate Normal from unconstrained parameters, as an amortized guide's
    /// network outputs them: `μ` `(batch, N)`, `ln L_ii` `(batch, N)` and the entries
    /// `B_ij` below the diagonal of a unit lower-triangular factor, row by row
    /// (`B_10, B_20, B_21, …`), `(batch, N(N−1)/2)`, with
    /// `L = diag(L_ii) (I + B)`, i.e. `L_ij = L_ii B_ij` (Pyro's `AutoMultivariateNormal`
    /// parameterization: a correlation's noise scales with its row's standard deviation,
    /// so `B = 0` is the diagonal Normal whatever the scales). `L` is assembled with
    /// products by fixed 0/1 matrices, so gradients reach all three inputs.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for widths or batch sizes that disagree.
    pub fn from_unconstrained(
        loc: Events<N, E, D, T>,
        log_diag: Events<N, E, D, T>,
        below: Tensor<(usize, usize), E, D, T>,
    ) -> Result<Self> {
        let (b, dim) = *loc.shape();
        let n = dim.size();
        check_shape(
            "MultivariateNormal::from_unconstrained (log_diag)",
            loc.shape(),
            log_diag.shape(),
        )?;
        check_batch(
            "MultivariateNormal::from_unconstrained (below)",
            b,
            below.shape().0,
        )?;
        let m = n * n.saturating_sub(1) / 2;
        if below.shape().1 != m {
            return Err(Error::shape(
                "MultivariateNormal::from_unconstrained (below)",
                &[b, m],
                &[b, below.shape().1],
            ));
        }
        let dev = loc.device().clone();
        let diag = diagonal_placement::<E>(n);
        let scale = log_diag.exp();
        let on_diag = scale
            .with_empty_tape()
            .matmul(dev.tensor_from_vec(diag, (dim, n * n)));
        let scale_tril = if m > 0 {
            // L_ij = L_ii B_ij: B placed below the diagonal, times each row's L_ii.
            let (off, rows) = below_and_row_placement::<E>(n);
            let row_scale = scale.matmul(dev.tensor_from_vec(rows, (dim, n * n)));
            on_diag + below.matmul(dev.tensor_from_vec(off, (m, n * n))) * row_scale
        } else {
            let (d, tape) = on_diag.split_tape();
            d.put_tape(tape.merge(below.split_tape().1).merge(scale.split_tape().1))
        };
        let scale_tril = scale_tril.reshape_like(&(b, dim, dim));
        Ok(Self { loc, scale_tril })
    }

    /// `ln L_ii`, shape `(batch, N)`.
    pub fn log_diag(self) -> Events<N, E, D, T> {
        let (b, dim, _) = *self.scale_tril.shape();
        let n = dim.size();
        let diag = diagonal_placement::<E>(n);
        let select = self.scale_tril.device().tensor_from_vec(diag, (dim, n * n));
        // L (b, n²) · Dᵀ (n², n): the diagonal of each example's L.
        let (loc_t, flat) = (
            self.loc.split_tape().1,
            self.scale_tril.reshape_like(&(b, n * n)),
        );
        let d = flat.matmul(select.permute::<_, Axes2<1, 0>>()).ln();
        let (d, tape) = d.split_tape();
        d.put_tape(tape.merge(loc_t))
    }
}

impl<N: Dim, E: Real, D: Device<E>> MultivariateNormal<N, E, D> {
    /// From host values: `loc` (`batch · N`) and `scale_tril` (`batch · N · N`,
    /// row-major), checked as in [`MultivariateNormal::new`].
    ///
    /// # Errors
    /// As [`MultivariateNormal::new`], and [`Error::ShapeMismatch`] for lengths that
    /// disagree.
    pub fn from_host(dev: &D, dim: N, loc: &[E], scale_tril: &[E]) -> Result<Self> {
        let n = dim.size();
        if n == 0
            || loc.is_empty()
            || !loc.len().is_multiple_of(n)
            || scale_tril.len() != loc.len() * n
        {
            return Err(Error::shape(
                "MultivariateNormal::from_host",
                &[loc.len() * n],
                &[scale_tril.len()],
            ));
        }
        let b = loc.len() / n;
        Self::new(
            dev.tensor_from_vec(loc.to_vec(), (b, dim)),
            dev.tensor_from_vec(scale_tril.to_vec(), (b, dim, dim)),
        )
    }
}

/// `y = L⁻¹ b` for a lower-triangular row-major `n × n` `l`.
pub(crate) fn forward_solve(l: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|j| l[i * n + j] * y[j]).sum();
        y[i] = (b[i] - s) / l[i * n + i];
    }
    y
}

/// `w = L⁻ᵀ y` for a lower-triangular row-major `n × n` `l`.
pub(crate) fn back_solve_transposed(l: &[f64], y: &[f64], n: usize) -> Vec<f64> {
    let mut w = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|j| l[j * n + i] * w[j]).sum();
        w[i] = (y[i] - s) / l[i * n + i];
    }
    w
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D>
    for MultivariateNormal<N, E, D, T>
{
    type Tape = T;

    fn batch_size(&self) -> usize {
        self.loc.shape().0
    }

    fn device(&self) -> D {
        self.loc.device().clone()
    }

    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        check_shape("MultivariateNormal::log_prob", self.loc.shape(), x.shape())?;
        let (b, dim) = *x.shape();
        let n = dim.size();
        let (xs, mus, ls) = (
            to_f64_vec(&x),
            to_f64_vec(&self.loc),
            to_f64_vec(&self.scale_tril),
        );
        let (mut value, mut gx, mut gl) = (
            Vec::with_capacity(b),
            Vec::with_capacity(b * n),
            Vec::with_capacity(b * n * n),
        );
        for e in 0..b {
            let l = &ls[e * n * n..(e + 1) * n * n];
            let d: Vec<f64> = (0..n).map(|i| xs[e * n + i] - mus[e * n + i]).collect();
            let y = forward_solve(l, &d, n);
            let w = back_solve_transposed(l, &y, n);
            let log_det: f64 = (0..n).map(|i| l[i * n + i].ln()).sum();
            value.push(
                -0.5 * y.iter().map(|v| v * v).sum::<f64>() - log_det - 0.5 * n as f64 * LN_2PI,
            );
            gx.extend(w.iter().map(|v| -v));
            for i in 0..n {
                for (j, yj) in y.iter().enumerate() {
                    gl.push(match j.cmp(&i) {
                        std::cmp::Ordering::Less => w[i] * yj,
                        std::cmp::Ordering::Equal => w[i] * yj - 1.0 / l[i * n + i],
                        std::cmp::Ordering::Greater => 0.0,
                    });
                }
            }
        }
        let gmu: Vec<f64> = gx.iter().map(|v| -v).collect();
        let value = x
            .device()
            .tensor_from_vec(value.into_iter().map(cst::<E>).collect(), (b,));
        let tx = linear_term(x, gx).sum::<(usize,), Axis<1>>();
        let tmu = linear_term(self.loc, gmu).sum::<(usize,), Axis<1>>();
        let tl = linear_term(self.scale_tril, gl).sum::<(usize,), Axes2<1, 2>>();
        Ok(tx + tmu + tl + value)
    }

    fn sample(&self) -> Events<N, E, D> {
        self.fork().rsample().retaped::<NoneTape>()
    }

    fn mean(self) -> Events<N, E, D, T> {
        let (loc, tape) = self.loc.split_tape();
        loc.put_tape(tape.merge(self.scale_tril.split_tape().1))
    }

    fn fork(&self) -> Self {
        Self {
            loc: self.loc.with_empty_tape(),
            scale_tril: self.scale_tril.with_empty_tape(),
        }
    }

    fn repeat(self, k: usize) -> Self {
        let (b, dim, _) = *self.scale_tril.shape();
        let n = dim.size();
        let flat = repeat_rows(self.scale_tril.reshape_like(&(b, n * n)), k);
        Self {
            loc: repeat_rows(self.loc, k),
            scale_tril: flat.reshape_like(&(k * b, dim, dim)),
        }
    }

    fn into_tape(self) -> T {
        self.loc
            .split_tape()
            .1
            .merge(self.scale_tril.split_tape().1)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D>
    for MultivariateNormal<N, E, D, T>
{
    fn rsample(self) -> Events<N, E, D, T> {
        self.rsample_with_eps().0
    }

    /// `z = μ + L ε` and `ln q(z) = ln N(ε; 0, I) − Σ_i ln L_ii`, from one `ε`.
    fn rsample_with_log_prob(self) -> Result<Scored<N, E, D, T>> {
        let log_diag = self.fork().log_diag();
        let (z, eps) = self.rsample_with_eps();
        let base = eps.square().sum::<(usize,), Axis<1>>() * cst::<E>(-0.5)
            - cst::<E>(0.5 * LN_2PI * z.shape().1.size() as f64);
        Ok((z, log_diag.sum::<(usize,), Axis<1>>().negate() + base))
    }
}

/// A draw `μ + L ε` (taped) and its noise `ε`.
type Drawn<N, E, D, T> = (Events<N, E, D, T>, Events<N, E, D>);

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> MultivariateNormal<N, E, D, T> {
    /// `μ + L ε` with its noise `ε`.
    fn rsample_with_eps(self) -> Drawn<N, E, D, T> {
        let (b, dim) = *self.loc.shape();
        let eps = E::standard_normal(self.loc.device(), &(b, dim));
        let le = self
            .scale_tril
            .matmul(eps.clone().reshape_like(&(b, dim, Const::<1>)));
        (self.loc + le.reshape_like(&(b, dim)), eps)
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Variance<N, E, D>
    for MultivariateNormal<N, E, D, T>
{
    /// `Σ_j L_ij²`, the covariance's diagonal.
    fn variance(self) -> Events<N, E, D, T> {
        let v = self.scale_tril.square().sum::<(usize, N), Axis<2>>();
        let (v, tape) = v.split_tape();
        v.put_tape(tape.merge(self.loc.split_tape().1))
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Mode<N, E, D>
    for MultivariateNormal<N, E, D, T>
{
    /// `μ`.
    fn mode(&self) -> Events<N, E, D> {
        self.loc.retaped::<NoneTape>()
    }
}

impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Entropy<E, D>
    for MultivariateNormal<N, E, D, T>
{
    type Tape = T;
    /// `(N/2)(1 + ln 2π) + Σ_i ln L_ii`.
    fn entropy(self) -> PerExample<E, D, T> {
        let n = self.loc.shape().1.size() as f64;
        self.log_diag().sum::<(usize,), Axis<1>>() + cst::<E>(0.5 * n * (1.0 + LN_2PI))
    }
}
