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
