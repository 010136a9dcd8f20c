//! The `L`-sample score shared by the estimators: `L` reparameterized draws per
//! example from `q`, each scored under `q` and `p`.

use dfdx::prelude::*;

use crate::distributions::{Distribution, GuideDistribution};
use crate::error::Result;
use crate::kernels::ops::{Events, PerExample, Real};

/// `L` draws `z_l ~ q` per example (sample-major: row `l·batch + b` is draw `l` of
/// example `b`) with `log q(z_l)` and `log p(z_l)`, shapes `(L·batch, N)`, `(L·batch,)`
/// and `(L·batch,)`, nats.
pub(crate) struct Draws<N: Dim, E: Dtype, D: Storage<E>, T> {
    /// The draws, carrying `q`'s tape (the reparameterization path to its parameters).
    pub z: Events<N, E, D, T>,
    /// `log q(z_l)`, with the tape of `q`'s parameters.
    pub log_q: PerExample<E, D, T>,
    /// `log q(z_l)` of the coordinates drawn without a pathwise gradient, on its own
    /// tape to `q`'s parameters (the score-function term); `None` for a
    /// reparameterized guide.
    pub score: Option<PerExample<E, D, T>>,
    /// `log p(z_l)`, with the tape of `p`'s parameters.
    pub log_p: PerExample<E, D, T>,
}

/// Repeats `q` and `p` `l` times, draws `z` with `log q(z)` from
/// [`GuideDistribution::draw_with_log_prob`] (`rsample_with_log_prob` for a
/// reparameterized family) and scores `z` under `p` (Kingma &
/// Welling 2014, eq. 6-7; Burda et al. 2015, eq. 8 use the same draws). The
/// log-densities take `z` without its tape, so that the gradient through `z` flows
/// once, along whatever consumes [`Draws::z`].
///
/// # Errors
/// The families' shape errors.
pub(crate) fn draw<N, E, D, T, Q, P>(q: Q, p: P, l: usize) -> Result<Draws<N, E, D, T>>
where
    N: Dim,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    Q: GuideDistribution<N, E, D, Tape = T>,
    P: Distribution<N, E, D, Tape = T>,
{
    let d = q.repeat(l).draw_with_log_prob()?;
    let log_p = p.repeat(l).log_prob(d.z.with_empty_tape())?;
    Ok(Draws {
        z: d.z,
        log_q: d.log_q,
        log_p,
        score: d.score,
    })
}
