//! The categorical log-likelihood on logits, forward and backward in one pass each.

use dfdx::prelude::*;

use super::cpu::{contiguous, contiguous_pair, same};
use super::fused::{finish, Input};
use super::math::RowMath;
use super::simd::vectorized;
use crate::kernels::ops::{Events, PerExample, Real};

/// `Σ_k x_k log_softmax(ℓ)_k` per row, for logits `ℓ` and (one-hot, or any weights)
/// rows `x` of shape `(batch, K)`, giving `(batch,)` in nats: the categorical
/// log-probability of [`Categorical`](crate::distributions::Categorical)'s `log_prob`, PyTorch's
/// `-cross_entropy(ℓ, x, reduction='none')` for probability targets.
///
/// # Formula
/// `log_softmax(ℓ)_k = ℓ_k − lse`, `lse = m + ln Σ_k e^{ℓ_k − m}` with `m = max_k ℓ_k`
/// (no overflow for any finite logits). The gradients are
/// `∂/∂ℓ_k = x_k − (Σ_j x_j) softmax(ℓ)_k` and `∂/∂x_k = ℓ_k − lse`, times the row's
/// upstream gradient.
///
/// On the `Cpu` device with `f32` or `f64` and contiguous operands this is one fused
/// operation: the forward pass keeps `softmax(ℓ)` (from the same exponentials as the
/// sum) and each row's `lse`, so the backward pass is a multiply-add per element; no
/// intermediate `(batch, K)` tensors are made, and no `∂x` is computed for observed
/// data ([`crate::kernels::ops::observed`]). The `f32` exponentials are a polynomial the
/// compiler vectorizes (within 2 ulp). Elsewhere it is dfdx's
/// `(ℓ.log_softmax() * x).sum(1)`, with the same values and gradients.
///
/// # Panics
/// If the shapes of `logits` and `x` differ (the caller checks them), or the device
/// cannot allocate the result (as dfdx's non-`try` operations).
pub fn categorical_log_prob<K: Dim, E, D, T>(
    logits: Events<K, E, D, T>,
    x: Events<K, E, D, T>,
) -> PerExample<E, D, T>
where
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
{
    let (logits, lt) = logits.split_tape();
    let (x, xt) = x.split_tape();
    let tape = lt.merge(xt);
    if contiguous_pair::<_, E, D, f32>(&logits, &x) {
        return fast::<K, E, D, T, f32>(logits, x, tape);
    }
    if contiguous_pair::<_, E, D, f64>(&logits, &x) {
        return fast::<K, E, D, T, f64>(logits, x, tape);
    }
    (logits.put_tape(tape).log_softmax::<Axis<1>>() * x).sum::<(usize,), Axis<1>>()
}

fn fast<K: Dim, E, D, T, F>(
    logits: Events<K, E, D>,
    x: Events<K, E, D>,
    tape: T,
) -> PerExample<E, D, T>
where
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    F: RowMath,
{
    let l: Events<K, F, Cpu> = same(logits);
    let x: Events<K, F, Cpu> = same(x);
    let (batch, width) = *l.shape();
    let k = width.size();
    let (ls, xs) = (contiguous(&l), contiguous(&x));
    let mut pi: Vec<F> = vec![F::zero(); if T::OWNS_TAPE { batch * k } else { 0 }];
    // Per row: the result, lse and Σ x.
    let mut rows: Vec<(F, F, F)> = Vec::with_capacity(batch);
    if k > 0 {
        vectorized(
            #[inline(always)]
            || {
                if T::OWNS_TAPE {
                    let it = ls.chunks_exact(k).zip(xs.chunks_exact(k));
                    for ((lr, xr), pr) in it.zip(pi.chunks_exact_mut(k)) {
                        rows.push(F::categorical_row(lr, xr, Some(pr)));
                    }
                } else {
                    for (lr, xr) in ls.chunks_exact(k).zip(xs.chunks_exact(k)) {
                        rows.push(F::categorical_row(lr, xr, None));
                    }
                }
            },
        );
    } else {
        // No classes: each row's sum has no terms (0); no gradient to give.
        rows.resize(batch, (F::zero(), F::neg_infinity(), F::zero()));
    }
    let out: Vec<F> = rows.iter().map(|r| r.0).collect();
    let dev = l.device().clone();
    // No ∂x for observed data (`crate::kernels::ops::observed`).
    let inputs = [Input::of(&l), Input::unless_observed(&x)];
    let done = finish(&dev, out, (batch,), inputs, tape, move |gy, [gl, gx]| {
        let Some(gl) = gl else { return };
        if k == 0 {
            return;
        }
        let (ls, xs) = (contiguous(&l), contiguous(&x));
        let it = gl
            .chunks_exact_mut(k)
            .zip(xs.chunks_exact(k).zip(pi.chunks_exact(k)))
            .zip(rows.iter().zip(gy));
        match gx {
            Some(gx) => vectorized(
                #[inline(always)]
                || {
                    let it = it.zip(ls.chunks_exact(k).zip(gx.chunks_exact_mut(k)));
                    for (((glr, (xr, pr)), (&(_, lse, sx), &g)), (lr, gxr)) in it {
                        let gs = g * sx;
                        for j in 0..glr.len() {
                            glr[j] = glr[j] + (g * xr[j] - gs * pr[j]);
                            gxr[j] = gxr[j] + g * (lr[j] - lse);
                        }
                    }
                },
            ),
            None => vectorized(
                #[inline(always)]
                || {
                    for ((glr, (xr, pr)), (&(_, _, sx), &g)) in it {
                        let gs = g * sx;
                        for j in 0..glr.len() {
                            glr[j] = glr[j] + (g * xr[j] - gs * pr[j]);
                        }
                    }
                },
            ),
        }
    });
    match done {
        Ok(y) => y,
        Err(_) => unreachable!("the vector has `batch` elements"),
    }
}
