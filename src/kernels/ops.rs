//! Small tensor helpers shared by the distributions and estimators.
//!
//! The one that matters is [`detach`]: a correct stop-gradient for dfdx 0.13
//! (see the module docs of the crate for why `retaped` alone is not one).

use dfdx::prelude::*;

/// A batch of `N`-dimensional events: shape `(batch, N)`.
pub type Events<N, E, D, T = NoneTape> = Tensor<(usize, N), E, D, T>;

/// [`crate::Error::ShapeMismatch`] in `context` unless a tensor's width `found` is the
/// `expected` one. With `usize` sizes a mismatch would otherwise panic inside dfdx.
///
/// # Errors
/// As described.
pub fn check_width<N: Dim>(context: &str, expected: N, found: N) -> crate::Result<()> {
    if expected.size() == found.size() {
        Ok(())
    } else {
        Err(crate::Error::shape(
            context,
            &[expected.size()],
            &[found.size()],
        ))
    }
}

/// One value per example: shape `(batch,)`.
pub type PerExample<E, D, T = NoneTape> = Tensor<(usize,), E, D, T>;

/// Events with one number each: a draw and its log-density
/// ([`crate::Reparameterizable::rsample_with_log_prob`]), or a bijector's output and
/// `log |det J|` ([`crate::flows::Bijector`]). Shapes `(batch, N)` and `(batch,)`.
pub type Scored<N, E, D, T = NoneTape> = (Events<N, E, D, T>, PerExample<E, D, T>);

/// Converts an `f64` constant into the dtype `E`.
///
/// # Panics
/// Never for `f32` and `f64` (the dtypes this crate supports); `E::from_f64` only
/// fails for integer dtypes.
#[inline]
pub fn cst<E: Dtype>(x: f64) -> E {
    E::from_f64(x).unwrap_or_default()
}

/// `ln(2π)`.
pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Stop-gradient: a tape-less copy of `t` with a **new tensor id**.
///
/// In dfdx 0.13 gradients are stored by tensor id, and `retaped::<NoneTape>()` or
/// `clone()` keep the id. A "detached" tensor made that way and then used in a taped
/// operation still receives gradient under the original id, which flows back into
/// whatever produced `t`. `detach` routes the data through an identity operation
/// (`x · 1`) that allocates a new id, so no gradient computed downstream of the
/// result can reach `t`'s producers. This is `sg[·]` of van den Oord et al. 2017
/// (VQ-VAE, eq. 3) and `torch.Tensor.detach` in PyTorch.
///
/// Shapes: any; the result has the shape and values of `t`.
pub fn detach<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    t: &Tensor<S, E, D, T>,
) -> Tensor<S, E, D> {
    t.retaped::<NoneTape>() * cst::<E>(1.0)
}

/// Starts a tape at observed data: `x.traced(grads)`, and a promise that no gradient
/// with respect to `x` is wanted (PyTorch's `requires_grad = False` on the data), which
/// lets the fused operations ([`crate::kernels::linear`]) skip computing one: for the
/// reference VAE that is the `(batch × 400) · (400 × 784)` product of the first layer's
/// backward pass, a sixth of a training step's arithmetic.
///
/// `x` has no tape, so it cannot depend on parameters and no parameter's gradient can
/// need `∂x`. Only the `Cpu` paths of [`crate::kernels::linear`],
/// [`crate::kernels::affine_rows`] and [`crate::kernels::bernoulli_log_prob`] (which
/// skip `∂x`), [`crate::kernels::gather_rows`] and [`repeat_rows`] (whose rows of
/// observed data are observed too) read the promise; every other
/// operation, and `x`'s own entry in the gradients, behave as after `x.traced(grads)`
/// (that entry then stays zero where the promise was used). The mark holds a reference
/// to `x`'s buffer on the calling thread until four newer marks replace it or a
/// training replica's backward pass ends, so no other tensor can share the buffer's
/// address in the meantime.
///
/// Shapes: any.
pub fn observed<S: Shape, E: Dtype, D: Device<E>>(
    x: Tensor<S, E, D>,
    grads: Gradients<E, D>,
) -> Tensor<S, E, D, OwnedTape<E, D>> {
    crate::kernels::cpu::mark_observed(&x);
    x.traced(grads)
}

/// The columns `range` of `x`: `(batch, W)` → `(batch, range.len())`, as `x · S` with a
/// 0/1 selection matrix `S`, so its gradient **adds** into `x`'s.
///
/// Use it instead of dfdx 0.13's `slice` on a tensor whose gradient has other
/// contributions: `slice`'s backward assigns its gradient into the sliced region of
/// the input's (`view[i] = g`), wiping what other operations added there before it ran
/// (a hierarchical VAE whose latent row fed both the decoder, through one slice, and
/// the prior, through another, learned nothing from its reconstructions that way).
///
/// # Errors
/// [`crate::Error::ShapeMismatch`] if `range` is not within `0..W`.
pub fn columns<N: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(usize, N), E, D, T>,
    range: std::ops::Range<usize>,
) -> crate::Result<Tensor<(usize, usize), E, D, T>> {
    let (b, n) = *x.shape();
    let w = n.size();
    if range.start > range.end || range.end > w {
        return Err(crate::Error::shape(
            format!("columns {}..{}", range.start, range.end),
            &[b, w],
            &[b, range.end],
        ));
    }
    let k = range.len();
    let mut select = vec![E::default(); w * k];
    for (j, c) in range.enumerate() {
        select[c * k + j] = cst::<E>(1.0);
    }
    let select = x.device().tensor_from_vec(select, (n, k));
    Ok(x.matmul(select))
}

/// Repeats every row of `t` `n` times, sample-major: row `s·batch + b` of the result
/// is row `b` of `t`. Shape `(batch, N)` → `(n·batch, N)`. Gradients flow back summed
/// over the copies.
///
/// # Panics
/// If the device cannot allocate the result (as dfdx's non-`try` operations).
pub fn repeat_rows<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    t: Events<N, E, D, T>,
    n: usize,
) -> Events<N, E, D, T> {
    if n == 1 {
        return t;
    }
    let (b, dim) = *t.shape();
    // On the `Cpu` the rows are copied as blocks by `gather_rows` (copies of observed
    // data are observed too; with a tape its backward pass sums the copies' gradients):
    // dfdx's reshape of the broadcast view copies one element at a time through its
    // index arithmetic, 7% of an importance-sampled evaluation (k = 1000).
    if crate::kernels::cpu::is_cpu::<E, D, f32>() || crate::kernels::cpu::is_cpu::<E, D, f64>() {
        let index: Vec<usize> = (0..n).flat_map(|_| 0..b).collect();
        // As dfdx's own operations below, an allocation failure panics here.
        return crate::kernels::gather_rows(t, &index)
            .unwrap_or_else(|e| panic!("repeat_rows: allocation failed: {e:?}"));
    }
    t.broadcast_like::<_, Axis<0>>(&(n, b, dim))
        .reshape_like(&(n * b, dim))
}

/// Averages a per-sample quantity over its `n` samples: shape `(n·batch,)` (sample-major,
/// as produced by [`repeat_rows`]) → `(batch,)`.
pub fn mean_over_samples<E: Dtype, D: Device<E>, T: Tape<E, D>>(
    t: PerExample<E, D, T>,
    n: usize,
) -> PerExample<E, D, T> {
    if n == 1 {
        return t;
    }
    let b = t.shape().0 / n;
    t.reshape_like(&(n, b)).mean::<(usize,), Axis<0>>()
}

/// Host-side copy of a tensor's elements (row-major) as `f64`s.
///
/// Reads the buffer directly when it is a contiguous `Cpu` tensor ([`host_values`]).
pub fn to_f64_vec<S: Shape, E: Dtype, D: Device<E>, T>(t: &Tensor<S, E, D, T>) -> Vec<f64> {
    host_values(&t.retaped::<NoneTape>())
        .iter()
        .map(|v| v.to_f64().unwrap_or(f64::NAN))
        .collect()
}

/// A tensor's elements in row-major order: borrowed from the buffer of a contiguous
/// `Cpu` tensor (no copy), copied to the host otherwise (CUDA, broadcast or permuted
/// views), as dfdx's `as_vec`, which copies element by element through the strides
/// even when the buffer is already in order.
pub fn host_values<S: Shape, E: Dtype, D: Device<E>, T: 'static>(
    t: &Tensor<S, E, D, T>,
) -> std::borrow::Cow<'_, [E]> {
    match crate::kernels::cpu::slice::<S, E, D, T, E>(t) {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.as_vec()),
    }
}

/// The floating-point dtypes `latent` computes in: `f32` (training) and `f64` (tests of
/// identities). Bundles what dfdx needs to build layers and draw random tensors.
pub trait Real:
    Dtype + num_traits::Float + rand_distr::uniform::SampleUniform + std::fmt::Display
{
    /// A tensor shaped like `like` of independent `N(0, 1)` draws from `dev`'s generator.
    fn standard_normal<S: HasShape, D: SampleTensor<Self>>(
        dev: &D,
        like: &S,
    ) -> Tensor<S::Shape, Self, D>;
    /// A tensor shaped like `like` of independent `U[0, 1)` draws from `dev`'s generator.
    fn uniform01<S: HasShape, D: SampleTensor<Self>>(
        dev: &D,
        like: &S,
    ) -> Tensor<S::Shape, Self, D>;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            fn standard_normal<S: HasShape, D: SampleTensor<Self>>(
                dev: &D,
                like: &S,
            ) -> Tensor<S::Shape, Self, D> {
                dev.sample_normal_like(like)
            }
            fn uniform01<S: HasShape, D: SampleTensor<Self>>(
                dev: &D,
                like: &S,
            ) -> Tensor<S::Shape, Self, D> {
                dev.sample_uniform_like(like)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);
