//! Score-function (REINFORCE) terms: how a discrete guide's parameters get their
//! gradient (Williams 1992; Mnih & Gregor 2014, eq. 4-5).

use dfdx::prelude::*;

use crate::kernels::ops::{detach, PerExample, Real};

/// `w ⊙ (s − stop_gradient(s))` for scores `s = log q(z | x)` (carrying the tape to the
/// guide's parameters) and weights `w` (the learning signal, less any baseline), shape
/// `(n,)`: the value is exactly 0, the gradient `Σ_i w_i ∇ log q(z_i | x)`. Added to an
/// objective, it leaves the reported value unchanged and adds the score-function
/// gradient.
pub(crate) fn score_term<E: Real, D: Device<E>, T: Tape<E, D>>(
    score: PerExample<E, D, T>,
    weight: PerExample<E, D>,
) -> PerExample<E, D, T> {
    let value = detach(&score);
    (score - value) * weight
}

/// Uploads host weights `w` (one per row of `like`) as a tensor on `like`'s device.
pub(crate) fn weights_like<E: Real, D: Device<E>, T>(
    like: &PerExample<E, D, T>,
    w: &[f64],
) -> PerExample<E, D> {
    let v: Vec<E> = w
        .iter()
        .map(|&x| crate::kernels::ops::cst::<E>(x))
        .collect();
    like.device().tensor_from_vec(v, (w.len(),))
}

/// The score terms of `k` draws per example summed over the draws: for scores of shape
/// `(k, batch)` (sample-major, draw `s` of example `b` at `[s, b]`) and weights in the
/// same order flattened to `(k · batch,)`, `Σ_s w_{s,b} (s_{s,b} − stop_gradient(s_{s,b}))`,
/// shape `(batch,)`: the multi-sample bounds' score-function gradient, value 0.
pub(crate) fn summed_over_draws<E: Real, D: Device<E>, T: Tape<E, D>>(
    score: Tensor<(usize, usize), E, D, T>,
    weights: PerExample<E, D>,
) -> PerExample<E, D, T> {
    let (k, b) = *score.shape();
    score_term(score.reshape_like(&(k * b,)), weights)
        .reshape_like(&(k, b))
        .sum::<(usize,), Axis<0>>()
}
