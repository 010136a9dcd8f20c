//! The gated activation `tanh(a) ⊙ σ(b)` of the (Pixel)CNN's gated layers, forward
//! and backward in one pass each.

use dfdx::prelude::*;

use dfdx::tensor::CpuError;

use super::cpu::{contiguous, is_cpu, same, slice};
use super::fused::{finish, Input};
use super::math::GateMath;
use super::simd::vectorized;
use crate::error::{Error, Result};
use crate::kernels::ops::{columns, Real};

/// `tanh(a) ⊙ σ(b)` of rows `[a, b]`: shape `(n, 2C) → (n, C)`, the gated activation
/// of van den Oord et al. 2016 ("Conditional Image Generation with PixelCNN Decoders",
/// eq. 2), with `a` the first `C` columns and `b` the last `C`.
///
/// # Formula
/// `y_j = tanh(a_j) σ(b_j)`; the gradients are `∂y_j/∂a_j = σ(b_j) (1 − tanh²(a_j))`
/// and `∂y_j/∂b_j = tanh(a_j) σ(b_j) (1 − σ(b_j))`, times the upstream gradient.
///
/// On the `Cpu` device with `f32` or `f64` and a contiguous input this is one fused
/// operation: the forward pass keeps `tanh(a)` and `σ(b)` for the backward pass (a few
/// multiply-adds per element), the `f32` `tanh` and `σ` come from a polynomial `exp`
/// the compiler vectorizes (within 3 and 4 ulp of the exact values, tested), and no
/// intermediate `(n, C)` tensors are made. Elsewhere it is dfdx's
/// `a.tanh() * b.sigmoid()` of the two halves, with the same values and gradients.
///
/// # Errors
/// [`Error::NotAMultiple`] if the width is odd; the device's allocation errors.
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::kernels::gated_activation;
/// let dev = Cpu::default();
/// let pre = dev.tensor_from_vec(vec![0.5f32, 0.0], (1usize, 2usize));
/// let y = gated_activation(pre).unwrap();
/// // tanh(0.5) · σ(0) = 0.4621172 · 0.5
/// assert!((y.as_vec()[0] - 0.2310586).abs() < 1e-6);
/// ```
pub fn gated_activation<E, D, T>(
    pre: Tensor<(usize, usize), E, D, T>,
) -> Result<Tensor<(usize, usize), E, D, T>>
where
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
{
    let (n, c2) = *pre.shape();
    if c2 % 2 != 0 {
        return Err(Error::not_a_multiple("gated_activation (width)", 2, c2));
    }
    let (pre, tape) = pre.split_tape();
    if is_cpu::<E, D, f32>() && slice::<_, _, _, _, f32>(&pre).is_some() {
        return fast::<E, D, T, f32>(pre, tape);
    }
    if is_cpu::<E, D, f64>() && slice::<_, _, _, _, f64>(&pre).is_some() {
        return fast::<E, D, T, f64>(pre, tape);
    }
    let pre = pre.put_tape(tape);
    let c = c2 / 2;
    // `columns`, not dfdx's `slice`, whose backward overwrites the input's gradient.
    let b = columns(pre.with_empty_tape(), c..c2)?;
    let a = columns(pre, 0..c)?;
    debug_assert_eq!(a.shape(), &(n, c));
    Ok(a.tanh() * b.sigmoid())
}

fn fast<E, D, T, F>(
    pre: Tensor<(usize, usize), E, D>,
    tape: T,
) -> Result<Tensor<(usize, usize), E, D, T>>
where
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    F: GateMath,
{
    let pre: Tensor<(usize, usize), F, Cpu> = same(pre);
    let (n, c2) = *pre.shape();
    let c = c2 / 2;
    let ps = contiguous(&pre);
    let keep = if T::OWNS_TAPE { n * c } else { 0 };
    let (mut th, mut sg) = (vec![F::zero(); keep], vec![F::zero(); keep]);
    let mut out: Vec<F> = Vec::with_capacity(n * c);
    if c > 0 {
        vectorized(
            #[inline(always)]
            || {
                for (r, row) in ps.chunks_exact(c2).enumerate() {
                    let (a, b) = row.split_at(c);
                    if T::OWNS_TAPE {
                        let (t, s) = (&mut th[r * c..(r + 1) * c], &mut sg[r * c..(r + 1) * c]);
                        out.extend(a.iter().zip(b).zip(t.iter_mut().zip(s)).map(
                            |((&a, &b), (t, s))| {
                                *t = F::tanh_lane(a);
                                *s = F::sigmoid_lane(b);
                                *t * *s
                            },
                        ));
                    } else {
                        out.extend(
                            a.iter()
                                .zip(b)
                                .map(|(&a, &b)| F::tanh_lane(a) * F::sigmoid_lane(b)),
                        );
                    }
                }
            },
        );
    }
    let dev = pre.device().clone();
    let done = finish(
        &dev,
        out,
        (n, c),
        [Input::of(&pre)],
        tape,
        move |gy, [gp]| {
            let Some(gp) = gp else { return };
            if c == 0 {
                return;
            }
            vectorized(
                #[inline(always)]
                || {
                    let rows = gp
                        .chunks_exact_mut(c2)
                        .zip(gy.chunks_exact(c))
                        .zip(th.chunks_exact(c).zip(sg.chunks_exact(c)));
                    for ((gpr, gyr), (tr, sr)) in rows {
                        let (ga, gb) = gpr.split_at_mut(c);
                        for j in 0..c {
                            let (g, t, s) = (gyr[j], tr[j], sr[j]);
                            ga[j] = ga[j] + g * s * (F::one() - t * t);
                            gb[j] = gb[j] + g * t * s * (F::one() - s);
                        }
                    }
                },
            );
        },
    );
    done.map_err(Error::device)
}

/// `a ⊙ σ(b)`: the gated linear unit of Dauphin et al. 2017 ("Language Modeling with
/// Gated Convolutional Networks", eq. 1) on a value `a` and a gate pre-activation `b` of
/// the same shape `(n, C)`, the activation of the gated dense layers of Tomczak &
/// Welling 2018 (PyTorch's `F.glu` on the two halves).
///
/// # Formula
/// `y_j = a_j σ(b_j)`; the gradients are `∂y_j/∂a_j = σ(b_j)` and
/// `∂y_j/∂b_j = a_j σ(b_j) (1 − σ(b_j))`, times the upstream gradient.
///
/// On the `Cpu` device with `f32` or `f64` and contiguous inputs this is one fused
/// operation (the forward pass keeps `σ(b)` for the backward pass; `σ` in `f32` from the
/// polynomial `exp` of [`gated_activation`], within 4 ulp, so that the loop
/// vectorizes); elsewhere dfdx's `a * b.sigmoid()`, with the same values and gradients.
/// The tapes of `a` and `b` are merged.
///
/// # Errors
/// [`Error::ShapeMismatch`] if the shapes differ; the device's allocation errors.
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::kernels::gated_linear_unit;
/// let dev = Cpu::default();
/// let a = dev.tensor_from_vec(vec![2.0f32, -1.0], (1usize, 2usize));
/// let b = dev.tensor_from_vec(vec![0.0f32, 1.0], (1usize, 2usize));
/// let y = gated_linear_unit(a, b).unwrap().as_vec();
/// // 2 · σ(0) = 1, −1 · σ(1) = −0.7310586
/// assert!((y[0] - 1.0).abs() < 1e-6 && (y[1] + 0.7310586).abs() < 1e-6);
/// ```
pub fn gated_linear_unit<S, E, D, T, R>(
    a: Tensor<S, E, D, T>,
    b: Tensor<S, E, D, R>,
) -> Result<Tensor<S, E, D, T>>
where
    S: Shape,
    E: Real,
    D: Device<E>,
    T: Tape<E, D> + dfdx::tensor::Merge<R>,
    R: Tape<E, D>,
{
    let (sa, sb) = (a.shape().concrete(), b.shape().concrete());
    if sa.as_ref() != sb.as_ref() {
        return Err(Error::shape(
            "gated_linear_unit (gate)",
            sa.as_ref(),
            sb.as_ref(),
        ));
    }
    try_gated_linear_unit(a, b).map_err(Error::device)
}

/// [`gated_linear_unit`] with the device's error type, for a `Module`'s `try_forward`
/// (a gated layer's value and gate come from layers of the same width).
///
/// # Panics
/// If the run-time shapes of `a` and `b` differ, as dfdx's own binary operations.
///
/// # Errors
/// The device's allocation errors.
pub fn try_gated_linear_unit<S, E, D, T, R>(
    a: Tensor<S, E, D, T>,
    b: Tensor<S, E, D, R>,
) -> std::result::Result<Tensor<S, E, D, T>, D::Err>
where
    S: Shape,
    E: Real,
    D: Device<E>,
    T: Tape<E, D> + dfdx::tensor::Merge<R>,
    R: Tape<E, D>,
{
    assert_eq!(
        a.shape().concrete().as_ref(),
        b.shape().concrete().as_ref(),
        "try_gated_linear_unit: the value and the gate differ in shape"
    );
    let (a, ta) = a.split_tape();
    let (b, tb) = b.split_tape();
    let tape = ta.merge(tb);
    if is_cpu::<E, D, f32>()
        && slice::<_, _, _, _, f32>(&a).is_some()
        && slice::<_, _, _, _, f32>(&b).is_some()
    {
        return glu_fast::<S, E, D, T, f32>(a, b, tape);
    }
    if is_cpu::<E, D, f64>()
        && slice::<_, _, _, _, f64>(&a).is_some()
        && slice::<_, _, _, _, f64>(&b).is_some()
    {
        return glu_fast::<S, E, D, T, f64>(a, b, tape);
    }
    let b = b.put_tape(T::default());
    a.put_tape(tape).try_mul(b.try_sigmoid()?)
}

fn glu_fast<S, E, D, T, F>(
    a: Tensor<S, E, D>,
    b: Tensor<S, E, D>,
    tape: T,
) -> std::result::Result<Tensor<S, E, D, T>, D::Err>
where
    S: Shape,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    F: GateMath,
{
    let (a, b): (Tensor<S, F, Cpu>, Tensor<S, F, Cpu>) = (same(a), same(b));
    let shape = *a.shape();
    let (av, bv) = (contiguous(&a), contiguous(&b));
    let mut sg: Vec<F> = Vec::with_capacity(if T::OWNS_TAPE { av.len() } else { 0 });
    let mut out: Vec<F> = Vec::with_capacity(av.len());
    vectorized(
        #[inline(always)]
        || {
            if T::OWNS_TAPE {
                sg.extend(bv.iter().map(|&b| F::sigmoid_lane(b)));
                out.extend(av.iter().zip(&sg).map(|(&a, &s)| a * s));
            } else {
                out.extend(av.iter().zip(bv).map(|(&a, &b)| a * F::sigmoid_lane(b)));
            }
        },
    );
    // The values of `a` for the gate's gradient (a clone shares the storage).
    let a_keep = a.clone();
    let dev = a.device().clone();
    let done = finish(
        &dev,
        out,
        shape,
        [Input::of(&a), Input::of(&b)],
        tape,
        move |gy, [ga, gb]| {
            let av = contiguous(&a_keep);
            vectorized(
                #[inline(always)]
                || {
                    if let Some(ga) = ga {
                        for ((g, &y), &s) in ga.iter_mut().zip(gy).zip(&sg) {
                            *g = *g + y * s;
                        }
                    }
                    if let Some(gb) = gb {
                        for (((g, &y), &s), &a) in gb.iter_mut().zip(gy).zip(&sg).zip(av) {
                            *g = *g + y * a * s * (F::one() - s);
                        }
                    }
                },
            );
        },
    );
    done.map_err(same::<CpuError, D::Err>)
}
