//! Distribution families and the traits they implement.
//!
//! # Conventions
//! - A distribution value is a **batch** of independent distributions over vectors of
//!   length `N`: parameters have shape `(batch, N)`, events have shape `(batch, N)`
//!   ([`Events`]), and [`Distribution::log_prob`] returns one number per example,
//!   shape `(batch,)` ([`PerExample`]), **summed over the event's `N` dimensions**, in
//!   nats.
//! - The event size `N` is a dfdx [`Dim`]: `Const<20>` when it is fixed at compile
//!   time (shapes are then checked by the compiler), or `usize` when it is chosen at
//!   run time (a command-line flag, a CSV's column count). The same code serves both;
//!   with `usize`, a width that disagrees between a distribution and its events is an
//!   [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) rather than a panic.
//!   Constructors that cannot see `N` in a tensor take its value (`Const` or a
//!   number): [`StandardNormal::new`], [`Normal::from_host`], [`Categorical::from_probs`].
//!
//!   ```
//!   use dfdx::prelude::*;
//!   use latent::prelude::*;
//!
//!   let dev = Cpu::default();
//!   let width = 7; // e.g. read from a file
//!   let q: Normal<usize, f64, Cpu> =
//!       Normal::from_host(&dev, width, &[0.5; 14], &[2.0; 14]).unwrap();
//!   let p = StandardNormal::<usize, f64, Cpu>::new(2, width, &dev);
//!   let kl = q.kl_divergence(p).unwrap(); // shape (2,), nats
//!   // ½ Σ (μ² + σ² − 1 − ln σ²) over 7 coordinates
//!   let expected = 3.5 * (0.25 + 4.0 - 1.0 - 4f64.ln());
//!   assert!((kl.as_vec()[0] - expected).abs() < 1e-12);
//!   ```
//! - Like dfdx's tensor operations, the methods that compute taped values **consume**
//!   the distribution, because a dfdx tape has exactly one owner. To use a distribution
//!   twice (say `rsample` and then an analytic KL), take [`Distribution::fork`] first:
//!   the fork shares the parameters (and their tensor ids, so gradients accumulate in the
//!   same place) but carries an empty tape; the original keeps the tape that leads back
//!   to the encoder, so the original must end up in the loss.
//! - Families whose support is not all of `R^N` (counts, positive values, proportions,
//!   the simplex) check their events in `log_prob` and return
//!   [`Error::InvalidSetting`](crate::Error::InvalidSetting) naming the row and column
//!   of the first event outside it, rather than a silent `−∞` or NaN. Their samplers
//!   that need a varying number of uniforms per draw (Poisson, Gamma, binomial) run on
//!   the host from a generator seeded by the device's; on the `Cpu` the parameters are
//!   read in place, on CUDA they are copied (as are the events for the support check).
//! - All tapes inside one computation have the same type `T` (`OwnedTape<E, D>` while
//!   training, `NoneTape` when evaluating); a data tensor without a tape enters a taped
//!   computation through `x.retaped::<T>()`.

use dfdx::prelude::*;

use crate::error::Result;
use crate::kernels::ops::Real;
pub use crate::kernels::ops::{Events, PerExample, Scored};

mod bernoulli;
mod beta;
mod binomial;
mod categorical;
mod chain;
mod continuous_bernoulli;
mod dirichlet;
pub(crate) mod draws;
mod exponential;
mod gamma;
mod guide_draw;
mod laplace;
mod log_normal;
mod mixture;
mod multivariate_normal;
mod negative_binomial;
mod normal;
mod poisson;
mod relaxed;
mod shared_mixture;
mod student_t;
mod support;
mod zinb;

pub use bernoulli::Bernoulli;
pub use beta::Beta;
pub use binomial::Binomial;
pub(crate) use categorical::one_hot;
pub use categorical::Categorical;
pub use chain::ConditionalChain;
pub use continuous_bernoulli::ContinuousBernoulli;
pub use dirichlet::Dirichlet;
pub use exponential::Exponential;
pub use gamma::Gamma;
pub use guide_draw::{
    pathwise_draw, pathwise_draw_with_log_prob, Drawn, GuideDistribution, GuideDraw,
};
pub use laplace::Laplace;
pub use log_normal::LogNormal;
pub use mixture::MixtureOfDiagNormals;
pub(crate) use multivariate_normal::{back_solve_transposed, forward_solve};
pub use multivariate_normal::{Matrices, MultivariateNormal};
pub use negative_binomial::NegativeBinomial;
pub use normal::{Normal, StandardNormal};
pub use poisson::Poisson;
pub use relaxed::RelaxedOneHotCategorical;
pub use shared_mixture::SharedMixtureOfDiagNormals;
pub use student_t::StudentT;
pub use support::ValueSupport;
pub use zinb::ZeroInflatedNegativeBinomial;

/// A batch of probability distributions over `N`-dimensional events.
///
/// Implemented by every family in this module; implement it for your own family to
/// use it as a prior, guide or likelihood in [`crate::Elbo`].
pub trait Distribution<N: Dim, E: Dtype, D: Device<E>>: Sized {
    /// The tape carried by the parameters (`OwnedTape<E, D>` or `NoneTape`).
    type Tape: Tape<E, D>;

    /// The number of distributions in the batch.
    fn batch_size(&self) -> usize;

    /// The device the parameters live on.
    fn device(&self) -> D;

    /// `log p(x)` for each example, summed over the event dimensions, in nats.
    ///
    /// Shapes: `x` is `(batch, N)`; the result is `(batch,)`.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] if `x` has a different batch size.
    fn log_prob(self, x: Events<N, E, D, Self::Tape>) -> Result<PerExample<E, D, Self::Tape>>;

    /// One draw per distribution, without gradient. Shape `(batch, N)`.
    /// Randomness comes from the device's generator (seed it with
    /// `Cpu::seed_from_u64`).
    fn sample(&self) -> Events<N, E, D>;

    /// The mean `E[x]`, shape `(batch, N)`.
    fn mean(self) -> Events<N, E, D, Self::Tape>;

    /// A copy sharing the parameters (same tensor ids) with an empty tape. See the
    /// module docs.
    fn fork(&self) -> Self;

    /// Repeats each distribution `n` times, sample-major (row `s·batch + b` is
    /// distribution `b`): batch `batch` → `n·batch`. Used to draw `n` samples per
    /// example in one batched pass.
    fn repeat(self, n: usize) -> Self;

    /// Consumes the distribution and returns the tape its parameters carry, merged.
    ///
    /// A computation that used only [`Distribution::fork`]s (a closed-form KL, say)
    /// records its gradient under the parameters' ids; the operations that carry it on
    /// to the networks that made the parameters are on the original's tapes. Merge
    /// this tape into the result (`t.split_tape()`, `tape.merge(..)`, `put_tape`) so
    /// that they run: [`crate::Elbo`] does this for the prior, which is how a learned
    /// prior with a closed-form KL gets its gradient.
    fn into_tape(self) -> Self::Tape;
}

/// A distribution with a pathwise (reparameterized) sampler: `z = g(ε, θ)` with `ε`
/// drawn from a fixed base distribution, so that `∂z/∂θ` exists (Kingma & Welling 2014,
/// §2.4).
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::{Normal, Reparameterizable};
///
/// let dev = Cpu::default();
/// let mu = dev.tensor_from_vec(vec![0.5f64], (1, Const::<1>));
/// let log_sigma = dev.tensor_from_vec(vec![0.0f64], (1, Const::<1>));
/// // z = μ + σ ε: the gradient of z with respect to μ is 1, whatever ε was drawn.
/// let z = Normal::new(mu.leaky_trace(), log_sigma.retaped())?.rsample();
/// let grads = z.sum::<(), _>().backward();
/// assert_eq!(grads.get(&mu).as_vec(), vec![1.0]);
/// # Ok::<(), latent::Error>(())
/// ```
pub trait Reparameterizable<N: Dim, E: Dtype, D: Device<E>>: Distribution<N, E, D> {
    /// One reparameterized draw per distribution, shape `(batch, N)`, whose tape carries
    /// gradients back to the parameters. Draw `L` samples per example with
    /// `self.repeat(L).rsample()`.
    fn rsample(self) -> Events<N, E, D, Self::Tape>;

    /// One reparameterized draw per distribution and its log-density under this
    /// distribution, shapes `(batch, N)` and `(batch,)` (nats), both carrying tapes.
    ///
    /// The default draws with [`Reparameterizable::rsample`] and scores the draw with
    /// [`Distribution::log_prob`] of a [`Distribution::fork`]: the draw enters the
    /// log-density without its tape (the same tensor id), so the gradient through `z`
    /// flows once, along whatever consumes `z`, and reaches the parameters by both
    /// paths. A normalizing flow overrides it ([`crate::flows::TransformedDistribution`])
    /// to get `log q(z)` from the forward pass, where `log_prob` of an arbitrary point
    /// would need the inverse.
    ///
    /// # Errors
    /// The family's `log_prob` errors.
    fn rsample_with_log_prob(self) -> Result<Scored<N, E, D, Self::Tape>> {
        let scorer = self.fork();
        let z = self.rsample();
        let log_q = scorer.log_prob(z.with_empty_tape())?;
        Ok((z, log_q))
    }
}

/// A distribution whose entropy has a closed form.
pub trait Entropy<E: Dtype, D: Device<E>> {
    /// The tape of the result.
    type Tape: Tape<E, D>;
    /// `H[p] = −E_p[log p(x)]` per example, summed over the event, in nats. Shape `(batch,)`.
    fn entropy(self) -> PerExample<E, D, Self::Tape>;
}

/// A distribution whose per-coordinate variance has a closed form.
pub trait Variance<N: Dim, E: Dtype, D: Device<E>>: Distribution<N, E, D> {
    /// `Var[x_j]` for each coordinate, shape `(batch, N)` (for one-hot events, the
    /// variance of each indicator).
    fn variance(self) -> Events<N, E, D, Self::Tape>;
}

/// A distribution whose mode (most probable event) has a closed form.
pub trait Mode<N: Dim, E: Dtype, D: Device<E>>: Distribution<N, E, D> {
    /// `argmax_x p(x)`, shape `(batch, N)`, without gradient. Where the density is flat
    /// (a continuous Bernoulli at `λ = ½`) any point of the support is a mode; the
    /// documented choice of the family is returned.
    fn mode(&self) -> Events<N, E, D>;
}

/// The draws a Monte Carlo [`Distribution::mean`] averages, for families whose mean has
/// no closed form ([`ConditionalChain`], [`crate::flows::TransformedDistribution`]): its
/// standard error is `sd(z) / 8` per coordinate.
pub const MEAN_DRAWS: usize = 64;

/// `(1/S) Σ_s z_s` over `S = MEAN_DRAWS` reparameterized draws per distribution, shape
/// `(batch, N)`: the mean of a family without a closed form, carrying the tape.
pub(crate) fn monte_carlo_mean<N: Dim, E: Dtype, D: Device<E>, Q: Reparameterizable<N, E, D>>(
    q: Q,
) -> Events<N, E, D, Q::Tape> {
    let (b, n) = (q.batch_size(), MEAN_DRAWS);
    let z = q.repeat(n).rsample();
    let dim = z.shape().1;
    z.reshape_like(&(n, b, dim)).mean::<(usize, N), Axis<0>>()
}

/// A `(loc, log scale)` pair of parameter tensors.
type LocScale<N, E, D> = (Events<N, E, D>, Events<N, E, D>);

/// Validates host-side location/scale parameters and uploads `(loc, log scale)`.
pub(crate) fn host_loc_scale<N: Dim, E: crate::kernels::ops::Real, D: Device<E>>(
    dev: &D,
    family: &str,
    dim: N,
    loc: &[E],
    scale: &[E],
) -> Result<LocScale<N, E, D>> {
    use crate::Error;
    let n = dim.size();
    if n == 0 || loc.is_empty() || !loc.len().is_multiple_of(n) {
        return Err(Error::not_a_multiple(
            format!("{family}::from_host (loc)"),
            n,
            loc.len(),
        ));
    }
    if loc.len() != scale.len() {
        return Err(Error::shape(
            format!("{family}::from_host (scale)"),
            &[loc.len()],
            &[scale.len()],
        ));
    }
    if let Some(v) = loc.iter().find(|v| !v.is_finite()) {
        return Err(Error::invalid("loc", format!("must be finite, got {v}")));
    }
    if let Some(v) = scale.iter().find(|v| !(v.is_finite() && **v > E::zero())) {
        return Err(Error::invalid(
            "scale",
            format!("must be positive and finite, got {v}"),
        ));
    }
    let b = loc.len() / n;
    let log_scale: Vec<E> = scale.iter().map(|s| s.ln()).collect();
    Ok((
        dev.tensor_from_vec(loc.to_vec(), (b, dim)),
        dev.tensor_from_vec(log_scale, (b, dim)),
    ))
}

/// Checks that two `(batch, N)` tensors have the same shape: with run-time sizes a
/// mismatch would otherwise panic inside dfdx.
pub(crate) fn check_shape<N: Dim>(
    context: &str,
    expected: &(usize, N),
    found: &(usize, N),
) -> Result<()> {
    if expected.0 == found.0 && expected.1.size() == found.1.size() {
        Ok(())
    } else {
        Err(crate::Error::shape(
            context,
            &[expected.0, expected.1.size()],
            &[found.0, found.1.size()],
        ))
    }
}

/// Checks that a parameter tensor has `batch` rows.
pub(crate) fn check_batch(context: &str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(crate::Error::shape(
            format!("{context} (batch)"),
            &[expected],
            &[found],
        ))
    }
}

/// A host-side generator for the samplers that draw a varying number of uniforms per
/// event (Poisson, Gamma, binomial): seeded from four uniforms of the device's own
/// generator, so `Cpu::seed_from_u64` makes their draws reproducible like every other
/// family's, and one call's draws do not repeat another's.
pub(crate) fn host_rng<E: Real, D: Device<E>>(dev: &D) -> rand_xoshiro::Xoshiro256PlusPlus {
    use rand::SeedableRng;
    let u = crate::kernels::ops::to_f64_vec(&E::uniform01(dev, &(4usize,)));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for v in u {
        // splitmix64 steps over the draws' bits
        seed = (seed ^ v.to_bits()).wrapping_add(0x9e37_79b9_7f4a_7c15);
        seed = (seed ^ (seed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        seed = (seed ^ (seed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        seed ^= seed >> 31;
    }
    rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Checks that every event lies in the family's `support`: a count model's log-mass of
/// `2.5` or `−1`, or a Gamma's log-density at 0, would otherwise come out as a number,
/// `−∞` or NaN.
///
/// # Errors
/// [`crate::Error::InvalidSetting`] naming the family, the position `(row, column)`
/// and the value.
pub(crate) fn check_support<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    family: &str,
    x: &Events<N, E, D, T>,
    support: ValueSupport,
) -> Result<()> {
    let width = x.shape().1.size().max(1);
    let x = x.retaped::<NoneTape>();
    let values = crate::kernels::ops::host_values(&x);
    for (i, v) in values.iter().enumerate() {
        let v = v.to_f64().unwrap_or(f64::NAN);
        if !support.contains(v) {
            return Err(crate::Error::invalid(
                format!("{family}::log_prob (x)"),
                format!(
                    "values must be {}; row {}, column {} holds {v}",
                    support.describe(),
                    i / width,
                    i % width
                ),
            ));
        }
    }
    Ok(())
}

/// Host-side draws: `f(rng, i)` for every element `i` of a `(batch, N)` shape, on `dev`.
pub(crate) fn draw_host<N: Dim, E: Real, D: Device<E>>(
    dev: &D,
    shape: (usize, N),
    mut f: impl FnMut(&mut rand_xoshiro::Xoshiro256PlusPlus, usize) -> f64,
) -> Events<N, E, D> {
    let mut rng = host_rng::<E, D>(dev);
    let n = shape.0 * shape.1.size();
    let v: Vec<E> = (0..n)
        .map(|i| crate::kernels::ops::cst::<E>(f(&mut rng, i)))
        .collect();
    dev.tensor_from_vec(v, shape)
}

/// `f` applied to every element on the host, without gradient (a mode's `⌊·⌋`, say,
/// which dfdx 0.13 has no operation for).
pub(crate) fn map_host<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    t: &Events<N, E, D, T>,
    f: impl Fn(f64) -> f64,
) -> Events<N, E, D> {
    let t = t.retaped::<NoneTape>();
    let v: Vec<E> = crate::kernels::ops::host_values(&t)
        .iter()
        .map(|v| crate::kernels::ops::cst::<E>(f(v.to_f64().unwrap_or(f64::NAN))))
        .collect();
    t.device().tensor_from_vec(v, *t.shape())
}

/// Validates host-side values of a positive parameter (`batch · N`, row-major) and
/// uploads them, shape `(batch, N)`.
pub(crate) fn host_positive<N: Dim, E: Real, D: Device<E>>(
    dev: &D,
    context: &str,
    dim: N,
    values: &[E],
) -> Result<Events<N, E, D>> {
    let n = dim.size();
    if n == 0 || values.is_empty() || !values.len().is_multiple_of(n) {
        return Err(crate::Error::not_a_multiple(context, n, values.len()));
    }
    if let Some(v) = values.iter().find(|v| !(v.is_finite() && **v > E::zero())) {
        return Err(crate::Error::invalid(
            context,
            format!("must be positive and finite, got {v}"),
        ));
    }
    Ok(dev.tensor_from_vec(values.to_vec(), (values.len() / n, dim)))
}

crate::pathwise_guide!(Normal);
crate::pathwise_guide!(StandardNormal);
crate::pathwise_guide!(Laplace);
crate::pathwise_guide!(ContinuousBernoulli);
crate::pathwise_guide!(RelaxedOneHotCategorical);
crate::pathwise_guide!(Exponential);
crate::pathwise_guide!(Gamma);
crate::pathwise_guide!(LogNormal);
crate::pathwise_guide!(Beta);
crate::pathwise_guide!(Dirichlet);
crate::pathwise_guide!(StudentT);
crate::pathwise_guide!(MultivariateNormal);
