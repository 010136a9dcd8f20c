//! The Bernoulli log-likelihood on logits, forward and backward in one pass each.

use dfdx::prelude::*;

use super::cpu::{contiguous, contiguous_pair, same};
use super::fused::{finish, Input};
use super::math::RowMath;
use super::simd::vectorized;
use crate::kernels::ops::{Events, PerExample, Real};

/// `log p(x) = Σ_i x_i ℓ_i − softplus(ℓ_i)` per row, for logits `ℓ` and targets `x` of
/// shape `(batch, N)`, giving `(batch,)`: the negative of PyTorch's
/// `binary_cross_entropy_with_logits(ℓ, x, reduction='none').sum(-1)`.
///
/// `softplus(ℓ) = max(ℓ, 0) + log1p(e^{−|ℓ|})`, exact for every logit. The gradients
/// are `∂/∂ℓ_i = x_i − σ(ℓ_i)` and `∂/∂x_i = ℓ_i`, times the row's upstream gradient.
///
/// On the `Cpu` device with `f32` or `f64` and contiguous operands this is one fused
/// operation: the forward pass stores `σ(ℓ)` (from the same `e^{−|ℓ|}` as the
/// softplus) so the backward pass is a multiply-add per element, and no intermediate
/// `(batch, N)` tensors are made. Elsewhere it is dfdx's
/// `−bce_with_logits(ℓ, x).sum(1)`, with the same values and gradients.
pub fn bernoulli_log_prob<N: Dim, E, D, T>(
    logits: Events<N, E, D, T>,
    x: Events<N, E, D, T>,
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
        return fast::<N, E, D, T, f32>(logits, x, tape);
    }
    if contiguous_pair::<_, E, D, f64>(&logits, &x) {
        return fast::<N, E, D, T, f64>(logits, x, tape);
    }
    -logits
        .put_tape(tape)
        .bce_with_logits(x)
        .sum::<(usize,), Axis<1>>()
}

fn fast<N: Dim, E, D, T, F>(
    logits: Events<N, E, D>,
    x: Events<N, E, D>,
    tape: T,
) -> PerExample<E, D, T>
where
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    F: RowMath,
{
    let l: Events<N, F, Cpu> = same(logits);
    let x: Events<N, F, Cpu> = same(x);
    let (batch, width) = *l.shape();
    let (ls, xs) = (contiguous(&l), contiguous(&x));
    let mut sig: Vec<F> = vec![
        F::zero();
        if T::OWNS_TAPE {
            batch * width.size()
        } else {
            0
        }
    ];
    let mut out: Vec<F> = Vec::with_capacity(batch);
    let n = width.size().max(1);
    vectorized(
        #[inline(always)]
        || {
            if T::OWNS_TAPE {
                let rows = ls.chunks_exact(n).zip(xs.chunks_exact(n));
                for ((lr, xr), sr) in rows.zip(sig.chunks_exact_mut(n)) {
                    out.push(F::bernoulli_row(lr, xr, Some(sr)));
                }
            } else {
                for (lr, xr) in ls.chunks_exact(n).zip(xs.chunks_exact(n)) {
                    out.push(F::bernoulli_row(lr, xr, None));
                }
            }
        },
    );
    if width.size() == 0 {
        out.resize(batch, F::zero());
    }
    let dev = l.device().clone();
    // No ∂x for observed data (`crate::kernels::ops::observed`).
    let inputs = [Input::of(&l), Input::unless_observed(&x)];
    let done = finish(&dev, out, (batch,), inputs, tape, move |gy, [gl, gx]| {
        let Some(gl) = gl else { return };
        let (ls, xs) = (contiguous(&l), contiguous(&x));
        let rows = gl
            .chunks_exact_mut(n)
            .zip(ls.chunks_exact(n).zip(xs.chunks_exact(n)))
            .zip(sig.chunks_exact(n).zip(gy));
        match gx {
            Some(gx) => vectorized(
                #[inline(always)]
                || {
                    for (((glr, (lr, xr)), (sr, &g)), gxr) in rows.zip(gx.chunks_exact_mut(n)) {
                        for i in 0..glr.len() {
                            glr[i] = glr[i] + g * (xr[i] - sr[i]);
                            gxr[i] = gxr[i] + g * lr[i];
                        }
                    }
                },
            ),
            None => vectorized(
                #[inline(always)]
                || {
                    for ((glr, (_, xr)), (sr, &g)) in rows {
                        for i in 0..glr.len() {
                            glr[i] = glr[i] + g * (xr[i] - sr[i]);
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
