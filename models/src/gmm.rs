//! A mixture of diagonal Gaussians fitted by expectation–maximization, on the host in
//! `f64`: the initialization of the [`GmVae`](crate::GmVae)'s cluster prior from the
//! latent means of a pretrained VAE (Jiang et al. 2017, "Variational Deep Embedding",
//! §3.3: "we […] pretrain the networks and then fit a GMM to the latent
//! representations").

use latent::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The settings of [`DiagonalGmm::fit`], as scikit-learn's
/// `GaussianMixture(covariance_type="diag")` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GmmSettings {
    /// `K`, the number of components (at least 1, at most the number of points).
    pub components: usize,
    /// EM iterations per restart, at most.
    pub max_iter: usize,
    /// A restart stops when the mean log-likelihood per point changes by less than this
    /// (nats).
    pub tol: f64,
    /// Restarts from different seeds; the fit with the highest mean log-likelihood is
    /// kept (scikit-learn's `n_init`).
    pub restarts: usize,
    /// Added to every variance after each M-step, so that no component collapses onto
    /// a point (scikit-learn's `reg_covar`).
    pub reg_var: f64,
    /// Seed of the k-means++ seeding.
    pub seed: u64,
}

impl Default for GmmSettings {
    /// 10 components, 300 iterations, `tol = 1e-6`, 5 restarts, `reg_var = 1e-6`, seed 0.
    fn default() -> Self {
        Self {
            components: 10,
            max_iter: 300,
            tol: 1e-6,
            restarts: 5,
            reg_var: 1e-6,
            seed: 0,
        }
    }
}

impl GmmSettings {
    fn check(&self, n: usize) -> Result<()> {
        let bad = |what: &str, why: String| Err(Error::invalid(what, why));
        if self.components == 0 || self.components > n {
            return bad(
                "GmmSettings::components",
                format!(
                    "must lie in 1..={n} (the number of points), got {}",
                    self.components
                ),
            );
        }
        if self.max_iter == 0 || self.restarts == 0 {
            return bad(
                "GmmSettings::max_iter, restarts",
                format!(
                    "must be positive, got {} and {}",
                    self.max_iter, self.restarts
                ),
            );
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return bad(
                "GmmSettings::tol",
                format!("must be finite and non-negative, got {}", self.tol),
            );
        }
        if !(self.reg_var.is_finite() && self.reg_var > 0.0) {
            return bad(
                "GmmSettings::reg_var",
                format!("must be positive and finite, got {}", self.reg_var),
            );
        }
        Ok(())
    }
}

/// `p(x) = Σ_k π_k N(x; μ_k, diag σ_k²)` over `R^d`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagonalGmm {
    /// `π_k`, summing to 1.
    pub weights: Vec<f64>,
    /// `μ_k`, `K` rows of `d` values.
    pub means: Vec<Vec<f64>>,
    /// `σ_k²`, `K` rows of `d` positive values.
    pub variances: Vec<Vec<f64>>,
}

/// The result of [`DiagonalGmm::fit`]: the best restart's mixture and its history.
#[derive(Debug, Clone, PartialEq)]
pub struct GmmFit {
    /// The fitted mixture.
    pub gmm: DiagonalGmm,
    /// The mean log-likelihood per point (nats) after each M-step of the kept restart:
    /// non-decreasing, as EM guarantees (Dempster et al. 1977, Theorem 1).
    pub trace: Vec<f64>,
    /// Whether the kept restart stopped by `tol` rather than by `max_iter`.
    pub converged: bool,
}

impl DiagonalGmm {
    /// A mixture from its parameters.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] unless there is at least one component, the weights
    /// are positive and sum to 1 (within `1e-9`), every mean and variance row has the
    /// same positive length, and the variances are positive and finite.
    pub fn new(weights: Vec<f64>, means: Vec<Vec<f64>>, variances: Vec<Vec<f64>>) -> Result<Self> {
        let k = weights.len();
        let d = means.first().map_or(0, Vec::len);
        let shapes = k > 0
            && d > 0
            && means.len() == k
            && variances.len() == k
            && means.iter().chain(&variances).all(|r| r.len() == d);
        if !shapes {
            return Err(Error::invalid(
                "DiagonalGmm",
                format!(
                    "needs K ≥ 1 weights and K rows of d ≥ 1 means and variances, got {k} \
                     weights, {} mean rows, {} variance rows",
                    means.len(),
                    variances.len()
                ),
            ));
        }
        let total: f64 = weights.iter().sum();
        if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) || (total - 1.0).abs() > 1e-9 {
            return Err(Error::invalid(
                "DiagonalGmm::weights",
                format!("must be positive and sum to 1, got {weights:?}"),
            ));
        }
        if means.iter().flatten().any(|m| !m.is_finite())
            || variances
                .iter()
                .flatten()
                .any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(Error::invalid(
                "DiagonalGmm",
                "means must be finite and variances positive and finite".to_string(),
            ));
        }
        Ok(Self {
            weights,
            means,
            variances,
        })
    }

    /// `K`.
    pub fn components(&self) -> usize {
        self.weights.len()
    }

    /// `d`.
    pub fn dim(&self) -> usize {
        self.means[0].len()
    }

    /// `log π_k + log N(x; μ_k, diag σ_k²)` for each `k` (nats).
    ///
    /// # Formula
    /// `log N(x; μ, diag σ²) = −½ Σ_j [log(2π σ_j²) + (x_j − μ_j)² / σ_j²]`.
    ///
    /// # Panics
    /// If `x` does not have `d` values.
    pub fn log_joint(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(
            x.len(),
            self.dim(),
            "DiagonalGmm: a point of the wrong width"
        );
        let log_2pi = (2.0 * std::f64::consts::PI).ln();
        (0..self.components())
            .map(|k| {
                let quad: f64 = x
                    .iter()
                    .zip(&self.means[k])
                    .zip(&self.variances[k])
                    .map(|((x, m), v)| (v.ln() + log_2pi) + (x - m) * (x - m) / v)
                    .sum();
                self.weights[k].ln() - 0.5 * quad
            })
            .collect()
    }

    /// `log p(x)` (nats).
    ///
    /// # Panics
    /// If `x` does not have `d` values.
    pub fn log_prob(&self, x: &[f64]) -> f64 {
        log_sum_exp(&self.log_joint(x))
    }

    /// The responsibilities `p(k | x) = π_k N(x; μ_k, σ_k²) / p(x)`, summing to 1.
    ///
    /// # Panics
    /// If `x` does not have `d` values.
    pub fn responsibilities(&self, x: &[f64]) -> Vec<f64> {
        let l = self.log_joint(x);
        let z = log_sum_exp(&l);
        l.iter().map(|v| (v - z).exp()).collect()
    }

    /// `argmax_k p(k | x)` (the smallest `k` on ties).
    ///
    /// # Panics
    /// If `x` does not have `d` values.
    pub fn predict(&self, x: &[f64]) -> usize {
        let l = self.log_joint(x);
        (0..l.len()).fold(0, |b, k| if l[k] > l[b] { k } else { b })
    }

    /// Fits a mixture of `settings.components` diagonal Gaussians to `points` (`n × d`
    /// values, row-major) by EM (Dempster et al. 1977; Bishop 2006, §9.2.2), from
    /// k-means++ means (Arthur & Vassilvitskii 2007), the data's variance in every
    /// component and equal weights, `settings.restarts` times, keeping the restart with
    /// the highest mean log-likelihood.
    ///
    /// # Formula
    /// E-step `r_ik = p(k | x_i)`; M-step `N_k = Σ_i r_ik`, `π_k = N_k / n`,
    /// `μ_k = Σ_i r_ik x_i / N_k`, `σ_k² = Σ_i r_ik (x_i − μ_k)² / N_k + reg_var`. A
    /// component that no point claims (`N_k < 1e-10`) keeps its mean and variance.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `points` is not a whole, non-zero number of rows of
    /// `dim ≥ 1` values; [`Error::InvalidSetting`] for a non-finite value or settings
    /// out of range (see [`GmmSettings`]).
    ///
    /// # Examples
    /// ```
    /// use latent_models::gmm::{DiagonalGmm, GmmSettings};
    /// // Two groups on a line, around 0 and around 10.
    /// let points = [-0.5, 0.0, 0.5, 9.5, 10.0, 10.5];
    /// let settings = GmmSettings { components: 2, ..GmmSettings::default() };
    /// let fit = DiagonalGmm::fit(&points, 1, &settings)?;
    /// let mut means: Vec<f64> = fit.gmm.means.iter().map(|m| m[0]).collect();
    /// means.sort_by(f64::total_cmp);
    /// assert!((means[0] - 0.0).abs() < 1e-6 && (means[1] - 10.0).abs() < 1e-6);
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn fit(points: &[f64], dim: usize, settings: &GmmSettings) -> Result<GmmFit> {
        if dim == 0 || points.is_empty() || !points.len().is_multiple_of(dim) {
            return Err(Error::shape(
                "DiagonalGmm::fit (values, a whole number of rows of dim)",
                &[dim.max(1) * (points.len() / dim.max(1)).max(1)],
                &[points.len()],
            ));
        }
        if points.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "DiagonalGmm::fit points",
                "a value is not finite".to_string(),
            ));
        }
        let n = points.len() / dim;
        settings.check(n)?;
        let rows: Vec<&[f64]> = points.chunks(dim).collect();
        let mut best: Option<GmmFit> = None;
        for restart in 0..settings.restarts {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                settings.seed ^ (restart as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            let fit = em(&rows, dim, settings, &mut rng);
            let better = best
                .as_ref()
                .is_none_or(|b| fit.trace.last() > b.trace.last());
            if better {
                best = Some(fit);
            }
        }
        best.ok_or_else(|| Error::invalid("GmmSettings::restarts", "must be positive"))
    }
}

/// One restart of EM.
fn em(rows: &[&[f64]], dim: usize, s: &GmmSettings, rng: &mut impl Rng) -> GmmFit {
    let (n, k) = (rows.len(), s.components);
    let mean: Vec<f64> = (0..dim)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let var: Vec<f64> = (0..dim)
        .map(|j| rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n as f64 + s.reg_var)
        .collect();
    let mut gmm = DiagonalGmm {
        weights: vec![1.0 / k as f64; k],
        means: kmeans_plus_plus(rows, k, rng),
        variances: vec![var; k],
    };
    let (mut trace, mut converged) = (Vec::new(), false);
    let mut resp = vec![0.0; n * k];
    for step in 0..=s.max_iter {
        // E-step: the responsibilities, and on the way the mean log-likelihood of the
        // mixture the last M-step made (`log p(x)` is the responsibilities' normalizer).
        let mut total = 0.0;
        for (i, x) in rows.iter().enumerate() {
            let l = gmm.log_joint(x);
            let z = log_sum_exp(&l);
            total += z;
            for (r, v) in resp[i * k..(i + 1) * k].iter_mut().zip(&l) {
                *r = (v - z).exp();
            }
        }
        if step > 0 {
            let ll = total / n as f64;
            let change = trace.last().map(|p: &f64| (ll - p).abs());
            trace.push(ll);
            if change.is_some_and(|c| c < s.tol) {
                converged = true;
                break;
            }
        }
        if step == s.max_iter {
            break;
        }
        // M-step.
        for c in 0..k {
            let nk: f64 = (0..n).map(|i| resp[i * k + c]).sum();
            gmm.weights[c] = nk / n as f64;
            if nk < 1e-10 {
                continue;
            }
            let r = || (0..n).map(|i| resp[i * k + c]).zip(rows);
            let mut mean = vec![0.0; dim];
            for (ri, x) in r() {
                mean.iter_mut().zip(*x).for_each(|(m, xj)| *m += ri * xj);
            }
            mean.iter_mut().for_each(|m| *m /= nk);
            let mut var = vec![0.0; dim];
            for (ri, x) in r() {
                for ((v, xj), m) in var.iter_mut().zip(*x).zip(&mean) {
                    *v += ri * (xj - m).powi(2);
                }
            }
            gmm.variances[c] = var.iter().map(|v| v / nk + s.reg_var).collect();
            gmm.means[c] = mean;
        }
    }
    // A component with no points has weight 0, which `DiagonalGmm` refuses: give it the
    // smallest positive share, renormalized.
    for w in &mut gmm.weights {
        *w = w.max(f64::MIN_POSITIVE);
    }
    let total: f64 = gmm.weights.iter().sum();
    gmm.weights.iter_mut().for_each(|w| *w /= total);
    GmmFit {
        gmm,
        trace,
        converged,
    }
}

/// k-means++ seeding: the first mean a uniform draw of the points, each next one a point
/// drawn with probability proportional to its squared distance to the nearest mean so
/// far (Arthur & Vassilvitskii 2007, §2.2).
fn kmeans_plus_plus(rows: &[&[f64]], k: usize, rng: &mut impl Rng) -> Vec<Vec<f64>> {
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
    let mut means = vec![rows[rng.gen_range(0..rows.len())].to_vec()];
    let mut d2: Vec<f64> = rows.iter().map(|r| dist(r, &means[0])).collect();
    while means.len() < k {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let mut u = rng.gen::<f64>() * total;
            d2.iter()
                .position(|d| {
                    u -= d;
                    u < 0.0
                })
                .unwrap_or(rows.len() - 1)
        } else {
            rng.gen_range(0..rows.len())
        };
        means.push(rows[next].to_vec());
        let m = means.last().map(Vec::as_slice).unwrap_or_default();
        for (d, r) in d2.iter_mut().zip(rows) {
            *d = d.min(dist(r, m));
        }
    }
    means
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    fn blobs(centers: &[[f64; 2]], per: usize, sd: f64, seed: u64) -> Vec<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let noise = Normal::new(0.0, sd).unwrap();
        let mut out = Vec::new();
        for c in centers {
            for _ in 0..per {
                out.extend(c.iter().map(|m| m + noise.sample(&mut rng)));
            }
        }
        out
    }

    /// With one component, EM's answer is the closed form after one step: the sample
    /// mean and the biased sample variance (plus `reg_var`).
    #[test]
    fn one_component_is_the_sample_mean_and_variance() {
        let points = [1.0, 10.0, 2.0, 20.0, 4.0, 60.0];
        let s = GmmSettings {
            components: 1,
            ..GmmSettings::default()
        };
        let fit = DiagonalGmm::fit(&points, 2, &s).unwrap();
        let g = fit.gmm;
        assert_eq!(g.weights, vec![1.0]);
        assert!((g.means[0][0] - 7.0 / 3.0).abs() < 1e-12);
        assert!((g.means[0][1] - 30.0).abs() < 1e-12);
        // Σ (x − 7/3)² / 3 = (16/9 + 1/9 + 25/9) / 3 = 14/9; (400 + 100 + 900) / 3.
        assert!((g.variances[0][0] - (14.0 / 9.0 + 1e-6)).abs() < 1e-12);
        assert!((g.variances[0][1] - (1400.0 / 3.0 + 1e-6)).abs() < 1e-9);
    }

    /// Three separated blobs: the means come back within 4 standard errors (σ/√n_k)
    /// and the weights within 4 standard errors of a proportion; EM's log-likelihood
    /// never decreases.
    #[test]
    fn recovers_separated_blobs_and_never_decreases() {
        let centers = [[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]];
        let (per, sd) = (1000, 0.5);
        let points = blobs(&centers, per, sd, 3);
        let s = GmmSettings {
            components: 3,
            seed: 1,
            ..GmmSettings::default()
        };
        let fit = DiagonalGmm::fit(&points, 2, &s).unwrap();
        assert!(fit.converged);
        for w in fit.trace.windows(2) {
            assert!(w[1] >= w[0] - 1e-12, "EM decreased: {w:?}");
        }
        let se_mean = 4.0 * sd / (per as f64).sqrt();
        let se_weight = 4.0 * ((1.0 / 3.0) * (2.0 / 3.0) / (3 * per) as f64).sqrt();
        for c in &centers {
            let k = fit.gmm.predict(c);
            for ((m, v), cj) in fit.gmm.means[k].iter().zip(&fit.gmm.variances[k]).zip(c) {
                assert!((m - cj).abs() < se_mean, "{:?}", fit.gmm);
                assert!((v.sqrt() - sd).abs() < 0.05);
            }
            assert!((fit.gmm.weights[k] - 1.0 / 3.0).abs() < se_weight);
        }
    }

    /// `log p(x)` and the responsibilities against statrs's Normal densities.
    #[test]
    fn densities_match_statrs() {
        use statrs::distribution::{Continuous, Normal as S};
        let g = DiagonalGmm::new(
            vec![0.3, 0.7],
            vec![vec![-1.0], vec![2.0]],
            vec![vec![0.25], vec![2.25]],
        )
        .unwrap();
        for x in [-3.0, -1.0, 0.4, 2.0, 7.5] {
            let a = 0.3 * S::new(-1.0, 0.5).unwrap().pdf(x);
            let b = 0.7 * S::new(2.0, 1.5).unwrap().pdf(x);
            assert!((g.log_prob(&[x]) - (a + b).ln()).abs() < 1e-12);
            let r = g.responsibilities(&[x]);
            assert!((r[0] - a / (a + b)).abs() < 1e-12 && (r[1] - b / (a + b)).abs() < 1e-12);
        }
    }

    #[test]
    fn refuses_bad_input() {
        let s = GmmSettings::default();
        let two = GmmSettings { components: 2, ..s };
        assert!(matches!(
            DiagonalGmm::fit(&[1.0, 2.0, 3.0], 2, &two),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            DiagonalGmm::fit(&[1.0, f64::NAN], 1, &two),
            Err(Error::InvalidSetting { .. })
        ));
        // More components than points.
        assert!(matches!(
            DiagonalGmm::fit(&[1.0, 2.0], 1, &s),
            Err(Error::InvalidSetting { .. })
        ));
        let zero_reg = GmmSettings {
            reg_var: 0.0,
            ..two
        };
        assert!(matches!(
            DiagonalGmm::fit(&[1.0, 2.0], 1, &zero_reg),
            Err(Error::InvalidSetting { .. })
        ));
        assert!(DiagonalGmm::new(vec![0.5, 0.4], vec![vec![0.0]; 2], vec![vec![1.0]; 2]).is_err());
        assert!(DiagonalGmm::new(vec![1.0], vec![vec![0.0]], vec![vec![0.0]]).is_err());
    }
}
