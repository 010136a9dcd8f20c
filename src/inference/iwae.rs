//! Importance-weighted estimators: the IWAE bound (Burda et al. 2015) and the
//! importance-sampled estimate of `log p(x)`, streamed in chunks of samples.

use dfdx::prelude::*;

use crate::distributions::Distribution;
use crate::error::{Error, Result};
use crate::inference::model::LatentVariableModel;
use crate::inference::score::summed_over_draws;
use crate::kernels::ops::{detach, repeat_rows, to_f64_vec, Events, PerExample, Real};

/// The per-sample log importance weights
/// `log w_s = log p(x | z_s) + log p(z_s) − log q(z_s | x)`, `z_s ~ q(z | x)`
/// (reparameterized), for `k` samples per example, drawn as one batch of `k · batch`
/// latents. Shape `(k, batch)`, nats. The closed-form KL never enters here.
///
/// For a discrete guide the weights carry the pathwise gradient only (no score term):
/// train such a model through [`ImportanceWeighted`] or [`crate::Vimco`], which add it.
///
/// # Errors
/// [`Error::InvalidSetting`] if `k == 0`; the model's errors.
pub fn log_weights<X: Dim, Z: Dim, E, D, T, M>(
    model: &M,
    x: Events<X, E, D, T>,
    k: usize,
) -> Result<Tensor<(usize, usize), E, D, T>>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    M: LatentVariableModel<E, D, T, X = X, Z = Z>,
{
    let (lw, score) = scored_log_weights(model, x, k)?;
    // The score's tape ends here; its operations are the guide's own and lead nowhere else.
    drop(score);
    Ok(lw)
}

/// Log weights of shape `(k, batch)` and the draws' score (see [`scored_log_weights`]).
pub(crate) type ScoredWeights<E, D, T> = (
    Tensor<(usize, usize), E, D, T>,
    Option<Tensor<(usize, usize), E, D, T>>,
);

/// [`log_weights`] with the score `log q(z_s | x)` of a discrete guide's draws, shape
/// `(k, batch)` on its own tape (`None` for a reparameterized guide).
pub(crate) fn scored_log_weights<X: Dim, Z: Dim, E, D, T, M>(
    model: &M,
    x: Events<X, E, D, T>,
    k: usize,
) -> Result<ScoredWeights<E, D, T>>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
    M: LatentVariableModel<E, D, T, X = X, Z = Z>,
{
    if k == 0 {
        return Err(Error::invalid(
            "k",
            "importance sampling needs at least 1 sample",
        ));
    }
    let batch = x.shape().0;
    let device = x.device().clone();
    let x_rep = repeat_rows(x.retaped::<NoneTape>(), k).retaped::<T>();
    let q = model.guide(x)?;
    let p = model.prior(batch, &device)?;
    let d = crate::distributions::draws::draw(q, p, k)?;
    let log_lik = model.likelihood(d.z)?.log_prob(x_rep)?;
    let lw = (log_lik + d.log_p - d.log_q).reshape_like(&(k, batch));
    Ok((lw, d.score.map(|s| s.reshape_like(&(k, batch)))))
}

/// The importance-weighted bound of Burda et al. 2015 (eq. 8):
///
/// `IWAE_k(x) = E[log (1/k) Σ_{s=1}^{k} w_s]`, `w_s = p(x, z_s) / q(z_s | x)`,
///
/// with `ELBO = IWAE_1 ≤ IWAE_k ≤ IWAE_{k+1} ≤ log p(x)` (their Theorem 1). The
/// log-sum-exp subtracts the maximum. Trainable: its gradient is the reparameterized
/// gradient of the bound; for a discrete guide, the score-function gradient
/// `Σ_s IWAE_k · ∇_φ log q(z_s | x)` is added without a baseline (the estimator that
/// [`crate::Vimco`] improves with its leave-one-out baselines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportanceWeighted {
    /// The number of importance samples per example, `k ≥ 1`.
    pub k: usize,
}

impl ImportanceWeighted {
    /// The bound with `k` samples.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `k == 0`.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::{Elbo, ImportanceWeighted, KlEstimator};
    /// use latent_models::LinearGaussian;
    ///
    /// let dev = Cpu::default();
    /// let model: LinearGaussian<Const<2>, Const<1>, f64, Cpu> =
    ///     LinearGaussian::new(&dev, (Const, Const), &[1.0, 0.5], &[0.0, 0.0], 0.5)?;
    /// let x = [0.8, -0.3];
    /// let batch = || dev.tensor_from_vec(x.to_vec(), (1, Const::<2>));
    /// let log_px = model.exact_log_marginal(&x)?;
    /// let elbo = Elbo::new(2000)?.with_kl(KlEstimator::MonteCarlo).estimate(&model, batch())?;
    /// let iwae = ImportanceWeighted::new(2000)?.estimate(&model, batch())?;
    /// // E[ELBO] ≤ E[IWAE_k] ≤ log p(x) (Burda et al. 2015, Theorem 1); one estimate of
    /// // each lies within Monte Carlo noise of that.
    /// let (e, w) = (elbo.elbo.as_vec()[0], iwae.as_vec()[0]);
    /// assert!(e < w && w < log_px + 0.05, "{e} < {w} < {log_px}");
    /// # Ok::<(), latent::Error>(())
    /// ```
    pub fn new(k: usize) -> Result<Self> {
        if k == 0 {
            return Err(Error::invalid("k", "the IWAE bound needs k ≥ 1"));
        }
        Ok(Self { k })
    }

    /// `IWAE_k(x)` per example, shape `(batch,)`, nats, carrying `x`'s tape.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `k == 0`; the model's errors.
    pub fn estimate<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        let (lw, score) = scored_log_weights(model, x, self.k)?;
        let bound =
            lw.logsumexp::<(usize,), Axis<0>>() - E::from_usize(self.k).unwrap_or_default().ln();
        Ok(match score {
            None => bound,
            Some(score) => {
                let (k, b) = *score.shape();
                let signal = detach(&bound)
                    .broadcast_like::<_, Axis<0>>(&(k, b))
                    .reshape_like(&(k * b,));
                bound + summed_over_draws(score, signal)
            }
        })
    }
}

/// An importance-sampled estimate of `log p(x)` per example, with its Monte Carlo
/// standard error.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogLikelihood {
    /// `log p̂(x) = log (1/k) Σ_s w_s` per example, nats.
    pub log_px: Vec<f64>,
    /// The delta-method standard error of each estimate,
    /// `sd(w) / (√k · mean(w))`, nats.
    pub stderr: Vec<f64>,
    /// The number of samples `k` per example.
    pub k: usize,
}

/// Streaming log-sum-exp with the running sums needed for the standard error:
/// `S₁ = Σ e^{l − m}`, `S₂ = Σ e^{2(l − m)}` for the running maximum `m`.
#[derive(Clone, Copy)]
struct Accumulator {
    max: f64,
    s1: f64,
    s2: f64,
}

impl Accumulator {
    const EMPTY: Self = Self {
        max: f64::NEG_INFINITY,
        s1: 0.0,
        s2: 0.0,
    };

    fn push(&mut self, l: f64) {
        if l > self.max {
            let r = (self.max - l).exp();
            self.s1 *= r;
            self.s2 *= r * r;
            self.max = l;
        }
        let e = (l - self.max).exp();
        self.s1 += e;
        self.s2 += e * e;
    }

    fn finish(&self, k: usize) -> (f64, f64) {
        let kf = k as f64;
        let mean = self.s1 / kf;
        let var = (self.s2 / kf - mean * mean).max(0.0) * kf / (kf - 1.0).max(1.0);
        (self.max + mean.ln(), (var / kf).sqrt() / mean)
    }
}

/// Estimates `log p(x)` for each example of `x` (shape `(batch, X)`) by importance
/// sampling with `k` samples from the guide (Burda et al. 2015, §5; Rezende et al.
/// 2014, Appendix E), drawn in chunks of at most `chunk` samples so that memory is
/// bounded by `chunk · batch` latents and decoder outputs whatever `k` is.
///
/// The chunks draw from the device generator in the same order as one unchunked draw,
/// so the estimate does not depend on `chunk` beyond floating-point rounding.
///
/// # Errors
/// [`Error::InvalidSetting`] if `k` or `chunk` is 0; [`Error::NonFinite`] if a log
/// weight is NaN or `+∞`; the model's errors.
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::log_marginal_likelihood;
/// use latent_models::LinearGaussian;
///
/// let dev = Cpu::default();
/// let model: LinearGaussian<Const<2>, Const<1>, f64, Cpu> =
///     LinearGaussian::new(&dev, (Const, Const), &[1.0, 0.5], &[0.0, 0.0], 0.5)?;
/// let x = [0.8, -0.3];
/// let ll = log_marginal_likelihood(&model, &dev.tensor_from_vec(x.to_vec(), (1, Const::<2>)), 5000, 1000)?;
/// let exact = model.exact_log_marginal(&x)?;
/// assert!((ll.log_px[0] - exact).abs() < 5.0 * ll.stderr[0] + 1e-3);
/// # Ok::<(), latent::Error>(())
/// ```
pub fn log_marginal_likelihood<X: Dim, Z: Dim, E, D, M>(
    model: &M,
    x: &Events<X, E, D>,
    k: usize,
    chunk: usize,
) -> Result<LogLikelihood>
where
    E: Real,
    D: Device<E> + 'static,
    M: LatentVariableModel<E, D, NoneTape, X = X, Z = Z>,
{
    if k == 0 || chunk == 0 {
        return Err(Error::invalid(
            "k",
            format!("k ({k}) and chunk ({chunk}) must be at least 1"),
        ));
    }
    stream_log_weights(k, chunk, x.shape().0, |c| {
        Ok(to_f64_vec(&log_weights(model, x.clone(), c)?))
    })
}

/// Draws `k` log importance weights per example in chunks of at most `chunk` (both at
/// least 1), `weights(c)` returning `c · batch` of them (draw `s` of example `b` at
/// `s · batch + b`), and streams them into each example's estimate of `log p(x)` with
/// its standard error.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or `+∞` weight; the errors of `weights`.
pub(crate) fn stream_log_weights(
    k: usize,
    chunk: usize,
    batch: usize,
    mut weights: impl FnMut(usize) -> Result<Vec<f64>>,
) -> Result<LogLikelihood> {
    let mut acc = vec![Accumulator::EMPTY; batch];
    let mut done = 0;
    while done < k {
        let c = chunk.min(k - done);
        for (i, l) in weights(c)?.into_iter().enumerate() {
            if l.is_nan() || l == f64::INFINITY {
                return Err(Error::NonFinite {
                    what: "log importance weight".into(),
                    epoch: 0,
                    step: 0,
                    value: l,
                });
            }
            acc[i % batch].push(l);
        }
        done += c;
    }
    let (log_px, stderr) = acc.iter().map(|a| a.finish(k)).unzip();
    Ok(LogLikelihood { log_px, stderr, k })
}
