//! Rows of a matrix picked by index, with zero rows for padding: the im2col step of a
//! convolution on channels-last rows, and nearest-neighbour up-sampling.

use dfdx::prelude::*;

use super::cpu::{contiguous, is_cpu, is_observed, mark_observed, same, slice};
use super::fused::{finish, Input};
use crate::kernels::ops::{Events, Real};

/// Row `r` of the result is row `index[r]` of `x`, or a row of zeros where
/// `index[r] ≥ x.rows` (padding): `x` of shape `(n, C)`, result `(index.len(), C)`.
/// The gradient is the scatter-add `∂x[index[r]] += ∂y[r]` (padding rows get none).
///
/// On the `Cpu` (f32, f64, contiguous `x`) it copies rows directly and, when `x` is
/// observed data ([`crate::kernels::ops::observed`]), marks the result as observed too and
/// records no backward pass (no gradient with respect to data is wanted). Elsewhere it
/// is dfdx's `gather` on `x` with one zero row appended.
///
/// # Errors
/// The device's allocation errors.
pub fn gather_rows<C: Dim, E, D, T>(
    x: Events<C, E, D, T>,
    index: &[usize],
) -> Result<Events<C, E, D, T>, D::Err>
where
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
{
    let (x, tape) = x.split_tape();
    if is_cpu::<E, D, f32>() && slice::<_, _, _, _, f32>(&x).is_some() {
        return fast::<C, E, D, T, f32>(x, index, tape);
    }
    if is_cpu::<E, D, f64>() && slice::<_, _, _, _, f64>(&x).is_some() {
        return fast::<C, E, D, T, f64>(x, index, tape);
    }
    let n = x.shape().0;
    let dev = x.device().clone();
    let zero: Events<C, E, D> = dev.try_zeros_like(&(1, x.shape().1))?;
    let padded = (x.put_tape(tape), zero).try_concat_along(Axis::<0>)?;
    let idx: Vec<usize> = index.iter().map(|&i| i.min(n)).collect();
    let idx = dev.tensor_from_vec(idx, (index.len(),));
    padded.try_gather(idx)
}

/// The rows `index[r]` of the row-major matrix `xs` (rows of `width` values), or rows
/// of zeros (`F::default()`) where `index[r]` is past its last row, in one new buffer.
pub(super) fn gathered<F: Copy + Default>(xs: &[F], width: usize, index: &[usize]) -> Vec<F> {
    let n = xs.len() / width.max(1);
    let mut out: Vec<F> = Vec::with_capacity(index.len() * width);
    for &i in index {
        if i < n {
            out.extend_from_slice(&xs[i * width..(i + 1) * width]);
        } else {
            out.extend(std::iter::repeat_n(F::default(), width));
        }
    }
    out
}

fn fast<C: Dim, E, D, T, F>(
    x: Events<C, E, D>,
    index: &[usize],
    tape: T,
) -> Result<Events<C, E, D, T>, D::Err>
where
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    F: Dtype,
{
    let x: Events<C, F, Cpu> = same(x);
    let (n, width) = *x.shape();
    let c = width.size();
    let xs = contiguous(&x);
    let observed = is_observed(xs);
    let out = gathered(xs, c, index);
    let dev = x.device().clone();
    if observed {
        // Observed data has no gradient: its rows are observed data too, off the tape.
        let y = dev
            .try_tensor_from_vec(out, (index.len(), width))
            .map_err(same::<CpuError, D::Err>)?;
        mark_observed(&y);
        let y: Events<C, E, D> = same(y);
        return Ok(y.put_tape(tape));
    }
    let index = index.to_vec();
    let done = finish(
        &dev,
        out,
        (index.len(), width),
        [Input::of(&x)],
        tape,
        move |gy, [gx]| {
            let Some(gx) = gx else { return };
            for (r, &i) in index.iter().enumerate() {
                if i < n {
                    for (a, &b) in gx[i * c..(i + 1) * c]
                        .iter_mut()
                        .zip(&gy[r * c..(r + 1) * c])
                    {
                        *a += b;
                    }
                }
            }
        },
    );
    done.map_err(same::<CpuError, D::Err>)
}
