//! Evaluating a trained model the way papers report it: ELBO and its parts, the
//! importance-sampled negative log-likelihood, KL per latent dimension and active
//! units.

use dfdx::prelude::*;

use crate::data::{Conditioning, Dataset};
use crate::distributions::Distribution;
use crate::error::{Error, Result};
use crate::inference::conditional::{ConditionalModel, Conditioned};
use crate::inference::elbo::Elbo;
use crate::inference::enumerate::{enumerated_log_marginal_likelihood, EnumeratedModel};
use crate::inference::iwae::log_marginal_likelihood;
use crate::inference::model::LatentVariableModel;
use crate::kernels::ops::{to_f64_vec, Events, Real};
use crate::kl::registered_kl_per_dimension;
use crate::train::threads::map_batches;
use crate::train::threads::ThreadSafe;

/// The mean ELBO and its parts over a data set, in nats per image.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalReport {
    /// Mean ELBO (negative; higher is better).
    pub elbo: f64,
    /// Mean `E_q[log p(x|z)]`.
    pub reconstruction: f64,
    /// Mean `KL(q(z|x) ‖ p(z))`.
    pub kl: f64,
    /// Number of images evaluated.
    pub n: usize,
}

/// Evaluates `elbo` on all of `data` without gradients, in batches of `batch_size`.
/// `data` is used as given (binarize it first if the model was trained on binary data).
///
/// # Errors
/// [`Error::ShapeMismatch`] if the images do not have `X` pixels; [`Error::NonFinite`]
/// (epoch 0) if the ELBO is NaN or infinite; errors of the estimator.
pub fn evaluate<X: Dim + Default, Z: Dim, E, D, M>(
    model: &M,
    elbo: &Elbo,
    data: &Dataset,
    device: &D,
    batch_size: usize,
) -> Result<EvalReport>
where
    E: Real,
    D: Device<E> + 'static,
    M: LatentVariableModel<E, D, NoneTape, X = X, Z = Z>,
{
    evaluate_batches(data.len(), batch_size, |chunk| {
        let x = data.batch::<X, E, D>(device, chunk, None)?;
        elbo.estimate(model, x)
    })
}

/// Sums the ELBO terms that `estimate` returns for each batch of `0..n` into the means of
/// an [`EvalReport`].
///
/// # Errors
/// [`Error::InvalidSetting`] for `batch_size == 0`; [`Error::NonFinite`] (epoch 0) for a
/// non-finite mean ELBO; the errors of `estimate`.
pub fn evaluate_batches<E, D, F>(n: usize, batch_size: usize, mut estimate: F) -> Result<EvalReport>
where
    E: Real,
    D: Device<E>,
    F: FnMut(&[usize]) -> Result<crate::ElboTerms<E, D, NoneTape>>,
{
    let _flush = crate::kernels::FlushSubnormals::new();
    let (mut e, mut r, mut k) = (0.0, 0.0, 0.0);
    for chunk in batches(n, batch_size)? {
        let terms = estimate(&chunk)?;
        e += to_f64_vec(&terms.elbo).iter().sum::<f64>();
        r += to_f64_vec(&terms.reconstruction).iter().sum::<f64>();
        k += to_f64_vec(&terms.kl).iter().sum::<f64>();
    }
    let m = n.max(1) as f64;
    EvalReport {
        elbo: e / m,
        reconstruction: r / m,
        kl: k / m,
        n,
    }
    .checked("test ELBO")
}

impl EvalReport {
    /// The report, if its ELBO is finite.
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming `what` (epoch and step 0: the trainer names the
    /// epoch an evaluation followed) for a NaN or infinite ELBO.
    pub fn checked(self, what: &str) -> Result<Self> {
        if self.elbo.is_finite() {
            Ok(self)
        } else {
            Err(Error::NonFinite {
                what: what.into(),
                epoch: 0,
                step: 0,
                value: self.elbo,
            })
        }
    }
}

/// Settings of [`report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvalOptions {
    /// Importance samples per image for the NLL (papers use 5000; 1000 is common).
    pub k: usize,
    /// Evaluate the NLL on the first `n` images only (`None`: all). The ELBO, KL and
    /// active units always use the whole split.
    pub n: Option<usize>,
    /// Images per batch.
    pub batch: usize,
    /// Importance samples per chunk: memory grows with `batch · chunk`, not `k`. The
    /// estimate does not depend on it (the samples are drawn in the same order). The
    /// default, 50, keeps each of a 784-pixel model's `batch · chunk` rows tensors
    /// (15.7 MB at 100 images) below glibc's 32 MB limit for reusing freed heap memory:
    /// with 100, every chunk's tensors were fresh mappings, zeroed page by page by the
    /// kernel, and the evaluation took 13% longer (k = 1000, Zen 2).
    pub chunk: usize,
    /// Threads for the NLL on the CPU (0: one per available core; always 1 off the
    /// `Cpu` device): batch `j` runs on thread `j mod threads`, thread `t ≥ 1` drawing
    /// its samples from a `Cpu` device seeded from the evaluation device's generator.
    /// The same count gives the same result; the sum over batches is in batch order.
    #[serde(default)]
    pub threads: usize,
    /// Show a progress bar of the NLL's batches with the time left on stderr (rank 0
    /// only across processes).
    #[serde(default)]
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            k: 1000,
            n: None,
            batch: 100,
            chunk: 50,
            threads: 0,
            progress: false,
        }
    }
}

/// The importance-sampled test NLL: `−(1/n) Σ_i log p̂(x_i)`, nats per image.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NllReport {
    /// Mean negative log-likelihood (positive), nats per image.
    pub nll: f64,
    /// Monte Carlo standard error of `nll`: `√(Σ_i se_i²) / n` from the per-image
    /// delta-method errors.
    pub stderr: f64,
    /// Samples per image.
    pub k: usize,
    /// Images evaluated.
    pub n: usize,
}

/// Everything [`report`] measures.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvaluationReport {
    /// The ELBO and its parts (whole split, nats per image).
    pub elbo: EvalReport,
    /// The importance-sampled NLL.
    pub nll: NllReport,
    /// Mean `KL(q(z_j|x) ‖ p(z_j))` per latent dimension `j`, nats; `None` where the
    /// pair has no per-dimension closed form.
    pub kl_per_dim: Option<Vec<f64>>,
    /// `Cov_x(E_q[z_j | x])` per latent dimension.
    pub posterior_mean_variance: Vec<f64>,
    /// Dimensions with `Cov_x(E_q[z_j|x]) > 0.01` (Burda et al. 2015, §5.2).
    pub active_units: usize,
}

/// The threshold of Burda et al. 2015 for an active unit.
pub const ACTIVE_UNIT_THRESHOLD: f64 = 0.01;

/// The number of active units: dimensions whose `Cov_x(E_q[z_j|x])` (as returned by
/// [`posterior_mean_variance`]) exceeds [`ACTIVE_UNIT_THRESHOLD`].
pub fn active_units(posterior_mean_variance: &[f64]) -> usize {
    posterior_mean_variance
        .iter()
        .filter(|&&v| v > ACTIVE_UNIT_THRESHOLD)
        .count()
}

/// The indices `0..n` in consecutive batches of `batch` (the last one shorter): the
/// order every evaluation loop over a data set walks in.
///
/// # Errors
/// [`Error::InvalidSetting`] for `batch == 0`.
pub fn batches(n: usize, batch: usize) -> Result<Vec<Vec<usize>>> {
    if batch == 0 {
        return Err(Error::invalid("batch", "must be at least 1"));
    }
    Ok((0..n)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(<[usize]>::to_vec)
        .collect())
}

/// The importance-sampled NLL over the first `n` images of `data` (all if `None`),
/// with [`log_marginal_likelihood`] per batch.
///
/// # Errors
/// As [`log_marginal_likelihood`]; [`Error::InvalidSetting`] for an empty selection.
pub fn test_nll<X: Dim + Default, Z: Dim, E, D, M>(
    model: &M,
    data: &Dataset,
    device: &D,
    options: &EvalOptions,
) -> Result<NllReport>
where
    E: Real,
    D: Device<E> + ThreadSafe + 'static,
    M: LatentVariableModel<E, D, NoneTape, X = X, Z = Z> + ThreadSafe,
{
    nll_over_batches(data.len(), options, device, |idx, dev| {
        let x = data.batch::<X, E, D>(dev, idx, None)?;
        log_marginal_likelihood(model, &x, options.k, options.chunk)
    })
}

/// The importance-sampled conditional NLL `−log p(x | y)` of a [`ConditionalModel`]
/// over the first `n` images of `data` (all if `None`), with `x` and `y` split from each
/// image by `conditioning` (e.g. the completion NLL of the bottom half given the top
/// half, nats per image).
///
/// # Errors
/// As [`test_nll`].
pub fn test_nll_conditional<X: Dim + Default, Y: Dim, Z: Dim, E, D, M, C>(
    model: &M,
    data: &Dataset,
    device: &D,
    options: &EvalOptions,
    conditioning: &C,
) -> Result<NllReport>
where
    E: Real,
    D: Device<E> + ThreadSafe + 'static,
    M: ConditionalModel<E, D, NoneTape, X = X, Y = Y, Z = Z> + ThreadSafe,
    C: Conditioning<X, Y> + ThreadSafe,
{
    nll_over_batches(data.len(), options, device, |idx, dev| {
        let (x, y) = conditioning.tensors::<E, D>(data, idx, None, dev)?;
        let bound = Conditioned::new(model, y);
        log_marginal_likelihood(&bound, &x, options.k, options.chunk)
    })
}

/// The importance-sampled NLL `−log p(x)` of an [`EnumeratedModel`] over the first `n`
/// images of `data` (all if `None`): its discrete site summed exactly, `z` sampled `k`
/// times per value of the site
/// ([`enumerated_log_marginal_likelihood`]).
/// Each batch draws `K · batch · chunk` latents: lower `options.chunk` (or `batch`) by
/// `K` to keep the memory of [`test_nll`].
///
/// # Errors
/// As [`test_nll`].
pub fn test_nll_enumerated<X: Dim + Default, Y: Dim, Z: Dim, E, D, M>(
    model: &M,
    data: &Dataset,
    device: &D,
    options: &EvalOptions,
) -> Result<NllReport>
where
    E: Real,
    D: Device<E> + ThreadSafe + 'static,
    M: EnumeratedModel<E, D, NoneTape, X = X, Y = Y, Z = Z> + ThreadSafe,
{
    nll_over_batches(data.len(), options, device, |idx, dev| {
        let x = data.batch::<X, E, D>(dev, idx, None)?;
        enumerated_log_marginal_likelihood(model, &x, options.k, options.chunk)
    })
}

fn nll_over_batches<E, D, F>(
    len: usize,
    options: &EvalOptions,
    device: &D,
    log_px: F,
) -> Result<NllReport>
where
    E: Real,
    D: Device<E> + ThreadSafe + 'static,
    F: Fn(&[usize], &D) -> Result<crate::LogLikelihood> + ThreadSafe,
{
    let n = options.n.unwrap_or(len).min(len);
    if n == 0 {
        return Err(Error::invalid("n", "no images to evaluate"));
    }
    let _flush = crate::kernels::FlushSubnormals::new();
    let batches = batches(n, options.batch)?;
    // Across processes each rank takes a contiguous share of the batches, with its own
    // random stream; the sums are reduced.
    let world = crate::distributed::world();
    let (mine, rank_device);
    let on_cpu =
        crate::kernels::cpu::is_cpu::<E, D, f32>() || crate::kernels::cpu::is_cpu::<E, D, f64>();
    let device = if world.size() > 1 && on_cpu {
        mine = &batches[crate::distributed::shard(batches.len(), world.rank(), world.size())];
        rank_device = crate::train::threads::replica_device::<D>(device.random_u64(), world.rank());
        &rank_device
    } else {
        mine = &batches[crate::distributed::shard(batches.len(), world.rank(), world.size())];
        device
    };
    let bar = if options.progress && world.rank() == 0 {
        let bar = indicatif::ProgressBar::new(mine.len() as u64);
        let style = indicatif::ProgressStyle::with_template(
            "NLL (k = {msg}) [{bar:30}] {pos}/{len} batches ({elapsed} so far, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(options.k.to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let results = map_batches(mine, options.threads, device, |idx, dev| {
        let ll = log_px(idx, dev)?;
        bar.inc(1);
        Ok((
            ll.log_px.iter().sum::<f64>(),
            ll.stderr.iter().map(|s| s * s).sum::<f64>(),
        ))
    });
    bar.finish_and_clear();
    let results = crate::distributed::agree(&*world, "in the NLL evaluation", results)?;
    let mut sums = [0.0, 0.0];
    for (s, v) in results {
        sums[0] += s;
        sums[1] += v;
    }
    world.all_reduce_sum_f64(&mut sums)?;
    let [sum, var] = sums;
    Ok(NllReport {
        nll: -sum / n as f64,
        stderr: var.sqrt() / n as f64,
        k: options.k,
        n,
    })
}

/// `Cov_x(E_q[z_j | x])` per latent dimension over `data`, the statistic behind active
/// units (Burda et al. 2015, §5.2), using [`Distribution::mean`] of the guide.
///
/// # Errors
/// The model's errors; [`Error::InvalidSetting`] for an empty data set.
pub fn posterior_mean_variance<X: Dim + Default, Z: Dim, E, D, M>(
    model: &M,
    data: &Dataset,
    device: &D,
    batch: usize,
) -> Result<Vec<f64>>
where
    E: Real,
    D: Device<E> + 'static,
    M: LatentVariableModel<E, D, NoneTape, X = X, Z = Z>,
{
    if data.is_empty() {
        return Err(Error::invalid("data", "no images to evaluate"));
    }
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    for idx in batches(data.len(), batch)? {
        let x: Events<X, E, D> = data.batch(device, &idx, None)?;
        let mean = model.guide(x)?.mean();
        let z = mean.shape().1.size().max(1);
        s1.resize(z, 0.0);
        s2.resize(z, 0.0);
        for row in to_f64_vec(&mean).chunks(z) {
            for j in 0..z {
                s1[j] += row[j];
                s2[j] += row[j] * row[j];
            }
        }
    }
    let n = data.len() as f64;
    Ok((0..s1.len())
        .map(|j| (s2[j] / n - (s1[j] / n).powi(2)).max(0.0) * n / (n - 1.0).max(1.0))
        .collect())
}

/// Mean closed-form `KL(q(z_j|x) ‖ p(z_j))` per latent dimension over `data`, nats;
/// `None` when the model's guide and prior have no per-dimension closed form (see
/// [`registered_kl_per_dimension`]), e.g. against a mixture prior.
///
/// # Errors
/// The model's errors.
pub fn kl_per_dimension<X: Dim + Default, Z: Dim, E, D, M>(
    model: &M,
    data: &Dataset,
    device: &D,
    batch: usize,
) -> Result<Option<Vec<f64>>>
where
    E: Real,
    D: Device<E> + 'static,
    M: LatentVariableModel<E, D, NoneTape, X = X, Z = Z>,
{
    let mut s = Vec::new();
    for idx in batches(data.len(), batch)? {
        let x: Events<X, E, D> = data.batch(device, &idx, None)?;
        let q = model.guide(x)?;
        let p = model.prior(idx.len(), device)?;
        let Some(kl) = registered_kl_per_dimension::<Z, E, D, NoneTape, _, _>(&q, &p) else {
            return Ok(None);
        };
        let kl = kl?;
        let z = kl.shape().1.size().max(1);
        s.resize(z, 0.0);
        for row in to_f64_vec(&kl).chunks(z) {
            for j in 0..z {
                s[j] += row[j];
            }
        }
    }
    let n = data.len().max(1) as f64;
    Ok(Some(s.into_iter().map(|v| v / n).collect()))
}

/// The full evaluation of a model on a (prepared) test split: the ELBO and its parts,
/// the importance-sampled NLL (`options.k` samples, first `options.n` images), KL per
/// latent dimension and active units.
///
/// # Errors
/// As the functions it calls.
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::data::embedded;
/// use latent::eval::{report, EvalOptions};
///
/// let dev = Cpu::default();
/// let model = latent_models::mlp_vae::<_, _, _, f32, _>(&dev, (784, 32, 4))?;
/// let test = embedded()?.test.take(50);
/// let r = report(&model, &test, &dev, &EvalOptions { k: 20, n: Some(20), ..EvalOptions::default() })?;
/// // The importance-sampled log p(x) is tighter than the ELBO (up to Monte Carlo noise),
/// // and the per-dimension KLs of a diagonal Normal guide add up to the KL.
/// assert!(-r.nll.nll > r.elbo.elbo - 1.0);
/// let kl: f64 = r.kl_per_dim.as_ref().unwrap().iter().sum();
/// assert!((kl - r.elbo.kl).abs() < 1e-3 * r.elbo.kl.abs().max(1.0));
/// assert!(r.active_units <= 4);
/// # Ok::<(), latent::Error>(())
/// ```
pub fn report<X: Dim + Default, Z: Dim, E, D, M>(
    model: &M,
    data: &Dataset,
    device: &D,
    options: &EvalOptions,
) -> Result<EvaluationReport>
where
    E: Real,
    D: Device<E> + ThreadSafe + 'static,
    M: LatentVariableModel<E, D, NoneTape, X = X, Z = Z> + ThreadSafe,
{
    let elbo = evaluate(model, &Elbo::default(), data, device, options.batch)?;
    let nll = test_nll(model, data, device, options)?;
    let kl_per_dim = kl_per_dimension(model, data, device, options.batch)?;
    let posterior_mean_variance = posterior_mean_variance(model, data, device, options.batch)?;
    let active_units = active_units(&posterior_mean_variance);
    Ok(EvaluationReport {
        elbo,
        nll,
        kl_per_dim,
        posterior_mean_variance,
        active_units,
    })
}
