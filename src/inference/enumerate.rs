//! One discrete latent summed out exactly: the ELBO and the importance-sampled
//! `log p(x)` of a model with an enumerated site (Pyro's `TraceEnum_ELBO` with
//! `config_enumerate` on one site).

use dfdx::prelude::*;

use crate::distributions::{one_hot, Categorical};
use crate::error::{Error, Result};
use crate::inference::conditional::{ConditionalModel, Conditioned};
use crate::inference::elbo::{Elbo, ElboTerms};
use crate::inference::iwae::{log_weights, stream_log_weights, LogLikelihood};
use crate::kernels::ops::{cst, repeat_rows, to_f64_vec, Events, PerExample, Real};

/// A latent-variable model with a discrete latent `y ∈ {1, …, K}` that is summed out
/// rather than sampled, over a continuous model given `y`:
///
/// `p(x, y, z) = p(y) p(z | y) p(x | z, y)`, guide `q(y | x) q(z | x, y)`.
///
/// The part given `y` is a [`ConditionalModel`] whose condition is `y` one-hot
/// (`Y = K`); this trait adds the discrete site's guide and prior. The Gaussian-mixture
/// VAE (`latent_models::GmVae`) is one; Kingma et al. 2014's M2 without labels is
/// another.
pub trait EnumeratedModel<E: Real, D: Device<E>, T: Tape<E, D>>: ConditionalModel<E, D, T> {
    /// `q(y | x)`, logits of shape `(batch, K)`.
    ///
    /// # Errors
    /// The network's errors.
    fn site_guide(&self, x: Events<Self::X, E, D, T>) -> Result<Categorical<Self::Y, E, D, T>>;

    /// `p(y)`, logits of shape `(batch, K)`.
    ///
    /// # Errors
    /// A learned prior's errors.
    fn site_prior(&self, batch: usize, device: &D) -> Result<Categorical<Self::Y, E, D, T>>;
}

/// The ELBO with the discrete site enumerated (Kingma et al. 2014, eq. 7 without the
/// label; Pyro's `TraceEnum_ELBO`):
///
/// `ELBO(x) = Σ_k q(k | x) [ELBO(x | k) + log p(k) − log q(k | x)]`,
///
/// with `ELBO(x | k) = E_{q(z|x,k)}[log p(x | z, k)] − KL(q(z | x, k) ‖ p(z | k))`
/// estimated by the inner [`Elbo`] for all `K` values at once (a batch of `K · batch`
/// rows). No draw of `y` is made, so `q(y | x)` gets the exact gradient: no score
/// function, no relaxation. β weights both KL terms. Terms with `q(k | x)` below
/// [`SKIP_BELOW`] (1e-12) are left out of the objective's sum (see there); the
/// reported values keep them.
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::inference::enumerate::EnumeratedElbo;
/// use latent::Elbo;
///
/// let e = EnumeratedElbo::new(Elbo::new(1)?);
/// assert_eq!(e.inner().samples(), 1);
/// # Ok::<(), latent::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct EnumeratedElbo {
    inner: Elbo,
}

impl EnumeratedElbo {
    /// Enumerates the site around `inner`, the ELBO of the model given `y`.
    pub fn new(inner: Elbo) -> Self {
        Self { inner }
    }

    /// The ELBO given `y`.
    pub fn inner(&self) -> Elbo {
        self.inner
    }

    /// The same with β replaced (the KL warm-up's `β · w`).
    pub fn with_inner(self, inner: Elbo) -> Self {
        Self { inner }
    }

    /// The enumerated ELBO of `model` on `x` of shape `(batch, X)`: its objective (with
    /// β) carrying the tape, and the ELBO, reconstruction and KL (both sites) without,
    /// each `(batch,)`, nats.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `q(y | x)` or `p(y)` has another batch or width than
    /// `Y`; the model's errors.
    pub fn estimate<X: Dim, Y: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<ElboTerms<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: EnumeratedModel<E, D, T, X = X, Y = Y, Z = Z>,
    {
        let batch = x.shape().0;
        let device = x.device().clone();
        let x_data = x.retaped::<NoneTape>();
        let log_qy = model.site_guide(x)?.log_probs();
        let width = log_qy.shape().1;
        let k = width.size();
        let log_py = model.site_prior(batch, &device)?.log_probs();
        crate::distributions::check_shape(
            "EnumeratedModel::site_prior",
            log_qy.shape(),
            log_py.shape(),
        )?;
        let ys = every_value(&device, width, batch);
        let given = Conditioned::new(model, ys);
        let terms = self
            .inner
            .estimate(&given, repeat_rows(x_data, k).retaped::<T>())?;
        let beta = cst::<E>(self.inner.beta());

        // (K·batch,) sample-major → (batch, K): example b's value k at [b, k].
        let by_example = |t: PerExample<E, D, T>| -> Tensor<(usize, Y), E, D, T> {
            t.reshape_like(&(k, batch))
                .permute::<(usize, usize), Axes2<1, 0>>()
                .reshape_like(&(batch, width))
        };
        let q_host: Vec<f64> = to_f64_vec(&log_qy).iter().map(|v| v.exp()).collect();
        let qy = log_qy.with_empty_tape().exp();
        let site_kl = (qy.with_empty_tape() * (log_qy - log_py)).sum::<(usize,), Axis<1>>();
        let site_kl_value = to_f64_vec(&site_kl);
        // Values of q(k | x) below SKIP_BELOW are left out of the sum (weight 0): their
        // share is under 1e-9 nats at an ELBO's magnitude, and in f32 their weights
        // become subnormal on the way back through the networks, which slowed training
        // tenfold (the matrix products' subnormal arithmetic).
        let keep: Vec<E> = q_host
            .iter()
            .map(|&q| if q >= SKIP_BELOW { E::one() } else { E::zero() })
            .collect();
        let keep = device.tensor_from_vec(keep, (batch, width));
        let conditional = (qy * keep * by_example(terms.objective)).sum::<(usize,), Axis<1>>();
        let objective = conditional - site_kl * beta;

        // The reported values: the same sums over k, on the host, without tapes.
        let weigh = |v: &PerExample<E, D>, sign: f64| -> PerExample<E, D> {
            let v = to_f64_vec(v);
            let out: Vec<E> = (0..batch)
                .map(|b| {
                    let mixed: f64 = (0..k).map(|j| q_host[b * k + j] * v[j * batch + b]).sum();
                    cst::<E>(mixed + sign * site_kl_value[b])
                })
                .collect();
            device.tensor_from_vec(out, (batch,))
        };
        Ok(ElboTerms {
            objective,
            elbo: weigh(&terms.elbo, -1.0),
            reconstruction: weigh(&terms.reconstruction, 0.0),
            kl: weigh(&terms.kl, 1.0),
        })
    }
}

/// The smallest `q(k | x)` whose term enters [`EnumeratedElbo`]'s objective.
pub const SKIP_BELOW: f64 = 1e-12;

/// Every value of the site for every example: `K · batch` one-hot rows, row
/// `k · batch + b` holding value `k` (the sample-major layout of the estimators).
fn every_value<Y: Dim, E: Real, D: Device<E>>(
    device: &D,
    width: Y,
    batch: usize,
) -> Events<Y, E, D> {
    let classes: Vec<usize> = (0..width.size())
        .flat_map(|k| std::iter::repeat_n(k, batch))
        .collect();
    one_hot(device, width, &classes)
}

/// `log p(x)` for each example of `x` (shape `(batch, X)`), with the discrete site
/// summed exactly and `z` importance-sampled from `q(z | x, y)` with `samples` draws
/// for every value of `y` (in chunks of at most `chunk` draws):
///
/// `p̂(x) = (1/S) Σ_s Σ_k p(k) p(x, z_{s,k} | k) / q(z_{s,k} | x, k)`, `z_{s,k} ~ q(z | x, k)`.
///
/// Each `s` is one unbiased estimate `W_s = Σ_k p(k) w_{s,k}` of `p(x)`, so the
/// delta-method standard error is that of [`crate::log_marginal_likelihood`] over the
/// `W_s`.
///
/// # Errors
/// [`Error::InvalidSetting`] if `samples` or `chunk` is 0; [`Error::NonFinite`] for a
/// NaN or `+∞` weight; the model's errors.
pub fn enumerated_log_marginal_likelihood<X: Dim, Y: Dim, Z: Dim, E, D, M>(
    model: &M,
    x: &Events<X, E, D>,
    samples: usize,
    chunk: usize,
) -> Result<LogLikelihood>
where
    E: Real,
    D: Device<E> + 'static,
    M: EnumeratedModel<E, D, NoneTape, X = X, Y = Y, Z = Z>,
{
    if samples == 0 || chunk == 0 {
        return Err(Error::invalid(
            "k",
            format!("samples ({samples}) and chunk ({chunk}) must be at least 1"),
        ));
    }
    let batch = x.shape().0;
    let device = x.device().clone();
    let prior = model.site_prior(batch, &device)?;
    let width = prior.logits.shape().1;
    let k = width.size();
    let log_py = to_f64_vec(&prior.log_probs());
    let given = Conditioned::new(model, every_value(&device, width, batch));
    let x_rep = repeat_rows(x.clone(), k);
    stream_log_weights(samples, chunk, batch, |c| {
        // (c, K·batch): draw s of value j for example b at [s, j·batch + b]; each draw s
        // of example b gives log W_s = log Σ_j p(j) w_{s,j}.
        let lw = to_f64_vec(&log_weights(&given, x_rep.clone(), c)?);
        Ok((0..c * batch)
            .map(|i| {
                let (s, b) = (i / batch, i % batch);
                let terms: Vec<f64> = (0..k)
                    .map(|j| log_py[b * k + j] + lw[s * k * batch + j * batch + b])
                    .collect();
                let m = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if terms.iter().any(|l| l.is_nan()) {
                    f64::NAN
                } else if m.is_finite() {
                    m + terms.iter().map(|l| (l - m).exp()).sum::<f64>().ln()
                } else {
                    // −∞ (every weight 0) as it is; NaN and +∞ for the stream to refuse.
                    m
                }
            })
            .collect())
    })
}
