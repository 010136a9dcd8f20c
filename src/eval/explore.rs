//! Looking into a trained model: encoding a data set, decoding latents, reconstructing
//! images, and the latent paths behind interpolation and traversal pictures (Kingma &
//! Welling 2014, Fig. 4; Higgins et al. 2017, "β-VAE", Fig. 1 and §4).
//!
//! Latents here are host-side `f64` rows (`n × Z`, row-major), the form pictures and
//! CSV files need; [`decode`] takes them back to the device.

use dfdx::prelude::*;

use crate::data::Dataset;
use crate::distributions::{Distribution, Normal};
use crate::error::{Error, Result};
use crate::inference::model::LatentVariableModel;
use crate::kernels::ops::{cst, to_f64_vec, Events, Real};

/// The guide's posterior `q(z | x) = N(μ, diag σ²)` of every example of `data`, in
/// order, in batches of `batch`: `(μ, log σ)`, each `len × Z` values row-major.
///
/// # Errors
/// [`Error::InvalidSetting`] for `batch = 0`; the model's errors (e.g. a data width that
/// is not the model's `X`).
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::data::embedded;
/// use latent::eval::explore::encode;
///
/// let dev = Cpu::default();
/// let model = latent_models::mlp_vae::<_, _, _, f32, _>(&dev, (784, 32, 4))?;
/// let test = embedded()?.test.take(30);
/// let (means, log_scales) = encode(&model, &test, &dev, 16)?;
/// // n × Z row-major: 30 images, 4 latents each.
/// assert_eq!((means.len(), log_scales.len()), (120, 120));
/// # Ok::<(), latent::Error>(())
/// ```
pub fn encode<X, E, D, M>(
    model: &M,
    data: &Dataset,
    device: &D,
    batch: usize,
) -> Result<(Vec<f64>, Vec<f64>)>
where
    X: Dim + Default,
    E: Real,
    D: Device<E>,
    M: LatentVariableModel<
        E,
        D,
        NoneTape,
        X = X,
        Posterior = Normal<<M as LatentVariableModel<E, D, NoneTape>>::Z, E, D, NoneTape>,
    >,
{
    let (mut mu, mut log_sigma) = (Vec::new(), Vec::new());
    for idx in crate::eval::batches(data.len(), batch)? {
        let x: Events<X, E, D> = data.batch(device, &idx, None)?;
        let q = model.guide(x)?;
        mu.extend(to_f64_vec(&q.loc));
        log_sigma.extend(to_f64_vec(&q.log_scale));
    }
    Ok((mu, log_sigma))
}

/// The means of `p(x | z)` for latents `z` (`n × Z` values, row-major): `(n, X)` on
/// `device` (e.g. Bernoulli probabilities in `[0, 1]`).
///
/// # Errors
/// [`Error::ShapeMismatch`] if `z` is not a whole number of rows of the model's latent
/// width `z_dim`; the model's errors.
pub fn decode<E, D, M>(model: &M, z: &[f64], z_dim: M::Z, device: &D) -> Result<Events<M::X, E, D>>
where
    E: Real,
    D: Device<E>,
    M: LatentVariableModel<E, D, NoneTape>,
{
    let width = z_dim.size();
    if width == 0 || !z.len().is_multiple_of(width) {
        return Err(Error::not_a_multiple("latents to decode", width, z.len()));
    }
    let values: Vec<E> = z.iter().map(|&v| cst(v)).collect();
    let z = device
        .try_tensor_from_vec(values, (z.len() / width, z_dim))
        .map_err(Error::device)?;
    Ok(model.likelihood(z)?.mean())
}

/// `x` through the model: the means of `p(x | z)` at the posterior mean
/// `z = E_q[z | x]`, shape `(batch, X)` like `x`.
///
/// # Errors
/// The model's errors.
pub fn reconstruct<E, D, M>(model: &M, x: Events<M::X, E, D>) -> Result<Events<M::X, E, D>>
where
    E: Real,
    D: Device<E>,
    M: LatentVariableModel<E, D, NoneTape>,
{
    Ok(model.likelihood(model.guide(x)?.mean())?.mean())
}

/// `steps` latents on the segment from `a` to `b` (both `Z` values): row `i` is
/// `(1 − t) a + t b` with `t = i / (steps − 1)` (just `a` for one step), `steps × Z`
/// values row-major.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `a` and `b` differ in length; [`Error::InvalidSetting`]
/// for `steps = 0`.
pub fn interpolate(a: &[f64], b: &[f64], steps: usize) -> Result<Vec<f64>> {
    if a.len() != b.len() {
        return Err(Error::shape(
            "interpolation end points",
            &[a.len()],
            &[b.len()],
        ));
    }
    if steps == 0 {
        return Err(Error::invalid("steps", "must be at least 1"));
    }
    let mut out = Vec::with_capacity(steps * a.len());
    for i in 0..steps {
        let t = if steps == 1 {
            0.0
        } else {
            i as f64 / (steps - 1) as f64
        };
        out.extend(a.iter().zip(b).map(|(&u, &v)| (1.0 - t) * u + t * v));
    }
    Ok(out)
}

/// A latent traversal around `center` (`Z` values): for each dimension `j` of `dims`
/// in order, `steps` latents equal to `center` except in coordinate `j`, which runs
/// evenly from `center[j] − radius·spread[j]` to `center[j] + radius·spread[j]`;
/// `dims.len() · steps × Z` values row-major (one picture row per dimension).
///
/// # Errors
/// [`Error::ShapeMismatch`] if `spread` is not `Z` long; [`Error::InvalidSetting`] for
/// a dimension out of range, `steps = 0` or a negative or non-finite radius.
pub fn traverse(
    center: &[f64],
    spread: &[f64],
    dims: &[usize],
    steps: usize,
    radius: f64,
) -> Result<Vec<f64>> {
    let z = center.len();
    if spread.len() != z {
        return Err(Error::shape("traversal spreads", &[z], &[spread.len()]));
    }
    if let Some(&j) = dims.iter().find(|&&j| j >= z) {
        return Err(Error::invalid(
            "dims",
            format!("dimension {j} of a {z}-dimensional latent"),
        ));
    }
    if !(radius.is_finite() && radius >= 0.0) {
        return Err(Error::invalid(
            "radius",
            format!("must be ≥ 0, got {radius}"),
        ));
    }
    let mut out = Vec::with_capacity(dims.len() * steps * z);
    for &j in dims {
        for v in interpolate(
            &[center[j] - radius * spread[j]],
            &[center[j] + radius * spread[j]],
            steps,
        )? {
            let mut row = center.to_vec();
            row[j] = v;
            out.extend(row);
        }
    }
    Ok(out)
}

/// The standard deviation of each column of `rows` (`n × width` values, row-major,
/// `n ≥ 1`), dividing by `n`: e.g. the spread of the posterior means over a data set,
/// the scale of a traversal.
///
/// # Panics
/// If `width` is 0 or `rows` is not a whole number of rows.
pub fn column_std(rows: &[f64], width: usize) -> Vec<f64> {
    assert!(
        width > 0 && rows.len().is_multiple_of(width),
        "column_std: {} values are not rows of {width}",
        rows.len()
    );
    let n = (rows.len() / width).max(1) as f64;
    let mut mean = vec![0.0; width];
    for r in rows.chunks(width) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v / n;
        }
    }
    let mut var = vec![0.0; width];
    for r in rows.chunks(width) {
        for ((s, v), m) in var.iter_mut().zip(r).zip(&mean) {
            *s += (v - m).powi(2) / n;
        }
    }
    var.into_iter().map(f64::sqrt).collect()
}

/// The indices of `values` from largest to smallest (ties by index): e.g. latent
/// dimensions ordered by their KL.
pub fn descending(values: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx
}
