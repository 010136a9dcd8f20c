//! The affine map `y = x Wᵀ + b` as one operation with its own backward pass.

use dfdx::prelude::*;
use dfdx::shapes::Unit;

use super::cpu::{contiguous, grad_ptr, is_cpu, is_observed, same, same_mut, slice};
use super::gemm::{gemm, Mat};
use crate::ops::Real;

/// A `(batch, N)` tensor.
type Rows<B, const N: usize, E, D, T> = Tensor<(B, Const<N>), E, D, T>;

/// `y = x Wᵀ + b`: `x` of shape `(batch, I)`, `weight` `(O, I)` (PyTorch's and dfdx's
/// layout), `bias` `(O,)`, `y` `(batch, O)`. Gradients reach `x` (through `x`'s tape),
/// `weight` and `bias`; PyTorch's `torch.nn.functional.linear`.
///
/// On the `Cpu` device with `f32` or `f64` and contiguous operands this is one fused
/// operation: the bias is written first and the product accumulated onto it by a
/// single-threaded `gemm` 0.19 call at the machine's SIMD level
/// ([`super::simd_level`]); the backward pass is two more products
/// (`∂W += ∂yᵀ x`, `∂x += ∂y W`) and a column sum (`∂b += Σ_rows ∂y`), accumulating
/// into the gradients (so a tensor used twice sums its contributions); `∂x` is skipped
/// when `x` is observed data ([`crate::ops::observed`]). Elsewhere it is
/// dfdx's `x.matmul(Wᵀ) + broadcast(b)`, with the same values and gradients.
///
/// # Errors
/// The device's allocation errors.
pub fn linear<B, const I: usize, const O: usize, E, D, T>(
    x: Tensor<(B, Const<I>), E, D, T>,
    weight: &Tensor<Rank2<O, I>, E, D>,
    bias: &Tensor<Rank1<O>, E, D>,
) -> Result<Rows<B, O, E, D, T>, D::Err>
where
    B: Dim,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
{
    let (x, tape) = x.split_tape();
    if applies::<B, I, O, E, D, f32>(&x, weight, bias) {
        return fast::<B, I, O, E, D, T, f32>(x, weight, bias, tape);
    }
    if applies::<B, I, O, E, D, f64>(&x, weight, bias) {
        return fast::<B, I, O, E, D, T, f64>(x, weight, bias, tape);
    }
    let shape = (x.shape().0, Const::<O>);
    let y = x
        .put_tape(tape)
        .try_matmul(weight.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?)?;
    y.try_add(bias.retaped::<T>().try_broadcast_like(&shape)?)
}

fn applies<B, const I: usize, const O: usize, E, D, F>(
    x: &Tensor<(B, Const<I>), E, D>,
    weight: &Tensor<Rank2<O, I>, E, D>,
    bias: &Tensor<Rank1<O>, E, D>,
) -> bool
where
    B: Dim,
    E: Real,
    D: Device<E>,
    F: Unit,
{
    is_cpu::<E, D, F>()
        && slice::<_, _, _, _, F>(x).is_some()
        && slice::<_, _, _, _, F>(weight).is_some()
        && slice::<_, _, _, _, F>(bias).is_some()
}

/// The `Cpu`/`F` path, for operands that [`applies`] accepted.
fn fast<B, const I: usize, const O: usize, E, D, T, F>(
    x: Tensor<(B, Const<I>), E, D>,
    weight: &Tensor<Rank2<O, I>, E, D>,
    bias: &Tensor<Rank1<O>, E, D>,
    mut tape: T,
) -> Result<Rows<B, O, E, D, T>, D::Err>
where
    B: Dim,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    F: Unit + num_traits::Float,
{
    let x: Tensor<(B, Const<I>), F, Cpu> = same(x);
    let w: Tensor<Rank2<O, I>, F, Cpu> = same(weight.clone());
    let b: Tensor<Rank1<O>, F, Cpu> = same(bias.clone());
    let batch = x.shape().0.size();
    let mut out: Vec<F> = Vec::with_capacity(batch * O);
    {
        let (xs, ws, bs) = (contiguous(&x), contiguous(&w), contiguous(&b));
        for _ in 0..batch {
            out.extend_from_slice(bs);
        }
        // SAFETY: x is batch × I row-major, Wᵀ is the column-major view of the O × I
        // weight, out is batch × O and does not alias them.
        unsafe {
            gemm(
                (batch, I, O),
                Mat::rows(out.as_mut_ptr(), O),
                true,
                Mat::rows(xs.as_ptr(), I),
                Mat::cols(ws.as_ptr(), I),
            );
        }
    }
    let y = x
        .device()
        .try_tensor_from_vec(out, (x.shape().0, Const::<O>))
        .map_err(same::<CpuError, D::Err>)?;
    if T::OWNS_TAPE {
        let need_dx = !is_observed(contiguous(&x));
        let y_ghost = y.ghost();
        tape.add_backward_op(move |grads: &mut Gradients<E, D>| {
            let g: &mut Gradients<F, Cpu> = same_mut(grads);
            let (gw, gb, gx) = (
                grad_ptr(g, &w).map_err(same::<CpuError, D::Err>)?,
                grad_ptr(g, &b).map_err(same::<CpuError, D::Err>)?,
                grad_ptr(g, &x).map_err(same::<CpuError, D::Err>)?,
            );
            let gy: *const F = g
                .get_or_alloc_mut(&y_ghost)
                .map_err(same::<CpuError, D::Err>)?
                .as_ptr();
            let (xs, ws) = (contiguous(&x), contiguous(&w));
            // SAFETY: each gradient buffer has its tensor's length (dfdx allocates them
            // so) and belongs to a distinct tensor id, so none aliases another; the
            // forward tensors are kept alive by this closure.
            unsafe {
                // ∂W (O × I) += ∂yᵀ (O × batch) · x (batch × I)
                gemm(
                    (O, batch, I),
                    Mat::rows(gw, I),
                    true,
                    Mat::cols(gy, O),
                    Mat::rows(xs.as_ptr(), I),
                );
                // ∂x (batch × I) += ∂y (batch × O) · W (O × I), unless x is observed
                // data, whose gradient nothing wants (`crate::ops::observed`).
                if need_dx {
                    gemm(
                        (batch, O, I),
                        Mat::rows(gx, I),
                        true,
                        Mat::rows(gy, O),
                        Mat::rows(ws.as_ptr(), I),
                    );
                }
                // ∂b += Σ_rows ∂y
                let gb = std::slice::from_raw_parts_mut(gb, O);
                for r in 0..batch {
                    let row = std::slice::from_raw_parts(gy.add(r * O), O);
                    for (acc, &v) in gb.iter_mut().zip(row) {
                        *acc = *acc + v;
                    }
                }
            }
            Ok(())
        });
    }
    let y: Tensor<(B, Const<O>), E, D> = same(y);
    Ok(y.put_tape(tape))
}
