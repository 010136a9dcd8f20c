//! A convolution on channels-last rows as one product per *input* row followed by a
//! shifted sum ("shift-and-add", the col2im order of the im2col convolution): cheaper
//! than im2col when a layer has fewer output than input channels.

use dfdx::prelude::*;

use super::cpu::{contiguous, is_cpu, same, slice};
use super::fused::{finish, Input};
use super::gather::gather_rows;
use super::gemm::{gemm, Mat};
use super::linear::affine_rows;
use crate::kernels::ops::{Events, Real};

/// A convolution given by its taps: `y[r] = b + Σ_t x[taps[r·T + t]] · W[t]`, where
/// `x` is `(n, I)` (one row per input pixel, channels last), `weight` holds the
/// row-major `(T, I, O)` kernel (e.g. a `(kh, kw, I, O)` HWIO kernel, `T = kh·kw`),
/// `bias` is `(O,)`, `taps` has `T` source rows for each output row (a value `≥ n` is
/// zero padding), and `y` is `(taps.len() / T, O)`. Gradients reach `x`, `weight` and
/// `bias`.
///
/// This is the same map as the im2col convolution `affine_rows(gather_rows(x, taps)
/// .reshape(m, T·I), weight, bias)` (`taps` is exactly the im2col index), computed in
/// the other order: first `Z = x · W′` with `W′[i, t·O + o] = W[t, i, o]` (an `n × T·O`
/// product), then `y[r] = b + Σ_t Z[taps[r·T + t], t-th block of O]`. With as many input
/// rows as output rows (a stride-1 "same" convolution) both orders do the same
/// arithmetic, but this one never builds the `m × T·I` im2col matrix and its product
/// has `T·O` columns instead of `O`: for a layer to few channels (a decoder's last
/// convolution to 4 or 1 channel) that is several times faster on a CPU. The backward
/// pass scatters `∂y` into `∂Z` (`n × T·O`), then `∂W′ = xᵀ ∂Z`, `∂x += ∂Z W′ᵀ` (skipped
/// when `x` is observed data, [`crate::kernels::ops::observed`]) and `∂b += Σ_r ∂y[r]`.
///
/// On the `Cpu` with `f32`/`f64` and contiguous operands it runs as one operation with
/// single-threaded `gemm` products; elsewhere (CUDA) it is the im2col form above, with
/// the same values and gradients.
///
/// # Panics
/// If `taps.len()` is not a multiple of `T` or `weight` does not hold `T · I · O`
/// values, where `T = weight elements / (I · O)`.
///
/// # Errors
/// The device's allocation errors.
pub fn shift_add_conv<I: Dim, O: Dim, S, E, D, T>(
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
    let (t, m) = taps_and_rows(
        "shift_add_conv",
        (i, o),
        weight.shape().num_elements(),
        taps,
    );
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

/// The taps per output row `T = weight elements / (I · O)` of a convolution from `I`
/// to `O` channels given by its taps, and its output rows `m = taps.len() / T`.
///
/// # Panics
/// If the weight does not hold a whole number of `(I, O)` matrices or `taps` a whole
/// number of output rows (`what` names the operation).
pub(super) fn taps_and_rows(
    what: &str,
    (i, o): (usize, usize),
    weight_len: usize,
    taps: &[usize],
) -> (usize, usize) {
    assert!(
        i * o > 0 && weight_len.is_multiple_of(i * o),
        "{what}: a weight of {weight_len} values is not (taps, {i}, {o})"
    );
    let t = weight_len / (i * o);
    assert!(
        taps.len().is_multiple_of(t),
        "{what}: {} taps are not a multiple of {t} per output row",
        taps.len()
    );
    (t, taps.len() / t)
}

/// Whether the input, weight and bias of a convolution are contiguous `Cpu` tensors of
/// dtype `F`.
pub(super) fn operands_contiguous<I: Dim, O: Dim, S: Shape, E: Real, D: Device<E>, F>(
    x: &Events<I, E, D>,
    weight: &Tensor<S, E, D>,
    bias: &Tensor<(O,), E, D>,
) -> bool
where
    F: dfdx::shapes::Unit,
{
    slice::<_, _, _, _, F>(x).is_some()
        && slice::<_, _, _, _, F>(weight).is_some()
        && slice::<_, _, _, _, F>(bias).is_some()
}

/// `W′ (I × T·O)` from the `(T, I, O)` kernel: `W′[i, t·O + o] = W[t, i, o]`.
fn taps_last<F: Copy>(w: &[F], (t, i, o): (usize, usize, usize)) -> Vec<F> {
    let mut out = Vec::with_capacity(w.len());
    for ii in 0..i {
        for tt in 0..t {
            out.extend_from_slice(&w[(tt * i + ii) * o..(tt * i + ii + 1) * o]);
        }
    }
    out
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
    let (m, to) = (taps.len() / t, t * o);
    let w_last = taps_last(contiguous(&w), (t, i, o));
    // Z = x · W′: one row of T·O values per input row.
    let mut z = vec![F::zero(); n * to];
    // SAFETY: x is n × i row-major, w_last i × to and z n × to, z distinct from both.
    unsafe {
        gemm(
            (n, i, to),
            Mat::rows(z.as_mut_ptr(), to),
            false,
            Mat::rows(contiguous(&x).as_ptr(), i),
            Mat::rows(w_last.as_ptr(), to),
        );
    }
    let bs = contiguous(&b);
    let mut out: Vec<F> = Vec::with_capacity(m * o);
    for r in 0..m {
        out.extend_from_slice(bs);
        let row = &mut out[r * o..(r + 1) * o];
        for (tt, &src) in taps[r * t..(r + 1) * t].iter().enumerate() {
            if src < n {
                let zs = &z[src * to + tt * o..src * to + (tt + 1) * o];
                for (a, &v) in row.iter_mut().zip(zs) {
                    *a = *a + v;
                }
            }
        }
    }
    drop(z);
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
        // ∂Z[taps[r·T + t], block t] += ∂y[r]; ∂b += Σ_r ∂y[r].
        let mut gz = vec![F::zero(); n * to];
        for r in 0..m {
            let gyr = &gy[r * o..(r + 1) * o];
            for (a, &v) in gb.iter_mut().zip(gyr) {
                *a = *a + v;
            }
            for (tt, &src) in taps[r * t..(r + 1) * t].iter().enumerate() {
                if src < n {
                    let dst = &mut gz[src * to + tt * o..src * to + (tt + 1) * o];
                    for (a, &v) in dst.iter_mut().zip(gyr) {
                        *a = *a + v;
                    }
                }
            }
        }
        let xs = contiguous(&x);
        // ∂W′ (i × to) = xᵀ (i × n) · ∂Z (n × to), then added to ∂W in (T, I, O).
        let mut gw_last = vec![F::zero(); i * to];
        // SAFETY: the operands are the row-major buffers of their shapes, gw_last
        // distinct from both.
        unsafe {
            gemm(
                (i, n, to),
                Mat::rows(gw_last.as_mut_ptr(), to),
                false,
                Mat::cols(xs.as_ptr(), i),
                Mat::rows(gz.as_ptr(), to),
            );
        }
        for ii in 0..i {
            for tt in 0..t {
                let src = &gw_last[ii * to + tt * o..ii * to + (tt + 1) * o];
                let dst = &mut gw[(tt * i + ii) * o..(tt * i + ii + 1) * o];
                for (a, &v) in dst.iter_mut().zip(src) {
                    *a = *a + v;
                }
            }
        }
        // ∂x (n × i) += ∂Z (n × to) · W′ᵀ (to × i).
        if let Some(gx) = gx {
            let wl = taps_last(contiguous(&w), (t, i, o));
            // SAFETY: gx is x's gradient buffer (n × i), distinct from gz and wl.
            unsafe {
                gemm(
                    (n, to, i),
                    Mat::rows(gx.as_mut_ptr(), i),
                    true,
                    Mat::rows(gz.as_ptr(), to),
                    Mat::cols(wl.as_ptr(), to),
                );
            }
        }
    });
    done.map_err(same::<CpuError, D::Err>)
}
