//! The im2col convolution on channels-last rows as one operation: the im2col matrix is
//! built and kept inside it, so that neither it nor its gradient becomes a dfdx tensor
//! (a zeroed gradient buffer of the matrix's size, megabytes per layer and step, that
//! the products then overwrite).

use dfdx::prelude::*;

use super::cpu::{contiguous, is_cpu, same};
use super::fused::{finish, Input};
use super::gather::{gather_rows, gathered};
use super::gemm::{gemm, Mat};
use super::linear::{add_row_sums, affine_rows, with_scratch};
use super::shift_add::{operands_contiguous, taps_and_rows};
use crate::kernels::ops::{Events, Real};

/// A convolution given by its taps: `y[r] = b + Σ_t x[taps[r·T + t]] · W[t]`, where
/// `x` is `(n, I)` (one row per input pixel, channels last), `weight` holds the
/// row-major `(T, I, O)` kernel (e.g. a `(kh, kw, I, O)` HWIO kernel, `T = kh·kw`),
/// `bias` is `(O,)`, `taps` has `T` source rows for each output row (a value `≥ n` is
/// zero padding) and `y` is `(taps.len() / T, O)`. Gradients reach `x`, `weight` and
/// `bias`. Any stride or padding is expressed by `taps`.
///
/// The values and gradients of `affine_rows(gather_rows(x, taps).reshape(m, T·I),
/// weight, bias)` ([`affine_rows`], [`gather_rows`]): the im2col matrix `C` (`m × T·I`)
/// is gathered, `y = C W + b` is one product, and the backward pass computes
/// `∂W += Cᵀ ∂y`, `∂b += Σ_r ∂y[r]` and, unless `x` is observed data
/// ([`crate::kernels::ops::observed`]), `∂C = ∂y Wᵀ` into a reused per-thread buffer, scattered
/// back as `∂x[taps[j]] += ∂C[j]` (the col2im step). On the `Cpu` with `f32`/`f64` and
/// contiguous operands it runs as one operation with single-threaded `gemm` products;
/// elsewhere (CUDA) it is the composition above.
///
/// # Panics
/// If `taps.len()` is not a multiple of `T` or `weight` does not hold `T · I · O`
/// values, where `T = weight elements / (I · O)`.
///
/// # Errors
/// The device's allocation errors.
pub fn im2col_conv<I: Dim, O: Dim, S, E, D, T>(
    x: Events<I, E, D, T>,
    weight: &Tensor<S, E, D>,
    bias: &Tensor<(O,), E, D>,
    taps: &[usize],
) -> Result<Events<O, E, D, T>, D::Err>
where
    S: Shape,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
{
    let (i, o) = (x.shape().1.size(), bias.shape().0.size());
    let (t, m) = taps_and_rows("im2col_conv", (i, o), weight.shape().num_elements(), taps);
    let (x, tape) = x.split_tape();
    if is_cpu::<E, D, f32>() && operands_contiguous::<_, _, _, _, _, f32>(&x, weight, bias) {
        return fast::<I, O, S, E, D, T, f32>(x, tape, weight, bias, taps, t);
    }
    if is_cpu::<E, D, f64>() && operands_contiguous::<_, _, _, _, _, f64>(&x, weight, bias) {
        return fast::<I, O, S, E, D, T, f64>(x, tape, weight, bias, taps, t);
    }
    let cols = gather_rows(x.put_tape(tape), taps)?.try_reshape_like(&(m, t * i))?;
    affine_rows(cols, weight, bias)
}

fn fast<I: Dim, O: Dim, S, E, D, T, F>(
    x: Events<I, E, D>,
    tape: T,
    weight: &Tensor<S, E, D>,
    bias: &Tensor<(O,), E, D>,
    taps: &[usize],
    t: usize,
) -> Result<Events<O, E, D, T>, D::Err>
where
    S: Shape,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    F: dfdx::shapes::Unit + num_traits::Float,
{
    let x: Events<I, F, Cpu> = same(x);
    let w: Tensor<S, F, Cpu> = same(weight.clone());
    let b: Tensor<(O,), F, Cpu> = same(bias.clone());
    let (n, i) = (x.shape().0, x.shape().1.size());
    let o = b.shape().0.size();
    let (m, ti) = (taps.len() / t, t * i);
    // The im2col matrix C (m × T·I): row j of x at each tap, zeros for padding.
    let xs = contiguous(&x);
    let cols = gathered(xs, i, taps);
    // y = b + C W.
    let mut out: Vec<F> = Vec::with_capacity(m * o);
    for _ in 0..m {
        out.extend_from_slice(contiguous(&b));
    }
    // SAFETY: cols is m × ti, the weight ti × o and out m × o, all row-major; out is
    // distinct from both operands.
    unsafe {
        gemm(
            (m, ti, o),
            Mat::rows(out.as_mut_ptr(), o),
            true,
            Mat::rows(cols.as_ptr(), ti),
            Mat::rows(contiguous(&w).as_ptr(), o),
        );
    }
    let dev = x.device().clone();
    let taps = taps.to_vec();
    let inputs = [
        Input::of(&w),
        Input::of(&b),
        Input::untouched_if_observed(&x),
    ];
    let shape = (m, b.shape().0);
    let done = finish(&dev, out, shape, inputs, tape, move |gy, [gw, gb, gx]| {
        let (Some(gw), Some(gb)) = (gw, gb) else {
            return;
        };
        let ws = contiguous(&w).as_ptr();
        // SAFETY: the gradient buffers have their tensors' lengths (dW ti × o, dy m × o);
        // cols and the forward tensors live in this closure.
        unsafe {
            // ∂W (ti × o) += Cᵀ (ti × m) · ∂y (m × o)
            gemm(
                (ti, m, o),
                Mat::rows(gw.as_mut_ptr(), o),
                true,
                Mat::cols(cols.as_ptr(), ti),
                Mat::rows(gy.as_ptr(), o),
            );
        }
        add_row_sums(gb, gy);
        if let Some(gx) = gx {
            with_scratch::<F, _>(m * ti, |gc| {
                // ∂C (m × ti) = ∂y (m × o) · Wᵀ (o × ti), overwriting the buffer.
                // SAFETY: gc is m × ti, gy m × o, the weight ti × o; gc distinct from both.
                unsafe {
                    gemm(
                        (m, o, ti),
                        Mat::rows(gc.as_mut_ptr(), ti),
                        false,
                        Mat::rows(gy.as_ptr(), o),
                        Mat::cols(ws, o),
                    );
                }
                // col2im: ∂x[taps[j]] += ∂C[j].
                super::simd::vectorized(
                    #[inline(always)]
                    || {
                        for (&src, row) in taps.iter().zip(gc.chunks_exact(i)) {
                            if src < n {
                                let dst = &mut gx[src * i..(src + 1) * i];
                                for (a, &v) in dst.iter_mut().zip(row) {
                                    *a = *a + v;
                                }
                            }
                        }
                    },
                );
            });
        }
    });
    done.map_err(same::<CpuError, D::Err>)
}
